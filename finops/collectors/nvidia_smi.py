"""nvidia-smi CSV logs (`nvidia-smi --query-gpu=... --format=csv -l N`), one file per host.

Files are found by `locations.resolve` (a file, a folder, a glob or s3://; .csv, .csv.gz,
.log, .txt). What is accepted, and normalised on the way in (each normalisation is said in
the run's notes):
- the fields in any order, with any extra fields (ignored); `index` and `hostname` are used
  when present; `name`/`gpu_name`, `uuid`/`gpu_uuid`, `pci.bus_id`/`gpu_bus_id` either way;
- units in the header (`memory.used [MiB]`) and in the values (`143771 MiB`), or only in the
  header (`nounits`); memory given in GiB, KiB, MB or GB becomes MiB, power in mW or kW W;
- placeholders `[N/A]`, `[Not Supported]`, `[Unknown Error]` (any bracketed text) and `N/A`,
  read as nulls (with MIG enabled, utilization.gpu is `[N/A]`);
- the header line again mid-file (nvidia-smi restarted, appending to the log): skipped;
- a last line without a line break (the log is still being written): skipped;
- blank lines and CRLF line ends.

Timestamps (`2026/07/03 22:10:46.109`) are in the host's local time, which `time_zone` (an
IANA name) names; they are converted to UTC, DST included. In the hour that repeats when DST
ends (a one-hour shift), a reading counts as summer time until the log's clock steps back
and as standard time after it.

Node: the `host` argument; else the `hostname` field; else the file name without its suffix
and any trailing date/time (`gpu-node-7-20260703.csv` -> `gpu-node-7`).
GPU index: the `index` field; else the order in which each uuid (or, without one, pci.bus_id)
first appears in its file, which is nvidia-smi's index order at the first timestamp; else a
line's position among the lines of its file that carry the same timestamp.

Refused, with the file, line and column named: a first line that is not a header (a
`noheader` log), a header without `timestamp`, an unknown unit, a line with another number
of fields than the header, a repeated header unlike the first, an unparsable timestamp, a
non-numeric value, a utilisation outside 0-100, an index that is not a whole number.

The header is read in Python; the lines are read once into an in-memory DuckDB database,
split and typed there by SQL, checked in one aggregate pass, and handed to the warehouse as
an Arrow table of `GPU_SAMPLE_COLUMNS`.
"""

from __future__ import annotations

import gzip
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb
import pyarrow as pa

from finops.collectors.locations import LocalFiles, checksum, resolve
from finops.collectors.problems import refuse
from finops.collectors.scan import scratch_database
from finops.errors import IngestError
from finops.warehouse import GpuDelivery

SUFFIXES = (".csv", ".csv.gz", ".log", ".txt")
SAMPLES_TABLE = "nvidia_smi_samples"
"""The name the delivery's Arrow table is registered under in the warehouse."""

_HEADER_FIELD = re.compile(r"([a-z][a-z0-9_.]*)\s*(?:\[([^\]]*)\])?", re.IGNORECASE)
_DATE_TIME_SUFFIX = re.compile(
    r"[-_.](?:19|20)\d{2}-?(?:0[1-9]|1[0-2])-?(?:0[1-9]|[12]\d|3[01])"
    r"(?:[-_T]?\d{2}(?:[-:]?\d{2}){0,2})?$"
)
# SQL fragments built from these constants only, never from a file's contents.
_NUMBER = r"'^([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*([A-Za-z%]*)$'"
_TIME_FORMATS = "['%Y/%m/%d %H:%M:%S.%f', '%Y/%m/%d %H:%M:%S']"
_SAMPLE = "kind = 'sample' AND n_fields = header_fields"
"""A data line whose fields line up with its header: only these are checked value by value."""

_MIB = {"MiB": 1.0, "GiB": 1024.0, "KiB": 1 / 1024, "MB": 1e6 / 2**20, "GB": 1e9 / 2**20}


@dataclass(frozen=True)
class _Field:
    key: str
    """Its name in the parsing SQL."""
    names: tuple[str, ...]
    """nvidia-smi's property names for it, the preferred first."""
    units: dict[str, float] | None = None
    """Accepted units with the factor to ours; the first is assumed when the header has none."""


_FIELDS = (
    _Field("ts", ("timestamp",)),
    _Field("idx", ("index",)),
    _Field("hostname", ("hostname",)),
    _Field("model", ("name", "gpu_name")),
    _Field("uuid", ("uuid", "gpu_uuid")),
    _Field("bus_id", ("pci.bus_id", "gpu_bus_id")),
    _Field("util", ("utilization.gpu",), {"%": 1.0}),
    _Field("mem_used", ("memory.used",), _MIB),
    _Field("mem_total", ("memory.total",), _MIB),
    _Field(
        "power",
        ("power.draw", "power.draw.average", "power.draw.instant"),
        {"W": 1.0, "mW": 1e-3, "kW": 1e3},
    ),
)
_NUMERIC = tuple(f for f in _FIELDS if f.units)


@dataclass(frozen=True)
class _Layout:
    """What a file's header says: where each field is and in which unit."""

    path: Path
    name: str
    header: tuple[str, ...]
    positions: dict[str, int]
    """Field key -> 1-based position in a line."""
    units: dict[str, str]
    file_node: str
    cut_off: bool
    """The file does not end with a line break: its last line may be half written."""

    def column(self, key: str) -> str:
        return self.header[self.positions[key] - 1]


@dataclass(frozen=True)
class _Check:
    key: str | None
    """The field whose column the message names; None for a problem with the whole line."""
    value_sql: str
    bad_sql: str
    problem: str
    """Completes the message; may use {value}, {unit} and {fields} (the header's field count)."""


_CHECKS = (
    _Check(
        None,
        "n_fields",
        "kind = 'sample' AND n_fields <> header_fields",
        "has {value} fields, but the header has {fields}",
    ),
    _Check(
        None,
        "''",
        "kind = 'repeated_header' AND NOT same_header",
        "a header unlike line 1's (nvidia-smi restarted with other fields?): split the file there",
    ),
    _Check(
        "ts",
        "ts_raw",
        f"{_SAMPLE} AND ts_local IS NULL",
        "is not a date/time like 2026/07/03 22:10:46.109",
    ),
    *(
        _Check(
            f.key,
            f"{f.key}_raw",
            f"{_SAMPLE} AND {f.key}_text IS NOT NULL AND {f.key} IS NULL",
            "is not a number in {unit}",
        )
        for f in _NUMERIC
    ),
    _Check(
        "util",
        "util_raw",
        f"{_SAMPLE} AND util NOT BETWEEN 0 AND 100",
        "is not a percentage between 0 and 100",
    ),
    _Check(
        "idx",
        "idx_raw",
        f"{_SAMPLE} AND idx_text IS NOT NULL AND idx IS NULL",
        "is not a GPU index (a whole number from 0)",
    ),
)


def read_nvidia_smi(
    location: str, *, time_zone: str = "UTC", host: str | None = None
) -> GpuDelivery:
    """Parse and check nvidia-smi CSV logs; the warehouse applies the delivery.

    `time_zone` is the IANA zone the hosts' clocks run in (their logs carry local time);
    `host`, when given, is the node of every sample, whatever the files say.
    """
    local = resolve(location, SUFFIXES)
    with local.removed_on_error():
        layouts = [_read_layout(local, path) for path in local.files]
        with scratch_database() as conn:
            _check_time_zone(conn, location, time_zone)
            _parse(conn, local, layouts)
            notes = _validate(conn, local, layouts)
            samples = conn.sql(
                _SAMPLES_SQL, params={"tz": time_zone, "host": host}
            ).to_arrow_table()
        delivery_sum = checksum(local)
    return GpuDelivery(
        uri=location,
        select_sql=f"SELECT * FROM {SAMPLES_TABLE}",
        tables={SAMPLES_TABLE: samples},
        files=local.files,
        checksum=delivery_sum,
        notes=[*_plan_notes(layouts, time_zone, host), *notes],
        cleanup=local.cleanup,
    )


def default_source(location: str) -> str:
    """Every nvidia-smi log is one source, "nvidia-smi": hosts are told apart by node."""
    return "nvidia-smi"


# --- the header: read in Python, one line per file --------------------------------------


def _read_layout(local: LocalFiles, path: Path) -> _Layout:
    name = local.name(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            first_line = handle.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise IngestError(f"{name}: cannot read: {exc}") from None
    header = tuple(field.strip() for field in first_line.split(","))
    matches = [_HEADER_FIELD.fullmatch(field) for field in header]
    if not first_line.strip() or None in matches:
        raise IngestError(
            f"{name}, line 1: {first_line[:80]!r} is not an nvidia-smi CSV header; "
            "log with --format=csv (not noheader) so the file names its fields"
        )
    names = [m.group(1).lower() for m in matches if m]
    header_units = [(m.group(2) or "").strip() for m in matches if m]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise IngestError(f"{name}, line 1: field(s) {', '.join(repeated)} appear more than once")
    positions: dict[str, int] = {}
    units: dict[str, str] = {}
    for field in _FIELDS:
        position = next((names.index(n) + 1 for n in field.names if n in names), None)
        if position is None:
            continue
        positions[field.key] = position
        if field.units:
            unit = header_units[position - 1] or next(iter(field.units))
            if unit not in field.units:
                raise IngestError(
                    f"{name}, line 1, column {header[position - 1]}: unit {unit!r} is not one "
                    f"of {', '.join(field.units)}"
                )
            units[field.key] = unit
    if "ts" not in positions:
        raise IngestError(
            f"{name}, line 1: no timestamp field in {first_line[:200]!r}; "
            "add timestamp to nvidia-smi's --query-gpu"
        )
    return _Layout(path, name, header, positions, units, _node_from_file_name(name), _cut_off(path))


def _node_from_file_name(name: str) -> str:
    base = PurePosixPath(name).name
    suffix = next(
        (s for s in sorted(SUFFIXES, key=len, reverse=True) if base.lower().endswith(s)), ""
    )
    stem = base[: len(base) - len(suffix)]
    return _DATE_TIME_SUFFIX.sub("", stem) or stem


def _cut_off(path: Path) -> bool:
    # Compressed logs are rotated, finished files; only a plain log is read while written.
    if path.name.lower().endswith(".gz"):
        return False
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def _check_time_zone(conn: duckdb.DuckDBPyConnection, location: str, time_zone: str) -> None:
    known = conn.execute(
        "SELECT name FROM pg_timezone_names() WHERE name = ?", [time_zone]
    ).fetchall()
    if not known:
        raise IngestError(
            f"{location}: unknown time zone {time_zone!r}; give the hosts' IANA time zone, "
            "such as Europe/Berlin or UTC"
        )


# --- the lines: split and typed by DuckDB -----------------------------------------------


def _layouts_table(layouts: list[_Layout]) -> pa.Table:
    fields: list[pa.Field] = [
        pa.field("filename", pa.string()),
        pa.field("header", pa.list_(pa.string())),
        pa.field("header_fields", pa.int32()),
        pa.field("file_node", pa.string()),
        pa.field("cut_off", pa.bool_()),
    ]
    for field in _FIELDS:
        fields.append(pa.field(f"{field.key}_pos", pa.int32()))
        if field.units:
            fields += [
                pa.field(f"{field.key}_unit", pa.string()),
                pa.field(f"{field.key}_factor", pa.float64()),
            ]
    rows = []
    for layout in layouts:
        row: dict[str, object] = {
            "filename": str(layout.path),
            "header": list(layout.header),
            "header_fields": len(layout.header),
            "file_node": layout.file_node,
            "cut_off": layout.cut_off,
        }
        for field in _FIELDS:
            row[f"{field.key}_pos"] = layout.positions.get(field.key)
            if field.units:
                unit = layout.units.get(field.key)
                row[f"{field.key}_unit"] = unit
                row[f"{field.key}_factor"] = field.units[unit] if unit else None
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def _parse(conn: duckdb.DuckDBPyConnection, local: LocalFiles, layouts: list[_Layout]) -> None:
    """Fill `parsed`: one row per line of every file, with its kind and typed values."""
    conn.register("layouts", _layouts_table(layouts))
    # One thread reads the files in order, so row_number() is the line's place in its file;
    # a one-column read (a delimiter no log holds, no quoting) keeps every line, blank ones too.
    conn.execute("SET threads = 1")
    try:
        conn.execute(
            """
            CREATE TEMP TABLE lines AS
            SELECT filename, row_number() OVER () AS rn, line
            FROM read_csv($files, columns = {'line': 'VARCHAR'}, header = false,
                          auto_detect = false, delim = '\x1f', quote = '', escape = '',
                          filename = true)
            """,
            {"files": [str(layout.path) for layout in layouts]},
        )
    except duckdb.Error as exc:
        raise IngestError(f"{local.uri}: cannot read: {exc}") from None
    finally:
        conn.execute("RESET threads")
    raw = ", ".join(f"fields[{f.key}_pos] AS {f.key}_raw" for f in _FIELDS)
    text = ", ".join(
        f"CASE WHEN NOT ({f.key}_raw LIKE '[%]' OR {f.key}_raw = 'N/A') THEN {f.key}_raw END "
        f"AS {f.key}_text"
        for f in _FIELDS
    )
    # A value that is not a number leaves both parts empty, so it comes out null.
    parts = ", ".join(
        f"regexp_extract({f.key}_text, {_NUMBER}, ['number', 'unit']) AS {f.key}_parts"
        for f in _NUMERIC
    )
    numbers = ", ".join(
        f"CASE WHEN {f.key}_parts.unit IN ('', {f.key}_unit) "
        f"THEN TRY_CAST(nullif({f.key}_parts.number, '') AS DOUBLE) * {f.key}_factor "
        f"END AS {f.key}"
        for f in _NUMERIC
    )
    conn.execute(
        f"""
        CREATE TEMP TABLE parsed AS
        WITH numbered AS (
            SELECT filename,
                   rn - min(rn) OVER (PARTITION BY filename) + 1 AS line_no,
                   rn = max(rn) OVER (PARTITION BY filename) AS last_line,
                   list_transform(string_split(line, ','), lambda f: trim(f)) AS fields
            FROM lines
        ), split AS (
            SELECT *,
                   CASE WHEN line_no = 1 THEN 'header'
                        WHEN fields IS NULL OR fields = [''] THEN 'blank'
                        WHEN cut_off AND last_line THEN 'cut_off'
                        WHEN fields[1] = header[1] THEN 'repeated_header'
                        ELSE 'sample' END AS kind,
                   len(fields) AS n_fields,
                   fields = header AS same_header,
                   {raw}
            FROM numbered JOIN layouts USING (filename)
        ), texts AS (
            SELECT *, {text} FROM split
        ), numbers AS (
            SELECT *, {parts} FROM texts
        )
        SELECT *, {numbers},
               try_strptime(ts_text, {_TIME_FORMATS}) AS ts_local,
               CASE WHEN regexp_full_match(idx_text, '[0-9]+') THEN TRY_CAST(idx_text AS INTEGER) END
                   AS idx
        FROM numbers
        """
    )


# --- validation: one aggregate pass for problems and notes ------------------------------


def _validate(
    conn: duckdb.DuckDBPyConnection, local: LocalFiles, layouts: list[_Layout]
) -> list[str]:
    """Refuse the delivery if any line is wrong; else say what was normalised."""
    problem_sql = [
        f"count_if({c.bad_sql}), min(line_no) FILTER ({c.bad_sql}), "
        f"arg_min(CAST({c.value_sql} AS VARCHAR), line_no) FILTER ({c.bad_sql})"
        for c in _CHECKS
    ]
    placeholder_sql = [
        f"count_if(kind = 'sample' AND {f.key}_raw IS NOT NULL AND {f.key}_text IS NULL)"
        for f in _FIELDS
    ]
    with_units = " + ".join(
        f"count_if(kind = 'sample' AND {f.key}_parts.unit <> '')" for f in _NUMERIC
    )
    rows = conn.execute(
        f"""
        SELECT filename, {", ".join(problem_sql)}, {", ".join(placeholder_sql)},
               {with_units}, count_if(kind = 'repeated_header'), count_if(kind = 'cut_off')
        FROM parsed GROUP BY filename
        """
    ).fetchall()
    by_path = {str(layout.path): layout for layout in layouts}
    problems: list[str] = []
    placeholders = dict.fromkeys((f.names[0] for f in _FIELDS), 0)
    units_stripped = repeated_headers = 0
    cut_off: list[str] = []
    for filename, *figures in sorted(rows):
        layout = by_path[filename]
        for index, check in enumerate(_CHECKS):
            count, line_no, value = figures[3 * index : 3 * index + 3]
            if count:
                problems.append(_describe(layout, check, count, line_no, value))
        counts = figures[3 * len(_CHECKS) :]
        for field, count in zip(_FIELDS, counts[: len(_FIELDS)], strict=True):
            placeholders[field.names[0]] += count
        units_stripped += counts[len(_FIELDS)]
        repeated_headers += counts[len(_FIELDS) + 1]
        if counts[len(_FIELDS) + 2]:
            cut_off.append(layout.name)
    if problems:
        raise refuse(local.uri, problems)
    notes = [
        f"{name}: {count} placeholder value(s) such as [N/A] read as null"
        for name, count in placeholders.items()
        if count
    ]
    if units_stripped:
        notes.append(f"units stripped from {units_stripped} value(s)")
    if repeated_headers:
        notes.append(f"repeated header line(s) skipped: {repeated_headers}")
    notes += [
        f"{name}: last line has no line break (still being written?): skipped" for name in cut_off
    ]
    return notes


def _describe(layout: _Layout, check: _Check, count: int, line_no: int, value: str) -> str:
    where = f"{layout.name}, line {line_no}"
    unit = layout.units.get(check.key or "", "")
    problem = check.problem.format(value=value, unit=unit, fields=len(layout.header))
    others = f" ({count - 1} more line(s) like it)" if count > 1 else ""
    if check.key is None:
        return f"{where}: {problem}{others}"
    return f"{where}, column {layout.column(check.key)}: {value!r} {problem}{others}"


def _plan_notes(layouts: list[_Layout], time_zone: str, host: str | None) -> list[str]:
    """What the headers and arguments decided: time zone, node, GPU index, units, ignored fields."""
    notes = [f"timestamps read as local time in {time_zone} and converted to UTC"]
    rules = Counter(_index_rule(layout) for layout in layouts)
    if host is not None:
        notes.append(f"node set to {host!r} by the host argument")
    else:
        rules.update(
            "node from the hostname field" for lay in layouts if "hostname" in lay.positions
        )
        from_name = [lay for lay in layouts if "hostname" not in lay.positions]
        if from_name:
            example = from_name[0]
            notes.append(
                f"node from the file name in {len(from_name)} file(s), e.g. "
                f"{PurePosixPath(example.name).name!r} -> {example.file_node!r}"
            )
    notes += [f"{rule}: {count} file(s)" for rule, count in sorted(rules.items())]
    for field in _NUMERIC:
        default = next(iter(field.units or {}))
        converted = sorted(
            {
                lay.units[field.key]
                for lay in layouts
                if lay.units.get(field.key, default) != default
            }
        )
        if converted:
            notes.append(f"{field.names[0]} converted from {', '.join(converted)} to {default}")
    used = {lay.column(key) for lay in layouts for key in lay.positions}
    ignored = sorted({column for lay in layouts for column in lay.header} - used)
    if ignored:
        notes.append(f"field(s) ignored: {', '.join(ignored)}")
    return notes


def _index_rule(layout: _Layout) -> str:
    if "idx" in layout.positions:
        return "gpu_index from the index field"
    if {"uuid", "bus_id"} & layout.positions.keys():
        return "gpu_index from the order in which each GPU first appears in its file"
    return "gpu_index from a line's position among the lines with its timestamp"


# --- the samples: local time to UTC, node and GPU index ---------------------------------

_SAMPLES_SQL = """
-- A local time that occurs twice is summer time until the log's clock has stepped back.
SELECT CASE WHEN dst_time <> standard_time AND timezone($tz, dst_time) = ts_local
                 AND NOT coalesce(max(ts_local) OVER earlier_lines > ts_local, false)
            THEN dst_time ELSE standard_time END AS ts,
       node,
       CASE WHEN idx_pos IS NOT NULL THEN idx
            WHEN uuid_pos IS NOT NULL OR bus_id_pos IS NOT NULL
                 THEN dense_rank() OVER (PARTITION BY filename, node ORDER BY first_line) - 1
            ELSE row_number() OVER (PARTITION BY filename, node, ts_text ORDER BY line_no) - 1
       END AS gpu_index,
       uuid_text AS gpu_uuid, model_text AS model, util AS gpu_util_pct,
       mem_used AS mem_used_mib, mem_total AS mem_total_mib, power AS power_w
FROM (
    SELECT *,
           -- ICU reads a local time that occurs twice as standard time; an hour earlier,
           -- plus an hour, is the summer-time reading of it (equal when it occurs once).
           timezone($tz, ts_local) AS standard_time,
           timezone($tz, ts_local - INTERVAL 1 HOUR) + INTERVAL 1 HOUR AS dst_time,
           min(line_no) OVER (PARTITION BY filename, node, coalesce(uuid_text, bus_id_text))
               AS first_line
    FROM (SELECT *, coalesce($host, nullif(hostname_text, ''), file_node) AS node FROM parsed)
    WHERE kind = 'sample'
)
WINDOW earlier_lines AS (
    PARTITION BY filename, node ORDER BY line_no ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
)
ORDER BY ts, node, gpu_index
"""
