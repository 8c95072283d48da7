"""Google Cloud Billing's BigQuery export (standard or detailed usage cost) as FOCUS 1.2 rows.

Two ways in, one mapping: `read_gcp_export_files` reads the export as local Parquet or
newline-delimited JSON files (`bq extract` output, `.json`, `.jsonl`, `.json.gz`);
`read_gcp_export_table` queries the export table through google-cloud-bigquery, writes the
result to a temporary Parquet file and hands that to the same reader. Files may also sit
in Cloud Storage (`gs://bucket/prefix`), read through google-cloud-storage.

Billing period = invoice.month. Google invoices by invoice month, and usage from the last
hours of a calendar month can be invoiced in the next one, so ChargePeriodStart may lie
before BillingPeriodStart. Each invoice month is one (source x billing period) slice: a
table read with `months=None` re-reads every invoice month present, so a restated month
replaces its own slice and nothing else. Per invoice month, BilledCost nets exactly as
the invoice does: sum(cost) + sum(credits.amount).

Each export row gives one FOCUS row, and each of its credits one more:

| FOCUS column | export row | credit row (one per `credits` element) |
| --- | --- | --- |
| BillingAccountId | billing_account_id | same |
| BillingPeriodStart/End | invoice.month: first of month, first of next (UTC) | same |
| ChargePeriodStart/End | usage_start_time / usage_end_time | same |
| ChargeCategory | cost_type: regular -> Usage (Purchase for `Commitment...` SKUs); tax -> Tax; adjustment, rounding_error -> Adjustment | Credit |
| ChargeClass | Correction for an adjustment whose usage starts before its invoice month | parent's |
| ChargeDescription | sku.description | `credits.type: credits.full_name` (name if no full_name) |
| ChargeFrequency | Recurring (commitment fees), One-Time (adjustments), else Usage-Based | parent's |
| BilledCost, EffectiveCost | cost | credits.amount (negative) |
| ListCost | cost_at_list, else cost | 0 |
| ContractedCost | cost | 0 |
| PricingCategory | Dynamic (Spot/Preemptible SKU), Committed (commitment fee, or a committed use discount credit on the row), Standard; null for Tax/Adjustment | Committed for committed use discount credits, else the SKU's |
| CommitmentDiscountCategory/Id/Type | - | for committed use discount credits: Usage (resource-based) or Spend (spend-based) / credits.id / Committed Use Discount |
| PricingQuantity/Unit | usage.amount_in_pricing_units / usage.pricing_unit (Usage, Purchase) | null |
| ConsumedQuantity/Unit | usage.amount / usage.unit (Usage only) | null |
| ServiceName | service.description | same |
| ServiceCategory | service.description through `SERVICE_CATEGORIES`, else Other | same |
| SkuId | sku.id | same |
| SubAccountId/Name/Type | project.id / project.name / Project | same |
| RegionId, AvailabilityZone | location.region, location.zone | same |
| ResourceId | resource.global_name, else resource.name (detailed export) | same |
| ResourceName | resource.name, else resource.global_name | same |
| Tags | labels, plus project.labels under keys the labels do not have (goog-k8s-* kept) | same |
| x_InstanceType | system_labels `compute.googleapis.com/machine_spec` | same |
| ProviderName, PublisherName, InvoiceIssuerName | Google Cloud | same |
| BillingCurrency | currency | same |

Refused, with the file, row and field named: a missing required field (billing_account_id,
service.description, usage_start_time, usage_end_time, cost, currency, invoice.month), an
unparsable timestamp, a non-numeric cost, cost_at_list or credit amount, an invoice month
that is not YYYYMM, a currency that is not a three-letter code.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from finops.collectors.locations import LocalFiles, checksum, resolve
from finops.collectors.problems import refuse
from finops.collectors.scan import VALIDATION_MEMORY_LIMIT
from finops.errors import IngestError
from finops.warehouse import CostDelivery, PeriodStats
from finops.warehouse.schema import COLUMNS_BY_NAME, MONEY

if TYPE_CHECKING:
    from google.cloud import bigquery

SUFFIXES = (".parquet", ".json", ".jsonl", ".json.gz", ".jsonl.gz")
PROVIDER = "Google Cloud"

SERVICE_CATEGORIES: dict[str, str] = {
    "Compute Engine": "Compute",
    "Kubernetes Engine": "Compute",
    "Cloud Run": "Compute",
    "Cloud Storage": "Storage",
    "BigQuery": "Analytics",
    "Vertex AI": "AI and Machine Learning",
    "Cloud SQL": "Databases",
    "Networking": "Networking",
}
"""FOCUS ServiceCategory by service.description; any other service is 'Other'."""

CUD_CREDIT_TYPES: dict[str, str] = {
    "COMMITTED_USAGE_DISCOUNT": "Usage",
    "COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE": "Spend",
}
"""Committed use discount credit types and their FOCUS CommitmentDiscountCategory."""

REQUIRED_FIELDS = (
    "billing_account_id",
    "service.description",
    "usage_start_time",
    "usage_end_time",
    "cost",
    "currency",
    "invoice.month",
)

_KEY_VALUES = [{"key": "VARCHAR", "value": "VARCHAR"}]
# Every leaf read as text: numbers keep their exact digits and a bad value can be shown.
# Fields a standard export lacks (resource, price) come back null.
_EXPORT_SHAPE = {
    "billing_account_id": "VARCHAR",
    "service": {"id": "VARCHAR", "description": "VARCHAR"},
    "sku": {"id": "VARCHAR", "description": "VARCHAR"},
    "usage_start_time": "VARCHAR",
    "usage_end_time": "VARCHAR",
    "project": {"id": "VARCHAR", "name": "VARCHAR", "labels": _KEY_VALUES},
    "labels": _KEY_VALUES,
    "system_labels": _KEY_VALUES,
    "location": {"region": "VARCHAR", "zone": "VARCHAR"},
    "cost": "VARCHAR",
    "currency": "VARCHAR",
    "usage": {
        "amount": "VARCHAR",
        "unit": "VARCHAR",
        "amount_in_pricing_units": "VARCHAR",
        "pricing_unit": "VARCHAR",
    },
    "credits": [
        {
            "name": "VARCHAR",
            "amount": "VARCHAR",
            "full_name": "VARCHAR",
            "id": "VARCHAR",
            "type": "VARCHAR",
        }
    ],
    "invoice": {"month": "VARCHAR"},
    "cost_type": "VARCHAR",
    "resource": {"name": "VARCHAR", "global_name": "VARCHAR"},
    "cost_at_list": "VARCHAR",
}
_TABLE_ID = re.compile(r"^[A-Za-z0-9_:.\-]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_$]+$")
_INVOICE_MONTH = re.compile(r"^\d{4}(0[1-9]|1[0-2])$")


def read_gcp_export_files(location: str) -> CostDelivery:
    """Resolve, validate and measure exported billing files: a file, a folder, a glob, or a
    `gs://bucket/prefix` (read through google-cloud-storage)."""
    return _deliver(location, resolve(location, SUFFIXES))


def read_gcp_export_table(
    table: str, *, months: list[str] | None = None, client: bigquery.Client | None = None
) -> CostDelivery:
    """Query the export table `PROJECT.DATASET.TABLE` for some invoice months ('YYYYMM').

    With `months=None`, every invoice month present in the table is read, so each one
    replaces its slice. The rows go through a temporary Parquet file, removed by the
    delivery's cleanup. Export tables are partitioned by export time, not invoice month,
    so the query scans the whole table whichever months are asked for.
    """
    try:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
        from google.cloud import bigquery
    except ImportError:
        raise IngestError(
            f"{table}: reading BigQuery needs google-cloud-bigquery (pip install google-cloud-bigquery)"
        ) from None
    if not _TABLE_ID.match(table):
        raise IngestError(f"{table!r}: expected a BigQuery table as PROJECT.DATASET.TABLE")
    bad_months = [m for m in months or [] if not _INVOICE_MONTH.match(m)]
    if bad_months:
        raise IngestError(f"{table}: invoice month(s) {', '.join(bad_months)} are not YYYYMM")
    try:
        client = client or bigquery.Client()
        wanted = months if months is not None else _invoice_months(client, table)
        if not wanted:
            raise IngestError(f"{table}: no invoice months to read; the table is empty")
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ArrayQueryParameter("months", "STRING", wanted)]
        )
        result = client.query_and_wait(
            f"SELECT * FROM `{table}` WHERE invoice.month IN UNNEST(@months)", job_config=config
        ).to_arrow()
    except GoogleAuthError as exc:
        raise IngestError(f"{table}: no Google credentials for BigQuery: {exc}") from None
    except GoogleAPIError as exc:
        raise IngestError(f"{table}: BigQuery refused the query: {exc}") from None
    if result.num_rows == 0:
        raise IngestError(f"{table}: no rows for invoice month(s) {', '.join(wanted)}")

    import pyarrow.parquet as pq

    workdir = Path(tempfile.mkdtemp(prefix="finops-bq-"))
    path = workdir / "export.parquet"
    pq.write_table(result, path)
    local = LocalFiles(
        table,
        (path,),
        {path: f"{table} query result (invoice months {', '.join(wanted)})"},
        lambda: shutil.rmtree(workdir, ignore_errors=True),
    )
    return _deliver(table, local)


def _invoice_months(client: bigquery.Client, table: str) -> list[str]:
    rows = client.query_and_wait(
        f"SELECT DISTINCT invoice.month AS month FROM `{table}` ORDER BY month"
    )
    return [row["month"] for row in rows if row["month"] is not None]


# --- the mapping: one SQL text for the warehouse, for validation and for locating rows ---


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_CUD_TYPES_SQL = ", ".join(_sql_string(t) for t in CUD_CREDIT_TYPES)


def _raw_rows_sql(files: Sequence[Path]) -> str:
    """One row per export record: its file and the record as JSON (`_file`, `_raw`)."""
    parquet = [p for p in files if p.name.lower().endswith(".parquet")]
    ndjson = [p for p in files if p not in parquet]
    parts = []
    if ndjson:
        paths = ", ".join(_sql_string(str(p)) for p in ndjson)
        parts.append(
            f"SELECT filename AS _file, json AS _raw "
            f"FROM read_ndjson_objects([{paths}], filename = true)"
        )
    if parquet:
        # Through JSON, so that both formats meet one tolerant shape (see _EXPORT_SHAPE).
        paths = ", ".join(_sql_string(str(p)) for p in parquet)
        parts.append(
            f"SELECT export.filename AS _file, to_json(export) AS _raw "
            f"FROM read_parquet([{paths}], filename = true, union_by_name = true) AS export"
        )
    return " UNION ALL ".join(parts)


def _timestamp(text: str) -> str:
    """Export timestamps as UTC: `2026-05-01 07:00:00 UTC`, ISO with Z or offset, or none."""
    normalised = f"regexp_replace({text}, '\\s*UTC$', 'Z')"
    with_zone = (
        f"(CASE WHEN regexp_matches({normalised}, '(Z|[+-]\\d{{2}}(:?\\d{{2}})?)$') "
        f"THEN {normalised} ELSE {normalised} || 'Z' END)"
    )
    return f"TRY_CAST({with_zone} AS TIMESTAMPTZ)"


def _month_start(month_date: str) -> str:
    return f"CAST(strftime({month_date}, '%Y-%m-01') || 'T00:00:00Z' AS TIMESTAMPTZ)"


def _lines_sql(raw_sql: str) -> str:
    """One row per export record: the record `e`, its file and the values derived from it."""
    shape = _sql_string(json.dumps(_EXPORT_SHAPE))
    services = " ".join(
        f"WHEN {_sql_string(name)} THEN {_sql_string(category)}"
        for name, category in SERVICE_CATEGORIES.items()
    )
    parsed = f"""
        SELECT _file, e,
            {_timestamp("e.usage_start_time")} AS usage_start,
            {_timestamp("e.usage_end_time")} AS usage_end,
            TRY_CAST(e.cost AS {MONEY}) AS cost,
            TRY_CAST(e.cost_at_list AS {MONEY}) AS cost_at_list,
            CASE WHEN regexp_full_match(e.invoice.month, '\\d{{4}}(0[1-9]|1[0-2])')
                 THEN strptime(e.invoice.month, '%Y%m') END AS invoice_date,
            map_concat(
                map_from_entries(coalesce(e.project.labels, [])),
                map_from_entries(coalesce(e.labels, []))
            ) AS labels,
            list_filter(
                coalesce(e.system_labels, []),
                lambda s: s.key = 'compute.googleapis.com/machine_spec'
            )[1].value AS instance_type,
            len(list_filter(coalesce(e.credits, []), lambda c: c.type IN ({_CUD_TYPES_SQL}))) > 0
                AS has_cud_credit,
            CASE WHEN regexp_matches(e.sku.description, '(?i)\\b(spot|preemptible)\\b')
                 THEN 'Dynamic'
                 WHEN starts_with(lower(e.sku.description), 'commitment') THEN 'Committed'
                 ELSE 'Standard' END AS sku_pricing,
            CASE lower(coalesce(e.cost_type, 'regular'))
                 WHEN 'tax' THEN 'Tax'
                 WHEN 'adjustment' THEN 'Adjustment'
                 WHEN 'rounding_error' THEN 'Adjustment'
                 ELSE CASE WHEN starts_with(lower(e.sku.description), 'commitment')
                           THEN 'Purchase' ELSE 'Usage' END
            END AS charge_category,
            CASE e.service.description {services} ELSE 'Other' END AS service_category
        FROM (SELECT _file, json_transform(_raw, {shape}) AS e FROM ({raw_sql}))
    """
    return f"""
        SELECT *,
            {_month_start("invoice_date")} AS period_start,
            {_month_start("invoice_date + INTERVAL 1 MONTH")} AS period_end,
            CASE WHEN lower(e.cost_type) = 'adjustment'
                      AND usage_start < {_month_start("invoice_date")}
                 THEN 'Correction' END AS charge_class,
            CASE WHEN charge_category = 'Purchase' THEN 'Recurring'
                 WHEN charge_category = 'Adjustment' THEN 'One-Time'
                 ELSE 'Usage-Based' END AS charge_frequency,
            CASE WHEN cardinality(labels) > 0 THEN labels END AS tags
        FROM ({parsed})
    """


# Columns both row kinds share, from the export record's line.
_SHARED_COLUMNS: dict[str, str] = {
    "BillingAccountId": "e.billing_account_id",
    "BillingCurrency": "e.currency",
    "BillingPeriodStart": "period_start",
    "BillingPeriodEnd": "period_end",
    "ChargePeriodStart": "usage_start",
    "ChargePeriodEnd": "usage_end",
    "ChargeClass": "charge_class",
    "ChargeFrequency": "charge_frequency",
    "ProviderName": _sql_string(PROVIDER),
    "PublisherName": _sql_string(PROVIDER),
    "InvoiceIssuerName": _sql_string(PROVIDER),
    "ServiceName": "e.service.description",
    "ServiceCategory": "service_category",
    "SkuId": "e.sku.id",
    "SubAccountId": "e.project.id",
    "SubAccountName": "e.project.name",
    "SubAccountType": "'Project'",
    "RegionId": "e.location.region",
    "AvailabilityZone": "e.location.zone",
    "ResourceId": "coalesce(e.resource.global_name, e.resource.name)",
    "ResourceName": "coalesce(e.resource.name, e.resource.global_name)",
    "Tags": "tags",
    "x_InstanceType": "instance_type",
}

_USAGE_COLUMNS: dict[str, str] = {
    **_SHARED_COLUMNS,
    "ChargeCategory": "charge_category",
    "ChargeDescription": "e.sku.description",
    "BilledCost": "cost",
    "EffectiveCost": "cost",
    "ListCost": "coalesce(cost_at_list, cost)",
    "ContractedCost": "cost",
    "PricingCategory": """CASE WHEN charge_category IN ('Usage', 'Purchase') THEN
        CASE WHEN sku_pricing = 'Standard' AND has_cud_credit THEN 'Committed'
             ELSE sku_pricing END END""",
    "PricingQuantity": f"""CASE WHEN charge_category IN ('Usage', 'Purchase')
        THEN TRY_CAST(e.usage.amount_in_pricing_units AS {MONEY}) END""",
    "PricingUnit": "CASE WHEN charge_category IN ('Usage', 'Purchase') THEN e.usage.pricing_unit END",
    "ConsumedQuantity": f"""CASE WHEN charge_category = 'Usage'
        THEN TRY_CAST(e.usage.amount AS {MONEY}) END""",
    "ConsumedUnit": "CASE WHEN charge_category = 'Usage' THEN e.usage.unit END",
}

_CUD_CATEGORY = " ".join(
    f"WHEN {_sql_string(t)} THEN {_sql_string(c)}" for t, c in CUD_CREDIT_TYPES.items()
)
_CREDIT_COLUMNS: dict[str, str] = {
    **_SHARED_COLUMNS,
    "ChargeCategory": "'Credit'",
    "ChargeDescription": "concat_ws(': ', credit.type, coalesce(credit.full_name, credit.name))",
    "BilledCost": f"TRY_CAST(credit.amount AS {MONEY})",
    "EffectiveCost": f"TRY_CAST(credit.amount AS {MONEY})",
    "ListCost": "0",
    "ContractedCost": "0",
    "PricingCategory": f"CASE WHEN credit.type IN ({_CUD_TYPES_SQL}) "
    "THEN 'Committed' ELSE sku_pricing END",
    "CommitmentDiscountCategory": f"CASE credit.type {_CUD_CATEGORY} END",
    "CommitmentDiscountId": f"CASE WHEN credit.type IN ({_CUD_TYPES_SQL}) THEN credit.id END",
    "CommitmentDiscountType": f"CASE WHEN credit.type IN ({_CUD_TYPES_SQL}) "
    "THEN 'Committed Use Discount' END",
}


def _select(columns: dict[str, str], carried: Sequence[str]) -> str:
    items = [
        f'CAST({expr} AS {COLUMNS_BY_NAME[name].sql_type}) AS "{name}"'
        for name, expr in columns.items()
    ]
    return ", ".join([*items, *carried])


def _focus_sql(raw_sql: str, carried: Sequence[str] = ()) -> str:
    """FOCUS rows from export records: one per record, one per credit; `carried` (and
    `_is_credit`) ride along for validation."""
    usage_extra = [*carried, "false AS _is_credit"] if carried else []
    credit_extra = [*carried, "true AS _is_credit"] if carried else []
    return f"""
        WITH line AS ({_lines_sql(raw_sql)}),
        credit_line AS (SELECT *, unnest(e.credits) AS credit FROM line)
        SELECT {_select(_USAGE_COLUMNS, usage_extra)} FROM line
        UNION ALL BY NAME
        SELECT {_select(_CREDIT_COLUMNS, credit_extra)} FROM credit_line
    """


# --- validation: one pass for problems and per-period figures -----------------------------


@dataclass(frozen=True)
class _Check:
    field: str
    raw_sql: str
    bad_sql: str
    problem: str


def _checks() -> list[_Check]:
    required = [
        _Check(field, f"e.{field}", f"e.{field} IS NULL", "is missing; the export always has it")
        for field in REQUIRED_FIELDS
    ]
    bad_credit = (
        f"list_filter(coalesce(e.credits, []), lambda c: TRY_CAST(c.amount AS {MONEY}) IS NULL)"
    )
    return [
        *required,
        _Check(
            "usage_start_time",
            "e.usage_start_time",
            "e.usage_start_time IS NOT NULL AND usage_start IS NULL",
            "is not a timestamp",
        ),
        _Check(
            "usage_end_time",
            "e.usage_end_time",
            "e.usage_end_time IS NOT NULL AND usage_end IS NULL",
            "is not a timestamp",
        ),
        _Check("cost", "e.cost", "e.cost IS NOT NULL AND cost IS NULL", "is not a number"),
        _Check(
            "cost_at_list",
            "e.cost_at_list",
            "e.cost_at_list IS NOT NULL AND cost_at_list IS NULL",
            "is not a number",
        ),
        _Check(
            "credits.amount",
            f"{bad_credit}[1].amount",
            f"len({bad_credit}) > 0",
            "is missing or not a number",
        ),
        _Check(
            "invoice.month",
            "e.invoice.month",
            "e.invoice.month IS NOT NULL AND invoice_date IS NULL",
            "is not an invoice month (YYYYMM)",
        ),
        _Check(
            "currency",
            "e.currency",
            "NOT regexp_full_match(e.currency, '[A-Z]{3}')",
            "is not a three-letter currency code",
        ),
    ]


def _deliver(uri: str, local: LocalFiles) -> CostDelivery:
    with local.removed_on_error(), ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(checksum, local)
        periods = _validate(local)
        delivery_sum = digest.result()
    return CostDelivery(
        uri=uri,
        files=local.files,
        checksum=delivery_sum,
        select_sql=_focus_sql(_raw_rows_sql(local.files)),
        periods=periods,
        cleanup=local.cleanup,
    )


def _connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    config = {"memory_limit": VALIDATION_MEMORY_LIMIT}
    if threads:
        config["threads"] = str(threads)
    conn = duckdb.connect(config=config)
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def _validate(local: LocalFiles) -> tuple[PeriodStats, ...]:
    checks = _checks()
    carried = ["_file", *(f"({c.bad_sql}) AS _bad{i}" for i, c in enumerate(checks))]
    counts = "".join(f", count_if(NOT _is_credit AND _bad{i})" for i in range(len(checks)))
    sql = f"""
        SELECT _file, "BillingPeriodStart", CAST("ChargePeriodStart" AS DATE), count(*),
               sum("BilledCost"), sum("EffectiveCost"){counts}
        FROM ({_focus_sql(_raw_rows_sql(local.files), carried)})
        GROUP BY ALL
    """
    conn = _connect()
    try:
        rows = conn.execute(sql).fetchall()
    except duckdb.Error as exc:
        raise IngestError(f"{local.uri}: cannot read as a billing export: {exc}") from None
    finally:
        conn.close()
    rows_by_period: dict[object, int] = {}
    days: dict[object, set[object]] = {}
    billed: dict[object, Decimal] = {}
    effective: dict[object, Decimal] = {}
    bad_counts: dict[tuple[str, int], int] = {}
    for filename, period, day, n, billed_sum, effective_sum, *check_counts in rows:
        for index, count in enumerate(check_counts):
            if count:
                bad_counts[(filename, index)] = bad_counts.get((filename, index), 0) + count
        rows_by_period[period] = rows_by_period.get(period, 0) + n
        days.setdefault(period, set()).add(day)
        billed[period] = billed.get(period, Decimal(0)) + (billed_sum or Decimal(0))
        effective[period] = effective.get(period, Decimal(0)) + (effective_sum or Decimal(0))
    if bad_counts:
        raise refuse(
            local.uri,
            [
                _locate(local, Path(filename), checks[index], count)
                for (filename, index), count in sorted(bad_counts.items())
            ],
        )
    return tuple(
        PeriodStats(
            start, len(days[start] - {None}), rows_by_period[start], billed[start], effective[start]
        )
        for start in sorted(rows_by_period)
    )


def _locate(local: LocalFiles, path: Path, check: _Check, count: int) -> str:
    """Describe the first offending record of `path` (records count from 1)."""
    # A single-threaded scan reads the file in order, so row_number() is the record number.
    conn = _connect(threads=1)
    try:
        row = conn.execute(
            f"""
            SELECT n, CAST(raw AS VARCHAR) FROM (
                SELECT row_number() OVER () AS n, {check.raw_sql} AS raw, ({check.bad_sql}) AS bad
                FROM ({_lines_sql(_raw_rows_sql([path]))})
            ) WHERE bad ORDER BY n LIMIT 1
            """
        ).fetchone()
    finally:
        conn.close()
    where = f"{local.name(path)}, row {row[0]}" if row else local.name(path)
    value = "" if row is None or row[1] is None else f"{row[1]!r} "
    others = f" ({count - 1} more row(s) like it)" if count > 1 else ""
    return f"{where}, field {check.field}: {value}{check.problem}{others}"
