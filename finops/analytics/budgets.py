"""Budgets from finops.yaml against actual and forecast spend, with an alert on an overrun.

A team's spend is its allocated charge-back (direct and shared); a project's is the cost
carrying its tag (`budgets.project_tag_key`). A monthly budget over a quarter counts three
times; a quarterly one over a month counts a third. Status: `over` (actual already past
the budget), `overrun` (forecast past it: the alert), `warn` (forecast at or above
`budgets.warn_at_pct`), else `ok`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import duckdb
import pyarrow as pa

from finops.analytics.chargeback import COST_COLUMN, Allocation, CostBasis
from finops.analytics.forecast import forecast_table, history_start, monthly_series
from finops.config import Budget, BudgetSettings
from finops.errors import ConfigError
from finops.periods import Period, add_months


def budget_amount(budget: Budget, period: Period) -> Decimal:
    """The budget for a month or a quarter."""
    if period.kind == "range":
        raise ConfigError(f"budgets are per month or quarter, not for {period.label}")
    months = 3 if period.kind == "quarter" else 1
    if budget.monthly is not None:
        return budget.monthly * months
    assert budget.quarterly is not None
    return budget.quarterly * months / 3


def project_series(
    conn: duckdb.DuckDBPyConnection,
    tag_key: str,
    projects: list[str],
    first: date,
    end: date,
    cost: CostBasis,
) -> pa.Table:
    """Cost per billing month and project tag value (month, project, amount)."""
    return conn.sql(
        f"""
        WITH per_tag_set AS (
            SELECT "x_TagSetId" AS tag_set_id,
                   CAST(date_trunc('month', "BillingPeriodStart") AS DATE) AS month,
                   sum("{COST_COLUMN[cost]}") AS amount
            FROM cost_resolved WHERE "BillingPeriodStart" >= ? AND "BillingPeriodStart" < ?
            GROUP BY ALL
        )
        SELECT month, ts.tags[?] AS project, sum(amount) AS amount
        FROM per_tag_set JOIN tag_sets ts USING (tag_set_id)
        WHERE ts.tags[?] IN (SELECT unnest(?::VARCHAR[]))
        GROUP BY ALL ORDER BY month, project
        """,
        params=[first, end, tag_key, tag_key, projects],
    ).to_arrow_table()


def budget_status(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    allocation: Allocation,
    settings: BudgetSettings,
    *,
    now: datetime,
    cost: CostBasis = "effective",
) -> pa.Table:
    """Per budget: amount, actual, forecast (80% interval), their % of it and the status."""
    first = history_start(conn)
    rows: list[dict[str, object]] = []
    if first is None or not settings.items:
        return pa.Table.from_pylist(rows)
    end = max(period.end, add_months(date(now.year, now.month, 1), 1))
    teams = forecast_table(monthly_series(conn, allocation, first, end, cost), period, now)
    projects = [b.project for b in settings.items if b.project is not None]
    by_project = forecast_table(
        project_series(conn, settings.project_tag_key, projects, first, end, cost),
        period,
        now,
        key="project",
    )
    found = {("team", r["team"]): r for r in teams.to_pylist()}
    found |= {("project", r["project"]): r for r in by_project.to_pylist() if "project" in r}
    for budget in settings.items:
        kind, name = ("team", budget.team) if budget.team else ("project", budget.project)
        amount = budget_amount(budget, period)
        spent = found.get((kind, name))
        actual = Decimal(spent["actual"]) if spent else Decimal(0)
        expected = Decimal(str(spent["forecast"])) if spent else Decimal(0)
        forecast_pct = float(100 * expected / amount)
        status = (
            "over"
            if actual > amount
            else "overrun"
            if expected > amount
            else "warn"
            if forecast_pct >= settings.warn_at_pct
            else "ok"
        )
        rows.append(
            {
                "budget": budget.owner,
                "period": period.label,
                "currency": allocation.reporting_currency,
                "amount": round(amount, 2),
                "actual": round(actual, 2),
                "forecast": round(expected, 2),
                "lower": spent["lower"] if spent else 0.0,
                "upper": spent["upper"] if spent else 0.0,
                "actual_pct": round(float(100 * actual / amount), 2),
                "forecast_pct": round(forecast_pct, 2),
                "status": status,
            }
        )
    return pa.Table.from_pylist(rows)
