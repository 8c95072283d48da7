"""Recording a failed run in `ingest_runs`, on its own, after the work was rolled back."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import duckdb

from finops.errors import WarehouseError


def record_failure(
    connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]],
    record: Callable[[duckdb.DuckDBPyConnection], None],
) -> None:
    """Write the failure in a transaction of its own; where the file itself cannot be
    opened there is nowhere to write it, and the caller's error says why."""
    try:
        with connect() as conn:
            record(conn)
    except WarehouseError:
        pass
