"""The inventory refresh: upsert a source's snapshot of resources, keeping first/last seen.

A snapshot says what a source (an AWS region's APIs, the billing data) saw at one
moment. Each resource in it is inserted or updated, `first_seen` kept from the first
time and `last_seen` set to the snapshot's time; resources the snapshot no longer holds
are kept with their old `last_seen`, so the inventory remembers what was stopped or gone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from finops.errors import FinopsError, IngestError
from finops.warehouse.runs import record_failure, record_run, transaction
from finops.warehouse.schema import RESOURCE_COLUMNS


@dataclass
class ResourceSnapshot:
    uri: str
    table: pa.Table
    """Rows with RESOURCE_COLUMNS (missing ones are null); resource_id must be set."""
    seen_at: datetime
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InventoryResult:
    run_id: str
    source: str
    resources: int
    new: int
    seconds: float
    notes: tuple[str, ...] = ()


def run_inventory_refresh(
    connect: Callable[[], duckdb.DuckDBPyConnection],
    read: Callable[[], ResourceSnapshot],
    *,
    source: str,
    collector: str,
    uri: str,
) -> InventoryResult:
    started, clock = datetime.now(UTC), time.perf_counter()
    run_id = uuid.uuid4().hex
    try:
        snapshot = read()
        with connect() as conn:
            conn.register("snapshot", snapshot.table)
            try:
                with transaction(conn, f"{uri}: the warehouse refused the inventory"):
                    resources, new = _upsert(conn, snapshot, source)
                    record_run(
                        conn,
                        run_id,
                        source,
                        collector,
                        uri,
                        started,
                        "success",
                        resources,
                        None,
                        snapshot.notes,
                    )
            finally:
                conn.unregister("snapshot")
    except FinopsError as exc:
        error = str(exc)
        record_failure(
            connect,
            lambda conn: record_run(
                conn, run_id, source, collector, uri, started, "failed", None, error, []
            ),
        )
        raise
    return InventoryResult(
        run_id, source, resources, new, time.perf_counter() - clock, tuple(snapshot.notes)
    )


def _upsert(
    conn: duckdb.DuckDBPyConnection, snapshot: ResourceSnapshot, source: str
) -> tuple[int, int]:
    template = ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in RESOURCE_COLUMNS.items())
    columns = ", ".join(f"CAST(s.{n} AS {t}) AS {n}" for n, t in RESOURCE_COLUMNS.items())
    updates = ", ".join(f"{n} = excluded.{n}" for n in RESOURCE_COLUMNS if n != "resource_id")
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE incoming AS
        SELECT {columns}
        FROM ((SELECT {template} WHERE false) UNION ALL BY NAME (SELECT * FROM snapshot)) AS s
        """
    )
    missing = conn.execute("SELECT count(*) FROM incoming WHERE resource_id IS NULL").fetchone()
    if missing and missing[0]:
        raise IngestError(f"{snapshot.uri}: {missing[0]} resource(s) without an id")
    new_row = conn.execute(
        """
        SELECT count(*) FROM incoming i
        WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.source = ? AND r.resource_id = i.resource_id)
        """,
        [source],
    ).fetchone()
    conn.execute(
        f"""
        INSERT INTO resources
        SELECT ? AS source, incoming.*, ? AS first_seen, ? AS last_seen FROM incoming
        ON CONFLICT (source, resource_id) DO UPDATE SET {updates}, last_seen = excluded.last_seen
        """,
        [source, snapshot.seen_at, snapshot.seen_at],
    )
    total = conn.execute("SELECT count(*) FROM incoming").fetchone()
    return (int(total[0]) if total else 0), (int(new_row[0]) if new_row else 0)
