"""Export the warehouse as a FOCUS 1.2 dataset (Parquet or CSV).

FOCUS columns come first, under their FOCUS names and in FOCUS types (Tags and the other
key-value columns as JSON objects, timestamps in UTC as `YYYY-MM-DDTHH:mm:ssZ` in CSV),
followed by our `x_` columns. Columns that FOCUS 1.3 added are left out: a 1.2 dataset
must not carry un-prefixed columns it does not define. Rows come from `cost_resolved`,
so an overlap between two sources is exported once.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from finops.errors import FinopsError
from finops.periods import Period
from finops.warehouse.schema import FOCUS_12_COLUMNS, Kind


def _export_columns(conn: duckdb.DuckDBPyConnection, csv: bool) -> list[str]:
    items = []
    for column in FOCUS_12_COLUMNS:
        name = f'"{column.name}"'
        if column.kind is Kind.KEY_VALUE:
            items.append(f"CAST(to_json({name}) AS VARCHAR) AS {name}")
        elif column.kind is Kind.JSON:
            items.append(f"CAST({name} AS VARCHAR) AS {name}")
        elif column.kind is Kind.TIMESTAMP and csv:
            items.append(f"strftime({name}, '%Y-%m-%dT%H:%M:%SZ') AS {name}")
        else:
            items.append(name)
    extras = conn.execute(
        """
        SELECT column_name FROM duckdb_columns()
        WHERE table_name = 'cost' AND column_name LIKE 'x\\_%' ESCAPE '\\' AND column_name NOT IN ('x_IngestId', 'x_TagSetId')
        ORDER BY column_index
        """
    ).fetchall()
    return items + [f'"{name}"' for (name,) in extras]


def export_focus(conn: duckdb.DuckDBPyConnection, out: Path, period: Period | None = None) -> int:
    """Write the dataset to `out` (.parquet or .csv); return the number of rows written."""
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise FinopsError(f"{out}: export to a .parquet or .csv file")
    where, params = period.where() if period else ("TRUE", [])
    columns = ", ".join(_export_columns(conn, csv=suffix == ".csv"))
    options = (
        "FORMAT parquet, COMPRESSION zstd" if suffix == ".parquet" else "FORMAT csv, HEADER true"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    target = str(out).replace("'", "''")
    row = conn.execute(
        f"""COPY (SELECT {columns} FROM cost_resolved WHERE {where}
                  ORDER BY "ChargePeriodStart", "BillingAccountId")
            TO '{target}' ({options})""",
        params,
    ).fetchone()
    return int(row[0]) if row else 0
