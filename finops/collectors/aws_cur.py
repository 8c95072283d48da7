"""AWS Cost and Usage Reports (CUR 2.0 / Data Exports and legacy CUR), mapped to FOCUS 1.2.

A location is a local folder (a copy of the bucket prefix) or `s3://bucket/prefix`. Billing
periods are found from their manifests, and only the data files the current manifest
lists are read, so files of older assemblies left beside them never count:
- CUR 2.0: `PREFIX/EXPORT/metadata/BILLING_PERIOD=YYYY-MM/EXPORT-Manifest.json` (`dataFiles`);
- legacy: `PREFIX/REPORT/yyyymmdd-yyyymmdd/REPORT-Manifest.json` (`assemblyId`,
  `reportKeys`); the copies of a manifest inside assembly folders are ignored.
Every period found becomes part of one delivery; the warehouse replaces each period's slice.
The checksum covers the manifests and the data files, so a restatement (a new manifest)
is ingested and a re-run over the same delivery is recorded `unchanged`.

Columns are read in any of AWS's spellings: CUR 2.0 and Athena/Parquet snake_case
(`line_item_unblended_cost`) and legacy CSV headers (`lineItem/UnblendedCost`), from
Parquet, CSV or CSV.gz. The table names them in CUR 2.0 spelling (`*_a_r_n` is an ARN).

| FOCUS column            | from CUR                                                     |
| ----------------------- | ------------------------------------------------------------ |
| BillingAccountId, -Name | bill_payer_account_id (12 digits, zeros kept), _name         |
| SubAccountId, -Name     | line_item_usage_account_id, _name                            |
| InvoiceId               | bill_invoice_id                                              |
| BillingPeriodStart, End | bill_billing_period_start_date, _end_date (or start + 1 mo.) |
| ChargePeriodStart, End  | line_item_usage_start_date, line_item_usage_end_date         |
| BillingCurrency         | line_item_currency_code                                      |
| ChargeCategory          | line_item_line_item_type, see (1)                            |
| ChargeClass             | null (2)                                                     |
| ChargeFrequency         | line_item_line_item_type, see (1)                            |
| PricingCategory         | line item type and pricing_term, see (3)                     |
| BilledCost              | line_item_unblended_cost (4)                                 |
| EffectiveCost           | AWS's amortised cost, see (5)                                |
| ListCost                | pricing_public_on_demand_cost, else line_item_unblended_cost |
| ContractedCost          | line_item_unblended_cost (CUR prices are the negotiated ones)|
| ChargeDescription       | line_item_line_item_description                              |
| ServiceName             | product code via SERVICES, else product_product_name or code |
| ServiceCategory         | product code (line_item_product_code) via SERVICES, else Other |
| PricingQuantity, -Unit  | line_item_usage_amount, pricing_unit (Hrs -> Hours) (Usage, Purchase) |
| ConsumedQuantity, -Unit | the same, on Usage only                                      |
| ResourceId              | line_item_resource_id                                        |
| ResourceName            | the resource's `Name` tag (user:Name), as the EC2 console    |
| RegionId                | product_region_code (legacy: product_region)                 |
| AvailabilityZone, SkuId | line_item_availability_zone, product_sku                     |
| CommitmentDiscountId    | savings_plan_savings_plan_a_r_n / reservation_reservation_a_r_n (6) |
| CommitmentDiscount-Category, -Type | Spend, Savings Plan / Usage, Reserved Instance (6) |
| Provider-, Publisher-, InvoiceIssuerName | 'AWS'                                       |
| Tags                    | resource tags (7)                                            |
| x_InstanceType          | product_instance_type                                        |
| x_PurchaseOption        | SavingsPlan/Reserved/Spot/OnDemand on usage, commitment lines |

(1) CHARGE_BY_LINE_ITEM_TYPE: Usage, DiscountedUsage, SavingsPlanCoveredUsage -> Usage,
    Usage-Based; Fee, SavingsPlanUpfrontFee -> Purchase, One-Time; RIFee,
    SavingsPlanRecurringFee -> Purchase, Recurring; Tax -> Tax, One-Time; Credit, Refund
    -> Credit, One-Time; SavingsPlanNegation and the discounts (BundledDiscount,
    EdpDiscount, PrivateRateDiscount, DistributorDiscount) -> Credit, Usage-Based. An
    unknown type is refused rather than guessed.
(2) CUR does not say which earlier period a Refund or Credit corrects, so no row is
    marked Correction; a Refund is a Credit like any other reduction of the bill.
(3) Committed for RI/Savings Plan covered usage and commitment fees; other usage by
    pricing_term: Spot (or a `SpotUsage` usage type) -> Dynamic, OnDemand -> Standard,
    Reserved -> Committed, none -> Other; Fee -> Standard; Tax and credits -> null.
(4) The unblended cost is what the invoice sums. Discounts are line items of their own,
    so the net_unblended columns would count them a second time.
(5) The CUR query library's amortised cost: SavingsPlanCoveredUsage ->
    savings_plan_savings_plan_effective_cost; DiscountedUsage -> reservation_effective_cost;
    SavingsPlanNegation, SavingsPlanUpfrontFee and RI upfront Fees -> 0;
    SavingsPlanRecurringFee -> the unused commitment (savings_plan_total_commitment_to_date
    - savings_plan_used_commitment); RIFee -> the unused reservation
    (reservation_unused_amortized_upfront_fee_for_billing_period +
    reservation_unused_recurring_fee); both 0 where those columns are absent, as in AWS's
    FOCUS export; anything else -> the unblended cost.
(6) On Savings Plan lines (covered usage, negation, fees) and on RI lines (DiscountedUsage,
    RIFee) only.
(7) The CUR 2.0 `resource_tags` map, legacy `resourceTags/user:team` or Athena
    `resource_tags_user_team` columns: `user:`/`user_` is removed, AWS tags are kept as
    `aws:...`, empty values are dropped, a line without tags has null Tags.

Refused, naming file, row and column: a missing mandatory CUR column, an empty mandatory
value, an unknown line item type, an unparsable date, a non-numeric cost. An object that
cannot be downloaded is named by its key. On S3, manifests are listed and read through
boto3 and data files streamed to disk through pyarrow's S3 filesystem (Parquet footers
first, so a file missing a mandatory column is refused before any download); throttled
calls are retried with backoff by both. Data files are read by DuckDB from disk, never
loaded into Python.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from finops.collectors.locations import LocalFiles, checksum, resolve, s3_clients, split_s3_uri
from finops.collectors.scan import (
    Check,
    FileGroup,
    Layout,
    group_by_layout,
    ident,
    scratch_database,
    sql_string,
    validate_groups,
)
from finops.errors import IngestError
from finops.warehouse import CostDelivery

MANIFEST_SUFFIX = "-manifest.json"
DATA_SUFFIXES = (".parquet", ".csv.gz", ".csv")
DOWNLOAD_CHUNK = 8 * 1024 * 1024
"""Bytes read from S3 at a time while an object streams to disk."""

_LEGACY_PERIOD = re.compile(r"^\d{8}-\d{8}$")
_CUR2_PERIOD = re.compile(r"^BILLING_PERIOD=\d{4}-\d{2}$", re.IGNORECASE)

MANDATORY_COLUMNS: dict[str, str] = {
    "bill_payer_account_id": "bill/PayerAccountId",
    "bill_billing_period_start_date": "bill/BillingPeriodStartDate",
    "line_item_usage_account_id": "lineItem/UsageAccountId",
    "line_item_line_item_type": "lineItem/LineItemType",
    "line_item_usage_start_date": "lineItem/UsageStartDate",
    "line_item_usage_end_date": "lineItem/UsageEndDate",
    "line_item_product_code": "lineItem/ProductCode",
    "line_item_unblended_cost": "lineItem/UnblendedCost",
    "line_item_currency_code": "lineItem/CurrencyCode",
}
"""CUR columns every data file needs (CUR 2.0 name -> legacy CSV header)."""

# line item type -> (ChargeCategory, ChargeFrequency)
CHARGE_BY_LINE_ITEM_TYPE: dict[str, tuple[str, str]] = {
    "Usage": ("Usage", "Usage-Based"),
    "DiscountedUsage": ("Usage", "Usage-Based"),
    "SavingsPlanCoveredUsage": ("Usage", "Usage-Based"),
    "Fee": ("Purchase", "One-Time"),
    "RIFee": ("Purchase", "Recurring"),
    "SavingsPlanUpfrontFee": ("Purchase", "One-Time"),
    "SavingsPlanRecurringFee": ("Purchase", "Recurring"),
    "Tax": ("Tax", "One-Time"),
    "Credit": ("Credit", "One-Time"),
    "Refund": ("Credit", "One-Time"),
    "SavingsPlanNegation": ("Credit", "Usage-Based"),
    "BundledDiscount": ("Credit", "Usage-Based"),
    "EdpDiscount": ("Credit", "Usage-Based"),
    "PrivateRateDiscount": ("Credit", "Usage-Based"),
    "DistributorDiscount": ("Credit", "Usage-Based"),
}

UNITS: dict[str, str] = {"Hrs": "Hours", "GB-Mo": "GB-Months"}
"""CUR pricing units spelled as FOCUS files spell them; others are kept as they are."""

_SAVINGS_PLAN_TYPES = (
    "SavingsPlanCoveredUsage",
    "SavingsPlanNegation",
    "SavingsPlanRecurringFee",
    "SavingsPlanUpfrontFee",
)
_RESERVATION_TYPES = ("DiscountedUsage", "RIFee")

# product code -> (ServiceName, ServiceCategory)
SERVICES: dict[str, tuple[str, str]] = {
    "AmazonEC2": ("Amazon Elastic Compute Cloud", "Compute"),
    "AWSLambda": ("AWS Lambda", "Compute"),
    "AmazonECS": ("Amazon Elastic Container Service", "Compute"),
    "AmazonEKS": ("Amazon Elastic Kubernetes Service", "Compute"),
    "AmazonS3": ("Amazon Simple Storage Service", "Storage"),
    "AmazonEFS": ("Amazon Elastic File System", "Storage"),
    "AmazonFSx": ("Amazon FSx", "Storage"),
    "AmazonRDS": ("Amazon Relational Database Service", "Databases"),
    "AmazonDynamoDB": ("Amazon DynamoDB", "Databases"),
    "AmazonSageMaker": ("Amazon SageMaker", "AI and Machine Learning"),
    "AmazonBedrock": ("Amazon Bedrock", "AI and Machine Learning"),
    "AmazonAthena": ("Amazon Athena", "Analytics"),
    "AmazonRedshift": ("Amazon Redshift", "Analytics"),
    "AmazonVPC": ("Amazon Virtual Private Cloud", "Networking"),
    "AmazonCloudFront": ("Amazon CloudFront", "Networking"),
    "AWSDataTransfer": ("AWS Data Transfer", "Networking"),
    "AmazonCloudWatch": ("Amazon CloudWatch", "Management and Governance"),
    "AWSCloudTrail": ("AWS CloudTrail", "Management and Governance"),
    "awskms": ("AWS Key Management Service", "Security"),
    "ComputeSavingsPlans": ("Savings Plans for AWS Compute usage", "Compute"),
}


def read_cur(location: str, *, export_name: str | None = None) -> CostDelivery:
    """Read the current delivery of every billing period under `location`, validated and measured.

    `export_name` picks one export (or legacy report) where a prefix holds several.
    """
    manifest_files = resolve(location, (MANIFEST_SUFFIX,))
    cleanups = [manifest_files.cleanup]
    try:
        manifests = _current_manifests(manifest_files, export_name)
        data, data_cleanup = _fetch_data_files(location, manifests)
        cleanups.append(data_cleanup)
        with scratch_database() as conn:
            groups = [
                _plan_group(data, layout, files) for layout, files in group_by_layout(conn, data)
            ]
            periods, notes = validate_groups(conn, data, groups)
        delivered = LocalFiles(
            location,
            tuple(m.path for m in manifests) + data.files,
            {**manifest_files.display_names, **data.display_names},
        )
        delivery_sum = checksum(delivered)
    except BaseException:
        _run_all(cleanups)
        raise
    return CostDelivery(
        uri=location,
        files=data.files,
        checksum=delivery_sum,
        select_sql=" UNION ALL BY NAME ".join(f"({g.select_sql()})" for g in groups),
        periods=periods,
        notes=[
            *(m.note for m in manifests),
            *sorted({n for g in groups for n in g.plan_notes}),
            *notes,
        ],
        cleanup=lambda: _run_all(cleanups),
        tag_set_ids=True,
    )


def default_source(location: str, export_name: str | None = None) -> str:
    """The export's name when one is chosen, else `aws-cur`.

    `location` is taken for the same call shape as the other collectors; pass a distinct
    `--source` when ingesting several payers' reports into one warehouse.
    """
    return export_name or "aws-cur"


def _run_all(cleanups: list[Callable[[], None] | None]) -> None:
    for cleanup in cleanups:
        if cleanup is not None:
            cleanup()


# --- manifests: which files make up the current delivery of each billing period --------


@dataclass(frozen=True)
class _Manifest:
    path: Path
    name: str
    """Where it came from (an s3:// URI or a local path), for messages."""
    export: str
    period: str
    delivery_id: str
    data_files: tuple[str, ...]
    """s3:// URIs or keys, as the manifest lists them."""
    bucket: str | None

    @property
    def note(self) -> str:
        return (
            f"{self.export} {self.period}: delivery {self.delivery_id}, "
            f"{len(self.data_files)} data file(s)"
        )


def _current_manifests(found: LocalFiles, export_name: str | None) -> list[_Manifest]:
    manifests = [
        _read_manifest(path, found.name(path))
        for path in found.files
        if _is_period_folder(PurePosixPath(found.name(path)).parent.name)
    ]
    if export_name is not None:
        manifests = [m for m in manifests if m.export == export_name]
    exports = sorted({m.export for m in manifests})
    if not manifests:
        wanted = f" for export {export_name!r}" if export_name else ""
        raise IngestError(
            f"{found.uri}: no CUR manifest{wanted} in a billing period folder "
            "(EXPORT/metadata/BILLING_PERIOD=YYYY-MM/ or REPORT/yyyymmdd-yyyymmdd/)"
        )
    if len(exports) > 1:
        raise IngestError(
            f"{found.uri}: holds several reports ({', '.join(exports)}); "
            "choose one with --export-name"
        )
    return sorted(manifests, key=lambda m: m.period)


def _is_period_folder(name: str) -> bool:
    """Manifests directly in a billing period's folder are current; copies elsewhere are not."""
    return bool(_LEGACY_PERIOD.match(name) or _CUR2_PERIOD.match(name))


def _read_manifest(path: Path, name: str) -> _Manifest:
    try:
        content = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise IngestError(f"{name}: cannot read the manifest as JSON: {exc}") from None
    listed = (
        content.get("dataFiles", content.get("reportKeys")) if isinstance(content, dict) else None
    )
    if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
        raise IngestError(f"{name}: the manifest lists no data files (dataFiles or reportKeys)")
    bucket = content.get("bucket")
    return _Manifest(
        path=path,
        name=name,
        export=path.name[: -len(MANIFEST_SUFFIX)],
        period=PurePosixPath(name).parent.name,
        delivery_id=str(content.get("assemblyId") or content.get("executionId") or "unnamed"),
        data_files=tuple(listed),
        bucket=bucket if isinstance(bucket, str) else None,
    )


def _fetch_data_files(
    location: str, manifests: list[_Manifest]
) -> tuple[LocalFiles, Callable[[], None] | None]:
    """The data files the manifests list, on local disk (downloaded from S3 if need be)."""
    for manifest in manifests:
        for listed in manifest.data_files:
            if not listed.lower().endswith(DATA_SUFFIXES):
                raise IngestError(
                    f"{manifest.name}: lists {listed}, which is not {'/'.join(DATA_SUFFIXES)}"
                )
    if location.startswith("s3://"):
        return _download(location, manifests)
    files = [_local_data_file(m, listed) for m in manifests for listed in m.data_files]
    return LocalFiles(location, tuple(files), {}), None


def _local_data_file(manifest: _Manifest, listed: str) -> Path:
    """Find a listed key in a local copy of the prefix: below the manifest's nearest
    ancestor folder that the key also passes through."""
    key_parts = PurePosixPath(listed.removeprefix("s3://")).parts
    for ancestor in manifest.path.parents:
        if ancestor.name in key_parts:
            index = len(key_parts) - 1 - key_parts[::-1].index(ancestor.name)
            candidate = ancestor.joinpath(*key_parts[index + 1 :])
            if candidate.is_file():
                return candidate
    raise IngestError(f"{manifest.name}: lists {listed}, which is not in the local copy")


def _download(location: str, manifests: list[_Manifest]) -> tuple[LocalFiles, Callable[[], None]]:
    """Stream the listed objects to a temporary folder through pyarrow's S3 filesystem.

    Parquet footers are read first (a few KiB each, by range requests), so a data file
    that lacks a mandatory column is refused before a byte of data is downloaded. Each
    object is then copied in chunks of DOWNLOAD_CHUNK bytes: never whole in memory.
    """
    location_bucket = split_s3_uri(location)[0]
    _, s3 = s3_clients()
    workdir = Path(tempfile.mkdtemp(prefix="finops-cur-"))
    wanted: list[tuple[str, str, Path]] = []
    for manifest in manifests:
        for listed in manifest.data_files:
            if listed.startswith("s3://"):
                bucket, _, key = listed.removeprefix("s3://").partition("/")
            else:
                bucket, key = manifest.bucket or location_bucket, listed
            # Keys become paths below workdir: keep them there even if a key holds '..'.
            digest = hashlib.sha1(f"{bucket}/{key}".encode()).hexdigest()[:12]
            wanted.append((bucket, key, workdir / digest / PurePosixPath(key).name))

    def check_footer(item: tuple[str, str, Path]) -> None:
        bucket, key, _ = item
        try:
            with s3.open_input_file(f"{bucket}/{key}") as remote:
                names = pq.read_schema(remote).names
        except (OSError, pa.ArrowException) as exc:
            raise IngestError(
                f"s3://{bucket}/{key}: cannot read the Parquet footer: {exc}"
            ) from None
        missing = missing_columns(names)
        if missing:
            raise IngestError(
                f"s3://{bucket}/{key}: missing mandatory CUR column(s) {', '.join(missing)}"
            )

    def fetch(item: tuple[str, str, Path]) -> None:
        bucket, key, local = item
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            with (
                s3.open_input_stream(f"{bucket}/{key}", compression=None) as remote,
                local.open("wb") as out,
            ):
                while chunk := remote.read(DOWNLOAD_CHUNK):
                    out.write(chunk)
        except OSError as exc:
            raise IngestError(f"s3://{bucket}/{key}: cannot download: {exc}") from None

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(check_footer, [w for w in wanted if w[1].lower().endswith(".parquet")]))
            list(pool.map(fetch, wanted))
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    names = {local: f"s3://{bucket}/{key}" for bucket, key, local in wanted}
    files = LocalFiles(location, tuple(local for _, _, local in wanted), names)
    return files, lambda: shutil.rmtree(workdir, ignore_errors=True)


# --- planning: the SQL that turns one layout of CUR columns into FOCUS columns ----------


def snake_case(header: str) -> str:
    """A CUR column in CUR 2.0/Athena spelling.

    `lineItem/UnblendedCost` -> `line_item_unblended_cost`; snake_case names stay as they are.
    """
    category, slash, name = header.strip().partition("/")
    if not slash:
        return header.strip().lower()
    return f"{_camel_to_snake(category)}_{_camel_to_snake(name)}"


def _camel_to_snake(word: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", word).lower()


def tag_key(header: str) -> str | None:
    """The FOCUS tag key of a legacy tag column, or None if `header` is not one.

    `resourceTags/user:team` and `resource_tags_user_team` -> `team`;
    `resourceTags/aws:createdBy` -> `aws:createdBy`;
    `resource_tags_aws_created_by` -> `aws:created_by`.
    """
    if header.startswith("resourceTags/"):
        return header.removeprefix("resourceTags/").removeprefix("user:")
    if header.startswith("resource_tags_"):
        key = header.removeprefix("resource_tags_")
        if key.startswith("aws_"):
            return "aws:" + key.removeprefix("aws_")
        return key.removeprefix("user_")
    return None


class _Plan:
    """Builds one group's FOCUS expressions and checks from the file's raw columns."""

    def __init__(self, group: FileGroup, columns: dict[str, tuple[str, str]]) -> None:
        self.group = group
        self.columns = columns
        """CUR 2.0 name -> (header as in the file, DuckDB type)."""

    def has(self, name: str) -> bool:
        return name in self.columns

    def raw(self, name: str) -> str:
        """The column as the group's reader yields it (text cleaned of placeholder nulls)."""
        return ident(self.columns[name][0])

    def text(self, name: str) -> str:
        if name not in self.columns:
            return "CAST(NULL AS VARCHAR)"
        value = self.raw(name)
        return value if self.columns[name][1] == "VARCHAR" else f"CAST({value} AS VARCHAR)"

    def account(self, name: str) -> str:
        value = self.text(name)
        return (
            f"(CASE WHEN strlen({value}) <= 11 AND regexp_full_match({value}, '\\d{{1,11}}') "
            f"THEN lpad({value}, 12, '0') ELSE {value} END)"
        )

    def money(self, name: str) -> str:
        if name not in self.columns:
            return "CAST(NULL AS DECIMAL(38,10))"
        value, raw_type = self.raw(name), self.columns[name][1]
        expr = f"TRY_CAST({value} AS DECIMAL(38,10))"
        problem = "is not a finite number" if raw_type in ("FLOAT", "DOUBLE") else "is not a number"
        if not raw_type.startswith("DECIMAL"):
            self.check(name, value, f"{value} IS NOT NULL AND {expr} IS NULL", problem)
        return expr

    def timestamp(self, name: str) -> str:
        if name not in self.columns:
            return "CAST(NULL AS TIMESTAMPTZ)"
        value, raw_type = self.raw(name), self.columns[name][1]
        if "WITH TIME ZONE" in raw_type:
            return value
        if raw_type.startswith(("TIMESTAMP", "DATE")):
            # The instant the UTC wall-clock time names: the same microseconds since the
            # epoch (timezone('UTC', ...) gives the same, through a calendar, 50x slower).
            return f"make_timestamptz(epoch_us(CAST({value} AS TIMESTAMP)))"
        text = self.text(name)
        expr = f"TRY_CAST({text} AS TIMESTAMPTZ)"
        self.check(name, text, f"{text} IS NOT NULL AND {expr} IS NULL", "is not a date/time")
        return expr

    def require(self, name: str, expr: str) -> str:
        value = self.raw(name)
        self.check(name, value, f"({expr}) IS NULL", "is empty, but the column is mandatory")
        return expr

    def check(self, name: str, raw_sql: str, bad_sql: str, problem: str) -> None:
        header = self.columns[name][0] if name in self.columns else name
        self.group.checks.append(Check(header, raw_sql, bad_sql, problem))


def _plan_group(local: LocalFiles, layout: Layout, files: tuple[Path, ...]) -> FileGroup:
    group = FileGroup(layout, files)
    columns: dict[str, tuple[str, str]] = {}
    tag_columns: list[tuple[str, str, str]] = []
    for header, raw_type in group.layout.columns:
        key = tag_key(header)
        if key is not None:
            tag_columns.append((key, header, raw_type))
        else:
            columns.setdefault(snake_case(header), (header, raw_type))
    missing = missing_columns([header for header, _ in group.layout.columns])
    if missing:
        raise IngestError(
            f"{local.name(files[0])}: missing mandatory CUR column(s) {', '.join(missing)}"
        )
    plan = _Plan(group, columns)
    group.items.update(_focus_items(plan))
    # Tags and the Name tag read only the tag columns: built once per distinct tag set.
    tag_inputs = [header for _, header, _ in tag_columns]
    if plan.has("resource_tags"):
        tag_inputs.append(plan.columns["resource_tags"][0])
    by_tags = group.keyed_items if tag_inputs else group.items
    by_tags["Tags"] = _tags(plan, tag_columns)
    by_tags["ResourceName"] = _name_tag(plan, tag_columns)
    group.key_columns = tuple(tag_inputs)
    group.plan_notes.append(
        "legacy CUR columns read"
        if any("/" in h for h, _ in group.layout.columns)
        else "CUR 2.0 columns read"
    )
    return group


def missing_columns(headers: list[str]) -> list[str]:
    """The mandatory CUR columns `headers` lack, spelled as the file spells its columns."""
    present = {snake_case(h) for h in headers if tag_key(h) is None}
    legacy = any("/" in header for header in headers)
    return [
        MANDATORY_COLUMNS[name] if legacy else name
        for name in MANDATORY_COLUMNS
        if name not in present
    ]


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(sql_string(v) for v in values)


def _case(value: str, mapping: dict[str, str], default: str = "NULL") -> str:
    whens = " ".join(f"WHEN {sql_string(k)} THEN {sql_string(v)}" for k, v in mapping.items())
    return f"(CASE {value} {whens} ELSE {default} END)"


def _focus_items(plan: _Plan) -> dict[str, str]:
    line_type = plan.require("line_item_line_item_type", plan.text("line_item_line_item_type"))
    category = _case(line_type, {t: c for t, (c, _) in CHARGE_BY_LINE_ITEM_TYPE.items()})
    plan.check(
        "line_item_line_item_type",
        line_type,
        f"{line_type} IS NOT NULL AND {category} IS NULL",
        f"is not a line item type this collector knows ({', '.join(CHARGE_BY_LINE_ITEM_TYPE)})",
    )
    unblended = plan.require("line_item_unblended_cost", plan.money("line_item_unblended_cost"))
    period_start = plan.require(
        "bill_billing_period_start_date", plan.timestamp("bill_billing_period_start_date")
    )
    period_end = (
        plan.timestamp("bill_billing_period_end_date")
        if plan.has("bill_billing_period_end_date")
        else f"({period_start} + INTERVAL 1 MONTH)"
    )
    currency = plan.require(
        "line_item_currency_code", f"upper({plan.text('line_item_currency_code')})"
    )
    plan.check(
        "line_item_currency_code",
        currency,
        f"NOT regexp_full_match({currency}, '[A-Z]{{3}}')",
        "is not an ISO 4217 currency code",
    )
    product = plan.require("line_item_product_code", plan.text("line_item_product_code"))
    service_name = _case(
        product,
        {code: name for code, (name, _) in SERVICES.items()},
        f"coalesce({plan.text('product_product_name')}, {product})",
    )
    term = plan.text("pricing_term")
    usage_type = plan.text("line_item_usage_type")
    spot = f"({term} = 'Spot' OR contains(coalesce({usage_type}, ''), 'SpotUsage'))"
    savings_plan = f"{line_type} IN ({_sql_list(_SAVINGS_PLAN_TYPES)})"
    reservation = f"{line_type} IN ({_sql_list(_RESERVATION_TYPES)})"
    purchase_option = f"""(CASE
        WHEN {savings_plan} THEN 'SavingsPlan'
        WHEN {reservation} THEN 'Reserved'
        WHEN {line_type} <> 'Usage' THEN NULL
        WHEN {spot} THEN 'Spot'
        WHEN {term} = 'Reserved' THEN 'Reserved'
        WHEN {term} = 'OnDemand' THEN 'OnDemand' END)"""
    pricing_category = f"""(CASE
        WHEN ({savings_plan} OR {reservation}) AND {line_type} <> 'SavingsPlanNegation'
            THEN 'Committed'
        WHEN {line_type} = 'Fee' THEN 'Standard'
        WHEN {line_type} <> 'Usage' THEN NULL
        WHEN {spot} THEN 'Dynamic'
        WHEN {term} = 'OnDemand' THEN 'Standard'
        WHEN {term} = 'Reserved' THEN 'Committed'
        ELSE 'Other' END)"""
    usage_amount = plan.money("line_item_usage_amount")
    unit = plan.text("pricing_unit")
    priced = f"{category} IN ('Usage', 'Purchase')"
    sp_arn = plan.text("savings_plan_savings_plan_a_r_n")
    ri_arn = plan.text("reservation_reservation_a_r_n")

    def by_commitment(for_savings_plan: str, for_reservation: str) -> str:
        return (
            f"(CASE WHEN {savings_plan} THEN {for_savings_plan} "
            f"WHEN {reservation} THEN {for_reservation} END)"
        )

    return {
        "BillingAccountId": plan.require(
            "bill_payer_account_id", plan.account("bill_payer_account_id")
        ),
        "BillingAccountName": plan.text("bill_payer_account_name"),
        "SubAccountId": plan.require(
            "line_item_usage_account_id", plan.account("line_item_usage_account_id")
        ),
        "SubAccountName": plan.text("line_item_usage_account_name"),
        "InvoiceId": plan.text("bill_invoice_id"),
        "BillingPeriodStart": period_start,
        "BillingPeriodEnd": period_end,
        "ChargePeriodStart": plan.require(
            "line_item_usage_start_date", plan.timestamp("line_item_usage_start_date")
        ),
        "ChargePeriodEnd": plan.require(
            "line_item_usage_end_date", plan.timestamp("line_item_usage_end_date")
        ),
        "BillingCurrency": currency,
        "ChargeCategory": category,
        "ChargeClass": "CAST(NULL AS VARCHAR)",
        "ChargeFrequency": _case(
            line_type, {t: f for t, (_, f) in CHARGE_BY_LINE_ITEM_TYPE.items()}
        ),
        "ChargeDescription": plan.text("line_item_line_item_description"),
        "PricingCategory": pricing_category,
        "BilledCost": unblended,
        "EffectiveCost": _effective_cost(plan, line_type, unblended, ri_arn),
        "ListCost": f"coalesce({plan.money('pricing_public_on_demand_cost')}, {unblended})",
        "ContractedCost": unblended,
        "ServiceName": service_name,
        "ServiceCategory": _case(
            product, {code: cat for code, (_, cat) in SERVICES.items()}, "'Other'"
        ),
        "PricingQuantity": f"(CASE WHEN {priced} THEN {usage_amount} END)",
        "PricingUnit": f"(CASE WHEN {priced} THEN {_case(unit, UNITS, unit)} END)",
        "ConsumedQuantity": f"(CASE WHEN {category} = 'Usage' THEN {usage_amount} END)",
        "ConsumedUnit": f"(CASE WHEN {category} = 'Usage' THEN {_case(unit, UNITS, unit)} END)",
        "ResourceId": plan.text("line_item_resource_id"),
        "RegionId": plan.text("product_region_code")
        if plan.has("product_region_code")
        else plan.text("product_region"),
        "AvailabilityZone": plan.text("line_item_availability_zone"),
        "SkuId": plan.text("product_sku"),
        "CommitmentDiscountId": by_commitment(sp_arn, ri_arn),
        "CommitmentDiscountCategory": by_commitment("'Spend'", "'Usage'"),
        "CommitmentDiscountType": by_commitment("'Savings Plan'", "'Reserved Instance'"),
        "ProviderName": "'AWS'",
        "PublisherName": "'AWS'",
        "InvoiceIssuerName": "'AWS'",
        "x_InstanceType": plan.text("product_instance_type"),
        "x_PurchaseOption": purchase_option,
    }


def _effective_cost(plan: _Plan, line_type: str, unblended: str, ri_arn: str) -> str:
    """AWS's amortised cost (the CUR query library's formula), per line item type."""
    sp_effective = plan.money("savings_plan_savings_plan_effective_cost")
    ri_effective = plan.money("reservation_effective_cost")
    for name, value, covered in (
        ("savings_plan_savings_plan_effective_cost", sp_effective, "SavingsPlanCoveredUsage"),
        ("reservation_effective_cost", ri_effective, "DiscountedUsage"),
    ):
        plan.check(
            name,
            value,
            f"{line_type} = '{covered}' AND {value} IS NULL",
            f"is empty on a {covered} line, whose effective cost it is",
        )
    unused_sp = (
        f"{plan.money('savings_plan_total_commitment_to_date')} "
        f"- {plan.money('savings_plan_used_commitment')}"
    )
    unused_ri = (
        f"{plan.money('reservation_unused_amortized_upfront_fee_for_billing_period')} "
        f"+ {plan.money('reservation_unused_recurring_fee')}"
    )
    return f"""(CASE {line_type}
        WHEN 'SavingsPlanCoveredUsage' THEN {sp_effective}
        WHEN 'DiscountedUsage' THEN {ri_effective}
        WHEN 'SavingsPlanNegation' THEN 0
        WHEN 'SavingsPlanUpfrontFee' THEN 0
        WHEN 'SavingsPlanRecurringFee' THEN coalesce({unused_sp}, 0)
        WHEN 'RIFee' THEN coalesce({unused_ri}, 0)
        WHEN 'Fee' THEN (CASE WHEN {ri_arn} IS NOT NULL THEN 0 ELSE {unblended} END)
        ELSE {unblended} END)"""


def _name_tag(plan: _Plan, tag_columns: list[tuple[str, str, str]]) -> str:
    """The resource's `Name` tag: how the EC2 console names an instance."""
    for key, header, _ in tag_columns:
        if key == "Name":
            return f"CAST({ident(header)} AS VARCHAR)"
    if not plan.has("resource_tags"):
        return "CAST(NULL AS VARCHAR)"
    value = plan.raw("resource_tags")
    if plan.columns["resource_tags"][1].startswith("MAP"):
        return f"nullif(coalesce({value}['user_Name'], {value}['user:Name']), '')"
    return (
        f"(CASE WHEN json_valid({value}) THEN nullif(coalesce("
        f"""json_extract_string({value}, '$."user_Name"'), """
        f"""json_extract_string({value}, '$."user:Name"')), '') END)"""
    )


def _tags(plan: _Plan, tag_columns: list[tuple[str, str, str]]) -> str:
    """Tags as MAP(VARCHAR, VARCHAR), null when a line has none."""
    maps = []
    if plan.has("resource_tags"):
        raw_type = plan.columns["resource_tags"][1]
        value = plan.raw("resource_tags")
        if raw_type.startswith("MAP"):
            tag_map = f"CAST({value} AS MAP(VARCHAR, VARCHAR))"
        else:
            tag_map = (
                f"(CASE WHEN json_valid({value}) THEN "
                f"CAST(CAST({value} AS JSON) AS MAP(VARCHAR, VARCHAR)) END)"
            )
            plan.check(
                "resource_tags",
                value,
                f"{value} IS NOT NULL AND {tag_map} IS NULL",
                "is not a JSON object of tags",
            )
        key = (
            "(CASE WHEN starts_with(e.key, 'user:') OR starts_with(e.key, 'user_') THEN e.key[6:] "
            "WHEN starts_with(e.key, 'aws_') THEN 'aws:' || e.key[5:] ELSE e.key END)"
        )
        maps.append(
            f"map_from_entries(list_transform(list_filter(map_entries({tag_map}), "
            f"lambda e: coalesce(e.value, '') <> ''), "
            f"lambda e: {{'key': {key}, 'value': e.value}}))"
        )
    if tag_columns:
        entries = ", ".join(
            f"{{'key': {sql_string(key)}, 'value': CAST({ident(header)} AS VARCHAR)}}"
            for key, header, _ in tag_columns
        )
        maps.append(f"map_from_entries(list_filter([{entries}], lambda e: e.value IS NOT NULL))")
    if not maps:
        return "CAST(NULL AS MAP(VARCHAR, VARCHAR))"
    combined = maps[0] if len(maps) == 1 else f"map_concat({', '.join(maps)})"
    return f"(CASE WHEN cardinality({combined}) > 0 THEN {combined} END)"
