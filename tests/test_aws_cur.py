"""The AWS CUR collector: CUR 2.0 and legacy reports from S3, mapped to FOCUS to the cent."""

from __future__ import annotations

import csv
import gzip
import json
import os
import socket
import tempfile
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer

from finops.collectors.aws_cur import default_source, read_cur, snake_case, tag_key
from finops.errors import IngestError
from finops.warehouse import Warehouse
from tests.flaky_proxy import FlakyProxy

BUCKET = "billing"
PAYER = "000123456789"
ML_ACCOUNT = "001234567890"
SP_ARN = "arn:aws:savingsplans::000123456789:savingsplan/sp-1"
RI_ARN = "arn:aws:ec2:us-east-1:001234567890:reserved-instances/ri-1"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """S3 in moto's server mode: boto3 and pyarrow's S3 filesystem both reach it over HTTP
    (`mock_aws` would patch boto3 only)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto's state lives in this process, across servers: start every test from none.
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST")
    ).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    try:
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        server.stop()


def ingest(warehouse: Warehouse, location: str, export_name: str | None = None):
    return warehouse.ingest_cost(
        lambda: read_cur(location, export_name=export_name),
        source="aws-cur",
        collector="aws-cur",
        uri=location,
    )


def period_totals(warehouse: Warehouse) -> dict[str, tuple[Decimal, Decimal]]:
    rows = warehouse.query(
        """SELECT strftime("BillingPeriodStart", '%Y-%m') AS p, sum("BilledCost") AS b,
                  sum("EffectiveCost") AS e FROM cost GROUP BY 1 ORDER BY 1"""
    ).to_pylist()
    return {r["p"]: (r["b"], r["e"]) for r in rows}


# --- CUR 2.0: Parquet with a resource_tags map ------------------------------------------


def cur2_line(line_type: str, cost: str, day: int = 1, **overrides: object) -> dict:
    start = datetime(2026, 5, day, tzinfo=UTC)
    return {
        "bill_payer_account_id": PAYER,
        "bill_billing_period_start_date": datetime(2026, 5, 1, tzinfo=UTC),
        "bill_billing_period_end_date": datetime(2026, 6, 1, tzinfo=UTC),
        "line_item_usage_account_id": ML_ACCOUNT,
        "line_item_line_item_type": line_type,
        "line_item_usage_start_date": start,
        "line_item_usage_end_date": start.replace(hour=1),
        "line_item_product_code": "AmazonEC2",
        "line_item_usage_type": "USE1-BoxUsage:p4d.24xlarge",
        "line_item_resource_id": None,
        "line_item_unblended_cost": float(cost),
        "line_item_currency_code": "USD",
        "pricing_term": None,
        "pricing_public_on_demand_cost": None,
        "product_instance_type": None,
        "product_region_code": "us-east-1",
        "savings_plan_savings_plan_effective_cost": None,
        "savings_plan_savings_plan_a_r_n": None,
        "reservation_effective_cost": None,
        "reservation_reservation_a_r_n": None,
        "resource_tags": None,
        **overrides,
    }


MAY_CUR2 = [
    cur2_line(
        "Usage",
        "100.10",
        pricing_term="OnDemand",
        pricing_public_on_demand_cost=100.10,
        product_instance_type="p4d.24xlarge",
        line_item_resource_id="i-0aaa",
        resource_tags={"user_team": "vision", "aws_created_by": "ci", "user_env": ""},
    ),
    cur2_line(
        "Usage",
        "12.34",
        day=2,
        pricing_term="Spot",
        pricing_public_on_demand_cost=40.00,
        line_item_usage_type="USE1-SpotUsage:g5.xlarge",
        product_instance_type="g5.xlarge",
        resource_tags={"user_team": "search"},
    ),
    cur2_line(
        "SavingsPlanCoveredUsage",
        "50.00",
        day=3,
        pricing_term="OnDemand",
        pricing_public_on_demand_cost=50.00,
        savings_plan_savings_plan_effective_cost=30.00,
        savings_plan_savings_plan_a_r_n=SP_ARN,
    ),
    cur2_line("SavingsPlanNegation", "-50.00", day=3, savings_plan_savings_plan_a_r_n=SP_ARN),
    cur2_line("SavingsPlanRecurringFee", "30.00", savings_plan_savings_plan_a_r_n=SP_ARN),
    cur2_line(
        "DiscountedUsage",
        "0",
        day=4,
        pricing_term="Reserved",
        pricing_public_on_demand_cost=35.00,
        reservation_effective_cost=20.00,
        reservation_reservation_a_r_n=RI_ARN,
    ),
    cur2_line("RIFee", "25.00", reservation_reservation_a_r_n=RI_ARN),
    cur2_line("Tax", "8.00", line_item_product_code="AmazonSageMaker"),
    cur2_line("Credit", "-5.35", line_item_product_code="AmazonS3"),
    cur2_line("EdpDiscount", "-3.00"),
]
"""May 2026. Billed 167.09 = 100.10 + 12.34 + 50 - 50 + 30 + 0 + 25 + 8 - 5.35 - 3.
Effective 162.09 = 100.10 + 12.34 + 30 (SP rate) + 20 (RI rate) + 8 - 5.35 - 3; the
negation and both commitment fees amortise to 0 (no unused-commitment columns)."""


def write_cur2_parquet(path: Path, lines: list[dict]) -> Path:
    money = {"line_item_unblended_cost", "pricing_public_on_demand_cost"}
    money |= {"savings_plan_savings_plan_effective_cost", "reservation_effective_cost"}
    columns: dict[str, pa.Array] = {}
    for name in lines[0]:
        values = [line[name] for line in lines]
        if name in money:
            columns[name] = pa.array(values, pa.float64())
        elif name.endswith("_date"):
            columns[name] = pa.array(values, pa.timestamp("ms"))
        elif name == "resource_tags":
            columns[name] = pa.array(
                [list(v.items()) if v else None for v in values], pa.map_(pa.string(), pa.string())
            )
        else:
            columns[name] = pa.array(values, pa.string())
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def put_cur2(s3, tmp_path: Path, export: str, month: str, execution: str, files: dict) -> None:
    """Upload data files and the CUR 2.0 manifest for one billing period."""
    keys = []
    for name, lines in files.items():
        key = f"cur2/{export}/data/BILLING_PERIOD={month}/{execution}/{name}"
        s3.upload_file(str(write_cur2_parquet(tmp_path / key, lines)), BUCKET, key)
        keys.append(f"s3://{BUCKET}/{key}")
    manifest = {"executionId": execution, "exportName": export, "dataFiles": keys}
    s3.put_object(
        Bucket=BUCKET,
        Key=f"cur2/{export}/metadata/BILLING_PERIOD={month}/{export}-Manifest.json",
        Body=json.dumps(manifest).encode(),
    )


def test_cur2_parquet_is_mapped_to_focus(s3, tmp_path: Path) -> None:
    put_cur2(s3, tmp_path, "ml-cur", "2026-05", "exec-1", {"part-0.parquet": MAY_CUR2})
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    result = ingest(warehouse, f"s3://{BUCKET}/cur2")

    assert result.status == "success"
    assert (result.rows, result.billed_cost, result.effective_cost) == (
        10,
        Decimal("167.09"),
        Decimal("162.09"),
    )
    assert period_totals(warehouse) == {"2026-05": (Decimal("167.09"), Decimal("162.09"))}
    rows = warehouse.query(
        """SELECT "ChargeCategory" AS cat, "ChargeFrequency" AS freq, "PricingCategory" AS pc,
                  "x_PurchaseOption" AS po, "BilledCost" AS billed, "EffectiveCost" AS eff,
                  "ListCost" AS list, "CommitmentDiscountId" AS cd
           FROM cost ORDER BY "ChargePeriodStart", "BilledCost" DESC"""
    ).to_pylist()
    got = [(r["cat"], r["freq"], r["pc"], r["po"], r["billed"], r["eff"]) for r in rows]
    assert got == [
        ("Usage", "Usage-Based", "Standard", "OnDemand", Decimal("100.10"), Decimal("100.10")),
        ("Purchase", "Recurring", "Committed", "SavingsPlan", Decimal(30), Decimal(0)),  # SP fee
        ("Purchase", "Recurring", "Committed", "Reserved", Decimal(25), Decimal(0)),  # RIFee
        ("Tax", "One-Time", None, None, Decimal(8), Decimal(8)),
        ("Credit", "Usage-Based", None, None, Decimal(-3), Decimal(-3)),  # EdpDiscount
        ("Credit", "One-Time", None, None, Decimal("-5.35"), Decimal("-5.35")),  # Credit
        ("Usage", "Usage-Based", "Dynamic", "Spot", Decimal("12.34"), Decimal("12.34")),
        ("Usage", "Usage-Based", "Committed", "SavingsPlan", Decimal(50), Decimal(30)),
        ("Credit", "Usage-Based", None, "SavingsPlan", Decimal(-50), Decimal(0)),  # negation
        ("Usage", "Usage-Based", "Committed", "Reserved", Decimal(0), Decimal(20)),  # RI usage
    ]
    assert rows[6]["list"] == Decimal("40.00")  # public on-demand cost of the spot hour
    assert rows[5]["list"] == Decimal("-5.35")  # no public price: the billed cost
    assert [rows[7]["cd"], rows[9]["cd"]] == [SP_ARN, RI_ARN]

    first = warehouse.query(
        """SELECT "BillingAccountId" AS payer, "SubAccountId" AS account, "Tags" AS tags,
                  "ServiceName" AS service, "ServiceCategory" AS category, "ResourceId" AS rid,
                  "RegionId" AS region, "x_InstanceType" AS itype, "ProviderName" AS provider,
                  "BillingPeriodEnd" AS period_end
           FROM cost WHERE "ResourceId" = 'i-0aaa'"""
    ).to_pylist()[0]
    assert (first["payer"], first["account"]) == (PAYER, ML_ACCOUNT)
    assert dict(first["tags"]) == {"team": "vision", "aws:created_by": "ci"}
    assert (first["service"], first["category"]) == ("Amazon Elastic Compute Cloud", "Compute")
    assert (first["region"], first["itype"], first["provider"]) == (
        "us-east-1",
        "p4d.24xlarge",
        "AWS",
    )
    assert first["period_end"].isoformat() == "2026-06-01T00:00:00+00:00"
    categories = warehouse.query(
        """SELECT "ServiceCategory" AS c, sum("BilledCost") AS t FROM cost GROUP BY 1 ORDER BY 1"""
    ).to_pylist()
    assert [(r["c"], r["t"]) for r in categories] == [
        ("AI and Machine Learning", Decimal("8.00")),
        ("Compute", Decimal("164.44")),
        ("Storage", Decimal("-5.35")),
    ]


# --- legacy CUR: csv.gz with resourceTags/user:* columns --------------------------------

LEGACY_HEADERS = [
    "identity/LineItemId",
    "bill/InvoiceId",
    "bill/BillingPeriodStartDate",
    "bill/BillingPeriodEndDate",
    "bill/PayerAccountId",
    "lineItem/UsageAccountId",
    "lineItem/LineItemType",
    "lineItem/UsageStartDate",
    "lineItem/UsageEndDate",
    "lineItem/ProductCode",
    "lineItem/UsageType",
    "lineItem/ResourceId",
    "lineItem/UnblendedCost",
    "lineItem/CurrencyCode",
    "product/instanceType",
    "product/region",
    "pricing/term",
    "pricing/publicOnDemandCost",
    "resourceTags/user:team",
]


def legacy_line(
    month: int, day: int, line_type: str, cost: str, team: str = "", **more: str
) -> dict:
    start = f"2026-{month:02d}-{day:02d}T00:00:00.000Z"
    return {
        "identity/LineItemId": f"li-{month}-{day}-{cost}",
        "bill/InvoiceId": f"INV-{month}",
        "bill/BillingPeriodStartDate": f"2026-{month:02d}-01T00:00:00Z",
        "bill/BillingPeriodEndDate": f"2026-{month + 1:02d}-01T00:00:00Z",
        "bill/PayerAccountId": PAYER,
        "lineItem/UsageAccountId": "098765432109",
        "lineItem/LineItemType": line_type,
        "lineItem/UsageStartDate": start,
        "lineItem/UsageEndDate": start.replace("T00:00", "T01:00"),
        "lineItem/ProductCode": "AmazonEC2",
        "lineItem/UsageType": "USE1-BoxUsage:g5.xlarge",
        "lineItem/ResourceId": "i-0bbb",
        "lineItem/UnblendedCost": cost,
        "lineItem/CurrencyCode": "USD",
        "product/instanceType": "g5.xlarge",
        "product/region": "us-east-1",
        "pricing/term": "OnDemand" if line_type == "Usage" else "",
        "pricing/publicOnDemandCost": cost if line_type == "Usage" else "",
        "resourceTags/user:team": team,
        **more,
    }


def write_csv_gz(path: Path, lines: list[dict], headers: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=headers)
        writer.writeheader()
        writer.writerows(lines)
    return path


def put_legacy(
    s3,
    tmp_path: Path,
    month: int,
    assembly: str,
    files: dict[str, list[dict]],
    headers: list[str] = LEGACY_HEADERS,
) -> None:
    """Upload one assembly of a legacy report and make its manifest the current one."""
    period = f"2026{month:02d}01-2026{month + 1:02d}01"
    keys = []
    for name, lines in files.items():
        key = f"legacy/team-cur/{period}/{assembly}/{name}"
        s3.upload_file(str(write_csv_gz(tmp_path / key, lines, headers)), BUCKET, key)
        keys.append(key)
    manifest = json.dumps({"assemblyId": assembly, "bucket": BUCKET, "reportKeys": keys})
    for key in (
        f"legacy/team-cur/{period}/team-cur-Manifest.json",
        f"legacy/team-cur/{period}/{assembly}/team-cur-Manifest.json",  # AWS writes a copy
    ):
        s3.put_object(Bucket=BUCKET, Key=key, Body=manifest.encode())


MAY_LEGACY = [
    legacy_line(5, 1, "Usage", "10.25", team="vision"),
    legacy_line(5, 2, "Usage", "4.75"),
    legacy_line(5, 2, "Tax", "1.50"),
]
"""May 2026, legacy: billed 16.50 (vision 10.25)."""


def test_legacy_csv_gz_months_with_a_tag_column_added(s3, tmp_path: Path) -> None:
    put_legacy(s3, tmp_path, 5, "asm-may", {"team-cur-1.csv.gz": MAY_LEGACY})
    june = [
        legacy_line(6, 1, "Usage", "20.00", team="search", **{"resourceTags/user:env": "prod"}),
        legacy_line(6, 3, "Credit", "-2.00", **{"resourceTags/user:env": ""}),
    ]
    put_legacy(
        s3,
        tmp_path,
        6,
        "asm-june",
        {"team-cur-1.csv.gz": june},
        [*LEGACY_HEADERS, "resourceTags/user:env"],
    )
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    result = ingest(warehouse, f"s3://{BUCKET}/legacy")

    assert result.status == "success"
    assert period_totals(warehouse) == {
        "2026-05": (Decimal("16.50"), Decimal("16.50")),
        "2026-06": (Decimal("18.00"), Decimal("18.00")),
    }
    rows = warehouse.query(
        """SELECT "Tags" AS tags, "SubAccountId" AS account, "ChargeCategory" AS cat,
                  "PricingCategory" AS pc, "InvoiceId" AS invoice
           FROM cost ORDER BY "ChargePeriodStart", "BilledCost" DESC"""
    ).to_pylist()
    assert [dict(r["tags"]) if r["tags"] else None for r in rows] == [
        {"team": "vision"},
        None,
        None,
        {"team": "search", "env": "prod"},
        None,
    ]
    assert {r["account"] for r in rows} == {"098765432109"}
    assert [(r["cat"], r["pc"]) for r in rows] == [
        ("Usage", "Standard"),
        ("Usage", "Standard"),
        ("Tax", None),
        ("Usage", "Standard"),
        ("Credit", None),
    ]
    assert [r["invoice"] for r in rows] == ["INV-5", "INV-5", "INV-5", "INV-6", "INV-6"]


def test_restated_month_reads_only_the_new_assembly(s3, tmp_path: Path) -> None:
    put_legacy(s3, tmp_path, 5, "asm-1", {"team-cur-1.csv.gz": MAY_LEGACY})
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest(warehouse, f"s3://{BUCKET}/legacy")
    restated = [
        legacy_line(5, 1, "Usage", "10.25", team="vision"),
        legacy_line(5, 2, "Usage", "6.00"),
    ]
    # The new assembly is split in two files; asm-1's file stays in the bucket.
    put_legacy(
        s3,
        tmp_path,
        5,
        "asm-2",
        {"team-cur-1.csv.gz": restated[:1], "team-cur-2.csv.gz": restated[1:]},
    )

    result = ingest(warehouse, f"s3://{BUCKET}/legacy")

    assert (result.status, result.replaced_rows, result.rows) == ("success", 3, 2)
    assert period_totals(warehouse) == {"2026-05": (Decimal("16.25"), Decimal("16.25"))}
    assert "team-cur 20260501-20260601: delivery asm-2, 2 data file(s)" in result.notes


def test_rerun_with_unchanged_manifests_is_recorded_unchanged(s3, tmp_path: Path) -> None:
    put_cur2(s3, tmp_path, "ml-cur", "2026-05", "exec-1", {"part-0.parquet": MAY_CUR2})
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    first = ingest(warehouse, f"s3://{BUCKET}/cur2")
    again = ingest(warehouse, f"s3://{BUCKET}/cur2")

    assert (first.status, again.status) == ("success", "unchanged")
    assert period_totals(warehouse) == {"2026-05": (Decimal("167.09"), Decimal("162.09"))}
    assert warehouse.runs().column("status").to_pylist() == ["unchanged", "success"]


def test_new_manifest_with_the_same_files_is_a_new_delivery(s3, tmp_path: Path) -> None:
    put_cur2(s3, tmp_path, "ml-cur", "2026-05", "exec-1", {"part-0.parquet": MAY_CUR2})
    before = read_cur(f"s3://{BUCKET}/cur2")
    put_cur2(s3, tmp_path, "ml-cur", "2026-05", "exec-2", {"part-0.parquet": MAY_CUR2})
    after = read_cur(f"s3://{BUCKET}/cur2")
    for delivery in (before, after):
        assert delivery.cleanup is not None
        delivery.cleanup()
    assert before.checksum != after.checksum


def test_missing_mandatory_column_names_file_and_column(s3, tmp_path: Path) -> None:
    headers = [h for h in LEGACY_HEADERS if h != "lineItem/UnblendedCost"]
    lines = [{h: v for h, v in line.items() if h in headers} for line in MAY_LEGACY]
    put_legacy(s3, tmp_path, 5, "asm-1", {"team-cur-1.csv.gz": lines}, headers)

    with pytest.raises(IngestError) as error:
        read_cur(f"s3://{BUCKET}/legacy")

    assert str(error.value) == (
        "s3://billing/legacy/team-cur/20260501-20260601/asm-1/team-cur-1.csv.gz: "
        "missing mandatory CUR column(s) lineItem/UnblendedCost"
    )


def test_non_numeric_cost_names_file_row_and_column(s3, tmp_path: Path) -> None:
    lines = [*MAY_LEGACY[:2], legacy_line(5, 3, "Usage", "12,50")]
    put_legacy(s3, tmp_path, 5, "asm-1", {"team-cur-1.csv.gz": lines})
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    with pytest.raises(IngestError) as error:
        ingest(warehouse, f"s3://{BUCKET}/legacy")

    assert (
        "s3://billing/legacy/team-cur/20260501-20260601/asm-1/team-cur-1.csv.gz, row 3, "
        "column lineItem/UnblendedCost: '12,50' is not a number" in str(error.value)
    )
    assert warehouse.runs().column("status").to_pylist() == ["failed"]


def test_unparsable_date_names_file_row_and_column(s3, tmp_path: Path) -> None:
    lines = [legacy_line(5, 1, "Usage", "1.00", **{"lineItem/UsageStartDate": "yesterday"})]
    put_legacy(s3, tmp_path, 5, "asm-1", {"team-cur-1.csv.gz": lines})

    with pytest.raises(
        IngestError,
        match=r"team-cur-1\.csv\.gz, row 1, column lineItem/UsageStartDate: 'yesterday' is not a",
    ):
        read_cur(f"s3://{BUCKET}/legacy")


def test_listed_object_that_cannot_be_read_is_named(s3, tmp_path: Path) -> None:
    put_legacy(s3, tmp_path, 5, "asm-1", {"team-cur-1.csv.gz": MAY_LEGACY})
    s3.delete_object(Bucket=BUCKET, Key="legacy/team-cur/20260501-20260601/asm-1/team-cur-1.csv.gz")

    with pytest.raises(
        IngestError,
        match=r"s3://billing/legacy/team-cur/20260501-20260601/asm-1/team-cur-1\.csv\.gz: "
        "cannot download",
    ):
        read_cur(f"s3://{BUCKET}/legacy")


def test_several_exports_under_one_prefix_need_a_name(s3, tmp_path: Path) -> None:
    put_cur2(s3, tmp_path, "ml-cur", "2026-05", "exec-1", {"part-0.parquet": MAY_CUR2})
    put_cur2(s3, tmp_path, "other", "2026-05", "exec-1", {"part-0.parquet": MAY_CUR2[:1]})

    with pytest.raises(IngestError, match=r"several reports \(ml-cur, other\); choose one"):
        read_cur(f"s3://{BUCKET}/cur2")
    delivery = read_cur(f"s3://{BUCKET}/cur2", export_name="other")
    assert delivery.cleanup is not None
    delivery.cleanup()
    assert (delivery.rows, delivery.billed_cost) == (1, Decimal("100.10"))


def test_local_copy_of_a_legacy_prefix(tmp_path: Path) -> None:
    period = tmp_path / "cur" / "team-cur" / "20260501-20260601"
    write_csv_gz(period / "asm-1" / "team-cur-1.csv.gz", MAY_LEGACY, LEGACY_HEADERS)
    manifest = {
        "assemblyId": "asm-1",
        "reportKeys": ["exports/team-cur/20260501-20260601/asm-1/team-cur-1.csv.gz"],
    }
    (period / "team-cur-Manifest.json").write_text(json.dumps(manifest))
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    result = ingest(warehouse, str(tmp_path / "cur"))

    assert (result.rows, result.billed_cost) == (3, Decimal("16.50"))


def test_local_cur2_csv_gz_with_json_tags_and_unused_commitment(tmp_path: Path) -> None:
    export = tmp_path / "cur" / "ml-cur"
    headers = [
        *(name for name in cur2_line("Usage", "0") if name != "resource_tags"),
        "savings_plan_total_commitment_to_date",
        "savings_plan_used_commitment",
        "resource_tags",
    ]
    usage = {
        **cur2_line("Usage", "10.00", pricing_term="OnDemand"),
        "resource_tags": json.dumps({"user_team": "vision", "aws_created_by": "ci"}),
    }
    fee = {
        **cur2_line("SavingsPlanRecurringFee", "30.00", savings_plan_savings_plan_a_r_n=SP_ARN),
        "savings_plan_total_commitment_to_date": "30.00",
        "savings_plan_used_commitment": "24.00",
    }
    as_text = [
        {
            k: v.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(v, datetime) else v
            for k, v in line.items()
        }
        for line in (usage, fee)
    ]
    write_csv_gz(export / "data" / "BILLING_PERIOD=2026-05" / "part-0.csv.gz", as_text, headers)
    manifest = export / "metadata" / "BILLING_PERIOD=2026-05" / "ml-cur-Manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        json.dumps({"dataFiles": ["s3://b/cur/ml-cur/data/BILLING_PERIOD=2026-05/part-0.csv.gz"]})
    )
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    ingest(warehouse, str(tmp_path / "cur"))

    # Effective: the usage's 10.00 plus the Savings Plan's unused 6.00 (30 committed, 24 used).
    assert period_totals(warehouse) == {"2026-05": (Decimal("40.00"), Decimal("16.00"))}
    tags = warehouse.query('SELECT "Tags" AS t FROM cost WHERE "Tags" IS NOT NULL').to_pylist()
    assert [dict(r["t"]) for r in tags] == [{"team": "vision", "aws:created_by": "ci"}]


@pytest.mark.parametrize(
    ("header", "snake"),
    [
        ("lineItem/UnblendedCost", "line_item_unblended_cost"),
        ("lineItem/LineItemType", "line_item_line_item_type"),
        ("savingsPlan/SavingsPlanARN", "savings_plan_savings_plan_a_r_n"),
        ("pricing/publicOnDemandCost", "pricing_public_on_demand_cost"),
        ("line_item_usage_start_date", "line_item_usage_start_date"),
    ],
)
def test_legacy_headers_read_as_cur2_names(header: str, snake: str) -> None:
    assert snake_case(header) == snake


def test_tag_columns_keep_aws_prefix_and_drop_user_prefix() -> None:
    assert tag_key("resourceTags/user:team") == "team"
    assert tag_key("resourceTags/aws:createdBy") == "aws:createdBy"
    assert tag_key("resource_tags_user_cost_center") == "cost_center"
    assert tag_key("resource_tags_aws_created_by") == "aws:created_by"
    assert tag_key("lineItem/UnblendedCost") is None


def test_default_source_is_the_export_name_or_aws_cur() -> None:
    assert default_source("s3://billing/cur2", "ml-cur") == "ml-cur"
    assert default_source("s3://billing/cur2") == "aws-cur"


def test_parquet_missing_a_column_is_refused_from_its_footer(s3, tmp_path: Path) -> None:
    lines = [{k: v for k, v in line.items() if k != "line_item_currency_code"} for line in MAY_CUR2]
    put_cur2(s3, tmp_path, "ml-cur", "2026-05", "exec-1", {"part-0.parquet": lines})
    before = set(Path(tempfile.gettempdir()).glob("finops-cur-*"))

    with pytest.raises(IngestError) as error:
        read_cur(f"s3://{BUCKET}/cur2")

    assert str(error.value) == (
        "s3://billing/cur2/ml-cur/data/BILLING_PERIOD=2026-05/exec-1/part-0.parquet: "
        "missing mandatory CUR column(s) line_item_currency_code"
    )
    assert set(Path(tempfile.gettempdir()).glob("finops-cur-*")) == before


def test_objects_stream_to_disk_a_chunk_at_a_time(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 KiB chunks: the Parquet object (a few KiB) arrives in several reads, intact.
    monkeypatch.setattr("finops.collectors.aws_cur.DOWNLOAD_CHUNK", 1024)
    put_cur2(s3, tmp_path, "ml-cur", "2026-05", "exec-1", {"part-0.parquet": MAY_CUR2})
    key = "cur2/ml-cur/data/BILLING_PERIOD=2026-05/exec-1/part-0.parquet"
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 3 * 1024

    delivery = read_cur(f"s3://{BUCKET}/cur2")
    try:
        (local,) = delivery.files
        assert local.read_bytes() == (tmp_path / key).read_bytes()
        assert (delivery.rows, delivery.billed_cost) == (10, Decimal("167.09"))
    finally:
        assert delivery.cleanup is not None
        delivery.cleanup()


def test_throttled_s3_is_retried_with_backoff(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_cur2(s3, tmp_path, "ml-cur", "2026-05", "exec-1", {"part-0.parquet": MAY_CUR2})
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    # S3 answers "SlowDown" to the first three requests; boto3 and pyarrow retry them.
    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], failures=3) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        result = ingest(warehouse, f"s3://{BUCKET}/cur2")
    assert proxy.throttled == 3
    assert proxy.forwarded > 0
    assert (result.status, result.billed_cost) == ("success", Decimal("167.09"))
