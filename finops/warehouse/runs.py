"""Warehouse runs: one transaction for the work, and a failed run recorded on its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime

import duckdb

from finops.errors import IngestError, WarehouseError


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


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection, refused: str) -> Iterator[None]:
    """One warehouse transaction: committed when the block ends, rolled back on any error.

    DuckDB's own errors become an IngestError that starts with `refused` (who refused
    what), so a caller sees which delivery failed and knows nothing was changed.
    """
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException as exc:
        conn.execute("ROLLBACK")
        if isinstance(exc, duckdb.Error):
            raise IngestError(f"{refused}: {exc}") from None
        raise


def record_run(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    source: str,
    collector: str,
    uri: str,
    started: datetime,
    status: str,
    rows: int | None,
    error: str | None,
    notes: list[str],
) -> None:
    """One `ingest_runs` row for a run that has no billing periods or window (events,
    inventory): who ran what, when, how it ended."""
    conn.execute(
        """
        INSERT INTO ingest_runs (run_id, source, collector, uri, rows, started_at, finished_at,
                                 status, error, notes)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [run_id, source, collector, uri, rows, started, datetime.now(UTC), status, error, notes],
    )
