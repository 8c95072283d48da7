"""The ingest transaction: replace exactly the slice a delivery covers, or change nothing.

A collector hands over a `CostDelivery`: the files it read, their checksum, a DuckDB
SELECT that yields canonical FOCUS columns from them, and per-billing-period figures it
measured while validating. Here, in one transaction, the delivery's (source x billing
period) slice of `cost` is deleted and re-inserted, overlaps between sources are
re-detected and the run is recorded in `ingest_runs`. Any failure rolls everything back
and records the failed run on its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb

from finops.errors import FinopsError, IngestError, PartialDeliveryError
from finops.warehouse.cost_storage import store_columns
from finops.warehouse.runs import record_failure, transaction
from finops.warehouse.schema import COLUMNS_BY_NAME


@dataclass(frozen=True)
class PeriodStats:
    """What a delivery holds for one billing period."""

    billing_period_start: datetime
    days: int
    rows: int
    billed_cost: Decimal
    effective_cost: Decimal


@dataclass
class CostDelivery:
    """A validated set of files ready to replace their slice of the `cost` table."""

    uri: str
    files: tuple[Path, ...]
    checksum: str
    select_sql: str
    """SELECT producing FOCUS-named columns (any subset of `cost`'s, always including Tags,
    plus `extra_columns`)."""
    periods: tuple[PeriodStats, ...]
    extra_columns: dict[str, str] = field(default_factory=dict)
    """Custom x_ columns this delivery brings, with their SQL types; added to `cost` if new."""
    notes: list[str] = field(default_factory=list)
    """What was normalised on the way in, for the run's summary."""
    cleanup: Callable[[], None] | None = None
    tag_set_ids: bool = False
    """`select_sql` yields `x_TagSetId` (the hash of Tags) itself, e.g. once per tag set."""

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.periods)

    @property
    def billed_cost(self) -> Decimal:
        return sum((p.billed_cost for p in self.periods), Decimal(0))

    @property
    def effective_cost(self) -> Decimal:
        return sum((p.effective_cost for p in self.periods), Decimal(0))


@dataclass(frozen=True)
class Overlap:
    billing_account_id: str
    billing_period_start: datetime
    sources: tuple[str, ...]
    winner: str
    reason: str


@dataclass(frozen=True)
class IngestResult:
    run_id: str
    source: str
    status: str
    """success | unchanged | failed"""
    rows: int
    billed_cost: Decimal
    effective_cost: Decimal
    periods: tuple[datetime, ...]
    replaced_rows: int
    seconds: float
    notes: tuple[str, ...] = ()
    overlaps: tuple[Overlap, ...] = ()


def _now() -> datetime:
    return datetime.now(UTC)


def run_ingest(
    connect: Callable[[], duckdb.DuckDBPyConnection],
    read: Callable[[], CostDelivery],
    *,
    source: str,
    collector: str,
    uri: str,
    force: bool = False,
    source_priority: Sequence[str] = (),
) -> IngestResult:
    """Read a delivery (outside the lock), then apply it in one warehouse transaction."""
    started, clock = _now(), time.perf_counter()
    run_id = uuid.uuid4().hex
    delivery: CostDelivery | None = None
    try:
        delivery = read()
        with connect() as conn:
            return _apply(
                conn, delivery, run_id, source, collector, force, source_priority, started, clock
            )
    except FinopsError as exc:
        failed, error = delivery, str(exc)
        record_failure(
            connect,
            lambda conn: _record_run(
                conn, run_id, source, collector, uri, failed, started, "failed", error=error
            ),
        )
        raise
    finally:
        if delivery is not None and delivery.cleanup is not None:
            delivery.cleanup()


def _apply(
    conn: duckdb.DuckDBPyConnection,
    delivery: CostDelivery,
    run_id: str,
    source: str,
    collector: str,
    force: bool,
    source_priority: Sequence[str],
    started: datetime,
    clock: float,
) -> IngestResult:
    period_starts = [p.billing_period_start for p in delivery.periods]
    with transaction(conn, f"{delivery.uri}: the warehouse refused the delivery"):
        if _is_unchanged(conn, source, delivery):
            _record_run(
                conn, run_id, source, collector, delivery.uri, delivery, started, "unchanged"
            )
            return _result(run_id, source, "unchanged", delivery, 0, clock)
        _refuse_partial_delivery(conn, source, delivery, force)
        _store_columns(conn, delivery)
        replaced = _delete_slice(conn, source, period_starts)
        inserted = _insert(conn, delivery, source, run_id)
        if inserted != delivery.rows:
            raise IngestError(
                f"{delivery.uri}: read {delivery.rows} rows but inserted {inserted}; nothing was changed"
            )
        _record_run(conn, run_id, source, collector, delivery.uri, delivery, started, "success")
        overlaps = _refresh_overlaps(conn, source_priority)
    mine = tuple(o for o in overlaps if source in o.sources)
    return _result(run_id, source, "success", delivery, replaced, clock, mine)


def _result(
    run_id: str,
    source: str,
    status: str,
    delivery: CostDelivery,
    replaced: int,
    clock: float,
    overlaps: tuple[Overlap, ...] = (),
) -> IngestResult:
    return IngestResult(
        run_id=run_id,
        source=source,
        status=status,
        rows=delivery.rows,
        billed_cost=delivery.billed_cost,
        effective_cost=delivery.effective_cost,
        periods=tuple(p.billing_period_start for p in delivery.periods),
        replaced_rows=replaced,
        seconds=time.perf_counter() - clock,
        notes=tuple(delivery.notes),
        overlaps=overlaps,
    )


def _is_unchanged(conn: duckdb.DuckDBPyConnection, source: str, delivery: CostDelivery) -> bool:
    """Same files as the last successful run that wrote these billing periods."""
    wanted = sorted(p.billing_period_start.date() for p in delivery.periods)
    row = conn.execute(
        """
        SELECT checksum, list_sort(periods) FROM ingest_runs
        WHERE source = ? AND status = 'success' AND list_has_any(periods, ?::DATE[])
        ORDER BY finished_at DESC LIMIT 1
        """,
        [source, wanted],
    ).fetchone()
    return row is not None and row[0] == delivery.checksum and list(row[1]) == wanted


def _refuse_partial_delivery(
    conn: duckdb.DuckDBPyConnection, source: str, delivery: CostDelivery, force: bool
) -> None:
    held = dict(
        conn.execute(
            """
            SELECT "BillingPeriodStart", count(DISTINCT CAST("ChargePeriodStart" AS DATE))
            FROM cost WHERE "x_Source" = ? AND "BillingPeriodStart" IN (SELECT unnest(?::TIMESTAMPTZ[]))
            GROUP BY 1
            """,
            [source, [p.billing_period_start for p in delivery.periods]],
        ).fetchall()
    )
    for period in delivery.periods:
        days_held = held.get(period.billing_period_start, 0)
        if period.days < days_held and not force:
            raise PartialDeliveryError(
                f"{delivery.uri}: covers {period.days} day(s) of billing period "
                f"{period.billing_period_start:%Y-%m} but source {source!r} already holds "
                f"{days_held}; refusing to replace a fuller month with a partial delivery "
                "(use --force if this restatement really is smaller)"
            )


def _store_columns(conn: duckdb.DuckDBPyConnection, delivery: CostDelivery) -> None:
    """Let `cost_rows` hold every column the delivery fills (see `cost_storage`)."""
    described = conn.execute(f"DESCRIBE SELECT * FROM ({delivery.select_sql})").fetchall()
    columns = {
        name: COLUMNS_BY_NAME[name].sql_type if name in COLUMNS_BY_NAME else sql_type
        for name, sql_type, *_ in described
    }
    columns.update(delivery.extra_columns)
    store_columns(conn, columns)


def _delete_slice(
    conn: duckdb.DuckDBPyConnection, source: str, period_starts: list[datetime]
) -> int:
    row = conn.execute(
        """
        DELETE FROM cost_rows
        WHERE "x_Source" = ? AND "BillingPeriodStart" IN (SELECT unnest(?::TIMESTAMPTZ[]))
        """,
        [source, period_starts],
    ).fetchone()
    return int(row[0]) if row else 0


def _insert(
    conn: duckdb.DuckDBPyConnection, delivery: CostDelivery, source: str, run_id: str
) -> int:
    tag_set_id = (
        ""
        if delivery.tag_set_ids
        else ', CASE WHEN delivery."Tags" IS NOT NULL THEN hash(delivery."Tags") END AS "x_TagSetId"'
    )
    # Rows of `cost` have no order that means anything (every reader sorts), and keeping the
    # file's order makes DuckDB buffer the whole insert under `warehouse.memory_limit`:
    # about 1.8x slower at 1 M rows with the 1 GB default.
    conn.execute("SET preserve_insertion_order = false")
    row = conn.execute(
        f"""
        INSERT INTO cost_rows BY NAME
        SELECT delivery.*, ? AS "x_Source", ? AS "x_IngestId"{tag_set_id}
        FROM ({delivery.select_sql}) AS delivery
        """,
        [source, run_id],
    ).fetchone()
    conn.execute(
        """
        INSERT INTO tag_sets
        SELECT "x_TagSetId", any_value("Tags") FROM cost_rows
        WHERE "x_IngestId" = ? AND "x_TagSetId" IS NOT NULL
        GROUP BY 1
        ON CONFLICT DO NOTHING
        """,
        [run_id],
    )
    return int(row[0]) if row else 0


def _refresh_overlaps(
    conn: duckdb.DuckDBPyConnection, source_priority: Sequence[str]
) -> list[Overlap]:
    """Find billing account x period pairs that two sources both bill, and pick a winner.

    The first source in `ingest.source_priority` wins; failing that, the source ingested
    most recently (the newer delivery is the likelier to be right).
    """
    rows = conn.execute(
        """
        WITH pairs AS (
            SELECT "BillingAccountId" AS account, "BillingPeriodStart" AS period,
                   list(DISTINCT "x_Source" ORDER BY "x_Source") AS sources
            FROM cost GROUP BY 1, 2 HAVING count(DISTINCT "x_Source") > 1
        ),
        latest AS (
            SELECT source, max(finished_at) AS finished_at FROM ingest_runs
            WHERE status = 'success' GROUP BY source
        )
        SELECT p.account, p.period, p.sources,
               list(l.source ORDER BY l.finished_at DESC NULLS LAST)
                 FILTER (WHERE l.source IS NOT NULL) AS by_recency
        FROM pairs p LEFT JOIN latest l ON list_contains(p.sources, l.source)
        GROUP BY ALL
        """
    ).fetchall()
    detected = _now()
    overlaps = []
    for account, period, sources, by_recency in rows:
        ranked = [s for s in source_priority if s in sources]
        if ranked:
            winner, reason = ranked[0], "first in ingest.source_priority"
        else:
            winner = (by_recency or sources)[0]
            reason = "ingested most recently (no ingest.source_priority set)"
        overlaps.append(Overlap(account, period, tuple(sources), winner, reason))
    conn.execute("DELETE FROM source_overlaps")
    if overlaps:
        conn.executemany(
            "INSERT INTO source_overlaps VALUES (?, ?, ?, ?, ?, ?)",
            [
                [
                    o.billing_account_id,
                    o.billing_period_start,
                    list(o.sources),
                    o.winner,
                    o.reason,
                    detected,
                ]
                for o in overlaps
            ],
        )
    return overlaps


def _record_run(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    source: str,
    collector: str,
    uri: str,
    delivery: CostDelivery | None,
    started: datetime,
    status: str,
    error: str | None = None,
) -> None:
    conn.execute(
        """
        INSERT INTO ingest_runs (run_id, source, collector, uri, checksum, files, periods, rows,
                                 billed_cost, effective_cost, started_at, finished_at, status,
                                 error, notes)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            run_id,
            source,
            collector,
            uri,
            delivery.checksum if delivery else None,
            len(delivery.files) if delivery else None,
            sorted(p.billing_period_start.date() for p in delivery.periods) if delivery else None,
            delivery.rows if delivery else None,
            delivery.billed_cost if delivery else None,
            delivery.effective_cost if delivery else None,
            started,
            _now(),
            status,
            error,
            list(delivery.notes) if delivery else [],
        ],
    )
