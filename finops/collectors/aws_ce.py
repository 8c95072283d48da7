"""AWS Cost Explorer, for accounts without a Cost and Usage Report.

`GetCostAndUsage` is asked for daily UnblendedCost and AmortizedCost grouped by one tag
key and by service, page after page (`NextPageToken`). Each (day, tag value, service)
total becomes one FOCUS row. The grain is coarser than a CUR's (no resources, no usage
types), so every row carries `x_CostExplorerGrain` and the run's notes say so.

| Cost Explorer | FOCUS |
| --- | --- |
| the account (caller's, or `account_id`) | BillingAccountId, SubAccountId |
| TimePeriod.Start / End (a day) | ChargePeriodStart / ChargePeriodEnd |
| the day's calendar month | BillingPeriodStart / BillingPeriodEnd |
| UnblendedCost | BilledCost, ListCost, ContractedCost (no list price at this grain) |
| AmortizedCost | EffectiveCost |
| Unit of UnblendedCost | BillingCurrency |
| group key SERVICE | ServiceName (ServiceCategory from a short table, else Other) |
| group key `TAG$value` (empty value: untagged) | Tags {TAG: value} |
| Estimated | counted in the notes (the month is not final) |

The answers are API pages of at most a few thousand groups, so they are laid out in
Python; DuckDB maps them to FOCUS as it does a file.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from finops.collectors.locations import LocalFiles, checksum
from finops.errors import IngestError
from finops.warehouse import CostDelivery, PeriodStats

SERVICE_CATEGORIES: dict[str, str] = {
    "Amazon Elastic Compute Cloud - Compute": "Compute",
    "EC2 - Other": "Compute",
    "Amazon Elastic Container Service for Kubernetes": "Compute",
    "Amazon Simple Storage Service": "Storage",
    "Amazon SageMaker": "AI and Machine Learning",
    "Amazon Bedrock": "AI and Machine Learning",
    "Amazon Relational Database Service": "Databases",
    "Amazon DynamoDB": "Databases",
    "AWS Data Transfer": "Networking",
    "Amazon Virtual Private Cloud": "Networking",
    "Amazon CloudWatch": "Management and Governance",
    "Tax": "Other",
}
GRAIN = "daily by tag and service"


def read_cost_explorer(
    *,
    start: date,
    end: date,
    tag_key: str = "team",
    account_id: str | None = None,
    session: Any = None,
) -> CostDelivery:
    """Daily costs in [start, end) from Cost Explorer, by `tag_key` and service."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    session = session or boto3.Session()
    config = Config(retries={"mode": "adaptive", "max_attempts": 8})
    uri = f"aws-ce:{start}..{end}"
    try:
        account = (
            account_id or session.client("sts", config=config).get_caller_identity()["Account"]
        )
        ce = session.client("ce", region_name="us-east-1", config=config)
        groups = list(_groups(ce, start, end, tag_key))
    except (BotoCoreError, ClientError) as exc:
        raise IngestError(f"{uri}: Cost Explorer refused: {exc}") from None
    if not groups:
        raise IngestError(f"{uri}: Cost Explorer returned no costs between {start} and {end}")
    workdir = Path(tempfile.mkdtemp(prefix="finops-ce-"))
    try:
        path = workdir / "cost-explorer.parquet"
        pq.write_table(_table(groups, account, tag_key), path)
        local = LocalFiles(uri, (path,), {path: uri})
        return _delivery(local, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _groups(ce: Any, start: date, end: date, tag_key: str) -> Any:
    """Yield (day, tag value, service, unblended, amortized, currency, estimated) per group."""
    request: dict[str, Any] = {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost", "AmortizedCost"],
        "GroupBy": [{"Type": "TAG", "Key": tag_key}, {"Type": "DIMENSION", "Key": "SERVICE"}],
    }
    while True:
        page = ce.get_cost_and_usage(**request)
        for result in page["ResultsByTime"]:
            day = date.fromisoformat(result["TimePeriod"]["Start"])
            for group in result.get("Groups", []):
                tag, service = group["Keys"]
                metrics = group["Metrics"]
                yield (
                    day,
                    tag.partition("$")[2] or None,
                    service,
                    _amount(metrics, "UnblendedCost"),
                    _amount(metrics, "AmortizedCost"),
                    metrics["UnblendedCost"]["Unit"],
                    bool(result.get("Estimated")),
                )
        token = page.get("NextPageToken")
        if not token:
            return
        request["NextPageToken"] = token


def _amount(metrics: dict[str, Any], name: str) -> Decimal:
    try:
        return Decimal(metrics[name]["Amount"])
    except (KeyError, ArithmeticError) as exc:
        raise IngestError(f"Cost Explorer answer: {name} missing or not a number: {exc}") from None


def _table(groups: list[tuple], account: str, tag_key: str) -> pa.Table:
    day, tag, service, unblended, amortized, currency, estimated = zip(*groups, strict=True)
    return pa.table(
        {
            "day": pa.array(day, pa.date32()),
            "tag_value": pa.array(tag, pa.string()),
            "service": pa.array(service, pa.string()),
            "unblended": pa.array(unblended, pa.decimal128(38, 10)),
            "amortized": pa.array(amortized, pa.decimal128(38, 10)),
            "currency": pa.array(currency, pa.string()),
            "estimated": pa.array(estimated, pa.bool_()),
            "account": pa.array([account] * len(day), pa.string()),
            "tag_key": pa.array([tag_key] * len(day), pa.string()),
        }
    )


def _delivery(local: LocalFiles, workdir: Path) -> CostDelivery:
    path = str(local.files[0]).replace("'", "''")
    categories = " ".join(f"WHEN '{name}' THEN '{cat}'" for name, cat in SERVICE_CATEGORIES.items())
    select_sql = f"""
        SELECT account AS "BillingAccountId", account AS "SubAccountId",
               'AWS' AS "ProviderName", 'AWS' AS "PublisherName", 'AWS' AS "InvoiceIssuerName",
               'Usage' AS "ChargeCategory", 'Usage-Based' AS "ChargeFrequency",
               CAST(day AS TIMESTAMPTZ) AS "ChargePeriodStart",
               CAST(day + INTERVAL 1 DAY AS TIMESTAMPTZ) AS "ChargePeriodEnd",
               CAST(date_trunc('month', day) AS TIMESTAMPTZ) AS "BillingPeriodStart",
               CAST(date_trunc('month', day) + INTERVAL 1 MONTH AS TIMESTAMPTZ) AS "BillingPeriodEnd",
               unblended AS "BilledCost", amortized AS "EffectiveCost",
               unblended AS "ListCost", unblended AS "ContractedCost",
               currency AS "BillingCurrency", service AS "ServiceName",
               coalesce(CASE service {categories} END, 'Other') AS "ServiceCategory",
               CASE WHEN tag_value IS NOT NULL THEN map([tag_key], [tag_value]) END AS "Tags",
               '{GRAIN}' AS "x_CostExplorerGrain"
        FROM read_parquet('{path}')
    """
    with duckdb.connect() as conn:
        rows = conn.execute(
            f"""
            SELECT "BillingPeriodStart", count(DISTINCT "ChargePeriodStart"), count(*),
                   sum("BilledCost"), sum("EffectiveCost")
            FROM ({select_sql}) GROUP BY 1 ORDER BY 1
            """
        ).fetchall()
        ((estimated,),) = conn.execute(
            f"SELECT count(DISTINCT day) FILTER (WHERE estimated) FROM read_parquet('{path}')"
        ).fetchall()
    notes = [f"Cost Explorer grain: {GRAIN} (no resource detail)"]
    if estimated:
        notes.append(f"days still estimated by AWS (not final): {estimated}")
    return CostDelivery(
        uri=local.uri,
        files=local.files,
        checksum=checksum(local),
        select_sql=select_sql,
        periods=tuple(PeriodStats(*row) for row in rows),
        extra_columns={"x_CostExplorerGrain": "VARCHAR"},
        notes=notes,
        cleanup=lambda: shutil.rmtree(workdir, ignore_errors=True),
    )
