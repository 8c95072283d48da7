"""How the `cost` table is stored: only the columns some delivery has filled.

Readers see `cost`, a view with every FOCUS column in order (NULL where no delivery has
filled one yet) and then our extra columns. Rows live in `cost_rows`, which holds only
the columns deliveries have brought; an ingest adds a column there the first time a
delivery carries it. DuckDB writes an all-NULL column value by value (about 0.5 s per
column per 10 M rows), so a CUR export, which fills 42 of the 70 columns, would otherwise
spend a quarter of its ingest writing NULLs. The view is a plain projection: reading it
costs what reading the table would.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from finops.warehouse.schema import COST_COLUMNS

ROWS_TABLE = "cost_rows"
ALWAYS_STORED: frozenset[str] = frozenset(
    {
        "BillingAccountId",
        "BillingPeriodStart",
        "ChargePeriodStart",
        "BilledCost",
        "EffectiveCost",
        "Tags",
        "x_Source",
        "x_IngestId",
        "x_TagSetId",
    }
)
"""Columns `cost_rows` keeps from the start: the ones the warehouse's own SQL writes by."""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stored_columns(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The columns `cost_rows` holds (name -> type), in their order."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE table_name = ? ORDER BY column_index",
        [ROWS_TABLE],
    ).fetchall()
    return dict(rows)


def refresh_cost_view(conn: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the `cost` view over what `cost_rows` holds now. The view names every
    column of `COST_COLUMNS`: a migration that adds one to the schema calls this too."""
    stored = stored_columns(conn)
    canonical = {c.name for c in COST_COLUMNS}
    items = [
        _quoted(c.name) if c.name in stored else f"CAST(NULL AS {c.sql_type}) AS {_quoted(c.name)}"
        for c in COST_COLUMNS
    ]
    items += [_quoted(name) for name in stored if name not in canonical]
    conn.execute(f"CREATE OR REPLACE VIEW cost AS SELECT {', '.join(items)} FROM {ROWS_TABLE}")


def store_columns(conn: duckdb.DuckDBPyConnection, columns: Mapping[str, str]) -> None:
    """Make `cost_rows` hold these columns (name -> type), adding the ones it lacks."""
    stored = stored_columns(conn)
    missing = {name: sql_type for name, sql_type in columns.items() if name not in stored}
    for name, sql_type in missing.items():
        conn.execute(f"ALTER TABLE {ROWS_TABLE} ADD COLUMN {_quoted(name)} {sql_type}")
    if missing:
        refresh_cost_view(conn)


def split_cost_storage(conn: duckdb.DuckDBPyConnection) -> None:
    """Migration: the `cost` table becomes `cost_rows`, less the columns no row fills,
    behind a `cost` view (one scan counts what each column holds)."""
    conn.execute(f"ALTER TABLE cost RENAME TO {ROWS_TABLE}")
    optional = [name for name in stored_columns(conn) if name not in ALWAYS_STORED]
    counts = conn.execute(
        f"SELECT {', '.join(f'count({_quoted(n)})' for n in optional)} FROM {ROWS_TABLE}"
    ).fetchall()[0]
    for name, count in zip(optional, counts, strict=True):
        if count == 0:
            conn.execute(f"ALTER TABLE {ROWS_TABLE} DROP COLUMN {_quoted(name)}")
    refresh_cost_view(conn)
