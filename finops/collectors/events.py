"""Delivery and quality events from CSV or JSON-lines files, or from one command's options.

Which events a file holds comes from `--kind`, else from its name (`deploys.csv`,
`incidents-2026-05.jsonl`: the kind's name, its table's name or a plural, optionally
followed by `-`, `_` or `.` and anything), else from each record's own `kind` field, which
lets one spool file mix kinds. The fields are the tables' columns (see
`finops.warehouse.events`); CSV cells and JSON values are read as text and checked here.

Timestamps are ISO 8601; one without a UTC offset is read in `time_zone` (finops.yaml's,
by default), so local wall-clock times across a DST change become the right instants.
`commit_shas` is a JSON list or text separated by commas, semicolons or spaces; `metrics`
is a JSON object of numbers (in CSV, JSON text in the cell); a KPI input's `period` is a
month, fiscal quarter or date range as `--period` takes it.

Refused, naming the file, the row (CSV, counting data rows from 1) or line (JSON lines)
and the field: a line that is not a JSON object, an unknown field or column, a missing
required field, a value that is not a timestamp, number, ratio (0-1), currency or period,
a value outside a field's choices, an end before its start, a KPI money figure without a
currency or a count with one. Nothing is stored unless every record passes. An event sent
twice in one delivery counts once: the later one (by file name, then position) is kept.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pycountry

from finops.collectors.locations import LocalFiles, resolve
from finops.collectors.problems import refuse
from finops.collectors.scan import ident, scratch_database, sql_string
from finops.errors import ConfigError
from finops.periods import parse_period
from finops.warehouse.events import (
    EVENT_KINDS,
    KPI_CATEGORY_OF_METRIC,
    EventDelivery,
    EventField,
    EventKind,
)

SUFFIXES = (".csv", ".jsonl", ".ndjson")
SOURCE = "events"
_SHOWN_VALUE_CHARS = 60
_KIND_NAMES: dict[str, str] = {
    alias: kind.name
    for kind in EVENT_KINDS.values()
    for alias in (kind.name, f"{kind.name}s", kind.table, *kind.file_names)
}
_TIMESTAMP_HINT = "is not a timestamp (ISO 8601, e.g. 2026-05-01T10:00:00Z)"
_CURRENCIES = sorted(c.alpha_3 for c in pycountry.currencies)


@dataclass(frozen=True)
class Fiscal:
    """How KPI periods such as 2026-Q2 are read (finops.yaml's fiscal year)."""

    start_month: int = 1
    label: str = "start"


def read_events(
    location: str,
    *,
    kind: str | None = None,
    time_zone: str = "UTC",
    fiscal: Fiscal = Fiscal(),
) -> EventDelivery:
    """Read and validate event files (a file, folder, glob, s3:// or gs:// location)."""
    chosen = _kind_named(kind) if kind else None
    local = resolve(location, SUFFIXES)
    try:
        with scratch_database() as conn:
            _set_time_zone(conn, time_zone)
            _load_files(conn, local, chosen)
            return _delivery(conn, location, fiscal)
    finally:
        if local.cleanup:
            local.cleanup()


def event_from_options(
    kind: str,
    values: dict[str, Any],
    *,
    time_zone: str = "UTC",
    fiscal: Fiscal = Fiscal(),
) -> EventDelivery:
    """One event given as field values (a command's options), checked like a file's."""
    chosen = _kind_named(kind)
    given = {name: value for name, value in values.items() if value not in (None, [], "")}
    with scratch_database() as conn:
        _set_time_zone(conn, time_zone)
        conn.execute(
            """
            CREATE TEMP TABLE raw AS
            SELECT 0 AS file_index, ? AS file, 'event' AS unit, 1 AS pos, true AS is_object,
                   CAST(? AS JSON) AS doc, ? AS file_kind
            """,
            [f"finops event {chosen}", json.dumps(given), chosen],
        )
        return _delivery(conn, f"finops event {chosen}", fiscal)


def spool_line(delivery: EventDelivery) -> str:
    """The delivery's one event as a JSON line with its kind, instants in UTC, for a spool file."""
    ((name, table),) = delivery.tables.items()
    (record,) = table.drop_columns(
        [c for c in ("period_start", "period_end") if c in table.column_names]
    ).to_pylist()
    return json.dumps({"kind": name, **{k: _json_value(v) for k, v in record.items()}}) + "\n"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return str(value.normalize())
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        return dict(value)  # a MAP comes out of Arrow as (key, value) pairs
    return value


def default_source(location: str) -> str:
    """`events`: the same events read from anywhere are one source, stored once by id."""
    return SOURCE


def _kind_named(name: str) -> str:
    found = _KIND_NAMES.get(name.strip().lower())
    if found is None:
        raise ConfigError(
            f"event kind {name!r} not understood: use one of {', '.join(EVENT_KINDS)}"
        )
    return found


def _set_time_zone(conn: duckdb.DuckDBPyConnection, time_zone: str) -> None:
    try:
        conn.execute(f"SET TimeZone = {sql_string(time_zone)}")
    except duckdb.Error:
        raise ConfigError(f"time zone {time_zone!r} is not an IANA time zone") from None


def _file_kind(path: Path) -> str | None:
    stem = path.name.lower()
    for suffix in SUFFIXES:
        stem = stem.removesuffix(suffix)
    for alias, name in sorted(_KIND_NAMES.items(), key=lambda item: -len(item[0])):
        if stem == alias or stem.startswith((f"{alias}-", f"{alias}_", f"{alias}.")):
            return name
    return None


# --- loading: every record as (file, position, JSON object) ------------------------------


def _load_files(conn: duckdb.DuckDBPyConnection, local: LocalFiles, chosen: str | None) -> None:
    conn.execute(
        """
        CREATE TEMP TABLE raw (file_index INTEGER, file VARCHAR, unit VARCHAR, pos BIGINT,
                               is_object BOOLEAN, doc JSON, file_kind VARCHAR)
        """
    )
    header_problems: list[str] = []
    for index, path in enumerate(local.files):
        display = local.name(path)
        file_kind = chosen or _file_kind(path)
        if path.name.lower().endswith(".csv"):
            header_problems += _load_csv(conn, index, path, display, file_kind)
        else:
            _load_json_lines(conn, index, path, display, file_kind)
    if header_problems:
        raise refuse(local.uri, header_problems)


def _load_csv(
    conn: duckdb.DuckDBPyConnection, index: int, path: Path, display: str, file_kind: str | None
) -> list[str]:
    """Load a CSV file's rows as JSON objects; return problems with its header."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    if not header:
        return []
    known = _known_fields(file_kind)
    problems = [
        f"{display}, column {name!r}: unknown column (check its spelling)"
        for name in header
        if name not in known
    ]
    if problems:
        return problems
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header}, strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        return [f"{display}: not a readable CSV file: {exc}"]
    table = table.append_column("pos", pa.array(np.arange(1, table.num_rows + 1)))
    fields = ", ".join(f"{sql_string(name)}: {ident(name)}" for name in header)
    conn.register("csv_rows", table)
    try:
        conn.execute(
            f"""
            INSERT INTO raw
            SELECT ?, ?, 'row', pos, true, to_json({{{fields}}}), ? FROM csv_rows
            """,
            [index, display, file_kind],
        )
    finally:
        conn.unregister("csv_rows")
    return []


def _load_json_lines(
    conn: duckdb.DuckDBPyConnection, index: int, path: Path, display: str, file_kind: str | None
) -> None:
    # Each line with its number, from the whole text: deterministic, and files of events
    # are small. Blank lines are skipped but keep the numbering.
    conn.execute(
        """
        INSERT INTO raw
        SELECT ?, ?, 'line', pos, is_object,
               CASE WHEN is_object THEN TRY_CAST(text AS JSON) END, ?
        FROM (
            SELECT pos, text,
                   coalesce(CASE WHEN json_valid(text) THEN json_type(text) END = 'OBJECT', false)
                       AS is_object
            FROM (
                SELECT generate_subscripts(lines, 1) AS pos, unnest(lines) AS text
                FROM (SELECT string_split(replace(content, chr(13), ''), chr(10)) AS lines
                      FROM read_text(?))
            )
            WHERE trim(text) <> ''
        )
        """,
        [index, display, file_kind, str(path)],
    )


def _known_fields(file_kind: str | None) -> set[str]:
    kinds = [EVENT_KINDS[file_kind]] if file_kind else list(EVENT_KINDS.values())
    return {"kind"} | {f.name for kind in kinds for f in kind.fields}


# --- validating and typing ---------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    field: str | None
    bad_sql: str
    problem_sql: str
    """A SQL text expression: what is wrong (may quote other fields)."""


def _delivery(conn: duckdb.DuckDBPyConnection, uri: str, fiscal: Fiscal) -> EventDelivery:
    conn.register(
        "kind_names", pa.table({"alias": list(_KIND_NAMES), "name": list(_KIND_NAMES.values())})
    )
    conn.register(
        "kind_fields",
        pa.table(
            {
                "name": list(EVENT_KINDS),
                "known_fields": [sorted(_known_fields(name)) for name in EVENT_KINDS],
            }
        ),
    )
    conn.execute(
        """
        CREATE TEMP TABLE records AS
        SELECT raw.*, doc->>'kind' AS kind_given, k.name AS kind_named,
               coalesce(file_kind, k.name) AS kind, f.known_fields
        FROM raw
        LEFT JOIN kind_names k ON k.alias = lower(trim(doc->>'kind'))
        LEFT JOIN kind_fields f ON f.name = coalesce(file_kind, k.name)
        """
    )
    problems = _problems(conn, _record_checks(), "records", uri)
    kinds = [
        name
        for (name,) in conn.execute(
            "SELECT DISTINCT kind FROM records WHERE kind IS NOT NULL AND is_object ORDER BY kind"
        ).fetchall()
    ]
    for name in kinds:
        _stage(conn, EVENT_KINDS[name])
        problems += _problems(conn, _field_checks(EVENT_KINDS[name]), f"staged_{name}", uri)
    if problems:
        problems.sort(key=lambda p: p[0])
        raise refuse(uri, [text for _, text in problems])
    notes: list[str] = []
    tables: dict[str, pa.Table] = {}
    for name in kinds:
        kind = EVENT_KINDS[name]
        if any(f.kind == "period" for f in kind.fields):
            _resolve_periods(conn, name, fiscal, uri)
        tables[name], repeated = _typed(conn, kind)
        if repeated:
            notes.append(f"{repeated} {name} event(s) sent more than once: the last one kept")
    return EventDelivery(uri, tables, notes)


def _record_checks() -> list[_Check]:
    kinds = ", ".join(EVENT_KINDS)
    return [
        _Check(None, "NOT is_object", "'is not a JSON object'"),
        _Check(
            "kind",
            "is_object AND kind_given IS NOT NULL AND kind_named IS NULL",
            f"'is not a kind of event (use one of {kinds})'",
        ),
        _Check(
            "kind",
            "is_object AND file_kind IS NOT NULL AND kind_named <> file_kind",
            "'does not match the file''s events (' || file_kind || ')'",
        ),
        _Check(
            "kind",
            "is_object AND kind_given IS NULL AND file_kind IS NULL",
            "'is missing: name the file after its events (deploys.csv, incidents.jsonl, ...), "
            "pass --kind, or give each record a kind'",
        ),
        _Check(
            None,
            "is_object AND kind IS NOT NULL "
            "AND len(list_filter(json_keys(doc), lambda k: NOT list_contains(known_fields, k))) > 0",
            "'unknown field(s) ' || array_to_string(list_filter(json_keys(doc), "
            "lambda k: NOT list_contains(known_fields, k)), ', ') || ' (check the spelling)'",
        ),
    ]


def _stage(conn: duckdb.DuckDBPyConnection, kind: EventKind) -> None:
    """One text (or JSON) column per field, for this kind's records."""
    columns = []
    for item in kind.fields:
        if item.kind in ("shas", "metrics"):
            columns.append(f"doc->{sql_string(item.name)} AS {item.name}")
        else:
            columns.append(f"nullif(trim(doc->>{sql_string(item.name)}), '') AS {item.name}")
    conn.execute(
        f"""
        CREATE TEMP TABLE staged_{kind.name} AS
        SELECT file_index, file, unit, pos, {", ".join(columns)}
        FROM records WHERE is_object AND kind = ?
        """,
        [kind.name],
    )


def _shas_sql(name: str) -> str:
    """A JSON list of strings, or text split on commas, semicolons and spaces."""
    return (
        f"CASE json_type({name}) WHEN 'ARRAY' THEN TRY_CAST({name} AS VARCHAR[]) "
        f"WHEN 'VARCHAR' THEN list_filter(string_split_regex(trim({name}->>'$'), '[,;\\s]+'), "
        "lambda s: s <> '') END"
    )


def _metrics_sql(name: str) -> str:
    """A JSON object of numbers, or (from a CSV cell) JSON text holding one."""
    obj = (
        f"CASE json_type({name}) WHEN 'OBJECT' THEN {name} "
        f"WHEN 'VARCHAR' THEN CASE WHEN json_valid({name}->>'$') THEN CAST({name}->>'$' AS JSON) END END"
    )
    return f"TRY_CAST({obj} AS MAP(VARCHAR, DOUBLE))"


def _field_checks(kind: EventKind) -> list[_Check]:
    checks: list[_Check] = []
    for item in kind.fields:
        checks += _checks_for(kind, item)
    pairs = {
        "deploy": [("finished_at", "started_at")],
        "incident": [("resolved_at", "created_at")],
        "page": [("acknowledged_at", "paged_at"), ("resolved_at", "paged_at")],
    }.get(kind.name, [])
    for later, earlier in pairs:
        checks.append(
            _Check(
                later,
                f"TRY_CAST({later} AS TIMESTAMPTZ) < TRY_CAST({earlier} AS TIMESTAMPTZ)",
                f"'is before {earlier} (' || {earlier} || ')'",
            )
        )
    if kind.name == "kpi":
        checks += _kpi_checks()
    return checks


def _checks_for(kind: EventKind, item: EventField) -> list[_Check]:
    name = item.name
    checks = []
    if item.required:
        checks.append(_Check(name, f"{name} IS NULL", "'is missing'"))
    if item.kind == "timestamp":
        checks.append(
            _Check(
                name,
                f"{name} IS NOT NULL AND TRY_CAST({name} AS TIMESTAMPTZ) IS NULL",
                f"'{_TIMESTAMP_HINT}'",
            )
        )
    elif item.kind == "ratio":
        checks.append(
            _Check(
                name,
                f"{name} IS NOT NULL AND NOT coalesce(TRY_CAST({name} AS DOUBLE) BETWEEN 0 AND 1, false)",
                "'is not a number from 0 to 1'",
            )
        )
    elif item.kind == "number":
        checks.append(
            _Check(
                name,
                f"{name} IS NOT NULL AND NOT coalesce(isfinite(TRY_CAST({name} AS DOUBLE)), false)",
                "'is not a number'",
            )
        )
    elif item.kind == "money":
        checks.append(
            _Check(
                name,
                f"{name} IS NOT NULL AND TRY_CAST({name} AS DECIMAL(38,10)) IS NULL",
                "'is not a number'",
            )
        )
    elif item.kind == "shas":
        checks.append(
            _Check(
                name,
                f"{name} IS NOT NULL AND json_type({name}) <> 'NULL' AND {_shas_sql(name)} IS NULL",
                "'is not a list of commit shas (a JSON list, or text separated by commas)'",
            )
        )
    elif item.kind == "metrics":
        value = _metrics_sql(name)
        checks.append(
            _Check(
                name,
                f"{name} IS NOT NULL AND json_type({name}) <> 'NULL' AND ({value} IS NULL "
                f"OR len(list_filter(map_values({value}), lambda v: v IS NULL)) > 0)",
                "'is not an object of numbers, e.g. {\"auc\": 0.93}'",
            )
        )
    if item.choices:
        options = ", ".join(item.choices)
        listed = ", ".join(sql_string(c) for c in item.choices)
        checks.append(
            _Check(
                name,
                f"{name} IS NOT NULL AND {name} NOT IN ({listed})",
                f"'must be one of {options}'",
            )
        )
    return checks


def _kpi_checks() -> list[_Check]:
    known = ", ".join(KPI_CATEGORY_OF_METRIC)
    category = _kpi_category_sql()
    return [
        _Check(
            "category",
            f"metric IS NOT NULL AND {category} IS NULL",
            f"'is missing: metric ' || metric || ' is not one of {known}, so say its category "
            "(value, engineering_cost, realised_savings or count)'",
        ),
        _Check(
            "currency",
            f"{category} IN ('value', 'engineering_cost', 'realised_savings') AND currency IS NULL",
            "'is missing: a money figure needs its ISO 4217 currency'",
        ),
        _Check(
            "currency",
            f"{category} = 'count' AND currency IS NOT NULL",
            "'must be empty: a count (' || metric || ') is not money'",
        ),
        _Check(
            "currency",
            "currency IS NOT NULL AND NOT list_contains(CAST(? AS VARCHAR[]), currency)",
            "'is not an ISO 4217 currency code'",
        ),
    ]


def _kpi_category_sql() -> str:
    whens = " ".join(
        f"WHEN {sql_string(metric)} THEN {sql_string(category)}"
        for metric, category in KPI_CATEGORY_OF_METRIC.items()
    )
    return f"coalesce(category, CASE metric {whens} END)"


def _problems(
    conn: duckdb.DuckDBPyConnection, checks: list[_Check], table: str, uri: str
) -> list[tuple[tuple[int, int, int], str]]:
    """Every failing (record, check) as (sort key, message naming file, position and field)."""
    parts, params = [], []
    for number, check in enumerate(checks):
        if check.field is None:
            value = "NULL"
        elif check.field == "kind" and table == "records":
            value = "kind_given"
        else:
            value = f"CAST({check.field} AS VARCHAR)"
        parts.append(
            f"SELECT file_index, pos, {number} AS check_no, file, unit, {value} AS value, "
            f"{check.problem_sql} AS problem FROM {table} WHERE {check.bad_sql}"
        )
        params += [_CURRENCIES] * (check.bad_sql.count("?") + check.problem_sql.count("?"))
    rows = conn.execute(" UNION ALL ".join(parts), params).fetchall()
    messages = []
    for file_index, pos, check_no, file, unit, value, problem in rows:
        field = checks[check_no].field
        where = file if unit == "event" else f"{file} {unit} {pos}"
        if field is None:
            text = f"{where}: {problem}"
        elif value is None:
            text = f"{where}, {field}: {problem}"
        else:
            shown = (
                value if len(value) <= _SHOWN_VALUE_CHARS else value[:_SHOWN_VALUE_CHARS] + "..."
            )
            text = f"{where}, {field}: {shown!r} {problem}"
        messages.append(((file_index, pos, check_no), text))
    return messages


def _resolve_periods(conn: duckdb.DuckDBPyConnection, name: str, fiscal: Fiscal, uri: str) -> None:
    """Parse the few distinct period labels in Python (the one period parser), then join."""
    labels = [
        label
        for (label,) in conn.execute(
            f"SELECT DISTINCT period FROM staged_{name} WHERE period IS NOT NULL"
        ).fetchall()
    ]
    parsed: dict[str, tuple[str, date, date]] = {}
    bad: list[str] = []
    for label in labels:
        try:
            period = parse_period(
                label, fiscal_year_start_month=fiscal.start_month, fiscal_year_label=fiscal.label
            )
        except ConfigError:
            bad.append(label)
            continue
        parsed[label] = (period.label, period.start, period.end)
    if bad:
        rows = conn.execute(
            f"""SELECT file, unit, pos, period FROM staged_{name}
                WHERE list_contains(?, period) ORDER BY file_index, pos""",
            [bad],
        ).fetchall()
        raise refuse(
            uri,
            [
                f"{file} {unit} {pos}, period: {label!r} is not a period "
                "(a month 2026-05, a quarter 2026-Q2 or days 2026-05-01..2026-06-30)"
                for file, unit, pos, label in rows
            ],
        )
    conn.register(
        "period_labels",
        pa.table(
            {
                "given": list(parsed),
                "label": [p[0] for p in parsed.values()],
                "start": pa.array([p[1] for p in parsed.values()], pa.date32()),
                "end": pa.array([p[2] for p in parsed.values()], pa.date32()),
            }
        ),
    )


def _typed(conn: duckdb.DuckDBPyConnection, kind: EventKind) -> tuple[pa.Table, int]:
    """The kind's events typed as its table's columns, one per id (the last sent wins)."""
    values: dict[str, str] = {}
    for item in kind.fields:
        name = item.name
        if item.kind == "shas":
            values[name] = _shas_sql(name)
        elif item.kind == "metrics":
            values[name] = _metrics_sql(name)
        elif item.kind == "period":
            values[name] = "p.label"
            values["period_start"] = "p.start"
            values["period_end"] = "p.end"
        elif item.kind == "text":
            values[name] = name
        else:
            values[name] = f"CAST({name} AS {item.sql_type})"
    if kind.name == "kpi":
        values["category"] = _kpi_category_sql()
    if kind.natural_key:
        parts = []
        for key in kind.natural_key:
            expr = values[key]
            if kind.field(key).kind == "timestamp":
                expr = f"strftime(timezone('UTC', {expr}), '%Y-%m-%dT%H:%M:%SZ')"
            parts.append(f"coalesce(CAST({expr} AS VARCHAR), '')")
        joined = " || '/' || ".join(parts)
        values[kind.id_column] = f"coalesce({kind.id_column}, {joined})"
    join = " LEFT JOIN period_labels p ON p.given = s.period" if "period_start" in values else ""
    selected = ", ".join(f"{expr} AS {ident(name)}" for name, expr in values.items())
    conn.execute(
        f"""
        CREATE TEMP TABLE typed_{kind.name} AS
        SELECT {selected}, row_number() OVER (
                   PARTITION BY {values[kind.id_column]} ORDER BY file_index DESC, pos DESC
               ) AS copy
        FROM staged_{kind.name} s{join}
        """
    )
    ((repeated,),) = conn.execute(
        f"SELECT count(*) FROM typed_{kind.name} WHERE copy > 1"
    ).fetchall()
    columns = ", ".join(ident(name) for name in kind.columns)
    table = conn.sql(
        f"SELECT {columns} FROM typed_{kind.name} WHERE copy = 1 ORDER BY {kind.id_column}"
    ).to_arrow_table()
    return table, int(repeated)
