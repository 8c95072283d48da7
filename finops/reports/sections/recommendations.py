"""Recommendations: the top ones by monthly savings with their state and owner, and counts.

Reads the `recommendations` table directly (a read; the policy engine owns the writes).
A team report asks SQL for that team's rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import duckdb

from finops.periods import Period
from finops.reports.model import NoData, ReportScope
from finops.reports.workbook import Column, ReportWorkbook

TOP = 20
"""How many recommendations the section lists."""
OPEN_STATES = ("open", "accepted")
"""States of a recommendation that still asks someone to act."""
SAVED_STATES = ("accepted", "applied")


@dataclass(frozen=True)
class Recommendation:
    rec_id: str
    policy: str
    kind: str
    resource: str
    team: str | None
    owner: str | None
    action: str
    monthly_savings: Decimal
    currency: str
    confidence: float
    risk: str
    state: str
    reason: str


@dataclass(frozen=True)
class StateCount:
    state: str
    currency: str
    count: int
    monthly_savings: Decimal


@dataclass(frozen=True)
class SavingsFound:
    """Monthly savings of the recommendations first made in the period, and how many were taken."""

    currency: str
    found: Decimal
    found_count: int
    accepted: Decimal
    accepted_count: int


@dataclass(frozen=True)
class Recommendations:
    top: tuple[Recommendation, ...]
    by_state: tuple[StateCount, ...]
    limit: int


def _team_filter(team: str | None) -> tuple[str, list[object]]:
    return ("team = ?", [team]) if team is not None else ("TRUE", [])


def top_recommendations(
    conn: duckdb.DuckDBPyConnection,
    team: str | None,
    *,
    states: tuple[str, ...],
    limit: int,
) -> tuple[Recommendation, ...]:
    """Current recommendations in these states, largest monthly savings first."""
    where, params = _team_filter(team)
    rows = conn.execute(
        f"""
        SELECT rec_id, policy, kind, coalesce(resource_name, resource_id), team, owner, action,
               monthly_savings, currency, confidence, risk, state, reason
        FROM recommendations
        WHERE active AND list_contains(?, state) AND {where}
        ORDER BY monthly_savings DESC, rec_id
        LIMIT ?
        """,
        [list(states), *params, limit],
    ).fetchall()
    return tuple(Recommendation(*row) for row in rows)


def state_counts(conn: duckdb.DuckDBPyConnection, team: str | None) -> tuple[StateCount, ...]:
    where, params = _team_filter(team)
    rows = conn.execute(
        f"""
        SELECT state, currency, count(*), sum(monthly_savings)
        FROM recommendations WHERE active AND {where}
        GROUP BY ALL ORDER BY state, currency
        """,
        params,
    ).fetchall()
    return tuple(StateCount(*row) for row in rows)


def savings_found(
    conn: duckdb.DuckDBPyConnection, period: Period, team: str | None
) -> tuple[SavingsFound, ...]:
    """Recommendations first made in the period: their monthly savings, and those accepted
    or applied since (by their current state)."""
    where, params = _team_filter(team)
    rows = conn.execute(
        f"""
        SELECT currency, sum(monthly_savings), count(*),
               coalesce(sum(monthly_savings) FILTER (WHERE list_contains(?, state)), 0),
               count(*) FILTER (WHERE list_contains(?, state))
        FROM recommendations
        WHERE first_seen_at >= ? AND first_seen_at < ? AND {where}
        GROUP BY currency ORDER BY currency
        """,
        [list(SAVED_STATES), list(SAVED_STATES), period.start_ts, period.end_ts, *params],
    ).fetchall()
    return tuple(SavingsFound(*row) for row in rows)


def collect(scope: ReportScope) -> Recommendations | NoData:
    top = top_recommendations(
        scope.conn, scope.team, states=("open", "accepted", "snoozed", "applied"), limit=TOP
    )
    if not top:
        whose = f" for team {scope.team}" if scope.team else ""
        return NoData(
            f"No recommendations{whose}: run the policy engine (`finops recommend`) "
            "to evaluate the policy pack."
        )
    return Recommendations(top=top, by_state=state_counts(scope.conn, scope.team), limit=TOP)


COLUMNS = (
    Column("resource", "Resource"),
    Column("kind", "Kind"),
    Column("team", "Team"),
    Column("owner", "Owner"),
    Column("state", "State"),
    Column("monthly_savings", "Monthly savings", "money"),
    Column("confidence", "Confidence", "number"),
    Column("risk", "Risk"),
    Column("policy", "Policy"),
    Column("action", "Action"),
    Column("reason", "Reason"),
    Column("rec_id", "Id"),
)


def write_sheet(workbook: ReportWorkbook, data: Recommendations) -> None:
    sheet = workbook.sheet("Recommendations")
    workbook.table(sheet, COLUMNS, data.top)
    sheet.set_column(10, 10, 80)
    states = workbook.sheet("Recommendations by state")
    workbook.table(
        states,
        (
            Column("state", "State"),
            Column("currency", "Currency"),
            Column("count", "Recommendations", "int"),
            Column("monthly_savings", "Monthly savings", "money"),
        ),
        data.by_state,
    )
