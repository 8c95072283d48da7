"""FOCUS 1.0-1.3 cost files (CSV, CSV.gz, Parquet; a file, a folder, a glob or s3://).

Provider exports differ and real ones are messy. What is accepted, and normalised on the
way in (each normalisation is counted in the run's notes):
- any column order, any optional columns, the columns of any FOCUS version 1.0-1.3;
- column names in another case (`billedcost`); custom columns without the `x_` prefix
  (kept as `x_Name`);
- the literal strings `NULL` / `null` and empty fields, read as nulls;
- timestamps with a space for `T`, without `Z`, or with an offset (all read as UTC);
- allowed values in another casing or spelling (`Usage-based`, `usage based`);
- Tags as a JSON object string or as a Parquet map or struct, stored as MAP(VARCHAR, VARCHAR);
- FOCUS 1.3 files that carry ServiceProviderName instead of the deprecated ProviderName.
Refused, with the file, row and column named: a missing mandatory column, an empty
mandatory value, an unparsable date, a non-numeric cost, an unknown currency code, an
unknown allowed value, Tags that are not a JSON object. Negative costs are valid data.

Validation and the per-period figures come from one DuckDB pass over the files in an
in-memory database; the warehouse later runs `select_sql` inside its own transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pycountry

from finops.collectors.locations import LocalFiles, checksum, resolve
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
from finops.warehouse.schema import (
    ALLOWED_VALUES,
    COLUMNS_BY_NAME,
    REQUIRED_COLUMNS,
    WAREHOUSE_COLUMNS,
    Column,
    Kind,
)

SUFFIXES = (".parquet", ".csv", ".csv.gz")
_FOCUS_LOWER = {name.lower(): name for name in COLUMNS_BY_NAME if not name.startswith("x_")}
_CURRENCIES = tuple(sorted(c.alpha_3 for c in pycountry.currencies))
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE")
_UBIGINT = ("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_PERIOD_LIKE = re.compile(
    r"^(\d{4}-?\d{2}|\d{8}-\d{8}|billing_period=.*|year=.*|month=.*|data|metadata)$", re.IGNORECASE
)


def read_focus(location: str) -> CostDelivery:
    """Resolve, validate and measure FOCUS files; the warehouse applies the delivery."""
    local = resolve(location, SUFFIXES)
    with local.removed_on_error(), ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(checksum, local)
        with scratch_database() as conn:
            groups = [
                _plan_group(local, layout, files) for layout, files in group_by_layout(conn, local)
            ]
            periods, notes = validate_groups(conn, local, groups)
        delivery_sum = digest.result()
    extra = {name: sql_type for g in groups for name, sql_type in g.extra_columns.items()}
    return CostDelivery(
        uri=location,
        files=local.files,
        checksum=delivery_sum,
        select_sql=" UNION ALL BY NAME ".join(f"({g.select_sql()})" for g in groups),
        periods=periods,
        extra_columns=extra,
        notes=[*sorted({n for g in groups for n in g.plan_notes}), *notes],
        cleanup=local.cleanup,
    )


def default_source(location: str) -> str:
    """A stable source name from a URI: the last folder that is not a period or file name.

    `s3://bucket/exports/focus/2026-05/part-0.parquet` and `.../2026-06/` both give `focus`,
    so monthly deliveries of one export replace their own months, not each other's.
    """
    parts = [p for p in PurePosixPath(location.removeprefix("s3://")).parts if p not in ("/", "")]
    while parts and (
        _PERIOD_LIKE.match(parts[-1])
        or any(ch in parts[-1] for ch in "*?[")
        or parts[-1].lower().endswith(SUFFIXES)
    ):
        parts.pop()
    return parts[-1] if parts else "focus"


# --- planning: which file columns become which FOCUS columns, and how ------------------


def _plan_group(local: LocalFiles, layout: Layout, files: tuple[Path, ...]) -> FileGroup:
    group = FileGroup(layout, files)
    mapped: dict[str, tuple[str, str]] = {}
    for raw, raw_type in layout.columns:
        name = _canonical_name(raw.strip(), group)
        if name is None:
            continue
        if name in mapped:
            raise IngestError(
                f"{local.name(files[0])}: columns {mapped[name][0]!r} and {raw!r} both mean {name}"
            )
        mapped[name] = (raw, raw_type)

    missing = [c for c in REQUIRED_COLUMNS if c not in mapped]
    if "ProviderName" not in mapped and "ServiceProviderName" not in mapped:
        missing.append("ProviderName")
    if missing:
        raise IngestError(
            f"{local.name(files[0])}: missing mandatory FOCUS column(s) {', '.join(missing)} "
            f"(found: {', '.join(raw for raw, _ in layout.columns)})"
        )
    _note_version(mapped, group)
    for name, (raw, raw_type) in mapped.items():
        _plan_column(group, name, raw, raw_type)
    _fill_from_provider(group, mapped)
    group.items.setdefault("Tags", f"CAST(NULL AS {COLUMNS_BY_NAME['Tags'].sql_type})")
    return group


def _canonical_name(raw: str, group: FileGroup) -> str | None:
    if raw in WAREHOUSE_COLUMNS:
        group.plan_notes.append(f"column {raw} in the file was ignored (finops sets it)")
        return None
    if raw in COLUMNS_BY_NAME:
        return raw
    if raw.lower() in _FOCUS_LOWER:
        name = _FOCUS_LOWER[raw.lower()]
        group.plan_notes.append(f"column {raw!r} read as {name}")
        return name
    if raw.startswith("x_"):
        return raw
    name = "x_" + re.sub(r"\W+", "_", raw).strip("_")
    group.plan_notes.append(f"custom column {raw!r} kept as {name}")
    return name


def _note_version(mapped: dict[str, tuple[str, str]], group: FileGroup) -> None:
    versions = {COLUMNS_BY_NAME[n].since for n in mapped if n in COLUMNS_BY_NAME}
    newest = max((v for v in versions if v[0].isdigit()), default="1.0")
    group.plan_notes.append(f"columns of FOCUS {newest} detected")


def _fill_from_provider(group: FileGroup, mapped: dict[str, tuple[str, str]]) -> None:
    """Mandatory provider columns that a file leaves out take the provider's name."""
    provider_raw = mapped.get("ProviderName") or mapped.get("ServiceProviderName")
    assert provider_raw is not None
    provider = _text_expr(provider_raw[0], provider_raw[1])
    for name in ("ProviderName", "PublisherName", "InvoiceIssuerName"):
        if name not in mapped:
            group.items[name] = provider
            source = "ProviderName" if "ProviderName" in mapped else "ServiceProviderName"
            group.plan_notes.append(f"{name} absent: filled from {source}")


def _text_expr(raw: str, raw_type: str) -> str:
    """The column as text (the group's reader has cleaned text columns already)."""
    return ident(raw) if raw_type == "VARCHAR" else f"CAST({ident(raw)} AS VARCHAR)"


def _plan_column(group: FileGroup, name: str, raw: str, raw_type: str) -> None:
    column = COLUMNS_BY_NAME.get(name)
    if column is None:
        group.items[name] = ident(raw)
        group.extra_columns[name] = raw_type
        return
    value = ident(raw)
    expr = _PLANNERS[column.kind](group, column, value, raw_type)
    if name in REQUIRED_COLUMNS or name in ("ProviderName", "ServiceProviderName"):
        group.checks.append(
            Check(
                name,
                value,
                f"({expr}) IS NULL AND {value} IS NULL",
                "is empty, but the column is mandatory",
            )
        )
    group.items[name] = expr


def _plan_text(group: FileGroup, column: Column, value: str, raw_type: str) -> str:
    text = value if raw_type == "VARCHAR" else f"CAST({value} AS VARCHAR)"
    allowed = ALLOWED_VALUES.get(column.name)
    if not allowed:
        return text
    spelled = " ".join(f"WHEN {sql_string(_squash(v))} THEN {sql_string(v)}" for v in allowed)
    exact = ", ".join(sql_string(v) for v in allowed)
    squashed = f"regexp_replace(lower({text}), '[^a-z0-9]', '', 'g')"
    expr = f"(CASE WHEN {text} IN ({exact}) THEN {text} ELSE (CASE {squashed} {spelled} END) END)"
    group.checks.append(
        Check(
            column.name,
            text,
            f"{text} IS NOT NULL AND ({expr}) IS NULL",
            f"is not an allowed value ({', '.join(allowed)})",
        )
    )
    group.counted_notes.append(
        (
            f"{text} IS NOT NULL AND {text} NOT IN ({exact}) AND ({expr}) IS NOT NULL",
            f"{column.name} values re-spelled to FOCUS's allowed values",
        )
    )
    return expr


def _squash(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


def _plan_number(group: FileGroup, column: Column, value: str, raw_type: str) -> str:
    expr = f"TRY_CAST({value} AS {column.sql_type})"
    if raw_type.startswith("DECIMAL") or raw_type in _NUMERIC_TYPES + _UBIGINT:
        if raw_type in ("FLOAT", "DOUBLE"):
            group.checks.append(
                Check(
                    column.name,
                    value,
                    f"{value} IS NOT NULL AND {expr} IS NULL",
                    "is not a finite number",
                )
            )
        return expr
    group.checks.append(
        Check(column.name, value, f"{value} IS NOT NULL AND {expr} IS NULL", "is not a number")
    )
    return expr


def _plan_timestamp(group: FileGroup, column: Column, value: str, raw_type: str) -> str:
    expr = f"TRY_CAST({value} AS TIMESTAMPTZ)"
    if raw_type != "VARCHAR":
        return expr
    group.checks.append(
        Check(column.name, value, f"{value} IS NOT NULL AND {expr} IS NULL", "is not a date/time")
    )
    group.counted_notes.append(
        (
            f"{value} IS NOT NULL AND NOT regexp_full_match({value}, '\\d{{4}}-\\d{{2}}-\\d{{2}}T\\d{{2}}:\\d{{2}}:\\d{{2}}(\\.\\d+)?Z')",
            f"{column.name} values not in FOCUS's YYYY-MM-DDTHH:mm:ssZ form, read as UTC",
        )
    )
    return expr


def _plan_currency(group: FileGroup, column: Column, value: str, raw_type: str) -> str:
    text = f"upper({value if raw_type == 'VARCHAR' else f'CAST({value} AS VARCHAR)'})"
    if column.name != "BillingCurrency":
        return text  # PricingCurrency may be a virtual currency (credits, tokens).
    codes = ", ".join(sql_string(c) for c in _CURRENCIES)
    expr = f"(CASE WHEN {text} IN ({codes}) THEN {text} END)"
    group.checks.append(
        Check(
            column.name,
            value,
            f"{value} IS NOT NULL AND {expr} IS NULL",
            "is not an ISO 4217 currency code",
        )
    )
    return expr


def _plan_key_value(group: FileGroup, column: Column, value: str, raw_type: str) -> str:
    if raw_type.startswith("MAP"):
        return f"CAST({value} AS {column.sql_type})"
    if raw_type.startswith("STRUCT"):
        return f"CAST(to_json({value}) AS {column.sql_type})"
    expr = (
        f"(CASE WHEN json_valid({value}) AND json_type(CAST({value} AS JSON)) = 'OBJECT' "
        f"THEN CAST(CAST({value} AS JSON) AS {column.sql_type}) END)"
    )
    group.checks.append(
        Check(
            column.name,
            value,
            f"{value} IS NOT NULL AND {expr} IS NULL",
            "is not a JSON object of key-value pairs",
        )
    )
    return expr


def _plan_json(group: FileGroup, column: Column, value: str, raw_type: str) -> str:
    if raw_type != "VARCHAR":
        return f"to_json({value})"
    expr = f"(CASE WHEN json_valid({value}) THEN CAST({value} AS JSON) END)"
    group.checks.append(
        Check(column.name, value, f"{value} IS NOT NULL AND {expr} IS NULL", "is not valid JSON")
    )
    return expr


_PLANNERS: dict[Kind, Callable[[FileGroup, Column, str, str], str]] = {
    Kind.TEXT: _plan_text,
    Kind.CURRENCY: _plan_currency,
    Kind.MONEY: _plan_number,
    Kind.QUANTITY: _plan_number,
    Kind.TIMESTAMP: _plan_timestamp,
    Kind.KEY_VALUE: _plan_key_value,
    Kind.JSON: _plan_json,
}
