"""GPU spool files, as `finops agent gpu` writes them (a file, a folder, a glob or s3://).

A spool file holds one JSON object per line whose keys are the `GPU_SAMPLE_COLUMNS` names
(`.jsonl`, or `.jsonl.gz`); a Parquet file with those columns is read too. Keys a line
lacks are nulls and keys we do not know are ignored; blank lines are skipped. An agent's
unfinished `.jsonl.tmp` files are never read.

Refused, with the file, line (or Parquet row) and field named: a line that is not a JSON
object (a truncated last line included), a missing or unparsable `ts`, a missing `node`, a
`gpu_index` that is not a whole number, a measurement that is not a number, a
`gpu_util_pct` outside 0-100, an activity ratio outside 0-1, negative memory or power.

Validation is one DuckDB pass over the files' lines in an in-memory database; the warehouse
later runs `select_sql`, which reads the same files with `read_json`/`read_parquet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from finops.collectors.locations import LocalFiles, checksum, resolve
from finops.collectors.problems import refuse
from finops.collectors.scan import scratch_database
from finops.errors import IngestError
from finops.warehouse import GpuDelivery
from finops.warehouse.schema import GPU_SAMPLE_COLUMNS

SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
SOURCE = "gpu-spool"
_SHOWN_VALUE_CHARS = 60
_RATIOS = ("gr_engine_active", "sm_active", "tensor_active")
_NON_NEGATIVE = ("mem_used_mib", "mem_total_mib", "power_w")


def read_gpu_spool(location: str) -> GpuDelivery:
    """Resolve and validate spool files; the warehouse applies the delivery."""
    local = resolve(location, SUFFIXES)
    with local.removed_on_error():
        formats = _formats(local)
        with scratch_database() as conn:
            _validate(conn, local, formats)
        digest = checksum(local)
    return GpuDelivery(
        uri=location,
        select_sql=" UNION ALL BY NAME ".join(f"({f.select_sql()})" for f in formats),
        files=local.files,
        checksum=digest,
        cleanup=local.cleanup,
    )


def default_source(location: str) -> str:
    """`gpu-spool`, wherever the files are read from.

    Samples replace each other by (source, node, time span), so the same files read from a
    local copy and from S3 must land in one source; a name taken from the path would let
    them count twice.
    """
    return SOURCE


# --- reading: one reader per format, the same checks over both ---------------------------


@dataclass(frozen=True)
class _Check:
    field: str | None
    """The field whose value is wrong; None for a line that is not JSON at all."""
    bad_sql: str
    problem: str


@dataclass(frozen=True)
class _Format:
    """Spool files of one format, and how to read them."""

    files: tuple[Path, ...]
    parquet_columns: frozenset[str] | None = None
    """The columns the Parquet files hold; None for JSON lines."""

    @property
    def position(self) -> str:
        return "row" if self.parquet_columns is not None else "line"

    def select_sql(self) -> str:
        """The samples, typed as GPU_SAMPLE_COLUMNS, for the warehouse to stage."""
        if self.parquet_columns is not None:
            present = [name for name in GPU_SAMPLE_COLUMNS if name in self.parquet_columns]
            reader = f"read_parquet({_sql_list(self.files)}, union_by_name = true)"
        else:
            # Read as text and cast here with the casts validation tried, so files that
            # passed validation cannot fail in the warehouse over a value DuckDB's JSON
            # reader would have converted differently.
            present = list(GPU_SAMPLE_COLUMNS)
            text = ", ".join(f"'{name}': 'VARCHAR'" for name in GPU_SAMPLE_COLUMNS)
            reader = (
                f"read_json({_sql_list(self.files)}, format = 'newline_delimited', "
                f"columns = {{{text}}})"
            )
        columns = ", ".join(
            f'CAST("{name}" AS {GPU_SAMPLE_COLUMNS[name]}) AS "{name}"' for name in present
        )
        return f"SELECT {columns} FROM {reader}"

    def values_sql(self, files: tuple[Path, ...] | None = None, *, numbered: bool = False) -> str:
        """Every record as text: filename, record, is_object and one column per field.

        `numbered` also gives `pos`, the line (or row) number in the file, and `last_pos`,
        the file's last line number; JSON lines need a single-threaded scan for those, so
        only the error path asks for them.
        """
        paths = _sql_list(files or self.files)
        if self.parquet_columns is not None:
            fields = ", ".join(
                f'CAST("{name}" AS VARCHAR) AS "{name}"'
                if name in self.parquet_columns
                else f'NULL AS "{name}"'
                for name in GPU_SAMPLE_COLUMNS
            )
            # A Parquet row is never half-written, so it has no last-line hint to give.
            return f"""
                SELECT filename, file_row_number + 1 AS pos, NULL AS last_pos,
                       NULL AS record, true AS is_object, {fields}
                FROM read_parquet({paths}, union_by_name = true, filename = true,
                                  file_row_number = true)
            """
        json_paths = ", ".join(f"'$.{name}'" for name in GPU_SAMPLE_COLUMNS)
        fields = ", ".join(
            f'"values"[{i}] AS "{name}"' for i, name in enumerate(GPU_SAMPLE_COLUMNS, start=1)
        )
        numbers = ", row_number() OVER () AS pos, count(*) OVER () AS last_pos" if numbered else ""
        # Each line as one text column: a delimiter JSON text never holds unescaped, no
        # quoting. Blank lines come through as NULL, so row numbers stay line numbers.
        lines = (
            f"read_csv({paths}, columns = {{'line': 'VARCHAR'}}, header = false, "
            "auto_detect = false, delim = chr(1), quote = '', escape = '', "
            "strict_mode = false, filename = true)"
        )
        return f"""
            SELECT *, {fields} FROM (
                SELECT *, json_extract_string(CASE WHEN is_object THEN record END,
                                              [{json_paths}]) AS "values"
                FROM (
                    SELECT filename, line AS record {numbers},
                           coalesce(CASE WHEN json_valid(line) THEN json_type(line) END
                                    = 'OBJECT', false) AS is_object
                    FROM {lines}
                )
                WHERE trim(record) <> ''
            )
        """


def _formats(local: LocalFiles) -> list[_Format]:
    parquet = tuple(p for p in local.files if p.name.lower().endswith(".parquet"))
    json_lines = tuple(p for p in local.files if p not in parquet)
    formats = [_Format(json_lines)] if json_lines else []
    if parquet:
        conn = duckdb.connect()
        try:
            described = conn.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_sql_list(parquet)}, union_by_name = true)"
            ).fetchall()
        except duckdb.Error as exc:
            raise IngestError(f"{local.uri}: cannot read the Parquet spool files: {exc}") from None
        finally:
            conn.close()
        formats.append(_Format(parquet, frozenset(str(row[0]) for row in described)))
    return formats


def _checks() -> tuple[_Check, ...]:
    def number(name: str) -> str:
        return f'TRY_CAST("{name}" AS DOUBLE)'

    checks = [
        _Check(None, "NOT is_object", "is not a JSON object"),
        _Check("ts", 'is_object AND "ts" IS NULL', "is missing"),
        _Check(
            "ts",
            '"ts" IS NOT NULL AND TRY_CAST("ts" AS TIMESTAMPTZ) IS NULL',
            "is not a timestamp (expected ISO 8601, e.g. 2026-05-01T10:00:00Z)",
        ),
        _Check("node", 'is_object AND "node" IS NULL', "is missing"),
        _Check(
            "gpu_index",
            '"gpu_index" IS NOT NULL AND (TRY_CAST("gpu_index" AS INTEGER) IS NULL '
            f'OR {number("gpu_index")} <> TRY_CAST("gpu_index" AS INTEGER))',
            "is not a whole number",
        ),
    ]
    for name, sql_type in GPU_SAMPLE_COLUMNS.items():
        if sql_type == "DOUBLE":
            checks.append(
                _Check(
                    name,
                    f'"{name}" IS NOT NULL AND NOT coalesce(isfinite({number(name)}), false)',
                    "is not a number",
                )
            )
    checks.append(
        _Check(
            "gpu_util_pct", f"{number('gpu_util_pct')} NOT BETWEEN 0 AND 100", "is outside 0-100"
        )
    )
    checks += [_Check(n, f"{number(n)} NOT BETWEEN 0 AND 1", "is outside 0-1") for n in _RATIOS]
    checks += [_Check(n, f"{number(n)} < 0", "is negative") for n in _NON_NEGATIVE]
    return tuple(checks)


_CHECKS = _checks()


# --- validation: one counting pass, then the first offending line of each problem --------


def _validate(conn: duckdb.DuckDBPyConnection, local: LocalFiles, formats: list[_Format]) -> None:
    problems: list[tuple[str, int, str]] = []
    counts_sql = ", ".join(f"count_if({c.bad_sql})" for c in _CHECKS)
    for fmt in formats:
        try:
            rows = conn.execute(
                f"SELECT filename, {counts_sql} FROM ({fmt.values_sql()}) GROUP BY filename "
                "ORDER BY filename"
            ).fetchall()
        except duckdb.Error as exc:
            raise IngestError(f"{local.uri}: cannot read: {exc}") from None
        for filename, *counts in rows:
            problems += [
                _locate(local, fmt, Path(filename), check, count)
                for check, count in zip(_CHECKS, counts, strict=True)
                if count
            ]
    if problems:
        raise refuse(local.uri, [text for _, _, text in sorted(problems)])


def _locate(
    local: LocalFiles, fmt: _Format, path: Path, check: _Check, count: int
) -> tuple[str, int, str]:
    """(file, line, description) of the first offending line of `path` for `check`."""
    shown = "record" if check.field is None else f'"{check.field}"'
    # A single-threaded scan reads the file in order, so row_number() is the line number.
    ordered = duckdb.connect(config={"threads": 1})
    try:
        ordered.execute("SET TimeZone = 'UTC'")
        row = ordered.execute(
            f"""
            SELECT pos, last_pos, {shown} FROM ({fmt.values_sql((path,), numbered=True)})
            WHERE {check.bad_sql} ORDER BY pos LIMIT 1
            """
        ).fetchone()
    finally:
        ordered.close()
    assert row is not None, "the counting pass found this problem in this file"
    pos, last_pos, value = row
    where = f"{local.name(path)}, {fmt.position} {pos}"
    if check.field is not None:
        where += f", field {check.field}"
    if value is not None and len(value) > _SHOWN_VALUE_CHARS:
        value = value[: _SHOWN_VALUE_CHARS - 3] + "..."
    problem = check.problem
    if check.field is None and pos == last_pos:
        problem += " (the file's last line: was it copied while the agent was still writing it?)"
    others = f" ({count - 1} more {fmt.position}(s) like it)" if count > 1 else ""
    text = f"{where}: {'' if value is None else repr(value) + ' '}{problem}{others}"
    return local.name(path), pos, text


def _sql_list(files: tuple[Path, ...]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in files) + "]"
