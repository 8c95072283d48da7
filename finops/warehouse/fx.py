"""Storing FX rates: a source's rates replace what that source stored before.

Every figure in the reporting currency converts through `fx_rates`; finops.yaml's
`fx.rates` and `fx.rates_file` are stored under their own source names.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import duckdb
import pyarrow as pa

from finops.warehouse.runs import transaction

FX_COLUMNS: dict[str, str] = {
    "from_currency": "VARCHAR",
    "to_currency": "VARCHAR",
    "rate_date": "DATE",
    "rate": "DECIMAL(38,10)",
}


def store_fx_rates(
    connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]],
    source: str,
    rates: pa.Table,
) -> int:
    """Replace `source`'s rates with `rates` (FX_COLUMNS); return how many were stored."""
    columns = ", ".join(f"CAST(r.{n} AS {t}) AS {n}" for n, t in FX_COLUMNS.items())
    with connect() as conn:
        conn.register("incoming_rates", rates)
        try:
            with transaction(conn, f"FX rates from {source}: the warehouse refused them"):
                conn.execute("DELETE FROM fx_rates WHERE source = ?", [source])
                row = conn.execute(
                    f"INSERT INTO fx_rates BY NAME SELECT {columns}, ? AS source FROM incoming_rates r",
                    [source],
                ).fetchall()
        finally:
            conn.unregister("incoming_rates")
    return int(row[0][0]) if row else 0
