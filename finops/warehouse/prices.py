"""Storing prices: a source's prices as of one day replace that source's prices of that day.

Policies price their savings from `prices` (provider, region, instance type, purchase
option -> hourly price), preferring the newest day and the most specific source.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date

import duckdb
import pyarrow as pa

from finops.warehouse.runs import transaction

PRICE_COLUMNS: dict[str, str] = {
    "provider": "VARCHAR",
    "region": "VARCHAR",
    "instance_type": "VARCHAR",
    "purchase_option": "VARCHAR",
    "hourly_price": "DECIMAL(38,10)",
    "currency": "VARCHAR",
    "details": "JSON",
}


@dataclass(frozen=True)
class PriceList:
    source: str
    as_of: date
    table: pa.Table
    """Rows with PRICE_COLUMNS (details may be absent)."""


def store_prices(
    connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]], prices: PriceList
) -> int:
    """Replace `prices.source`'s prices of `prices.as_of`; return how many were stored."""
    template = ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in PRICE_COLUMNS.items())
    columns = ", ".join(f"CAST(p.{n} AS {t}) AS {n}" for n, t in PRICE_COLUMNS.items())
    with connect() as conn:
        conn.register("incoming_prices", prices.table)
        try:
            with transaction(conn, f"prices from {prices.source}: the warehouse refused them"):
                conn.execute(
                    "DELETE FROM prices WHERE source = ? AND as_of = ?",
                    [prices.source, prices.as_of],
                )
                row = conn.execute(
                    f"""
                    INSERT INTO prices BY NAME
                    SELECT {columns}, ? AS source, ? AS as_of
                    FROM ((SELECT {template} WHERE false)
                          UNION ALL BY NAME (SELECT * FROM incoming_prices)) AS p
                    """,
                    [prices.source, prices.as_of],
                ).fetchall()
        finally:
            conn.unregister("incoming_prices")
    return int(row[0][0]) if row else 0
