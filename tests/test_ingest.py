"""The ingest transaction: exactly the slice a delivery covers is replaced, or nothing is."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from finops.collectors.focus import read_focus
from finops.errors import IngestError, PartialDeliveryError, WarehouseError
from finops.warehouse import Warehouse
from finops.warehouse.migrations import LATEST_VERSION, MIGRATIONS
from finops.warehouse.schema import COST_COLUMNS
from tests.conftest import JUNE_ROWS, MAY_ROWS, row, write_csv


def ingest(warehouse: Warehouse, path: Path, source: str = "aws", force: bool = False):
    return warehouse.ingest_cost(
        lambda: read_focus(str(path)), source=source, collector="focus", uri=str(path), force=force
    )


def test_restated_month_replaces_only_that_month(
    tmp_path: Path, warehouse: Warehouse, total_billed: Callable[..., Decimal]
) -> None:
    ingest(warehouse, write_csv(tmp_path / "may.csv", MAY_ROWS))
    ingest(warehouse, write_csv(tmp_path / "june.csv", JUNE_ROWS))
    assert total_billed() == Decimal("376.00")
    restated_may = [*MAY_ROWS[:4], row("05-31", "30.01", tags={"team": "vision"})]

    result = ingest(warehouse, write_csv(tmp_path / "may-restated.csv", restated_may))

    assert result.status == "success"
    assert result.replaced_rows == 5
    assert total_billed() == Decimal("396.00")  # May 195.01 + June 200.99
    june = warehouse.query(
        """SELECT sum("BilledCost") AS t FROM cost WHERE "BillingPeriodStart" = '2026-06-01'"""
    )
    assert june.column("t")[0].as_py() == Decimal("200.99")


def test_same_files_again_leave_rows_unchanged(
    tmp_path: Path, warehouse: Warehouse, total_billed: Callable[..., Decimal]
) -> None:
    path = write_csv(tmp_path / "may.csv", MAY_ROWS)
    first = ingest(warehouse, path)
    ingest_ids_before = (
        warehouse.query('SELECT DISTINCT "x_IngestId" AS i FROM cost').column("i").to_pylist()
    )

    again = ingest(warehouse, path)

    assert (first.status, again.status) == ("success", "unchanged")
    assert total_billed() == Decimal("175.01")
    assert (
        warehouse.query('SELECT DISTINCT "x_IngestId" AS i FROM cost').column("i").to_pylist()
        == ingest_ids_before
    )
    assert warehouse.runs().column("status").to_pylist() == ["unchanged", "success"]


def test_partial_delivery_is_refused_unless_forced(
    tmp_path: Path, warehouse: Warehouse, total_billed: Callable[..., Decimal]
) -> None:
    ingest(warehouse, write_csv(tmp_path / "may.csv", MAY_ROWS))  # 4 distinct days
    partial = write_csv(tmp_path / "may-partial.csv", MAY_ROWS[:2])  # 2 days

    with pytest.raises(
        PartialDeliveryError, match=r"covers 2 day\(s\) of billing period 2026-05 .* holds 4"
    ):
        ingest(warehouse, partial)
    assert total_billed() == Decimal("175.01")

    forced = ingest(warehouse, partial, force=True)
    assert forced.status == "success"
    assert total_billed() == Decimal("150.35")


def test_failing_file_leaves_data_as_it_was_and_is_recorded(
    tmp_path: Path, warehouse: Warehouse, total_billed: Callable[..., Decimal]
) -> None:
    ingest(warehouse, write_csv(tmp_path / "may.csv", MAY_ROWS))
    broken = write_csv(tmp_path / "may-broken.csv", [*MAY_ROWS[:4], row("05-31", "ten dollars")])

    with pytest.raises(
        IngestError, match="row 5, column BilledCost: 'ten dollars' is not a number"
    ):
        ingest(warehouse, broken)

    assert total_billed() == Decimal("175.01")
    latest = warehouse.runs().to_pylist()[0]
    assert latest["status"] == "failed"
    assert latest["source"] == "aws"
    assert "ten dollars" in latest["error"]
    assert latest["rows"] is None


def test_failure_inside_the_transaction_rolls_back(
    tmp_path: Path, warehouse: Warehouse, total_billed: Callable[..., Decimal]
) -> None:
    ingest(warehouse, write_csv(tmp_path / "may.csv", MAY_ROWS))
    # A delivery whose SELECT fails at run time, after the old slice was deleted.
    delivery = read_focus(str(write_csv(tmp_path / "may2.csv", MAY_ROWS)))
    delivery.select_sql = delivery.select_sql.replace(
        'AS "BilledCost"', "+ CAST(error('boom') AS DECIMAL(38,10)) AS \"BilledCost\"", 1
    )
    with pytest.raises(IngestError, match="the warehouse refused the delivery"):
        warehouse.ingest_cost(lambda: delivery, source="aws", collector="focus", uri="may2.csv")
    assert total_billed("aws") == Decimal("175.01")


def test_rows_count_and_totals_are_recorded_per_run(tmp_path: Path, warehouse: Warehouse) -> None:
    path = write_csv(tmp_path / "both.csv", [*MAY_ROWS, *JUNE_ROWS])
    result = ingest(warehouse, path)
    run = warehouse.runs().to_pylist()[0]
    assert run["rows"] == 7
    assert run["billed_cost"] == Decimal("376.00")
    assert run["effective_cost"] == Decimal("370.95")  # May 169.96 + June 200.99
    assert [str(p) for p in run["periods"]] == ["2026-05-01", "2026-06-01"]
    assert len(run["checksum"]) == 64
    assert result.run_id == run["run_id"]


def test_overlapping_sources_are_reported_and_counted_once(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb", source_priority=("cur",))
    may = write_csv(tmp_path / "may.csv", MAY_ROWS)
    ingest(warehouse, may, source="focus-export")

    result = ingest(warehouse, may, source="cur")

    (overlap,) = result.overlaps
    assert overlap.billing_account_id == "012345678901"
    assert overlap.sources == ("cur", "focus-export")
    assert overlap.winner == "cur"
    assert overlap.reason == "first in ingest.source_priority"
    both = warehouse.query('SELECT sum("BilledCost") AS t FROM cost').column("t")[0].as_py()
    once = (
        warehouse.query('SELECT sum("BilledCost") AS t FROM cost_resolved').column("t")[0].as_py()
    )
    assert (both, once) == (Decimal("350.02"), Decimal("175.01"))


def test_overlap_without_priority_counts_the_newest_source(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    may = write_csv(tmp_path / "may.csv", MAY_ROWS)
    ingest(warehouse, may, source="old")
    result = ingest(warehouse, may, source="new")
    assert result.overlaps[0].winner == "new"
    ingest(
        warehouse,
        write_csv(tmp_path / "may-old.csv", [*MAY_ROWS, row("05-05", "1.00")]),
        source="old",
    )
    winners = warehouse.query("SELECT winner FROM source_overlaps").column("winner").to_pylist()
    assert winners == ["old"]
    once = (
        warehouse.query('SELECT sum("BilledCost") AS t FROM cost_resolved').column("t")[0].as_py()
    )
    assert once == Decimal("176.01")


def test_new_file_is_created_at_the_latest_schema(warehouse: Warehouse) -> None:
    with warehouse.writer() as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchall() == [
            (LATEST_VERSION,)
        ]


def test_older_file_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path)).close()  # version 0: an empty file from before any migration

    rows = Warehouse(path).query("SELECT count(*) AS n FROM cost").column("n").to_pylist()

    assert rows == [0]
    with duckdb.connect(str(path), read_only=True) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchall() == [
            (LATEST_VERSION,)
        ]


def test_newer_file_is_refused_with_a_clear_message(tmp_path: Path, warehouse: Warehouse) -> None:
    with warehouse.writer() as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'from the future', now())")
    with pytest.raises(
        WarehouseError, match=r"schema version 999 is newer than this finops understands"
    ):
        warehouse.query("SELECT 1")


def test_reading_a_missing_warehouse_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(
        WarehouseError, match=r"no warehouse yet; run `finops demo` or `finops ingest"
    ):
        Warehouse(tmp_path / "none.duckdb").query("SELECT 1")


def stored(warehouse: Warehouse) -> list[str]:
    return [
        r["column_name"]
        for r in warehouse.query(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'cost_rows' "
            "ORDER BY column_index"
        ).to_pylist()
    ]


def test_cost_rows_store_only_filled_columns_and_the_view_shows_every_focus_column(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """A column is stored from the first delivery that fills it; before that, `cost` shows
    it as NULL. The view's columns are the FOCUS ones in order, then our extras."""
    ingest(warehouse, write_csv(tmp_path / "may.csv", MAY_ROWS))
    before = stored(warehouse)
    assert "CapacityReservationId" not in before
    assert {"BilledCost", "ServiceName"} <= set(before)
    view = [r["column_name"] for r in warehouse.query("DESCRIBE cost").to_pylist()]
    assert view[: len(COST_COLUMNS)] == [c.name for c in COST_COLUMNS]

    june = [row("06-01", "10.00", CapacityReservationId="cr-1"), *JUNE_ROWS[1:]]
    ingest(warehouse, write_csv(tmp_path / "june.csv", june))

    assert stored(warehouse) == [*before, "CapacityReservationId"]
    assert [r["column_name"] for r in warehouse.query("DESCRIBE cost").to_pylist()] == view
    found = warehouse.query(
        """SELECT strftime("BillingPeriodStart", '%Y-%m') AS month,
                  count("CapacityReservationId") AS filled, count(*) AS rows
           FROM cost GROUP BY 1 ORDER BY 1"""
    ).to_pylist()
    assert found == [
        {"month": "2026-05", "filled": 0, "rows": len(MAY_ROWS)},
        {"month": "2026-06", "filled": 1, "rows": len(june)},
    ]


def test_an_older_file_keeps_its_rows_and_drops_only_empty_columns(tmp_path: Path) -> None:
    """Migration 10 on a file made by migrations 1-9: same rows and values through `cost`,
    the columns no row fills are no longer stored."""
    path = tmp_path / "old.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMPTZ)"
    )
    for migration in MIGRATIONS[:9]:
        for statement in migration.statements:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_version VALUES (?, ?, now())",
            [migration.version, migration.description],
        )
    conn.execute(
        """INSERT INTO cost ("BillingAccountId", "BillingPeriodStart", "ChargePeriodStart",
                             "BilledCost", "EffectiveCost", "SkuMeter", "x_Source")
           VALUES ('1', '2026-05-01', '2026-05-02', 1.25, 1.00, 'Hours', 'aws'),
                  ('1', '2026-05-01', '2026-05-03', 2.50, 2.00, NULL, 'aws')"""
    )
    conn.close()

    warehouse = Warehouse(path)
    rows = warehouse.query(
        'SELECT "BilledCost", "SkuMeter", "CapacityReservationId" FROM cost ORDER BY 1'
    ).to_pylist()

    assert rows == [
        {"BilledCost": Decimal("1.25"), "SkuMeter": "Hours", "CapacityReservationId": None},
        {"BilledCost": Decimal("2.50"), "SkuMeter": None, "CapacityReservationId": None},
    ]
    kept = stored(warehouse)
    assert "SkuMeter" in kept
    assert not {"CapacityReservationId", "ResourceId"} & set(kept)
    assert len(warehouse.query("DESCRIBE cost")) == len(COST_COLUMNS)
