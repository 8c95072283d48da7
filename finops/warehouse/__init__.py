"""The DuckDB warehouse: schema, migrations, connections and the ingest transaction.

It imports nothing of ours but `config` and `errors`: it knows no source format, no
question and no screen. Every write to the file goes through `Warehouse`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from finops.config import Config, resolve_db_path
from finops.warehouse.anomalies import acknowledge_anomaly, store_anomalies
from finops.warehouse.connection import connect
from finops.warehouse.events import EventDelivery, EventIngestResult, run_event_ingest
from finops.warehouse.fx import store_fx_rates
from finops.warehouse.gpu import GpuDelivery, GpuIngestResult, run_gpu_ingest
from finops.warehouse.ingest import CostDelivery, IngestResult, Overlap, PeriodStats, run_ingest
from finops.warehouse.inventory import InventoryResult, ResourceSnapshot, run_inventory_refresh
from finops.warehouse.prices import PriceList, store_prices

__all__ = [
    "CostDelivery",
    "EventDelivery",
    "EventIngestResult",
    "GpuDelivery",
    "GpuIngestResult",
    "IngestResult",
    "InventoryResult",
    "Overlap",
    "PeriodStats",
    "PriceList",
    "ResourceSnapshot",
    "Warehouse",
]


class Warehouse:
    """One DuckDB warehouse file, opened briefly for each unit of work."""

    def __init__(
        self,
        path: Path,
        *,
        lock_timeout_s: float = 30.0,
        memory_limit: str = "1GB",
        source_priority: tuple[str, ...] = (),
        idle_threshold_pct: float = 5.0,
    ) -> None:
        self.path = path
        self.lock_timeout_s = lock_timeout_s
        self.memory_limit = memory_limit
        self.source_priority = source_priority
        self.idle_threshold_pct = idle_threshold_pct

    @classmethod
    def from_config(cls, config: Config, db: Path | None = None) -> Warehouse:
        return cls(
            resolve_db_path(config, db),
            lock_timeout_s=config.warehouse.lock_timeout_s,
            memory_limit=config.warehouse.memory_limit,
            source_priority=config.ingest.source_priority,
            idle_threshold_pct=config.gpu.idle_threshold_pct,
        )

    def reader(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A read-only connection: sees the state before or after an ingest, never half of one."""
        return connect(
            self.path, read_only=True, timeout_s=self.lock_timeout_s, memory_limit=self.memory_limit
        )

    def writer(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A read-write connection (creating and migrating the file as needed)."""
        return connect(
            self.path,
            read_only=False,
            timeout_s=self.lock_timeout_s,
            memory_limit=self.memory_limit,
        )

    @contextmanager
    def _writer_factory(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.writer() as conn:
            yield conn

    def ingest_cost(
        self,
        read: Callable[[], CostDelivery],
        *,
        source: str,
        collector: str,
        uri: str,
        force: bool = False,
    ) -> IngestResult:
        """Replace the (source x billing period) slice that `read()`'s delivery covers."""
        return run_ingest(
            self._writer_factory,
            read,
            source=source,
            collector=collector,
            uri=uri,
            force=force,
            source_priority=self.source_priority,
        )

    def ingest_gpu(
        self, read: Callable[[], GpuDelivery], *, source: str, collector: str, uri: str
    ) -> GpuIngestResult:
        """Replace, per node, the time span of `source` that `read()`'s samples cover."""
        return run_gpu_ingest(
            self._writer_factory,
            read,
            source=source,
            collector=collector,
            uri=uri,
            idle_threshold_pct=self.idle_threshold_pct,
        )

    def refresh_inventory(
        self, read: Callable[[], ResourceSnapshot], *, source: str, collector: str, uri: str
    ) -> InventoryResult:
        """Upsert the resources `read()` saw, keeping when each was first and last seen."""
        return run_inventory_refresh(
            self._writer_factory, read, source=source, collector=collector, uri=uri
        )

    def ingest_events(
        self, read: Callable[[], EventDelivery], *, source: str, collector: str, uri: str
    ) -> EventIngestResult:
        """Upsert delivery and quality events by their ids (a resent event replaces itself)."""
        return run_event_ingest(
            self._writer_factory, read, source=source, collector=collector, uri=uri
        )

    def store_prices(self, prices: PriceList) -> int:
        """Replace a source's prices of one day."""
        return store_prices(self._writer_factory, prices)

    def store_anomalies(
        self, found: pa.Table, *, first_day: date, last_day: date, now: datetime
    ) -> int:
        """Upsert the anomalies detected for days [first_day, last_day] (idempotent)."""
        return store_anomalies(
            self._writer_factory, found, first_day=first_day, last_day=last_day, now=now
        )

    def acknowledge_anomaly(self, anomaly_id: str, *, by: str, now: datetime) -> None:
        """Mark an anomaly acknowledged (an id or an unambiguous prefix of 6+ characters)."""
        acknowledge_anomaly(self._writer_factory, anomaly_id, by=by, now=now)

    def store_fx_rates(self, source: str, rates: pa.Table) -> int:
        """Replace one source's FX rates."""
        return store_fx_rates(self._writer_factory, source, rates)

    def query(self, sql: str, params: list[object] | None = None) -> pa.Table:
        """Run one read-only query and return its result as an Arrow table."""
        with self.reader() as conn:
            return conn.sql(sql, params=params or []).to_arrow_table()

    def runs(self, limit: int = 50) -> pa.Table:
        """Ingest history, newest first."""
        return self.query(
            """
            SELECT started_at, source, collector, status, rows, billed_cost, effective_cost,
                   periods, uri, checksum, error, notes, run_id,
                   date_diff('millisecond', started_at, finished_at) / 1000.0 AS seconds
            FROM ingest_runs ORDER BY started_at DESC LIMIT ?
            """,
            [limit],
        )
