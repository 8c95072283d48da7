"""The FOCUS collector: what it accepts from messy real exports, and what it refuses."""

from __future__ import annotations

import gzip
import json
import shutil
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from finops.collectors.focus import default_source, read_focus
from finops.errors import IngestError
from finops.warehouse import Warehouse
from tests.conftest import BASE_ROW, JUNE_ROWS, MAY_ROWS, row, write_csv, write_parquet


def ingest(warehouse: Warehouse, location: str, source: str = "test"):
    return warehouse.ingest_cost(
        lambda: read_focus(location), source=source, collector="focus", uri=location
    )


def test_messy_csv_is_normalised_and_summarised(tmp_path: Path, warehouse: Warehouse) -> None:
    rows = [
        row(
            "05-01",
            "10.50",
            tags={"team": "vision", "gpu": True},
            ChargeFrequency="Usage-based",
            ProjectCode="P-1",
        ),
        row(
            "05-02",
            "-1.25",
            ChargeCategory="credit",
            ChargeFrequency="one time",
            ProjectCode="NULL",
            ChargePeriodStart="2026-05-02 00:00:00",
            SkuId="null",
            Tags="NULL",
        ),
    ]
    path = write_csv(tmp_path / "messy.csv", rows)

    result = ingest(warehouse, str(path))

    assert result.rows == 2
    assert result.billed_cost == Decimal("9.25")
    assert set(result.notes) >= {
        "custom column 'ProjectCode' kept as x_ProjectCode",
        "ChargeCategory values re-spelled to FOCUS's allowed values: 1 row(s)",
        "ChargeFrequency values re-spelled to FOCUS's allowed values: 2 row(s)",
        "ChargePeriodStart values not in FOCUS's YYYY-MM-DDTHH:mm:ssZ form, read as UTC: 1 row(s)",
    }
    stored = warehouse.query(
        'SELECT "ChargeCategory", "ChargeFrequency", "Tags", "x_ProjectCode", "SkuId", '
        '"ChargePeriodStart", "BillingAccountId" FROM cost ORDER BY "ChargePeriodStart"'
    ).to_pylist()
    assert [r["ChargeCategory"] for r in stored] == ["Usage", "Credit"]
    assert [r["ChargeFrequency"] for r in stored] == ["Usage-Based", "One-Time"]
    assert dict(stored[0]["Tags"]) == {"team": "vision", "gpu": "true"}
    assert stored[1]["Tags"] is None
    assert [r["x_ProjectCode"] for r in stored] == ["P-1", None]
    assert stored[1]["SkuId"] is None
    assert stored[1]["ChargePeriodStart"].isoformat() == "2026-05-02T00:00:00+00:00"
    assert stored[0]["BillingAccountId"] == "012345678901"


def test_columns_in_any_order_and_case_with_optional_columns_missing(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    required_only = [
        "billedcost",
        "EffectiveCost",
        "ListCost",
        "ContractedCost",
        "BillingCurrency",
        "ChargeCategory",
        "ServiceCategory",
        "ServiceName",
        "ProviderName",
        "ChargePeriodEnd",
        "ChargePeriodStart",
        "BillingPeriodEnd",
        "BillingPeriodStart",
        "BillingAccountId",
    ]
    source = [{**r, "billedcost": r["BilledCost"]} for r in MAY_ROWS]
    path = write_csv(tmp_path / "reordered.csv", source, required_only)

    result = ingest(warehouse, str(path))

    assert result.billed_cost == Decimal("175.01")
    assert "column 'billedcost' read as BilledCost" in result.notes
    assert "PublisherName absent: filled from ProviderName" in result.notes
    assert warehouse.query('SELECT DISTINCT "PublisherName" AS p FROM cost').column(
        "p"
    ).to_pylist() == ["AWS"]


def test_csv_gz_parquet_folder_and_glob_read_together(tmp_path: Path, warehouse: Warehouse) -> None:
    folder = tmp_path / "export"
    csv_path = write_csv(folder / "2026-05" / "part-0.csv", MAY_ROWS)
    with csv_path.open("rb") as raw, gzip.open(csv_path.with_suffix(".csv.gz"), "wb") as packed:
        shutil.copyfileobj(raw, packed)
    csv_path.unlink()
    write_parquet(folder / "2026-06" / "part-0.parquet", JUNE_ROWS)

    from_folder = read_focus(str(folder))
    from_glob = read_focus(str(folder / "**" / "*.parquet"))

    assert [p.billed_cost for p in from_folder.periods] == [Decimal("175.01"), Decimal("200.99")]
    assert [p.rows for p in from_folder.periods] == [5, 2]
    assert [p.days for p in from_folder.periods] == [4, 2]
    assert from_glob.rows == 2
    result = ingest(warehouse, str(folder))
    assert result.billed_cost == Decimal("376.00")
    tags = warehouse.query(
        """SELECT "Tags"['team'] AS team FROM cost WHERE "BillingPeriodStart" = '2026-06-01' ORDER BY 1"""
    )
    assert tags.column("team").to_pylist() == ["search", "vision"]


def test_focus_13_file_with_service_provider_name_only(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    rows = [
        {
            k: v
            for k, v in {
                **r,
                "ServiceProviderName": "AWS",
                "HostProviderName": "AWS",
                "ContractApplied": "[]",
                "AllocatedTags": '{"team":"vision"}',
            }.items()
            if k not in ("ProviderName", "PublisherName")
        }
        for r in JUNE_ROWS
    ]
    result = ingest(warehouse, str(write_csv(tmp_path / "focus13.csv", rows)))

    assert "columns of FOCUS 1.3 detected" in result.notes
    assert "ProviderName absent: filled from ServiceProviderName" in result.notes
    stored = warehouse.query(
        'SELECT DISTINCT "ProviderName" AS p, "ServiceProviderName" AS s FROM cost'
    ).to_pylist()
    assert stored == [{"p": "AWS", "s": "AWS"}]


def test_negative_costs_are_data_not_errors(tmp_path: Path, warehouse: Warehouse) -> None:
    refund = row("05-10", "-250.00", ChargeCategory="Adjustment", ChargeClass="Correction")
    result = ingest(warehouse, str(write_csv(tmp_path / "refund.csv", [refund])))
    assert result.billed_cost == Decimal("-250.00")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"BilledCost": "12,50"}, "bad.csv, row 2, column BilledCost: '12,50' is not a number"),
        (
            {"ChargePeriodStart": "2026-13-01"},
            "bad.csv, row 2, column ChargePeriodStart: '2026-13-01' is not a date/time",
        ),
        (
            {"BillingCurrency": "XYZ"},
            "bad.csv, row 2, column BillingCurrency: 'XYZ' is not an ISO 4217 currency code",
        ),
        (
            {"ChargeCategory": "Discount"},
            "bad.csv, row 2, column ChargeCategory: 'Discount' is not an allowed value",
        ),
        ({"Tags": "{not json"}, "bad.csv, row 2, column Tags: '{not json' is not a JSON object"),
        (
            {"BillingAccountId": "NULL"},
            "bad.csv, row 2, column BillingAccountId: is empty, but the column is mandatory",
        ),
    ],
)
def test_bad_value_names_file_row_and_column(tmp_path: Path, change: dict, expected: str) -> None:
    rows = [row("05-01", "1.00"), {**row("05-02", "2.00"), **change}, row("05-03", "3.00")]
    with pytest.raises(IngestError) as caught:
        read_focus(str(write_csv(tmp_path / "bad.csv", rows)))
    assert expected in str(caught.value)


def test_bad_value_in_parquet_names_its_row(tmp_path: Path) -> None:
    rows = [
        row("05-01", "1.00"),
        row("05-02", "2.00"),
        row("05-03", "3.00", BillingCurrency="usd$"),
    ]
    with pytest.raises(IngestError, match=r"bad.parquet, row 3, column BillingCurrency: 'usd\$'"):
        read_focus(str(write_parquet(tmp_path / "bad.parquet", rows)))


def test_missing_mandatory_column_names_the_file(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "EffectiveCost"} for r in MAY_ROWS]
    with pytest.raises(
        IngestError, match=r"no-effective.csv: missing mandatory FOCUS column\(s\) EffectiveCost"
    ):
        read_focus(str(write_csv(tmp_path / "no-effective.csv", rows)))


def test_many_bad_rows_are_counted(tmp_path: Path) -> None:
    rows = [row("05-01", "abc") for _ in range(4)]
    with pytest.raises(
        IngestError,
        match=r"row 1, column BilledCost: 'abc' is not a number \(3 more row\(s\) like it\)",
    ):
        read_focus(str(write_csv(tmp_path / "bad.csv", rows)))


def test_empty_location_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match=r"no \.parquet/\.csv/\.csv\.gz files found"):
        read_focus(str(tmp_path / "empty"))
    with pytest.raises(IngestError, match="no such file or directory"):
        read_focus(str(tmp_path / "missing.csv"))


@pytest.mark.parametrize(
    ("location", "source"),
    [
        ("s3://billing/exports/focus/2026-05/part-0.parquet", "focus"),
        ("/data/aws-focus/2026-05/", "aws-focus"),
        ("/data/gcp/BILLING_PERIOD=2026-05/*.csv.gz", "gcp"),
        ("/data/cur/20260501-20260601/x.csv", "cur"),
    ],
)
def test_default_source_is_stable_across_months(location: str, source: str) -> None:
    assert default_source(location) == source


@mock_aws
def test_reads_from_s3_prefix(
    tmp_path: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="billing")
    may = write_csv(tmp_path / "may.csv", MAY_ROWS)
    june = write_parquet(tmp_path / "june.parquet", JUNE_ROWS)
    s3.upload_file(str(may), "billing", "focus/2026-05/part-0.csv")
    s3.upload_file(str(june), "billing", "focus/2026-06/part-0.parquet")
    s3.put_object(Bucket="billing", Key="focus/README.txt", Body=b"not data")

    result = ingest(warehouse, "s3://billing/focus/", source=default_source("s3://billing/focus/"))

    assert result.source == "focus"
    assert result.billed_cost == Decimal("376.00")
    assert result.rows == 7
    only_parquet = read_focus("s3://billing/focus/*/*.parquet")
    assert only_parquet.rows == 2
    assert only_parquet.files[0].exists()
    only_parquet.cleanup()
    assert not only_parquet.files[0].exists()


@mock_aws
def test_unreadable_s3_bucket_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(
        IngestError, match=r"s3://no-such-bucket/focus: cannot read from S3: .*NoSuchBucket"
    ):
        read_focus("s3://no-such-bucket/focus")


def test_tags_as_json_with_scalar_values(tmp_path: Path, warehouse: Warehouse) -> None:
    tags = json.dumps({"team": "vision", "replicas": 3, "spot": False, "note": None})
    ingest(warehouse, str(write_csv(tmp_path / "t.csv", [{**BASE_ROW, "Tags": tags}])))
    stored = warehouse.query('SELECT "Tags" AS t FROM cost').column("t")[0].as_py()
    assert dict(stored) == {"team": "vision", "replicas": "3", "spot": "false", "note": None}


def test_semicolon_delimited_csv_is_read(tmp_path: Path, warehouse: Warehouse) -> None:
    path = tmp_path / "semi.csv"
    comma = write_csv(tmp_path / "comma.csv", JUNE_ROWS).read_text()
    path.write_text(comma.replace(",", ";"))  # no value holds a comma
    assert ingest(warehouse, str(path)).billed_cost == Decimal("200.99")


def test_ragged_row_and_repeated_header_are_refused(tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", MAY_ROWS).read_text().splitlines()
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("\n".join([*good[:3], good[3].rsplit(",", 2)[0], *good[4:]]) + "\n")
    with pytest.raises(IngestError, match=r"ragged.csv: cannot read"):
        read_focus(str(ragged))
    repeated = tmp_path / "repeated.csv"
    repeated.write_text(good[0] + ",BilledCost\n" + good[1] + ",1\n")
    with pytest.raises(
        IngestError, match=r"repeated.csv: column\(s\) BilledCost appear more than once"
    ):
        read_focus(str(repeated))
