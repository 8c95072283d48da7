"""Helpers every section shares: team scoping, money from analytics results, no-data reasons."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from finops.analytics.chargeback import Allocation, allocate, allocation_history, billing_months
from finops.analytics.gpu import GpuAttribution, gpu_hours
from finops.periods import Period
from finops.reports.model import NoData, ReportScope


def for_team(table: pa.Table, team: str | None, column: str = "team") -> pa.Table:
    """The rows of an analytics result that belong to `team` (all rows when no team).

    Analytics compute a team's figure from the whole bill (shares, and shared costs split
    by every team's usage), so a team report takes that team's rows of the result here,
    inside the data function: no renderer ever receives another team's rows.
    """
    if team is None:
        return table
    return table.filter(pc.equal(table[column], team))


def allocation_lines_of(scope: ReportScope) -> pa.Table:
    """The allocation of every month held, computed once per report: the charge-back, its
    coverage, the KPIs and the forecast check all read their months from it (`lines=`)."""
    return scope.once(
        "allocation-lines",
        lambda: allocation_history(
            scope.conn,
            Allocation.from_config(scope.config),
            cost=scope.config.allocation.cost_basis,
        ),
    )


def gpu_hours_of(scope: ReportScope) -> pa.Table:
    """The period's GPU-hours joined to their cost, once per report (`hours=`)."""
    return scope.once(
        "gpu-hours",
        lambda: gpu_hours(scope.conn, scope.period, GpuAttribution.from_config(scope.config)),
    )


def allocated_by_month(scope: ReportScope) -> pa.Table:
    """Allocated spend per month and team over the previous period and this one (shared
    costs split by finops.yaml's rules), computed once for every section that shows it."""

    def compute() -> pa.Table:
        span = Period(
            f"{scope.previous.label}..{scope.period.label}",
            scope.period.kind,
            scope.previous.start,
            scope.period.end,
        )
        return allocate(
            scope.conn,
            span,
            Allocation.from_config(scope.config),
            by="team",
            grain="month",
            cost=scope.config.allocation.cost_basis,
            lines=allocation_lines_of(scope),
        )

    return for_team(scope.once("allocated-by-month", compute), scope.team)


def money(value: float | Decimal | None) -> Decimal:
    """A money figure of an analytics result as an exact Decimal (floats by their shortest repr)."""
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(repr(value))


def no_billing(scope: ReportScope) -> NoData:
    """Why a period has no spend to show, and what to do about it."""
    if scope.team is not None:
        return NoData(f"No spend is attributed to team {scope.team} in {scope.period.label}.")
    return NoData(f"No billing data for {scope.period.label}: {_held(scope.conn)}")


def _held(conn: duckdb.DuckDBPyConnection) -> str:
    months = billing_months(conn)
    if not months:
        held = "the warehouse holds no bills yet"
    else:
        held = f"the warehouse holds {months[-1]}..{months[0]}"
    return (
        f"{held}. Ingest the period's bills with `finops collect` "
        "or `finops ingest focus|aws-cur|gcp-billing ...`."
    )
