"""How pages get their figures: the configured warehouse, read briefly, results cached.

Every figure comes from `finops.analytics` (or the recommendation store); this module only
opens the warehouse, calls them and caches what they return with `st.cache_data`, keyed by
the question (period, cost basis, ...) and a marker of the file's last change, so a new
ingest or a recommendation's state change shows at once and repeated views cost nothing.

Concurrency (DESIGN.md): connections are short-lived. While another process (an ingest)
holds the file, the opener waits behind the page's spinner, retrying a bounded number of
times, and the page then says the warehouse is busy: never a lock error. Within this one
process DuckDB refuses a read-only connection beside a read-write one, so the app's reads
share a readers-writer lock that a recommendation's state change takes exclusively.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from finops.analytics.anomalies import list_anomalies
from finops.analytics.chargeback import (
    Allocation,
    CostBasis,
    Dimension,
    allocate,
    allocation_coverage,
    allocation_history,
    billing_months,
    chargeback,
    parse_dimensions,
)
from finops.analytics.dora import DeliveryScope, dora, load_bands
from finops.analytics.forecast import forecast_variance
from finops.analytics.gpu import GpuAttribution, gpu_hours, gpu_usage, unmatched_gpu_instances
from finops.analytics.kpis import finops_kpis
from finops.analytics.process import adoption, oncall_load
from finops.analytics.quality import model_quality
from finops.analytics.roi import roi
from finops.analytics.scope import TeamMapping, quarters
from finops.config import Config, load_config
from finops.errors import WarehouseBusyError
from finops.periods import Period, add_months, parse_period, quarter_containing
from finops.policies import store
from finops.warehouse import Warehouse

BUSY_RETRIES = 3
"""How many times a page re-tries a warehouse another process keeps busy (each try waits
up to `warehouse.lock_timeout_s`) before it says so."""
ENVIRONMENT_TAG_KEYS: tuple[str, ...] = ("environment", "env")
"""The tags that name a resource's environment (prod, staging, dev), tried in order."""
NO_ENVIRONMENT = "(none)"
FILTER_DIMENSIONS: tuple[str, ...] = ("team", "provider", "environment")


# --- configuration and connections ------------------------------------------------------


def settings() -> Config:
    return _settings(os.environ.get("FINOPS_CONFIG"))


@st.cache_resource
def _settings(config_dir: str | None) -> Config:
    return load_config(Path(config_dir) if config_dir else None)


def warehouse() -> Warehouse:
    return Warehouse.from_config(settings())


def last_change(wh: Warehouse) -> str:
    """A marker that changes whenever anything is written to the warehouse (an ingest, a
    recommendation's state, FX rates): part of every cache key. The file's and its
    write-ahead log's modification times, so no connection is needed to compute it."""
    stamps = [str(p.stat().st_mtime_ns) for p in (wh.path, Path(f"{wh.path}.wal")) if p.exists()]
    return "/".join(stamps) or "none"


class _ReadersWriter:
    """Many readers or one writer within this process (DuckDB's rule for one file)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._writing)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._writing and self._readers == 0)
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


_FILE_ACCESS = _ReadersWriter()


_RENDER = threading.local()
"""The connection the data calls of the page being drawn share (see `one_connection`)."""


@contextmanager
def one_connection() -> Iterator[None]:
    """While a page is drawn, its data calls share one read-only connection: opened by the
    first call the cache does not answer, closed when the page is drawn (or before a write).

    A connection's first queries read the file into DuckDB's buffers; sharing it spares
    each later query that, and the open itself. It is held for one render (a few seconds
    at most), so an ingest in another process still gets the file between renders.
    """
    _RENDER.shared = {}
    try:
        yield
    finally:
        _release_shared()
        del _RENDER.shared


def _release_shared() -> None:
    shared = getattr(_RENDER, "shared", {})
    for stack, _ in shared.values():
        stack.close()
    shared.clear()


@contextmanager
def reading(db: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection: the render's shared one (`one_connection`), else its own."""
    shared: dict[str, tuple[ExitStack, duckdb.DuckDBPyConnection]] | None = getattr(
        _RENDER, "shared", None
    )
    if shared is None:
        with _open_reader(db) as conn:
            yield conn
        return
    if db not in shared:
        stack = ExitStack()
        try:
            shared[db] = (stack, stack.enter_context(_open_reader(db)))
        except BaseException:
            stack.close()
            raise
    yield shared[db][1]


@contextmanager
def _open_reader(db: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-only connection, re-tried while another process holds the file."""
    wh = Warehouse.from_config(settings(), Path(db))
    with _FILE_ACCESS.reading(), ExitStack() as stack:
        for attempt in range(BUSY_RETRIES):
            try:
                conn = stack.enter_context(wh.reader())
                break
            except WarehouseBusyError:
                if attempt == BUSY_RETRIES - 1:
                    raise
        yield conn


def change_recommendation(
    db: str,
    rec_id: str,
    to_state: str,
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """The CLI's own state change (`finops.policies.store.change_state`), under the lock."""
    wh = Warehouse.from_config(settings(), Path(db))
    _release_shared()
    with _FILE_ACCESS.writing():
        return store.change_state(
            wh, rec_id, to_state, actor=actor, now=now, reason=reason, until=until
        )


def clock() -> datetime:
    """Now, for forecasts, snoozes and realised savings (the analytics take it as a parameter)."""
    return datetime.now(UTC)


# --- periods and filter values ------------------------------------------------------------


def to_period(text: str) -> Period:
    config = settings()
    return parse_period(
        text,
        fiscal_year_start_month=config.fiscal_year_start_month,
        fiscal_year_label=config.fiscal_year_label,
    )


def previous_period(period: Period) -> Period:
    """The month or fiscal quarter before `period`."""
    if period.kind == "month":
        return to_period(f"{add_months(period.start, -1):%Y-%m}")
    config = settings()
    return quarter_containing(
        add_months(period.start, -3),
        fiscal_year_start_month=config.fiscal_year_start_month,
        fiscal_year_label=config.fiscal_year_label,
    )


def quarter_of(period: Period) -> Period:
    config = settings()
    return quarter_containing(
        period.start,
        fiscal_year_start_month=config.fiscal_year_start_month,
        fiscal_year_label=config.fiscal_year_label,
    )


def scorecard_buckets(period: Period) -> list[Period]:
    config = settings()
    return quarters(
        period,
        fiscal_year_start_month=config.fiscal_year_start_month,
        fiscal_year_label=config.fiscal_year_label,
    )


@st.cache_data(show_spinner=False)
def months(db: str, marker: str) -> list[str]:
    with reading(db) as conn:
        return billing_months(conn)


def period_choices(month_list: list[str]) -> list[str]:
    """Months newest first, then the fiscal quarters they fall in, newest first."""
    labels = [quarter_of(to_period(m)).label for m in month_list]
    return [*month_list, *dict.fromkeys(labels)]


@st.cache_data(show_spinner=False)
def filter_values(db: str, marker: str) -> dict[str, list[str]]:
    """The providers and environments the bill names (the team list comes from finops.yaml)."""
    with reading(db) as conn:
        providers = conn.sql(
            'SELECT DISTINCT "ProviderName" FROM cost_resolved WHERE "ProviderName" IS NOT NULL ORDER BY 1'
        ).fetchall()
        keys = ", ".join("tags[?]" for _ in ENVIRONMENT_TAG_KEYS)
        environments = conn.sql(
            f"SELECT DISTINCT coalesce({keys}) AS e FROM tag_sets WHERE e IS NOT NULL ORDER BY 1",
            params=list(ENVIRONMENT_TAG_KEYS),
        ).fetchall()
    return {
        "provider": [p for (p,) in providers],
        "environment": [e for (e,) in environments],
    }


def environment_dimension() -> Dimension:
    keys = ", ".join("tags[?]" for _ in ENVIRONMENT_TAG_KEYS)
    return Dimension("environment", None, f"coalesce({keys})", ENVIRONMENT_TAG_KEYS, False)


# --- charge-back --------------------------------------------------------------------------


def _dimensions(by: tuple[str, ...]) -> list[Dimension]:
    config = settings()
    dims = []
    for name in dict.fromkeys((*by, *FILTER_DIMENSIONS)):
        if name == "environment":
            dims.append(environment_dimension())
        else:
            dims += parse_dimensions(name, config.allocation, config.teams)
    return dims


def _basis(cost: str) -> CostBasis:
    return "billed" if cost == "billed" else "effective"


@st.cache_data(show_spinner=False)
def spend(db: str, marker: str, period_text: str, cost: str, by: tuple[str, ...]) -> pa.Table:
    """`chargeback` by `by` and the filter dimensions (team, provider, environment), so the
    page narrows it to the chosen filters and the viewer's teams before anything is shown."""
    config = settings()
    with reading(db) as conn:
        return chargeback(
            conn,
            to_period(period_text),
            _dimensions(by),
            cost=_basis(cost),
            unallocated_label=config.allocation.unallocated_label,
        )


def months_span(last: Period, count: int) -> Period:
    """`count` billing months up to and including `last`'s, selected by BillingPeriodStart."""
    first = add_months(last.end, -count)
    return Period(f"{first:%Y-%m}..{add_months(last.end, -1):%Y-%m}", "month", first, last.end)


@st.cache_data(show_spinner=False)
def spend_trend(
    db: str, marker: str, period_text: str, cost: str, count: int, by: tuple[str, ...]
) -> pa.Table:
    """Monthly charge-back over the `count` months up to the period's end, by `by`."""
    config = settings()
    span = months_span(to_period(period_text), count)
    with reading(db) as conn:
        return chargeback(
            conn,
            span,
            _dimensions(("month", *by)),
            cost=_basis(cost),
            unallocated_label=config.allocation.unallocated_label,
        )


@st.cache_data(show_spinner=False)
def history(db: str, marker: str, cost: str) -> pa.Table:
    """The allocation lines of every month held: the allocation is computed once, and every
    month's or quarter's allocated, coverage and forecast figures are read from it."""
    with reading(db) as conn:
        return allocation_history(conn, Allocation.from_config(settings()), cost=_basis(cost))


@st.cache_data(show_spinner=False)
def allocated(db: str, marker: str, period_text: str, cost: str, grain: str = "period") -> pa.Table:
    """`allocate` by team: direct and shared cost per team, `(unallocated)` and `(idle)`."""
    allocation = Allocation.from_config(settings())
    lines = history(db, marker, cost)
    with reading(db) as conn:
        return allocate(
            conn,
            to_period(period_text),
            allocation,
            by="team",
            grain=grain,  # type: ignore[arg-type]
            cost=_basis(cost),
            lines=lines,
        )


@st.cache_data(show_spinner=False)
def coverage(db: str, marker: str, period_text: str, cost: str) -> pa.Table:
    allocation = Allocation.from_config(settings())
    lines = history(db, marker, cost)
    with reading(db) as conn:
        return allocation_coverage(
            conn, to_period(period_text), allocation, cost=_basis(cost), lines=lines
        )


@st.cache_data(show_spinner=False)
def variance(db: str, marker: str, period_text: str, cost: str) -> pa.Table:
    """The period's actual against the forecast made at its start, per team and `(total)`."""
    allocation = Allocation.from_config(settings())
    lines = history(db, marker, cost)
    with reading(db) as conn:
        return forecast_variance(
            conn, to_period(period_text), allocation, cost=_basis(cost), lines=lines
        )


@st.cache_data(show_spinner=False)
def anomalies(db: str, marker: str) -> pa.Table:
    with reading(db) as conn:
        return list_anomalies(conn, "open")


# --- recommendations ----------------------------------------------------------------------


@st.cache_data(show_spinner=False)
def recommendations(db: str, marker: str, teams: tuple[str, ...] | None) -> pa.Table:
    with reading(db) as conn:
        return store.list_recommendations(conn, teams=teams)


@st.cache_data(show_spinner=False)
def savings(db: str, marker: str, teams: tuple[str, ...] | None) -> pa.Table:
    with reading(db) as conn:
        return store.savings_totals(conn, teams=teams)


@st.cache_data(show_spinner=False)
def realised(db: str, marker: str, teams: tuple[str, ...] | None, as_of: datetime) -> pa.Table:
    """Realised savings of applied recommendations, limited to the viewer's teams' ones."""
    with reading(db) as conn:
        table = store.realised_savings(conn, as_of)
        if teams is None:
            return table
        mine = store.list_recommendations(conn, teams=teams, active_only=False)
    return table.filter(pc.is_in(table["rec_id"], mine["rec_id"]))


@st.cache_data(show_spinner=False)
def recommendation_history(db: str, marker: str, rec_id: str) -> pa.Table:
    with reading(db) as conn:
        return store.history(conn, rec_id)


@st.cache_data(show_spinner=False)
def scheduled_stops(db: str, marker: str, teams: tuple[str, ...] | None, now: datetime) -> pa.Table:
    """Warn-then-act stops waiting to act, and snoozes in force, soonest first; only these
    teams' (by their recommendation's team) when `teams` is given."""
    with reading(db) as conn:
        return conn.sql(
            """
            SELECT s.act_at, s.state, s.snoozed_until, r.team, s.cluster, s.action, s.owner,
                   s.reason, s.rec_id, s.action_id
            FROM scheduled_actions s LEFT JOIN recommendations r USING (rec_id)
            WHERE (s.state = 'pending' OR (s.state = 'snoozed' AND s.snoozed_until > ?))
              AND (? OR list_contains(?, r.team))
            ORDER BY s.act_at, s.action_id
            """,
            params=[now, teams is None, list(teams or ())],
        ).to_arrow_table()


# --- GPU fleet ------------------------------------------------------------------------------


@st.cache_data(show_spinner=False)
def fleet_hours(db: str, marker: str, period_text: str) -> pa.Table:
    """The period's GPU-hours with cluster, team and cost: joined once, grouped per view."""
    with reading(db) as conn:
        return gpu_hours(conn, to_period(period_text), GpuAttribution.from_config(settings()))


@st.cache_data(show_spinner=False)
def gpu(db: str, marker: str, period_text: str, by: str) -> pa.Table:
    attribution = GpuAttribution.from_config(settings())
    hours = fleet_hours(db, marker, period_text)
    with reading(db) as conn:
        return gpu_usage(conn, to_period(period_text), by, attribution, hours)


@st.cache_data(show_spinner=False)
def silent_gpu_instances(db: str, marker: str, period_text: str) -> pa.Table:
    attribution = GpuAttribution.from_config(settings())
    hours = fleet_hours(db, marker, period_text)
    with reading(db) as conn:
        return unmatched_gpu_instances(conn, to_period(period_text), attribution, hours)


# --- scorecard and ROI ----------------------------------------------------------------------


@st.cache_data(show_spinner=False)
def roi_report(db: str, marker: str, period_text: str, by: str) -> dict[str, Any]:
    config = settings()
    with reading(db) as conn:
        report = roi(
            conn,
            scorecard_buckets(to_period(period_text)),
            allocation=config.allocation,
            teams=config.teams,
            by="team" if by == "team" else "project",
            project_tag_key=config.scorecard.project_tag_key,
            cost_basis=config.allocation.cost_basis,
            hurdle_rate=config.scorecard.hurdle_rate,
        )
    return {"returns": report.returns, "payback": report.payback, "notes": list(report.notes)}


@st.cache_data(show_spinner=False)
def dora_keys(db: str, marker: str, period_text: str) -> pa.Table:
    config = settings()
    with reading(db) as conn:
        return dora(
            conn,
            scorecard_buckets(to_period(period_text)),
            load_bands(config.scorecard.dora_bands),
            by="team",
            scope=DeliveryScope.from_config(config),
        )


@st.cache_data(show_spinner=False)
def quality(db: str, marker: str, period_text: str) -> dict[str, pa.Table]:
    config = settings()
    with reading(db) as conn:
        report = model_quality(
            conn, to_period(period_text), tolerance=config.scorecard.regression_tolerance
        )
    return {"latest": report.latest, "regressions": report.regressions}


@st.cache_data(show_spinner=False)
def process_health(db: str, marker: str, period_text: str) -> dict[str, pa.Table]:
    config = settings()
    buckets = scorecard_buckets(to_period(period_text))
    with reading(db) as conn:
        return {
            "oncall": oncall_load(conn, buckets, TeamMapping.from_config(config)),
            "adoption": adoption(
                conn, buckets, adopted_stage=config.scorecard.adopted_stage, by="team"
            ),
        }


@st.cache_data(show_spinner=False)
def kpis(db: str, marker: str, period_text: str, cost: str, team: str | None) -> pa.Table:
    config = settings()
    lines = history(db, marker, cost)
    hours = fleet_hours(db, marker, period_text)
    with reading(db) as conn:
        return finops_kpis(
            conn,
            to_period(period_text),
            Allocation.from_config(config),
            config.kpi_targets,
            team=team,
            cost=_basis(cost),
            lines=lines,
            gpu_hours=hours,
        )


# --- data health ----------------------------------------------------------------------------


@st.cache_data(show_spinner=False)
def health(db: str, marker: str) -> dict[str, pa.Table]:
    """Last ingest per source, months a source skipped, overlaps and estimated months."""
    with reading(db) as conn:
        last_runs = conn.sql(
            """
            SELECT source, collector, status, finished_at, rows, billed_cost, uri, error, notes
            FROM ingest_runs
            QUALIFY row_number() OVER (PARTITION BY source ORDER BY started_at DESC) = 1
            ORDER BY source
            """
        ).to_arrow_table()
        gaps = conn.sql(
            """
            WITH held AS (
                SELECT DISTINCT "x_Source" AS source,
                       CAST(date_trunc('month', "BillingPeriodStart") AS DATE) AS month
                FROM cost
            ),
            spans AS (SELECT source, min(month) AS first, max(month) AS last FROM held GROUP BY 1),
            expected AS (
                SELECT source, CAST(unnest(generate_series(first, last, INTERVAL 1 MONTH)) AS DATE)
                       AS month
                FROM spans
            )
            SELECT e.source, strftime(e.month, '%Y-%m') AS missing_month
            FROM expected e ANTI JOIN held h USING (source, month)
            ORDER BY 1, 2
            """
        ).to_arrow_table()
        overlaps = conn.sql(
            """
            SELECT billing_account_id, strftime(billing_period_start, '%Y-%m') AS month,
                   sources, winner, reason
            FROM source_overlaps ORDER BY month DESC, billing_account_id
            """
        ).to_arrow_table()
        estimated = conn.sql(
            """
            SELECT source, strftime(unnest(periods), '%Y-%m') AS month, note
            FROM (
                SELECT source, periods, unnest(notes) AS note FROM ingest_runs
                WHERE status = 'success'
                QUALIFY row_number() OVER (PARTITION BY source ORDER BY started_at DESC) = 1
            )
            WHERE note ILIKE '%estimated%'
            ORDER BY month DESC, source
            """
        ).to_arrow_table()
    return {"runs": last_runs, "gaps": gaps, "overlaps": overlaps, "estimated": estimated}
