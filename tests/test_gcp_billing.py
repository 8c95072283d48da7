"""Google Cloud Billing's BigQuery export as FOCUS: files, the table through the real client.

The export rows below are hand-built; their figures, per invoice month:
May 2026 (202605): cost 10.00 + 6.00 + 3.33 + 5.55 + 1.23 (tax) + 0.40 + 0.01 (rounding)
  = 26.52, credits -1.50 (sustained use) - 4.20 (committed use) - 2.00 (promotion) = -7.70,
  billed 18.82 in 10 FOCUS rows (7 records + 3 credits);
June 2026 (202606): cost 0.99 - 2.00 (adjustment correcting April) = -1.01 in 2 rows.
"""

from __future__ import annotations

import copy
import gzip
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finops.collectors.gcp_billing import read_gcp_export_files, read_gcp_export_table
from finops.errors import IngestError
from finops.warehouse import Warehouse
from tests.bigquery_server import EXPORT_SCHEMA, FakeBigQuery, bigquery_serving, month_parameter

TABLE = "billing-admin.billing_export.gcp_billing_export_resource_v1_01A2B3"
GPU_NODE = "//compute.googleapis.com/projects/ml-prod/zones/us-central1-a/instances/4711"


def record(
    sku: str,
    day: str,
    cost: float,
    *,
    month: str = "202605",
    service: str = "Compute Engine",
    credits: tuple[tuple[str, str, float], ...] = (),
    **fields: Any,
) -> dict:
    """One export record of one hour starting `day` ('2026-05-03 10'), as `bq extract` writes it."""
    start = datetime.fromisoformat(f"{day}:00:00+00:00")
    end = start + timedelta(hours=1)
    values: dict[str, Any] = {
        "billing_account_id": "01A2B3-C4D5E6-F7A8B9",
        "service": {"id": "6F81-5844-456A", "description": service},
        "sku": {"id": f"SKU-{sku[:12].upper().replace(' ', '-')}", "description": sku},
        "usage_start_time": f"{start:%Y-%m-%d %H:%M:%S} UTC",
        "usage_end_time": f"{end:%Y-%m-%d %H:%M:%S} UTC",
        "project": {"id": "ml-prod", "name": "ML production", "labels": []},
        "labels": [],
        "system_labels": [],
        "location": {"region": "us-central1", "zone": "us-central1-a"},
        "cost": cost,
        "currency": "USD",
        "usage": {
            "amount": 3600.0,
            "unit": "seconds",
            "amount_in_pricing_units": 1.0,
            "pricing_unit": "hour",
        },
        "credits": [
            {
                "name": name,
                "amount": amount,
                "full_name": name,
                "id": f"credit-{kind.lower()}",
                "type": kind,
            }
            for kind, name, amount in credits
        ],
        "invoice": {"month": month},
        "cost_type": "regular",
        "resource": {"name": None, "global_name": None},
        "cost_at_list": None,
    }
    values.update(fields)
    return values


def labels(**pairs: str) -> list[dict]:
    return [{"key": key.replace("_", "-"), "value": value} for key, value in pairs.items()]


MAY_RECORDS = [
    record(
        "N1 Predefined Instance Core running in Americas",
        "2026-05-03 10",
        10.00,
        credits=(("SUSTAINED_USAGE_DISCOUNT", "Sustained usage discount", -1.50),),
        cost_at_list=12.00,
        project={
            "id": "ml-prod",
            "name": "ML production",
            "labels": labels(team="platform", env="prod"),
        },
        labels=labels(team="vision", goog_k8s_cluster_name="gpu-a"),
        system_labels=[{"key": "compute.googleapis.com/machine_spec", "value": "a2-highgpu-1g"}],
        resource={"name": "gke-gpu-a-pool-1-node", "global_name": GPU_NODE},
    ),
    record(
        "A2 Instance Core running in Americas",
        "2026-05-04 10",
        6.00,
        credits=(("COMMITTED_USAGE_DISCOUNT", "Committed use discount: A2 Cores", -4.20),),
    ),
    record("Spot Preemptible Nvidia Tesla A100 GPU running in Americas", "2026-05-05 10", 3.33),
    record(
        "Analysis",
        "2026-05-06 10",
        5.55,
        service="BigQuery",
        credits=(("PROMOTION", "Free trial", -2.00),),
        project={"id": "analytics", "name": "Analytics", "labels": labels(team="data")},
    ),
    record("Tax", "2026-05-31 10", 1.23, cost_type="tax"),
    # Usage of 30 April invoiced in May: billing period May, charge period April.
    record("Standard Storage US Multi-region", "2026-04-30 23", 0.40, service="Cloud Storage"),
    record("Rounding error", "2026-05-31 11", 0.01, cost_type="rounding_error"),
]
JUNE_RECORDS = [
    record(
        "Standard Storage US Multi-region",
        "2026-06-02 10",
        0.99,
        month="202606",
        service="Cloud Storage",
    ),
    record(
        "Vertex AI Training",
        "2026-04-10 10",
        -2.00,
        month="202606",
        service="Vertex AI",
        cost_type="adjustment",
    ),
]
RECORDS = MAY_RECORDS + JUNE_RECORDS


def write_ndjson(path: Path, records: list[dict]) -> Path:
    lines = "".join(json.dumps(r) + "\n" for r in records)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(lines.encode()))
    else:
        path.write_text(lines)
    return path


def _arrow_type(spec: dict) -> pa.DataType:
    kinds = {"STRING": pa.string(), "FLOAT": pa.float64(), "TIMESTAMP": pa.timestamp("us", "UTC")}
    if spec["type"] == "RECORD":
        item: pa.DataType = pa.struct([pa.field(f["name"], _arrow_type(f)) for f in spec["fields"]])
    else:
        item = kinds[spec["type"]]
    return pa.list_(item) if spec["mode"] == "REPEATED" else item


def write_parquet(path: Path, records: list[dict]) -> Path:
    """The records as google-cloud-bigquery's `to_arrow()` types them: UTC timestamps, nested."""
    typed = copy.deepcopy(records)
    for r in typed:
        for name in ("usage_start_time", "usage_end_time"):
            r[name] = datetime.fromisoformat(r[name].replace(" UTC", "+00:00"))
    schema = pa.schema([pa.field(s["name"], _arrow_type(s)) for s in EXPORT_SCHEMA])
    pq.write_table(pa.Table.from_pylist(typed, schema=schema), path)
    return path


def ingest(warehouse: Warehouse, read: Any, uri: str, source: str = "gcp-billing") -> Any:
    return warehouse.ingest_cost(read, source=source, collector="gcp-billing", uri=uri)


def billed_by_month(warehouse: Warehouse, source: str = "gcp-billing") -> dict[str, Decimal]:
    table = warehouse.query(
        """SELECT strftime("BillingPeriodStart", '%Y%m') AS month, sum("BilledCost") AS billed
           FROM cost WHERE "x_Source" = ? GROUP BY 1 ORDER BY 1""",
        [source],
    )
    return dict(
        zip(table.column("month").to_pylist(), table.column("billed").to_pylist(), strict=True)
    )


def focus_rows(warehouse: Warehouse, source: str) -> list[dict]:
    """Every FOCUS row of `source` (without the warehouse's bookkeeping), in a stable order."""
    rows = warehouse.query(
        """SELECT * EXCLUDE ("x_Source", "x_IngestId") FROM cost WHERE "x_Source" = ?
           ORDER BY "ChargePeriodStart", "ChargeCategory", "ChargeDescription" """,
        [source],
    ).to_pylist()
    for r in rows:
        r["Tags"] = dict(r["Tags"]) if r["Tags"] is not None else None
    return rows


def test_billed_cost_per_invoice_month_nets_cost_and_credits(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "export.json", RECORDS)
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    result = ingest(warehouse, lambda: read_gcp_export_files(str(path)), str(path))

    assert result.rows == 12
    assert billed_by_month(warehouse) == {"202605": Decimal("18.82"), "202606": Decimal("-1.01")}
    for month in ("202605", "202606"):
        records = [r for r in RECORDS if r["invoice"]["month"] == month]
        invoice = sum(Decimal(str(r["cost"])) for r in records) + sum(
            Decimal(str(c["amount"])) for r in records for c in r["credits"]
        )
        assert billed_by_month(warehouse)[month] == invoice


def test_each_credit_is_its_own_row_with_the_usage_resource_and_tags(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "export.jsonl", RECORDS)
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest(warehouse, lambda: read_gcp_export_files(str(path)), str(path))

    credits = warehouse.query(
        """SELECT "ChargeDescription", "BilledCost", "EffectiveCost", "ListCost",
                  "PricingCategory", "CommitmentDiscountCategory", "CommitmentDiscountId",
                  "ResourceId", "Tags"
           FROM cost WHERE "ChargeCategory" = 'Credit' ORDER BY "ChargePeriodStart" """
    ).to_pylist()
    for credit in credits:
        credit["Tags"] = dict(credit["Tags"]) if credit["Tags"] is not None else None

    # Project label team=platform yields to the resource's own team label.
    vision_gpu_tags = {"team": "vision", "goog-k8s-cluster-name": "gpu-a", "env": "prod"}
    assert credits == [
        {
            "ChargeDescription": "SUSTAINED_USAGE_DISCOUNT: Sustained usage discount",
            "BilledCost": Decimal("-1.50"),
            "EffectiveCost": Decimal("-1.50"),
            "ListCost": 0,
            "PricingCategory": "Standard",
            "CommitmentDiscountCategory": None,
            "CommitmentDiscountId": None,
            "ResourceId": GPU_NODE,
            "Tags": vision_gpu_tags,
        },
        {
            "ChargeDescription": "COMMITTED_USAGE_DISCOUNT: Committed use discount: A2 Cores",
            "BilledCost": Decimal("-4.20"),
            "EffectiveCost": Decimal("-4.20"),
            "ListCost": 0,
            "PricingCategory": "Committed",
            "CommitmentDiscountCategory": "Usage",
            "CommitmentDiscountId": "credit-committed_usage_discount",
            "ResourceId": None,
            "Tags": None,
        },
        {
            "ChargeDescription": "PROMOTION: Free trial",
            "BilledCost": Decimal("-2.00"),
            "EffectiveCost": Decimal("-2.00"),
            "ListCost": 0,
            "PricingCategory": "Standard",
            "CommitmentDiscountCategory": None,
            "CommitmentDiscountId": None,
            "ResourceId": None,
            "Tags": {"team": "data"},
        },
    ]


def test_records_map_to_charge_and_pricing_categories(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "export.json.gz", RECORDS)
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest(warehouse, lambda: read_gcp_export_files(str(path)), str(path))

    rows = warehouse.query(
        """SELECT "ChargeDescription" AS sku, "ChargeCategory" AS category,
                  "ChargeClass" AS class, "PricingCategory" AS pricing,
                  "ServiceCategory" AS service, "ListCost" AS list,
                  strftime("BillingPeriodStart", '%Y-%m-%d') AS period,
                  strftime("ChargePeriodStart", '%Y-%m-%d') AS day,
                  "x_InstanceType" AS instance, "ResourceName" AS resource, "SubAccountId" AS project
           FROM cost WHERE "ChargeCategory" <> 'Credit' ORDER BY "ChargePeriodStart" """
    ).to_pylist()

    summary = [
        (r["sku"], r["category"], r["class"], r["pricing"], r["service"], r["period"], r["day"])
        for r in rows
    ]
    assert summary == [
        (
            "Vertex AI Training",
            "Adjustment",
            "Correction",
            None,
            "AI and Machine Learning",
            "2026-06-01",
            "2026-04-10",
        ),
        (
            "Standard Storage US Multi-region",
            "Usage",
            None,
            "Standard",
            "Storage",
            "2026-05-01",
            "2026-04-30",
        ),
        (
            "N1 Predefined Instance Core running in Americas",
            "Usage",
            None,
            "Standard",
            "Compute",
            "2026-05-01",
            "2026-05-03",
        ),
        (
            "A2 Instance Core running in Americas",
            "Usage",
            None,
            "Committed",
            "Compute",
            "2026-05-01",
            "2026-05-04",
        ),
        (
            "Spot Preemptible Nvidia Tesla A100 GPU running in Americas",
            "Usage",
            None,
            "Dynamic",
            "Compute",
            "2026-05-01",
            "2026-05-05",
        ),
        ("Analysis", "Usage", None, "Standard", "Analytics", "2026-05-01", "2026-05-06"),
        ("Tax", "Tax", None, None, "Compute", "2026-05-01", "2026-05-31"),
        ("Rounding error", "Adjustment", None, None, "Compute", "2026-05-01", "2026-05-31"),
        (
            "Standard Storage US Multi-region",
            "Usage",
            None,
            "Standard",
            "Storage",
            "2026-06-01",
            "2026-06-02",
        ),
    ]
    gpu_node = rows[2]
    assert (gpu_node["list"], gpu_node["instance"], gpu_node["resource"], gpu_node["project"]) == (
        Decimal("12.00"),
        "a2-highgpu-1g",
        "gke-gpu-a-pool-1-node",
        "ml-prod",
    )
    assert rows[3]["list"] == Decimal("6.00")  # no cost_at_list: the cost itself


def test_parquet_export_gives_the_same_rows_as_json(tmp_path: Path) -> None:
    ndjson = write_ndjson(tmp_path / "export.json", RECORDS)
    parquet = write_parquet(tmp_path / "export.parquet", RECORDS)
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    ingest(warehouse, lambda: read_gcp_export_files(str(ndjson)), str(ndjson), "gcp-json")
    ingest(warehouse, lambda: read_gcp_export_files(str(parquet)), str(parquet), "gcp-parquet")

    assert billed_by_month(warehouse, "gcp-parquet") == {
        "202605": Decimal("18.82"),
        "202606": Decimal("-1.01"),
    }
    assert focus_rows(warehouse, "gcp-parquet") == focus_rows(warehouse, "gcp-json")


def test_bad_records_are_refused_naming_file_row_and_field(tmp_path: Path) -> None:
    missing_cost = record("Analysis", "2026-05-06 10", 1.0, service="BigQuery")
    del missing_cost["cost"]
    text_cost = record("Analysis", "2026-05-06 10", 1.0)
    text_cost["cost"] = "ten dollars"
    bad = [
        MAY_RECORDS[0],
        missing_cost,
        record("Analysis", "2026-05-06 10", 1.0, usage_start_time="yesterday"),
        text_cost,
        record("Analysis", "2026-05-06 10", 1.0, invoice={"month": "2026-05"}),
    ]
    path = write_ndjson(tmp_path / "bad.json", bad)
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    with pytest.raises(IngestError) as refused:
        ingest(warehouse, lambda: read_gcp_export_files(str(path)), str(path))

    message = str(refused.value)
    assert "4 problem(s); nothing was ingested" in message
    assert f"{path}, row 2, field cost: is missing; the export always has it" in message
    assert f"{path}, row 3, field usage_start_time: 'yesterday' is not a timestamp" in message
    assert f"{path}, row 4, field cost: 'ten dollars' is not a number" in message
    assert f"{path}, row 5, field invoice.month: '2026-05' is not an invoice month" in message
    assert warehouse.runs().column("status").to_pylist() == ["failed"]


def test_table_reads_every_invoice_month_through_the_real_client(tmp_path: Path) -> None:
    table = FakeBigQuery(copy.deepcopy(RECORDS))
    files = write_ndjson(tmp_path / "export.json", RECORDS)
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    with bigquery_serving(table) as client:
        result = ingest(warehouse, lambda: read_gcp_export_table(TABLE, client=client), TABLE)
    ingest(warehouse, lambda: read_gcp_export_files(str(files)), str(files), "gcp-files")

    assert result.rows == 12
    distinct, rows = table.queries
    assert distinct["query"] == (
        f"SELECT DISTINCT invoice.month AS month FROM `{TABLE}` ORDER BY month"
    )
    assert rows["query"] == f"SELECT * FROM `{TABLE}` WHERE invoice.month IN UNNEST(@months)"
    assert month_parameter(rows) == [{"value": "202605"}, {"value": "202606"}]
    assert billed_by_month(warehouse) == {"202605": Decimal("18.82"), "202606": Decimal("-1.01")}
    assert focus_rows(warehouse, "gcp-billing") == focus_rows(warehouse, "gcp-files")


def test_restated_invoice_month_replaces_only_that_month(tmp_path: Path) -> None:
    table = FakeBigQuery(copy.deepcopy(RECORDS))
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    with bigquery_serving(table) as client:
        first = ingest(warehouse, lambda: read_gcp_export_table(TABLE, client=client), TABLE)
        table.rows[-2]["cost"] = 1.49  # June's storage, restated
        restated = ingest(
            warehouse,
            lambda: read_gcp_export_table(TABLE, months=["202606"], client=client),
            TABLE,
        )

    assert month_parameter(table.queries[-1]) == [{"value": "202606"}]
    assert restated.replaced_rows == 2
    assert billed_by_month(warehouse) == {"202605": Decimal("18.82"), "202606": Decimal("-0.51")}
    may_runs = warehouse.query(
        """SELECT DISTINCT "x_IngestId" AS run FROM cost
           WHERE "BillingPeriodStart" = '2026-05-01 00:00:00+00'"""
    )
    assert may_runs.column("run").to_pylist() == [first.run_id]


def test_table_name_and_months_are_checked_before_any_query() -> None:
    with pytest.raises(IngestError, match=r"expected a BigQuery table as PROJECT\.DATASET\.TABLE"):
        read_gcp_export_table("billing; DROP TABLE x", client=object())
    with pytest.raises(IngestError, match=r"invoice month\(s\) 2026-05 are not YYYYMM"):
        read_gcp_export_table(TABLE, months=["2026-05"], client=object())
