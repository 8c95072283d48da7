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

import csv
import gzip
import io
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePosixPath

import duckdb
import pycountry

from finops.collectors.locations import LocalFiles, checksum, resolve
from finops.collectors.problems import refuse
from finops.errors import IngestError
from finops.warehouse import CostDelivery, PeriodStats
from finops.warehouse.schema import (
    ALLOWED_VALUES,
    COLUMNS_BY_NAME,
    REQUIRED_COLUMNS,
    WAREHOUSE_COLUMNS,
    Column,
    Kind,
)

SUFFIXES = (".parquet", ".csv", ".csv.gz")
VALIDATION_MEMORY_LIMIT = "1GB"
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
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            digest = pool.submit(checksum, local)
            # Validation only aggregates, so a modest cap keeps a large delivery's RSS low.
            conn = duckdb.connect(config={"memory_limit": VALIDATION_MEMORY_LIMIT})
            try:
                conn.execute("SET TimeZone = 'UTC'")
                groups = [
                    _plan_group(local, layout, files) for layout, files in _by_layout(conn, local)
                ]
                periods, notes = _validate(conn, local, groups)
            finally:
                conn.close()
            delivery_sum = digest.result()
    except BaseException:
        if local.cleanup:
            local.cleanup()
        raise
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


@dataclass(frozen=True)
class _Check:
    column: str
    raw_sql: str
    bad_sql: str
    problem: str
    """Says what is wrong with the offending value, e.g. 'is not a number'."""


@dataclass(frozen=True)
class _Layout:
    """A file's format and columns (and, for CSV, its delimiter): files that share one are read together."""

    fmt: str
    columns: tuple[tuple[str, str], ...]
    delimiter: str = ","


@dataclass
class _Group:
    """Files with one layout, read by one DuckDB table function."""

    layout: _Layout
    files: tuple[Path, ...]
    items: dict[str, str] = field(default_factory=dict)
    """FOCUS column name -> the SQL expression that yields it from the file's columns."""
    checks: list[_Check] = field(default_factory=list)
    counted_notes: list[tuple[str, str]] = field(default_factory=list)
    """(SQL condition, note) pairs: the note is shown with how many rows matched."""
    plan_notes: list[str] = field(default_factory=list)
    extra_columns: dict[str, str] = field(default_factory=dict)

    @property
    def fmt(self) -> str:
        return self.layout.fmt

    def reader(self, files: tuple[Path, ...] | None = None, *, filename: bool = True) -> str:
        paths = ", ".join(_sql_string(str(p)) for p in (files or self.files))
        flag = ", filename = true" if filename else ""
        if self.fmt == "parquet":
            return f"read_parquet([{paths}], union_by_name = true{flag})"
        # The header was read already: naming the columns spares DuckDB sniffing every file.
        columns = ", ".join(f"{_sql_string(name)}: 'VARCHAR'" for name, _ in self.layout.columns)
        return (
            f"read_csv([{paths}], header = true, auto_detect = false, "
            f"delim = {_sql_string(self.layout.delimiter)}, quote = '\"', escape = '\"', "
            f"columns = {{{columns}}}{flag})"
        )

    def select_sql(self) -> str:
        columns = ", ".join(f"{expr} AS {_ident(name)}" for name, expr in self.items.items())
        return f"SELECT {columns} FROM {self.reader(filename=False)}"


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _by_layout(
    conn: duckdb.DuckDBPyConnection, local: LocalFiles
) -> list[tuple[_Layout, tuple[Path, ...]]]:
    """Group files that share a layout, so each group is one scan."""
    layouts: dict[_Layout, list[Path]] = {}
    for path in local.files:
        layout = (
            _parquet_layout(conn, local, path)
            if path.name.lower().endswith(".parquet")
            else _csv_layout(local, path)
        )
        layouts.setdefault(layout, []).append(path)
    return [(layout, tuple(files)) for layout, files in layouts.items()]


def _parquet_layout(conn: duckdb.DuckDBPyConnection, local: LocalFiles, path: Path) -> _Layout:
    try:
        rows = conn.execute(
            f"DESCRIBE SELECT * FROM read_parquet({_sql_string(str(path))})"
        ).fetchall()
    except duckdb.Error as exc:
        raise IngestError(f"{local.name(path)}: cannot read as Parquet: {exc}") from None
    return _Layout("parquet", tuple((str(name), str(sql_type)) for name, sql_type, *_ in rows))


def _csv_layout(local: LocalFiles, path: Path) -> _Layout:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            sample = handle.read(64 * 1024)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise IngestError(f"{local.name(path)}: cannot read as CSV: {exc}") from None
    try:
        delimiter = csv.Sniffer().sniff(sample.partition("\n")[0], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    header = next(csv.reader(io.StringIO(sample), delimiter=delimiter), [])
    if not header:
        raise IngestError(f"{local.name(path)}: empty file, expected a header row of FOCUS columns")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise IngestError(
            f"{local.name(path)}: column(s) {', '.join(repeated)} appear more than once in the header"
        )
    return _Layout("csv", tuple((name, "VARCHAR") for name in header), delimiter)


def _plan_group(local: LocalFiles, layout: _Layout, files: tuple[Path, ...]) -> _Group:
    group = _Group(layout, files)
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


def _canonical_name(raw: str, group: _Group) -> str | None:
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


def _note_version(mapped: dict[str, tuple[str, str]], group: _Group) -> None:
    versions = {COLUMNS_BY_NAME[n].since for n in mapped if n in COLUMNS_BY_NAME}
    newest = max((v for v in versions if v[0].isdigit()), default="1.0")
    group.plan_notes.append(f"columns of FOCUS {newest} detected")


def _fill_from_provider(group: _Group, mapped: dict[str, tuple[str, str]]) -> None:
    """Mandatory provider columns that a file leaves out take the provider's name."""
    provider_raw = mapped.get("ProviderName") or mapped.get("ServiceProviderName")
    assert provider_raw is not None
    provider = _text_expr(provider_raw[0], provider_raw[1], group.fmt)
    for name in ("ProviderName", "PublisherName", "InvoiceIssuerName"):
        if name not in mapped:
            group.items[name] = provider
            source = "ProviderName" if "ProviderName" in mapped else "ServiceProviderName"
            group.plan_notes.append(f"{name} absent: filled from {source}")


def _clean(raw: str, raw_type: str, fmt: str) -> str:
    """The raw value with placeholder nulls ('', 'NULL', 'null') turned into real NULLs."""
    value = f"trim({_ident(raw)})" if fmt == "csv" else _ident(raw)
    if raw_type != "VARCHAR":
        return _ident(raw)
    return f"(CASE WHEN {value} IN ('', 'NULL', 'null', 'Null') THEN NULL ELSE {value} END)"


def _text_expr(raw: str, raw_type: str, fmt: str) -> str:
    cleaned = _clean(raw, raw_type, fmt)
    return cleaned if raw_type == "VARCHAR" else f"CAST({cleaned} AS VARCHAR)"


def _plan_column(group: _Group, name: str, raw: str, raw_type: str) -> None:
    column = COLUMNS_BY_NAME.get(name)
    if column is None:
        group.items[name] = _clean(raw, raw_type, group.fmt)
        group.extra_columns[name] = raw_type
        return
    value = _clean(raw, raw_type, group.fmt)
    expr = _PLANNERS[column.kind](group, column, value, raw_type)
    if name in REQUIRED_COLUMNS or name in ("ProviderName", "ServiceProviderName"):
        group.checks.append(
            _Check(
                name,
                value,
                f"({expr}) IS NULL AND {value} IS NULL",
                "is empty, but the column is mandatory",
            )
        )
    group.items[name] = expr


def _plan_text(group: _Group, column: Column, value: str, raw_type: str) -> str:
    text = value if raw_type == "VARCHAR" else f"CAST({value} AS VARCHAR)"
    allowed = ALLOWED_VALUES.get(column.name)
    if not allowed:
        return text
    spelled = " ".join(f"WHEN {_sql_string(_squash(v))} THEN {_sql_string(v)}" for v in allowed)
    exact = ", ".join(_sql_string(v) for v in allowed)
    squashed = f"regexp_replace(lower({text}), '[^a-z0-9]', '', 'g')"
    expr = f"(CASE WHEN {text} IN ({exact}) THEN {text} ELSE (CASE {squashed} {spelled} END) END)"
    group.checks.append(
        _Check(
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


def _plan_number(group: _Group, column: Column, value: str, raw_type: str) -> str:
    expr = f"TRY_CAST({value} AS {column.sql_type})"
    if raw_type.startswith("DECIMAL") or raw_type in _NUMERIC_TYPES + _UBIGINT:
        if raw_type in ("FLOAT", "DOUBLE"):
            group.checks.append(
                _Check(
                    column.name,
                    value,
                    f"{value} IS NOT NULL AND {expr} IS NULL",
                    "is not a finite number",
                )
            )
        return expr
    group.checks.append(
        _Check(column.name, value, f"{value} IS NOT NULL AND {expr} IS NULL", "is not a number")
    )
    return expr


def _plan_timestamp(group: _Group, column: Column, value: str, raw_type: str) -> str:
    expr = f"TRY_CAST({value} AS TIMESTAMPTZ)"
    if raw_type != "VARCHAR":
        return expr
    group.checks.append(
        _Check(column.name, value, f"{value} IS NOT NULL AND {expr} IS NULL", "is not a date/time")
    )
    group.counted_notes.append(
        (
            f"{value} IS NOT NULL AND NOT regexp_full_match({value}, '\\d{{4}}-\\d{{2}}-\\d{{2}}T\\d{{2}}:\\d{{2}}:\\d{{2}}(\\.\\d+)?Z')",
            f"{column.name} values not in FOCUS's YYYY-MM-DDTHH:mm:ssZ form, read as UTC",
        )
    )
    return expr


def _plan_currency(group: _Group, column: Column, value: str, raw_type: str) -> str:
    text = f"upper({value if raw_type == 'VARCHAR' else f'CAST({value} AS VARCHAR)'})"
    if column.name != "BillingCurrency":
        return text  # PricingCurrency may be a virtual currency (credits, tokens).
    codes = ", ".join(_sql_string(c) for c in _CURRENCIES)
    expr = f"(CASE WHEN {text} IN ({codes}) THEN {text} END)"
    group.checks.append(
        _Check(
            column.name,
            value,
            f"{value} IS NOT NULL AND {expr} IS NULL",
            "is not an ISO 4217 currency code",
        )
    )
    return expr


def _plan_key_value(group: _Group, column: Column, value: str, raw_type: str) -> str:
    if raw_type.startswith("MAP"):
        return f"CAST({value} AS {column.sql_type})"
    if raw_type.startswith("STRUCT"):
        return f"CAST(to_json({value}) AS {column.sql_type})"
    expr = (
        f"(CASE WHEN json_valid({value}) AND json_type(CAST({value} AS JSON)) = 'OBJECT' "
        f"THEN CAST(CAST({value} AS JSON) AS {column.sql_type}) END)"
    )
    group.checks.append(
        _Check(
            column.name,
            value,
            f"{value} IS NOT NULL AND {expr} IS NULL",
            "is not a JSON object of key-value pairs",
        )
    )
    return expr


def _plan_json(group: _Group, column: Column, value: str, raw_type: str) -> str:
    if raw_type != "VARCHAR":
        return f"to_json({value})"
    expr = f"(CASE WHEN json_valid({value}) THEN CAST({value} AS JSON) END)"
    group.checks.append(
        _Check(column.name, value, f"{value} IS NOT NULL AND {expr} IS NULL", "is not valid JSON")
    )
    return expr


_PLANNERS: dict[Kind, Callable[[_Group, Column, str, str], str]] = {
    Kind.TEXT: _plan_text,
    Kind.CURRENCY: _plan_currency,
    Kind.MONEY: _plan_number,
    Kind.QUANTITY: _plan_number,
    Kind.TIMESTAMP: _plan_timestamp,
    Kind.KEY_VALUE: _plan_key_value,
    Kind.JSON: _plan_json,
}


# --- validation: one pass per group for problems, notes and per-period figures ---------


def _validate(
    conn: duckdb.DuckDBPyConnection, local: LocalFiles, groups: list[_Group]
) -> tuple[tuple[PeriodStats, ...], list[str]]:
    rows_by_period: dict[object, int] = {}
    days_by_period: dict[object, set[object]] = {}
    billed: dict[object, Decimal] = {}
    effective: dict[object, Decimal] = {}
    note_counts: dict[str, int] = {}
    problems: list[str] = []
    for group in groups:
        items = group.items
        counts_sql = [f"count_if({c.bad_sql})" for c in group.checks]
        counts_sql += [f"count_if({cond})" for cond, _ in group.counted_notes]
        sql = f"""
            SELECT filename,
                   {items["BillingPeriodStart"]} AS period,
                   CAST({items["ChargePeriodStart"]} AS DATE) AS day,
                   count(*),
                   sum({items["BilledCost"]}),
                   sum({items["EffectiveCost"]})
                   {"".join(", " + e for e in counts_sql)}
            FROM {group.reader()}
            GROUP BY ALL
        """
        try:
            rows = conn.execute(sql).fetchall()
        except duckdb.Error as exc:
            raise IngestError(f"{local.uri}: cannot read: {exc}") from None
        n_checks = len(group.checks)
        per_file_problems: dict[tuple[str, int], int] = {}
        for filename, period, day, n, billed_sum, effective_sum, *counts in rows:
            for index, count in enumerate(counts[:n_checks]):
                if count:
                    key = (filename, index)
                    per_file_problems[key] = per_file_problems.get(key, 0) + count
            for (_, note), count in zip(group.counted_notes, counts[n_checks:], strict=True):
                note_counts[note] = note_counts.get(note, 0) + count
            if period is None:
                continue
            rows_by_period[period] = rows_by_period.get(period, 0) + n
            days_by_period.setdefault(period, set()).add(day)
            billed[period] = billed.get(period, Decimal(0)) + (billed_sum or Decimal(0))
            effective[period] = effective.get(period, Decimal(0)) + (effective_sum or Decimal(0))
        problems += [
            _locate(conn, local, group, Path(filename), group.checks[index], count)
            for (filename, index), count in sorted(per_file_problems.items())
        ]
    if problems:
        raise refuse(local.uri, problems)
    periods = tuple(
        PeriodStats(
            start,
            len(days_by_period[start] - {None}),
            rows_by_period[start],
            billed[start],
            effective[start],
        )
        for start in sorted(rows_by_period)
    )
    notes = [f"{note}: {count} row(s)" for note, count in sorted(note_counts.items()) if count]
    return periods, notes


def _locate(
    conn: duckdb.DuckDBPyConnection,
    local: LocalFiles,
    group: _Group,
    path: Path,
    check: _Check,
    count: int,
) -> str:
    """Describe the first offending row of `path` for `check` (rows count from 1, header excluded)."""
    if group.fmt == "parquet":
        sql = f"""
            SELECT file_row_number + 1, CAST({check.raw_sql} AS VARCHAR)
            FROM read_parquet({_sql_string(str(path))}, file_row_number = true)
            WHERE {check.bad_sql} ORDER BY 1 LIMIT 1
        """
        row = conn.execute(sql).fetchone()
    else:
        # A single-threaded scan reads the file in order, so row_number() is the file row.
        ordered = duckdb.connect(config={"threads": 1})
        try:
            ordered.execute("SET TimeZone = 'UTC'")
            sql = f"""
                SELECT rn, CAST(raw AS VARCHAR) FROM (
                    SELECT row_number() OVER () AS rn, {check.raw_sql} AS raw, ({check.bad_sql}) AS bad
                    FROM {group.reader((path,), filename=False)}
                ) WHERE bad ORDER BY rn LIMIT 1
            """
            row = ordered.execute(sql).fetchone()
        finally:
            ordered.close()
    where = f"{local.name(path)}, row {row[0]}" if row else local.name(path)
    value = "" if row is None or row[1] is None else f"{row[1]!r} "
    others = f" ({count - 1} more row(s) like it)" if count > 1 else ""
    return f"{where}, column {check.column}: {value}{check.problem}{others}"
