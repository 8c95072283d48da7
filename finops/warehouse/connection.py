"""Opening the warehouse file: short-lived connections, waiting politely for the lock.

DuckDB lets one process write or many processes read a file, never both. The app, the
scheduler and a CLI ingest run at once, so every opener retries with backoff while
another process holds the file, up to a bound, and then says which process holds it.
Opening read-write also brings an older file up to the current schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from finops.errors import WarehouseBusyError, WarehouseError
from finops.warehouse.migrations import LATEST_VERSION, MIGRATIONS

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _describe_holder(exc: BaseException) -> str:
    match = _LOCK_HOLDER.search(str(exc))
    if not match:
        return "another process"
    return f"process {match.group(2)} ({match.group(1).strip()})"


def _connect_waiting(
    path: Path, *, read_only: bool, timeout_s: float, memory_limit: str
) -> duckdb.DuckDBPyConnection:
    retrying = Retrying(
        retry=retry_if_exception(_is_lock_conflict),
        wait=wait_random_exponential(multiplier=0.02, max=0.5),
        stop=stop_after_delay(timeout_s),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                return duckdb.connect(
                    str(path), read_only=read_only, config={"memory_limit": memory_limit}
                )
    except duckdb.IOException as exc:
        if _is_lock_conflict(exc):
            raise WarehouseBusyError(
                f"{path}: held by {_describe_holder(exc)} for over {timeout_s:.0f} s; "
                "try again when it has finished, or raise warehouse.lock_timeout_s"
            ) from None
        raise WarehouseError(f"{path}: cannot open the warehouse: {exc}") from None
    except duckdb.Error as exc:
        raise WarehouseError(f"{path}: cannot open the warehouse: {exc}") from None
    raise AssertionError("unreachable: tenacity either returns or raises")


def schema_version(conn: duckdb.DuckDBPyConnection) -> int:
    exists = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version'"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(conn: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Apply the migrations this file lacks, all in one transaction; return the version."""
    current = schema_version(conn)
    if current > LATEST_VERSION:
        raise WarehouseError(
            f"{path}: schema version {current} is newer than this finops understands "
            f"({LATEST_VERSION}); upgrade finops to open it"
        )
    pending = [m for m in MIGRATIONS if m.version > current]
    if not pending:
        return current
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMPTZ)"
        )
        for migration in pending:
            for statement in migration.statements:
                conn.execute(statement)
            if migration.apply is not None:
                migration.apply(conn)
            conn.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?)",
                [migration.version, migration.description, datetime.now(UTC)],
            )
        conn.execute("COMMIT")
    except duckdb.Error as exc:
        conn.execute("ROLLBACK")
        raise WarehouseError(f"{path}: migration failed, file left unchanged: {exc}") from None
    return LATEST_VERSION


@contextmanager
def connect(
    path: Path, *, read_only: bool, timeout_s: float, memory_limit: str = "1GB"
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one unit of work; closed on exit so other processes get their turn."""
    opening = {"timeout_s": timeout_s, "memory_limit": memory_limit}
    if read_only:
        if not path.exists():
            raise WarehouseError(
                f"{path}: no warehouse yet; run `finops demo` or `finops ingest ...` first"
            )
        conn = _connect_waiting(path, read_only=True, **opening)
        try:
            version = schema_version(conn)
        except BaseException:
            conn.close()
            raise
        if version != LATEST_VERSION:
            conn.close()
            # An older file is migrated once (briefly read-write), then read as usual.
            with connect(path, read_only=False, **opening):
                pass
            conn = _connect_waiting(path, read_only=True, **opening)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect_waiting(path, read_only=False, **opening)
        try:
            migrate(conn, path)
        except BaseException:
            conn.close()
            raise
    try:
        conn.execute("SET TimeZone = 'UTC'")
        yield conn
    finally:
        conn.close()
