"""The GPU-sample ingest: replace each node's time window of a source, then its hourly rollups.

A collector hands over a `GpuDelivery`: a DuckDB SELECT yielding `GPU_SAMPLE_COLUMNS`
(over files, or over Arrow tables it parsed, registered under the names it gives). In one
transaction the delivery is staged, every (source, node) pair loses the samples inside the
time span the delivery covers for that node, the new samples go in, and the hourly rollups
of the touched hours are recomputed from raw samples. Gaps stay gaps: nothing is
interpolated, and an hour's `samples` says how well it is covered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from finops.errors import FinopsError, IngestError
from finops.warehouse.runs import record_failure, transaction
from finops.warehouse.schema import GPU_SAMPLE_COLUMNS


@dataclass
class GpuDelivery:
    uri: str
    select_sql: str
    """SELECT yielding GPU_SAMPLE_COLUMNS (missing ones are null)."""
    tables: dict[str, pa.Table] = field(default_factory=dict)
    """Arrow tables `select_sql` reads, by the name it uses for them."""
    files: tuple[Path, ...] = ()
    checksum: str | None = None
    notes: list[str] = field(default_factory=list)
    cleanup: Callable[[], None] | None = None


@dataclass(frozen=True)
class GpuIngestResult:
    run_id: str
    source: str
    status: str
    rows: int
    nodes: int
    gpus: int
    window_start: datetime | None
    window_end: datetime | None
    replaced_rows: int
    hours: int
    seconds: float
    notes: tuple[str, ...] = ()


def run_gpu_ingest(
    connect: Callable[[], duckdb.DuckDBPyConnection],
    read: Callable[[], GpuDelivery],
    *,
    source: str,
    collector: str,
    uri: str,
    idle_threshold_pct: float,
) -> GpuIngestResult:
    started, clock = datetime.now(UTC), time.perf_counter()
    run_id = uuid.uuid4().hex
    delivery: GpuDelivery | None = None
    try:
        delivery = read()
        with connect() as conn:
            return _apply(
                conn, delivery, run_id, source, collector, idle_threshold_pct, started, clock
            )
    except FinopsError as exc:
        failed, error = delivery, str(exc)
        record_failure(
            connect,
            lambda conn: _record(
                conn, run_id, source, collector, uri, failed, started, "failed", None, error
            ),
        )
        raise
    finally:
        if delivery is not None and delivery.cleanup is not None:
            delivery.cleanup()


def _apply(
    conn: duckdb.DuckDBPyConnection,
    delivery: GpuDelivery,
    run_id: str,
    source: str,
    collector: str,
    idle_threshold_pct: float,
    started: datetime,
    clock: float,
) -> GpuIngestResult:
    for name, table in delivery.tables.items():
        conn.register(name, table)
    columns = ", ".join(
        f"CAST(d.{name} AS {sql_type}) AS {name}" for name, sql_type in GPU_SAMPLE_COLUMNS.items()
    )
    conn.execute("SET preserve_insertion_order = false")  # lets big inserts stream
    try:
        with transaction(conn, f"{delivery.uri}: the warehouse refused the samples"):
            # A typed empty row set first, so columns the delivery lacks come out as nulls.
            template = ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in GPU_SAMPLE_COLUMNS.items())
            conn.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE staged AS
                SELECT {columns}
                FROM ((SELECT {template} WHERE false) UNION ALL BY NAME ({delivery.select_sql})) AS d
                WHERE d.ts IS NOT NULL
                """
            )
            conn.execute(
                """
                CREATE OR REPLACE TEMP TABLE spans AS
                SELECT node, min(ts) AS first_ts, max(ts) AS last_ts FROM staged GROUP BY node
                """
            )
            stats = conn.execute(
                "SELECT count(*), count(DISTINCT node), count(DISTINCT coalesce(gpu_uuid, node || '/' || gpu_index)), "
                "min(ts), max(ts) FROM staged"
            ).fetchone()
            assert stats is not None
            rows, nodes, gpus, first, last = stats
            if rows == 0:
                raise IngestError(f"{delivery.uri}: no GPU samples found; nothing was changed")
            replaced = conn.execute(
                """
                DELETE FROM gpu_samples g USING spans s
                WHERE g.source = ? AND g.node = s.node AND g.ts BETWEEN s.first_ts AND s.last_ts
                """,
                [source],
            ).fetchone()
            conn.execute(
                "INSERT INTO gpu_samples BY NAME SELECT *, ? AS source, ? AS ingest_id FROM staged",
                [source, run_id],
            )
            hours = _refresh_rollups(conn, source, idle_threshold_pct)
            window = (first, last)
            _record(
                conn,
                run_id,
                source,
                collector,
                delivery.uri,
                delivery,
                started,
                "success",
                (rows, window),
            )
    finally:
        for name in delivery.tables:
            conn.unregister(name)
    return GpuIngestResult(
        run_id=run_id,
        source=source,
        status="success",
        rows=rows,
        nodes=nodes,
        gpus=gpus,
        window_start=first,
        window_end=last,
        replaced_rows=int(replaced[0]) if replaced else 0,
        hours=hours,
        seconds=time.perf_counter() - clock,
        notes=tuple(delivery.notes),
    )


def _refresh_rollups(
    conn: duckdb.DuckDBPyConnection, source: str, idle_threshold_pct: float
) -> int:
    """Recompute the hourly rollups of every (node, hour) the delivery touched, from raw samples."""
    conn.execute(
        """
        CREATE OR REPLACE TEMP TABLE touched AS
        SELECT DISTINCT node, date_trunc('hour', ts) AS hour FROM staged
        """
    )
    conn.execute(
        """
        DELETE FROM gpu_hourly h USING touched t
        WHERE h.source = ? AND h.node = t.node AND h.hour = t.hour
        """,
        [source],
    )
    # One day at a time: an exact p95 holds every value of its group in memory, so a
    # month of 1,000 GPUs at once would outgrow the warehouse's memory limit.
    days = conn.execute(
        "SELECT DISTINCT date_trunc('day', hour) FROM touched ORDER BY 1"
    ).fetchall()
    for (day,) in days:
        conn.execute(
            """
            INSERT INTO gpu_hourly
            SELECT date_trunc('hour', g.ts) AS hour, g.source, g.node, g.gpu_uuid, g.gpu_index,
                   any_value(g.model), any_value(g.resource_id), any_value(g.cluster),
                   list(DISTINCT g.namespace) FILTER (WHERE g.namespace IS NOT NULL),
                   count(*) AS samples,
                   avg(gpu_utilisation(g.gr_engine_active, g.gpu_util_pct)),
                   quantile_cont(gpu_utilisation(g.gr_engine_active, g.gpu_util_pct), 0.95),
                   max(gpu_utilisation(g.gr_engine_active, g.gpu_util_pct)),
                   avg(gpu_utilisation(g.gr_engine_active, g.gpu_util_pct)) < ?,
                   avg(g.mem_used_mib), max(g.mem_total_mib), avg(g.power_w)
            FROM gpu_samples g
            JOIN touched t ON g.node = t.node AND date_trunc('hour', g.ts) = t.hour
            WHERE g.source = ? AND g.ts >= ? AND g.ts < ? + INTERVAL 1 DAY
            GROUP BY ALL
            """,
            [idle_threshold_pct, source, day, day],
        )
    row = conn.execute("SELECT count(*) FROM touched").fetchone()
    return int(row[0]) if row else 0


def _record(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    source: str,
    collector: str,
    uri: str,
    delivery: GpuDelivery | None,
    started: datetime,
    status: str,
    outcome: tuple[int, tuple[datetime, datetime]] | None,
    error: str | None = None,
) -> None:
    rows, window = outcome if outcome else (None, (None, None))
    conn.execute(
        """
        INSERT INTO ingest_runs (run_id, source, collector, uri, checksum, files, rows,
                                 started_at, finished_at, status, error, notes, window_start, window_end)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            run_id,
            source,
            collector,
            uri,
            delivery.checksum if delivery else None,
            len(delivery.files) if delivery else None,
            rows,
            started,
            datetime.now(UTC),
            status,
            error,
            list(delivery.notes) if delivery else [],
            window[0],
            window[1],
        ],
    )
