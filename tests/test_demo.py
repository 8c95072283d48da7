"""The demo organisation's billing files: deterministic, FOCUS-valid and telling its stories.

Expectations are computed independently with DuckDB SQL over the files `generate` wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from finops.collectors.aws_cur import read_cur
from finops.collectors.gcp_billing import read_gcp_export_files
from finops.demo import DEMO_TEAMS, DemoFiles, deliver_restatement, focus_table, generate
from finops.warehouse.schema import ALLOWED_VALUES, FOCUS_12_COLUMNS, REQUIRED_COLUMNS

LAST_MONTH = date(2026, 4, 1)
MONTHS = tuple(date(y, m, 1) for y, m in [(2025, 9), (2025, 10), (2025, 11), (2025, 12),
                                          (2026, 1), (2026, 2), (2026, 3), (2026, 4)])  # fmt: skip
TEAM_KEYS = ("team", "Team", "owner")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return generate(tmp_path_factory.mktemp("demo"), seed=7, months=8, end_month=LAST_MONTH)


@pytest.fixture(scope="module")
def three_months(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return generate(tmp_path_factory.mktemp("three"), seed=7, months=3, end_month=LAST_MONTH)


@pytest.fixture(scope="module")
def sql(demo: DemoFiles) -> Iterator[duckdb.DuckDBPyConnection]:
    """The FOCUS rows the collectors make of the files: `aws` and `gcp` as first delivered,
    `restated` the restated month once AWS re-delivered it, `charges` for both providers.

    Read once: reading the files is the slow part of these tests.
    """
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute(f"CREATE TABLE aws AS {read_cur(str(demo.aws_dir)).select_sql}")
    conn.execute(f"CREATE TABLE gcp AS {read_gcp_export_files(str(demo.gcp_dir)).select_sql}")
    deliver_restatement(demo)
    conn.execute(
        f"CREATE TABLE restated AS SELECT * FROM ({read_cur(str(demo.aws_dir)).select_sql}) "
        "WHERE BillingPeriodStart = ?",
        [datetime(2026, 1, 1, tzinfo=UTC)],
    )
    conn.execute("""
        CREATE TABLE charges AS
            SELECT 'AWS' AS provider, ChargeCategory, ChargePeriodStart, BillingPeriodStart,
                   BilledCost, EffectiveCost, x_InstanceType, Tags,
                   map_keys(Tags) AS tag_keys, Tags['env'] AS env
            FROM aws
            UNION ALL
            SELECT 'GCP', ChargeCategory, ChargePeriodStart, BillingPeriodStart, BilledCost,
                   EffectiveCost, x_InstanceType, Tags, map_keys(Tags), Tags['env']
            FROM gcp;
    """)
    yield conn
    conn.close()


def _cur_lines(demo: DemoFiles) -> pa.Table:
    """The CUR line items of the first delivery of every month."""
    files = sorted(demo.aws_dir.rglob("*.parquet"))
    return pa.concat_tables(pq.read_table(p) for p in files if demo.restated_dir not in p.parents)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_writes_byte_identical_files(three_months: DemoFiles, tmp_path: Path) -> None:
    again = generate(tmp_path, seed=7, months=3, end_month=LAST_MONTH)

    assert again.rows == three_months.rows
    assert any(again.gpu_openmetrics_dir.rglob("*.om"))
    assert any(again.nvidia_smi_dir.glob("*.csv"))
    assert _files(again.root) == _files(three_months.root)


def test_another_seed_gives_other_data_for_the_same_months(
    three_months: DemoFiles, tmp_path: Path
) -> None:
    eight = generate(tmp_path, seed=8, months=3, end_month=LAST_MONTH)

    assert eight.months == three_months.months
    aws_seven, aws_eight = _cur_lines(three_months), _cur_lines(eight)
    assert aws_seven.schema == aws_eight.schema
    assert not aws_seven.equals(aws_eight)
    assert _files(three_months.gcp_dir) != _files(eight.gcp_dir)
    assert _files(three_months.nvidia_smi_dir) != _files(eight.nvidia_smi_dir)


def test_generate_rewrites_its_folders_so_no_stale_month_is_left(tmp_path: Path) -> None:
    generate(tmp_path, months=2, end_month=LAST_MONTH)
    files = generate(tmp_path, months=1, end_month=LAST_MONTH)

    cur_data = files.aws_dir / "northwind-cur" / "data"
    assert [p.name for p in cur_data.iterdir()] == ["BILLING_PERIOD=2026-04"]
    assert [p.name for p in files.gcp_dir.iterdir()] == ["2026-04"]
    assert [p.name for p in files.restated_manifest.parent.iterdir()] == [
        "northwind-cur-Manifest.json"
    ]
    assert [p.name for p in files.gpu_openmetrics_dir.iterdir()] == ["2026-04"]


def test_requested_months_are_the_billing_periods(
    demo: DemoFiles, sql: duckdb.DuckDBPyConnection
) -> None:
    assert demo.months == MONTHS
    for provider in ("AWS", "GCP"):
        periods = sql.execute(
            "SELECT DISTINCT BillingPeriodStart::DATE FROM charges WHERE provider = ? ORDER BY 1",
            [provider],
        ).fetchall()
        assert [p for (p,) in periods] == list(MONTHS)
    metadata = demo.aws_dir / "northwind-cur" / "metadata"
    assert sorted(p.name for p in metadata.iterdir()) == [
        f"BILLING_PERIOD={m:%Y-%m}" for m in MONTHS
    ]
    assert sorted(p.name for p in demo.gcp_dir.iterdir()) == [f"{m:%Y-%m}" for m in MONTHS]
    gcp_records = pq.read_table(demo.gcp_dir).num_rows
    assert demo.rows == _cur_lines(demo).num_rows + gcp_records
    # The collectors add one FOCUS row per GCP credit; every CUR line is one row.
    (gcp_credits,) = sql.execute(
        "SELECT count(*) FROM gcp WHERE ChargeCategory = 'Credit'"
    ).fetchone()
    row_count = sql.execute("SELECT count(*) FROM charges").fetchone()
    assert row_count == (demo.rows + gcp_credits,)
    assert 50_000 <= demo.rows <= 150_000


def test_each_row_bills_its_own_month(sql: duckdb.DuckDBPyConnection) -> None:
    """Usage is daily; BillingPeriodEnd is the first day of the next month."""
    wrong = sql.execute("""
        SELECT count(*) FILTER (WHERE ChargePeriodEnd - ChargePeriodStart <> INTERVAL 1 DAY),
               count(*) FILTER (WHERE date_trunc('month', ChargePeriodStart)
                                      <> BillingPeriodStart),
               count(*) FILTER (WHERE BillingPeriodEnd <> BillingPeriodStart + INTERVAL 1 MONTH)
        FROM aws WHERE ChargeCategory = 'Usage'
    """).fetchone()
    assert wrong == (0, 0, 0)


def test_end_month_defaults_to_the_last_complete_month(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    expected = date(today.year - (today.month == 1), (today.month - 2) % 12 + 1, 1)

    assert generate(tmp_path, months=1).months == (expected,)


def test_mandatory_columns_are_never_null(sql: duckdb.DuckDBPyConnection) -> None:
    mandatory = [*REQUIRED_COLUMNS, "ProviderName"]
    for view in ("aws", "gcp", "restated"):
        nulls = sql.execute(
            "SELECT "
            + ", ".join(f'count(*) FILTER (WHERE "{c}" IS NULL)' for c in mandatory)
            + f" FROM {view}"
        ).fetchone()
        assert dict(zip(mandatory, nulls, strict=True)) == dict.fromkeys(mandatory, 0), view


def test_absent_values_are_nulls_not_placeholders(sql: duckdb.DuckDBPyConnection) -> None:
    text_columns = [
        name
        for name, sql_type, *_ in sql.execute("DESCRIBE aws").fetchall()
        if sql_type == "VARCHAR"
    ]
    placeholders = sql.execute(
        "SELECT "
        + " + ".join(
            f"""count(*) FILTER (WHERE "{c}" IN ('', 'N/A', 'null'))""" for c in text_columns
        )
        + " FROM aws"
    ).fetchone()
    assert placeholders == (0,)


@pytest.mark.parametrize("column", sorted(ALLOWED_VALUES))
def test_values_are_focus_allowed_values(column: str, sql: duckdb.DuckDBPyConnection) -> None:
    for view in ("aws", "gcp"):
        has_column = sql.execute(f"SELECT * FROM {view} LIMIT 0").description
        if column not in {d[0] for d in has_column}:
            continue
        values = {v for (v,) in sql.execute(f'SELECT DISTINCT "{column}" FROM {view}').fetchall()}
        assert values - {None} <= set(ALLOWED_VALUES[column]), (view, column)


def test_aws_is_a_cur2_export_with_a_manifest_per_billing_period(demo: DemoFiles) -> None:
    import json

    export = demo.aws_dir / "northwind-cur"
    manifest = json.loads(
        (export / "metadata" / "BILLING_PERIOD=2025-12" / "northwind-cur-Manifest.json").read_text()
    )
    (listed,) = manifest["dataFiles"]
    assert listed.startswith(
        "s3://northwind-billing/cur/northwind-cur/data/BILLING_PERIOD=2025-12/"
    )
    local = export / listed.split("/northwind-cur/", 1)[1]
    schema = pq.read_schema(local)

    assert {
        "bill_payer_account_id", "line_item_line_item_type", "line_item_unblended_cost",
        "line_item_usage_start_date", "pricing_public_on_demand_cost", "resource_tags",
        "savings_plan_savings_plan_effective_cost", "reservation_effective_cost",
    } <= set(schema.names)  # fmt: skip
    assert str(schema.field("line_item_unblended_cost").type) == "double"
    assert pa.types.is_map(schema.field("resource_tags").type)
    types = set(pq.read_table(local).column("line_item_line_item_type").to_pylist())
    assert types == {
        "Usage", "DiscountedUsage", "SavingsPlanCoveredUsage", "SavingsPlanNegation",
        "RIFee", "SavingsPlanRecurringFee", "Tax",
    }  # fmt: skip


def test_gcp_is_the_detailed_billing_export_schema(demo: DemoFiles) -> None:
    records = pq.read_table(demo.gcp_dir / "2026-01")
    credits = records.filter(pc.greater(pc.list_value_length(records["credits"]), 0))
    kinds = {c["type"] for row in credits.column("credits").to_pylist() for c in row}

    assert {"billing_account_id", "service", "sku", "project", "labels", "system_labels",
            "location", "cost", "currency", "usage", "credits", "invoice", "cost_type",
            "resource", "cost_at_list"} <= set(records.schema.names)  # fmt: skip
    assert {r["month"] for r in records.column("invoice").to_pylist()} == {"202601"}
    assert kinds == {"COMMITTED_USAGE_DISCOUNT", "PROMOTION"}


def test_untagged_spend_is_10_to_15_percent(sql: duckdb.DuckDBPyConnection) -> None:
    team_keys = ", ".join(f"'{k}'" for k in TEAM_KEYS)
    (share,) = sql.execute(f"""
        SELECT sum(EffectiveCost) FILTER (WHERE tag_keys IS NULL
                                          OR NOT list_has_any(tag_keys, [{team_keys}]))
               / sum(EffectiveCost)
        FROM charges
    """).fetchone()

    assert 0.10 <= share <= 0.15


def test_tags_are_messy_the_way_real_ones_are(sql: duckdb.DuckDBPyConnection) -> None:
    keys = {k for (k,) in sql.execute("SELECT DISTINCT unnest(tag_keys) FROM charges").fetchall()}
    teams = {
        t
        for (t,) in sql.execute("""
            SELECT DISTINCT coalesce(Tags['team'], Tags['Team'], Tags['owner']) FROM aws
        """).fetchall()
    }

    assert {"team", "Team", "owner", "env", "project", "cluster", "workload"} <= keys
    assert "ML-Platform" in teams
    assert {t.name for t in DEMO_TEAMS} - {"recommendations", "nlp-research", "vision"} <= teams


def test_dev_resources_run_on_weekdays_only(sql: duckdb.DuckDBPyConnection) -> None:
    days = sql.execute("""
        SELECT count(*), count(*) FILTER (WHERE isodow(ChargePeriodStart) >= 6)
        FROM charges WHERE env = 'dev' AND ChargeCategory = 'Usage'
    """).fetchone()

    assert days[0] > 1_000
    assert days[1] == 0


def test_gpu_compute_is_about_two_thirds_of_spend(sql: duckdb.DuckDBPyConnection) -> None:
    (share,) = sql.execute(r"""
        SELECT sum(EffectiveCost) FILTER (
                   WHERE regexp_matches(x_InstanceType, '^(ml\.)?(p4d|p5|g5|a2|a3|g2)'))
               / sum(EffectiveCost)
        FROM charges
    """).fetchone()

    assert 0.60 <= share <= 0.72


def test_daily_spend_grows_from_first_to_last_month(sql: duckdb.DuckDBPyConnection) -> None:
    (growth,) = sql.execute("""
        WITH daily AS (
            SELECT BillingPeriodStart AS month,
                   sum(EffectiveCost) / count(DISTINCT ChargePeriodStart) AS per_day
            FROM charges WHERE ChargeCategory = 'Usage' GROUP BY ALL)
        SELECT last(per_day ORDER BY month) / first(per_day ORDER BY month) FROM daily
    """).fetchone()

    assert 1.10 <= growth <= 1.60


def test_list_cost_is_never_below_what_usage_costs(sql: duckdb.DuckDBPyConnection) -> None:
    usage = sql.execute("""
        SELECT count(*), count(*) FILTER (WHERE ListCost < EffectiveCost OR ListCost < BilledCost)
        FROM (SELECT * FROM aws UNION ALL BY NAME SELECT * FROM gcp)
        WHERE ChargeCategory = 'Usage'
    """).fetchone()

    assert usage[0] > 40_000
    assert usage[1] == 0


def test_spot_usage_is_dynamic_and_cheaper_than_list(sql: duckdb.DuckDBPyConnection) -> None:
    spot = sql.execute("""
        SELECT DISTINCT PricingCategory, EffectiveCost < ListCost
        FROM aws WHERE x_PurchaseOption = 'Spot'
    """).fetchall()

    assert spot == [("Dynamic", True)]


def test_aws_commitments_are_amortised_from_the_monthly_fee(sql: duckdb.DuckDBPyConnection) -> None:
    """RI and Savings Plan usage carries its amortised cost; the fee line carries the unused
    part, so a month's effective cost of a commitment equals its fee."""
    used = sql.execute("""
        SELECT count(*), count(*) FILTER (WHERE BilledCost <> 0 AND x_PurchaseOption = 'Reserved'
                                          OR EffectiveCost <= 0)
        FROM aws WHERE ChargeCategory = 'Usage' AND PricingCategory = 'Committed'
    """).fetchone()
    unbalanced = sql.execute("""
        WITH amortised AS (
            SELECT CommitmentDiscountId AS id, BillingPeriodStart AS month,
                   sum(EffectiveCost) AS effective,
                   sum(BilledCost) FILTER (WHERE ChargeCategory = 'Purchase') AS fee,
                   sum(EffectiveCost) FILTER (WHERE ChargeCategory = 'Purchase') AS unused,
                   sum(BilledCost) AS billed
            FROM aws WHERE CommitmentDiscountId IS NOT NULL GROUP BY ALL)
        SELECT count(*) FILTER (WHERE effective <> fee OR billed <> fee OR unused <= 0), count(*)
        FROM amortised
    """).fetchone()

    assert used[0] > 1_000
    assert used[1] == 0
    assert unbalanced == (0, 2 * len(MONTHS))


def test_credits_and_refunds_are_negative(sql: duckdb.DuckDBPyConnection) -> None:
    positive = sql.execute("""
        SELECT count(*), count(*) FILTER (WHERE BilledCost >= 0)
        FROM charges WHERE ChargeCategory = 'Credit'
    """).fetchone()
    # The refund of a p5 training window arrives a month after the usage it refunds.
    refunds = sql.execute("""
        SELECT BilledCost, ChargePeriodStart < BillingPeriodStart
        FROM aws WHERE ChargeDescription LIKE 'Refund:%'
    """).fetchall()
    promotions = sql.execute(
        "SELECT count(*), sum(BilledCost) FROM gcp WHERE ChargeDescription LIKE 'PROMOTION:%'"
    ).fetchone()

    assert positive[0] > 0
    assert positive[1] == 0
    assert refunds == [(Decimal("-1850.25"), True)]
    assert promotions == (len(MONTHS), Decimal(-4000) * len(MONTHS))


def test_aws_accounts_are_12_digit_strings_kept_with_their_leading_zeros(
    sql: duckdb.DuckDBPyConnection,
) -> None:
    accounts = [
        a
        for (a,) in sql.execute(
            "SELECT DISTINCT BillingAccountId FROM aws UNION SELECT DISTINCT SubAccountId FROM aws"
        ).fetchall()
    ]
    projects = sql.execute("SELECT DISTINCT BillingAccountId, SubAccountId FROM gcp").fetchall()

    assert len(accounts) >= 4
    assert all(re.fullmatch(r"\d{12}", a) for a in accounts)
    assert any(a.startswith("0") for a in accounts)
    assert all(re.fullmatch(r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}", b) for b, _ in projects)
    assert all(re.fullmatch(r"[a-z][a-z-]+-\d{4}", p) for _, p in projects)


def test_restated_month_covers_every_day_and_changes_the_total(
    demo: DemoFiles, sql: duckdb.DuckDBPyConnection
) -> None:
    assert demo.restated_month == date(2026, 1, 1)
    assert demo.restated_dir.parent == (
        demo.aws_dir / "northwind-cur" / "data" / "BILLING_PERIOD=2026-01"
    )
    totals = sql.execute("""
        WITH original AS (SELECT * FROM aws WHERE BillingPeriodStart = '2026-01-01')
        SELECT (SELECT count(DISTINCT ChargePeriodStart) FROM restated
                WHERE ChargeCategory = 'Usage'),
               (SELECT count(*) FROM restated) - (SELECT count(*) FROM original),
               (SELECT sum(BilledCost) FROM restated) - (SELECT sum(BilledCost) FROM original),
               (SELECT sum(EffectiveCost) FROM restated)
                   - (SELECT sum(EffectiveCost) FROM original)
    """).fetchone()

    # A late 2,500.00 credit, 1,000 GB of egress at 0.0855 no longer billed, and its 2% tax.
    assert totals == (31, 1, Decimal("-2587.21"), Decimal("-2587.21"))


def test_eight_months_of_gpu_history_cover_every_gpu_cluster_in_few_lines(
    demo: DemoFiles,
) -> None:
    """Hourly, one GPU a node: about 1.2 M sample lines, which the OpenMetrics parser reads in
    minutes; the per-month folders let a quick demo ingest only the latest."""
    files = sorted(demo.gpu_openmetrics_dir.glob("*/*.om"))
    sample_lines = 0
    for path in files:
        text = path.read_bytes()
        sample_lines += text.count(b"\n") - text.count(b"\n# ") - 1  # the first line is a "# "

    assert sorted({p.parent.name for p in files}) == [f"{m:%Y-%m}" for m in MONTHS]
    assert sorted({p.stem for p in files}) == [
        "ml-dev-usw2", "nlp-h100", "recs-serving", "recs-train", "search-serving-use1",
        "search-train-use1", "train-p4d-use1", "vision-serving", "vision-train",
    ]  # fmt: skip
    assert 1_000_000 <= sample_lines <= 1_500_000


def test_focus_table_has_the_rows_asked_for_and_the_aws_schema(demo: DemoFiles) -> None:
    table = focus_table(200_000)

    assert table.num_rows == 200_000
    assert set(table.schema.names) == {c.name for c in FOCUS_12_COLUMNS} | {
        "x_InstanceType",
        "x_PurchaseOption",
    }
    assert pa.types.is_map(table.schema.field("Tags").type)
    assert table.column("ChargeCategory").null_count == 0
    # Grown to size: many times the demo's few hundred resources.
    assert pc.count_distinct(table.column("ResourceId").cast(pa.string())).as_py() > 2_000
