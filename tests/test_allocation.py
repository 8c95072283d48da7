"""Charge-back with allocation: shared-cost rules, hierarchy, currency; always the whole bill."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from finops.analytics.chargeback import (
    Allocation,
    allocate,
    allocation_coverage,
    allocation_lines,
    period_total,
)
from finops.analytics.gpu import GpuAttribution
from finops.collectors.focus import read_focus
from finops.config import (
    AllocationSettings,
    Config,
    SharedCostRule,
    SharedCostScope,
    Team,
)
from finops.errors import ConfigError
from finops.periods import parse_period
from finops.warehouse import GpuDelivery, Warehouse
from tests.conftest import row, write_csv

TEAMS = (
    Team(name="vision", cost_centre="CC-4020", business_unit="Research"),
    Team(name="ml-platform", cost_centre="CC-1010", business_unit="Platform"),
    Team(name="search"),
)
SHARED_ACCOUNT, TEAM_ACCOUNT, SEARCH_ACCOUNT = "999999999999", "111111111111", "222222222222"
RULES = (
    SharedCostRule(
        name="tax",
        scope=SharedCostScope(charge_categories=("Tax",)),
        split="fixed",
        percentages={"vision": 50, "ml-platform": 25, "search": 25},
    ),
    SharedCostRule(
        name="platform account",
        scope=SharedCostScope(accounts=(SHARED_ACCOUNT,)),
        split="proportional",
        teams=("vision", "ml-platform"),
    ),
    SharedCostRule(name="shared tag", scope=SharedCostScope(tags={"shared": "true"}), split="even"),
)
SETTINGS = AllocationSettings(
    tag_key="team", tag_aliases=("owner",), accounts={SEARCH_ACCOUNT: "search"}, shared=RULES
)
ALLOCATION = Allocation(settings=SETTINGS, teams=TEAMS)


def bill_row(day: str, amount: str, account: str = TEAM_ACCOUNT, **more: object) -> dict:
    return row(day, amount, SubAccountId=account, **more)  # type: ignore[arg-type]


BILL = [
    # May 2026: 213.00
    bill_row("05-01", "100.00", tags={"team": "vision"}),
    bill_row("05-02", "50.00", tags={"owner": "ML-Platform"}),
    bill_row("05-03", "30.00", SHARED_ACCOUNT),  # platform account: vision 20, ml-platform 10
    bill_row("05-04", "9.00", tags={"shared": "true"}),  # 3 each, search too
    bill_row("05-05", "7.00"),  # no tag, no mapped account
    bill_row("05-06", "5.00", SEARCH_ACCOUNT),  # the account mapping: search
    bill_row("05-31", "12.00", ChargeCategory="Tax"),  # vision 6, ml-platform 3, search 3
    # June 2026: 50.00; nobody in the platform rule's teams has direct cost.
    bill_row("06-01", "10.00", tags={"team": "search"}),
    bill_row("06-02", "40.00", SHARED_ACCOUNT),
]


@pytest.fixture
def loaded(tmp_path: Path, warehouse: Warehouse) -> Warehouse:
    path = write_csv(tmp_path / "bill.csv", BILL)
    warehouse.ingest_cost(
        lambda: read_focus(str(path)), source="aws", collector="focus", uri=str(path)
    )
    return warehouse


def by_group(table: pa.Table, column: str = "team") -> dict:
    return {
        (r["period"], r[column]): (r["direct_cost"], r["shared_cost"], r["cost"])
        for r in table.to_pylist()
    }


def test_direct_then_rules_fixed_proportional_and_even_including_a_team_with_only_shared_cost(
    loaded: Warehouse,
) -> None:
    with loaded.reader() as conn:
        table = allocate(conn, parse_period("2026-05"), ALLOCATION)
    assert by_group(table) == {
        ("2026-05", "vision"): (Decimal("100.00"), Decimal("29.00"), Decimal("129.00")),
        ("2026-05", "ml-platform"): (Decimal("50.00"), Decimal("16.00"), Decimal("66.00")),
        ("2026-05", "search"): (Decimal("5.00"), Decimal("6.00"), Decimal("11.00")),
        ("2026-05", "(unallocated)"): (Decimal("0.00"), Decimal("0.00"), Decimal("7.00")),
    }
    shares = {r["team"]: r["share"] for r in table.to_pylist()}
    assert shares["vision"] == pytest.approx(60.56)  # 129 / 213


def test_lines_say_which_rule_moved_what(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        lines = allocation_lines(conn, parse_period("2026-05"), ALLOCATION)
    moved = {
        (r["recipient"], r["rule"]): r["amount"] for r in lines.to_pylist() if r["kind"] == "shared"
    }
    assert moved == {
        ("vision", "tax"): Decimal("6"),
        ("ml-platform", "tax"): Decimal("3"),
        ("search", "tax"): Decimal("3"),
        ("vision", "platform account"): Decimal("20"),
        ("ml-platform", "platform account"): Decimal("10"),
        ("vision", "shared tag"): Decimal("3"),
        ("ml-platform", "shared tag"): Decimal("3"),
        ("search", "shared tag"): Decimal("3"),
    }


def test_rule_with_nobody_to_split_among_leaves_the_cost_unallocated(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        table = allocate(conn, parse_period("2026-06"), ALLOCATION)
    assert by_group(table) == {
        ("2026-06", "(unallocated)"): (Decimal("0.00"), Decimal("0.00"), Decimal("40.00")),
        ("2026-06", "search"): (Decimal("10.00"), Decimal("0.00"), Decimal("10.00")),
    }


def test_cost_centre_and_business_unit_roll_teams_up(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        centres = allocate(conn, parse_period("2026-05"), ALLOCATION, by="cost-centre")
        units = allocate(conn, parse_period("2026-05"), ALLOCATION, by="business-unit")
    assert {k[1]: v[2] for k, v in by_group(centres, "cost_centre").items()} == {
        "CC-4020": Decimal("129.00"),
        "CC-1010": Decimal("66.00"),
        "(no cost centre)": Decimal("11.00"),
        "(unallocated)": Decimal("7.00"),
    }
    assert {k[1]: v[2] for k, v in by_group(units, "business_unit").items()} == {
        "Research": Decimal("129.00"),
        "Platform": Decimal("66.00"),
        "(no business unit)": Decimal("11.00"),
        "(unallocated)": Decimal("7.00"),
    }


def test_by_month_and_by_quarter(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        monthly = allocate(conn, parse_period("2026-Q2"), ALLOCATION, grain="month")
        quarterly = allocate(conn, parse_period("2026-Q2"), ALLOCATION, grain="quarter")
    assert sorted({r["period"] for r in monthly.to_pylist()}) == ["2026-05", "2026-06"]
    assert by_group(quarterly)[("2026-Q2", "search")] == (
        Decimal("15.00"),
        Decimal("6.00"),
        Decimal("21.00"),
    )
    assert by_group(quarterly)[("2026-Q2", "(unallocated)")][2] == Decimal("47.00")


def test_allocated_plus_unallocated_is_the_bill_for_every_period(loaded: Warehouse) -> None:
    for text in ("2026-05", "2026-06", "2026-Q2", "2026-05-03..2026-06-01", "2026-Q3"):
        period = parse_period(text)
        with loaded.reader() as conn:
            exact = sum(allocate(conn, period, ALLOCATION)["exact_cost"].to_pylist(), Decimal(0))
            bill = sum(period_total(conn, period, "effective").values(), Decimal(0))
        assert exact == bill, text


def test_coverage_is_the_share_attributed_directly(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        (may,) = allocation_coverage(conn, parse_period("2026-05"), ALLOCATION).to_pylist()
    assert may["bill"] == Decimal("213")
    assert may["direct"] == Decimal("155")  # vision 100, ml-platform 50, search 5 (its account)
    assert may["shared"] == Decimal("51")
    assert may["unallocated"] == Decimal("7")
    assert may["coverage_pct"] == pytest.approx(72.77)  # 155 / 213
    # Untagged: every row without team/owner, the mapped account's included: 30+9+7+5+12.
    assert may["untagged"] == Decimal("63")
    assert may["untagged_pct"] == pytest.approx(29.58)


def test_an_even_split_in_thirds_stays_exact(tmp_path: Path, warehouse: Warehouse) -> None:
    path = write_csv(tmp_path / "b.csv", [bill_row("07-01", "10.00", tags={"shared": "true"})])
    warehouse.ingest_cost(lambda: read_focus(str(path)), source="a", collector="focus", uri="b")
    with warehouse.reader() as conn:
        lines = allocation_lines(conn, parse_period("2026-07"), ALLOCATION)
    # Equal weights: the first by name takes the remainder.
    assert {r["recipient"]: r["amount"] for r in lines.to_pylist()} == {
        "ml-platform": Decimal("3.333334"),
        "search": Decimal("3.333333"),
        "vision": Decimal("3.333333"),
    }


def test_quarter_across_the_clock_change_keeps_every_hour(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    # UK clocks go forward at 01:00 UTC on 29 March 2026; periods are in UTC, so 2026-Q1 holds
    # all 24 hours of that day and the last hour of March, and none of April.
    hours = [datetime(2026, 3, 29, tzinfo=UTC) + timedelta(hours=h) for h in range(24)]
    hours.append(datetime(2026, 3, 31, 23, tzinfo=UTC))
    rows = [
        row(
            "03-29",
            "1.25",
            tags={"team": "vision"},
            ChargePeriodStart=f"{h:%Y-%m-%dT%H:%M:%SZ}",
            ChargePeriodEnd=f"{h + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}",
        )
        for h in hours
    ]
    rows.append(row("04-01", "99.00", tags={"team": "vision"}))
    path = write_csv(tmp_path / "dst.csv", rows)
    warehouse.ingest_cost(lambda: read_focus(str(path)), source="a", collector="focus", uri="d")
    with warehouse.reader() as conn:
        quarter = allocate(conn, parse_period("2026-Q1"), ALLOCATION, grain="quarter")
        day = allocate(conn, parse_period("2026-03-29..2026-03-29"), ALLOCATION)
    assert by_group(quarter) == {
        ("2026-Q1", "vision"): (Decimal("31.25"), Decimal("0"), Decimal("31.25"))
    }
    assert by_group(day)[("2026-03-29..2026-03-29", "vision")][2] == Decimal("30.00")


def test_a_fiscal_year_starting_in_april_moves_the_quarters(loaded: Warehouse) -> None:
    fiscal = Allocation(settings=SETTINGS, teams=TEAMS, fiscal_year_start_month=4)
    period = parse_period("2026-Q1", fiscal_year_start_month=4)  # April-June 2026
    with loaded.reader() as conn:
        table = allocate(conn, period, fiscal, grain="quarter")
    assert {r["period"] for r in table.to_pylist()} == {"2026-Q1"}
    assert sum(table["exact_cost"].to_pylist(), Decimal(0)) == Decimal("263")


def test_other_currencies_convert_at_the_months_rate(tmp_path: Path, warehouse: Warehouse) -> None:
    rows = [
        bill_row("05-01", "100.00", tags={"team": "vision"}, BillingCurrency="EUR"),
        bill_row("05-02", "10.00", tags={"team": "search"}),
    ]
    path = write_csv(tmp_path / "eur.csv", rows)
    warehouse.ingest_cost(lambda: read_focus(str(path)), source="a", collector="focus", uri="e")
    with (
        warehouse.reader() as conn,
        pytest.raises(ConfigError, match=r"no EUR->USD rate .* 2026-05"),
    ):
        allocate(conn, parse_period("2026-05"), ALLOCATION)
    warehouse.store_fx_rates(
        "finops.yaml",
        pa.table(
            {
                "from_currency": ["EUR", "EUR", "EUR"],
                "to_currency": ["USD", "USD", "USD"],
                "rate_date": [date(2026, 4, 1), date(2026, 5, 31), date(2026, 6, 1)],
                "rate": [Decimal("1.05"), Decimal("1.0825"), Decimal("2")],
            }
        ),
    )
    with warehouse.reader() as conn:
        table = allocate(conn, parse_period("2026-05"), ALLOCATION)
    assert {r["team"]: r["exact_cost"] for r in table.to_pylist()} == {
        "vision": Decimal("108.25"),  # 100 EUR at 31 May's 1.0825, not June's
        "search": Decimal("10"),
    }
    assert set(table["currency"].to_pylist()) == {"USD"}


def sample_rows(gpu: int, util: float, namespaces: list[str | None]) -> list[dict]:
    """Four readings an hour for hours 00-02 of 1 May 2026, cycling through namespaces."""
    start = datetime(2026, 5, 1, tzinfo=UTC)
    return [
        {
            "ts": start + timedelta(minutes=minute),
            "node": "gpu-node-1",
            "gpu_index": gpu,
            "gpu_uuid": f"GPU-{gpu}",
            "resource_id": "i-0gpu",
            "cluster": "gpu-a",
            "gpu_util_pct": util,
            "namespace": namespaces[(minute // 15) % len(namespaces)],
        }
        for minute in range(0, 180, 15)
    ]


@pytest.fixture
def gpu_cluster(tmp_path: Path, warehouse: Warehouse) -> Warehouse:
    bill = [
        bill_row(
            "05-01",
            "48.00",
            ResourceId="i-0gpu",
            x_InstanceType="p5.48xlarge",
            tags={"cluster": "gpu-a", "team": "ml-platform"},
        ),
        bill_row("05-01", "20.00", tags={"team": "vision"}),
    ]
    path = write_csv(tmp_path / "gpu-bill.csv", bill)
    warehouse.ingest_cost(lambda: read_focus(str(path)), source="a", collector="focus", uri="g")
    # GPU 0 is busy, its pods in two namespaces every hour; GPU 1 is idle the whole time.
    samples = pa.Table.from_pylist(
        sample_rows(0, 60.0, ["cv-jobs", "search"]) + sample_rows(1, 1.0, [None])
    )
    warehouse.ingest_gpu(
        lambda: GpuDelivery(uri="t", select_sql="SELECT * FROM s", tables={"s": samples}),
        source="dcgm",
        collector="test",
        uri="t",
    )
    return warehouse


def gpu_allocation(idle: str) -> Allocation:
    settings = AllocationSettings(
        namespace_teams={"cv-jobs": "vision"},
        idle=idle,  # type: ignore[arg-type]
        shared=(
            SharedCostRule(
                name="gpu-a", scope=SharedCostScope(clusters=("gpu-a",)), split="gpu-hours"
            ),
        ),
    )
    return Allocation(
        settings=settings,
        teams=TEAMS,
        gpu=GpuAttribution(cluster_tag_keys=("cluster",), allocation=settings, teams=TEAMS),
    )


def test_shared_gpu_cluster_splits_by_namespace_gpu_hours_with_idle_apart(
    gpu_cluster: Warehouse,
) -> None:
    # 6 GPU-hours: vision 1.5 and search 1.5 busy (half of GPU 0's 3 hours each), 3 idle.
    with gpu_cluster.reader() as conn:
        table = allocate(conn, parse_period("2026-05"), gpu_allocation("separate"))
    assert by_group(table) == {
        ("2026-05", "vision"): (Decimal("20.00"), Decimal("12.00"), Decimal("32.00")),
        ("2026-05", "(idle)"): (Decimal("0.00"), Decimal("24.00"), Decimal("24.00")),
        ("2026-05", "search"): (Decimal("0.00"), Decimal("12.00"), Decimal("12.00")),
    }


def test_idle_gpu_cost_can_be_shared_by_busy_gpu_hours(gpu_cluster: Warehouse) -> None:
    with gpu_cluster.reader() as conn:
        table = allocate(conn, parse_period("2026-05"), gpu_allocation("share"))
        (coverage,) = allocation_coverage(
            conn, parse_period("2026-05"), gpu_allocation("share")
        ).to_pylist()
    assert {k[1]: v[2] for k, v in by_group(table).items()} == {
        "vision": Decimal("44.00"),
        "search": Decimal("24.00"),
    }
    assert (coverage["direct"], coverage["shared"], coverage["idle"]) == (20, 48, 0)


def test_rules_are_checked_when_the_config_is_read() -> None:
    def config(rule: dict) -> None:
        Config.model_validate(
            {"teams": [{"name": "vision"}, {"name": "search"}], "allocation": {"shared": [rule]}}
        )

    with pytest.raises(ValueError, match="percentages add up to 90, not 100"):
        config({"name": "x", "scope": {"accounts": ["1"]}, "split": "fixed",
                "percentages": {"vision": 60, "search": 30}})  # fmt: skip
    with pytest.raises(ValueError, match="the scope names no cost"):
        config({"name": "x", "scope": {}, "split": "even"})
    with pytest.raises(ValueError, match=r"gpu-hours needs scope\.clusters"):
        config({"name": "x", "scope": {"accounts": ["1"]}, "split": "gpu-hours"})
    with pytest.raises(ValueError, match=r"allocation.shared.0.teams: 'visoin'"):
        config({"name": "x", "scope": {"accounts": ["1"]}, "split": "even", "teams": ["visoin"]})
