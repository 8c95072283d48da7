"""Reading a set of tabular files in one DuckDB pass: layouts, checks, and the problems found.

What the FOCUS and CUR collectors share: files are grouped by layout (format, columns,
CSV delimiter) so each group is one scan; each group carries the SQL that yields canonical
columns and the checks that find bad values; one pass per group measures every billing
period and counts every problem, and the first offending row of each problem is then
located and named (file, row, column, value).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb

from finops.collectors.locations import LocalFiles
from finops.collectors.problems import refuse
from finops.errors import IngestError
from finops.warehouse import PeriodStats

VALIDATION_MEMORY_LIMIT = "1GB"
"""Validation only aggregates, so a modest cap keeps a large delivery's memory low."""


@contextmanager
def scratch_database(**config: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB for reading files: capped memory, UTC, closed after use."""
    conn = duckdb.connect(config={"memory_limit": VALIDATION_MEMORY_LIMIT, **config})
    try:
        conn.execute("SET TimeZone = 'UTC'")
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class Check:
    column: str
    raw_sql: str
    bad_sql: str
    problem: str
    """Says what is wrong with the offending value, e.g. 'is not a number'."""


@dataclass(frozen=True)
class Layout:
    """A file's format and columns (and, for CSV, its delimiter): files that share one are read together."""

    fmt: str
    columns: tuple[tuple[str, str], ...]
    delimiter: str = ","


@dataclass
class FileGroup:
    """Files with one layout, read by one DuckDB table function."""

    layout: Layout
    files: tuple[Path, ...]
    items: dict[str, str] = field(default_factory=dict)
    """FOCUS column name -> the SQL expression that yields it from the file's columns."""
    checks: list[Check] = field(default_factory=list)
    counted_notes: list[tuple[str, str]] = field(default_factory=list)
    """(SQL condition, note) pairs: the note is shown with how many rows matched."""
    plan_notes: list[str] = field(default_factory=list)
    extra_columns: dict[str, str] = field(default_factory=dict)
    keyed_items: dict[str, str] = field(default_factory=dict)
    """FOCUS column name -> SQL expression that reads only the raw `key_columns`: computed
    once per distinct combination of their values and joined back to the rows by its
    64-bit hash (the hash `x_TagSetId` already trusts). Tag maps repeat over millions of
    lines, and building a map is the dearest work of an ingest; comparing maps row by row
    to join them would cost nearly as much, hashing them little."""
    key_columns: tuple[str, ...] = ()

    @property
    def fmt(self) -> str:
        return self.layout.fmt

    def reader(
        self,
        files: tuple[Path, ...] | None = None,
        *,
        filename: bool = True,
        row_numbers: bool = False,
    ) -> str:
        """The files as a relation whose text columns are already cleaned (`cleaned`): each
        placeholder null is turned into NULL once, however many expressions read it."""
        paths = ", ".join(sql_string(str(p)) for p in (files or self.files))
        flag = ", filename = true" if filename else ""
        if self.fmt == "parquet":
            numbers = ", file_row_number = true" if row_numbers else ""
            table = f"read_parquet([{paths}], union_by_name = true{flag}{numbers})"
        else:
            # The header was read already: naming the columns spares DuckDB sniffing every file.
            columns = ", ".join(f"{sql_string(name)}: 'VARCHAR'" for name, _ in self.layout.columns)
            table = (
                f"read_csv([{paths}], header = true, auto_detect = false, "
                f"delim = {sql_string(self.layout.delimiter)}, quote = '\"', escape = '\"', "
                f"columns = {{{columns}}}{flag})"
            )
        texts = [
            f"{cleaned(name, self.fmt)} AS {ident(name)}"
            for name, raw_type in self.layout.columns
            if raw_type == "VARCHAR"
        ]
        if not texts:
            return table
        return f"(SELECT * REPLACE ({', '.join(texts)}) FROM {table})"

    def select_sql(self) -> str:
        columns = ", ".join(f"{expr} AS {ident(name)}" for name, expr in self.items.items())
        reader = self.reader(filename=False)
        if not self.keyed_items:
            return f"SELECT {columns} FROM {reader}"
        raw = ", ".join(ident(name) for name in self.key_columns)
        firsts = ", ".join(
            f"any_value({ident(name)}) AS {ident(name)}" for name in self.key_columns
        )
        keyed = ", ".join(f"{expr} AS {ident(name)}" for name, expr in self.keyed_items.items())
        # The warehouse keys tag sets by this hash (x_TagSetId): taken once per tag set too.
        tag_set_id = (
            ', CASE WHEN "Tags" IS NOT NULL THEN hash("Tags") END AS "x_TagSetId"'
            if "Tags" in self.keyed_items
            else ""
        )
        return f"""
            SELECT line.* EXCLUDE ("__key"), keyed.* EXCLUDE ("__key")
            FROM (SELECT {columns}, hash({raw}) AS "__key" FROM {reader}) AS line
            LEFT JOIN (
                SELECT *{tag_set_id} FROM (
                    SELECT "__key", {keyed}
                    FROM (SELECT hash({raw}) AS "__key", {firsts} FROM {reader} GROUP BY 1)
                )
            ) AS keyed ON line."__key" = keyed."__key"
        """


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def group_by_layout(
    conn: duckdb.DuckDBPyConnection, local: LocalFiles
) -> list[tuple[Layout, tuple[Path, ...]]]:
    """Group files that share a layout, so each group is one scan."""
    layouts: dict[Layout, list[Path]] = {}
    for path in local.files:
        layout = (
            _parquet_layout(conn, local, path)
            if path.name.lower().endswith(".parquet")
            else _csv_layout(local, path)
        )
        layouts.setdefault(layout, []).append(path)
    return [(layout, tuple(files)) for layout, files in layouts.items()]


def _parquet_layout(conn: duckdb.DuckDBPyConnection, local: LocalFiles, path: Path) -> Layout:
    try:
        rows = conn.execute(
            f"DESCRIBE SELECT * FROM read_parquet({sql_string(str(path))})"
        ).fetchall()
    except duckdb.Error as exc:
        raise IngestError(f"{local.name(path)}: cannot read as Parquet: {exc}") from None
    return Layout("parquet", tuple((str(name), str(sql_type)) for name, sql_type, *_ in rows))


def _csv_layout(local: LocalFiles, path: Path) -> Layout:
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
    return Layout("csv", tuple((name, "VARCHAR") for name in header), delimiter)


def cleaned(raw: str, fmt: str) -> str:
    """A text column with placeholder nulls ('', 'NULL', 'null') turned into real NULLs
    (and, in CSV, surrounding blanks trimmed)."""
    value = f"trim({ident(raw)})" if fmt == "csv" else ident(raw)
    # Most values are longer than any placeholder: one length test spares them the list.
    return (
        f"(CASE WHEN strlen({value}) > 4 THEN {value} "
        f"WHEN {value} IN ('', 'NULL', 'null', 'Null') THEN NULL ELSE {value} END)"
    )


def validate_groups(
    conn: duckdb.DuckDBPyConnection, local: LocalFiles, groups: list[FileGroup]
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
    group: FileGroup,
    path: Path,
    check: Check,
    count: int,
) -> str:
    """Describe the first offending row of `path` for `check` (rows count from 1, header excluded)."""
    if group.fmt == "parquet":
        sql = f"""
            SELECT file_row_number + 1, CAST({check.raw_sql} AS VARCHAR)
            FROM {group.reader((path,), filename=False, row_numbers=True)}
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
