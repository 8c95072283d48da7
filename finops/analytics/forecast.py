"""Spend forecasts: month and quarter-end totals per team, with an interval, and how far last
quarter's forecast was off.

The model is Holt's linear exponential smoothing (a level and a trend) over complete
monthly totals of the allocated charge-back, in numpy: a few months of history per team
is all there is, and seasonality would need two years of it. The smoothing weights are
chosen on a 0.1 grid to minimise one-step-ahead squared error; the interval at h months
ahead is z x sigma x sqrt(1 + (h-1)(a^2 + a*b*h + b^2*h(2h-1)/6)) (Hyndman & Athanasopoulos,
Forecasting: Principles and Practice, table 5.2), sigma the RMSE of the one-step errors.
A period's interval adds the months' half-widths (their errors move together). With fewer
than three complete months the last month is repeated and there is no interval.

Months of a period before `now`'s month are actuals; the rest are forecast from the months
before `now`'s month. A forecast "made at the start of" a period uses only the months
before it: (actual - that forecast) / that forecast is the period's forecast variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa

from finops.analytics.chargeback import Allocation, CostBasis, history_span, lines_for
from finops.periods import Period, add_months

Z_80 = 1.2816
"""The interval: 80%, as budget owners read it (one year in five outside it)."""
GRID = np.round(np.arange(0.1, 1.0, 0.1), 1)


@dataclass(frozen=True)
class SeriesForecast:
    points: np.ndarray
    half_widths: np.ndarray | None
    """None: too little history for an interval."""
    alpha: float | None
    beta: float | None
    method: str


def holt(values: np.ndarray, alpha: float, beta: float) -> tuple[np.ndarray, float, float]:
    """One-step-ahead predictions for values[2:], and the final level and trend.

    Starts from level = values[0], trend = values[1] - values[0] (so values[1] is fitted
    exactly and is not an error)."""
    level, trend = float(values[0]), float(values[1] - values[0])
    predictions = []
    for t in range(1, len(values)):
        predicted = level + trend
        if t >= 2:
            predictions.append(predicted)
        previous = level
        level = alpha * values[t] + (1 - alpha) * predicted
        trend = beta * (level - previous) + (1 - beta) * trend
    return np.array(predictions), level, trend


def forecast_series(
    values: np.ndarray,
    horizon: int,
    *,
    alpha: float | None = None,
    beta: float | None = None,
    z: float = Z_80,
) -> SeriesForecast:
    """Forecast the next `horizon` values of a monthly series."""
    values = np.asarray(values, dtype=float)
    if len(values) < 3:
        last = values[-1] if len(values) else 0.0
        return SeriesForecast(np.full(horizon, last), None, None, None, "last month repeated")
    if alpha is None or beta is None:
        errors = {
            (a, b): float(np.sum((values[2:] - holt(values, a, b)[0]) ** 2))
            for a in GRID
            for b in GRID
        }
        alpha, beta = min(errors, key=lambda ab: (errors[ab], ab))
    predictions, level, trend = holt(values, alpha, beta)
    sigma = float(np.sqrt(np.mean((values[2:] - predictions) ** 2)))
    h = np.arange(1, horizon + 1)
    points = level + h * trend
    spread = 1 + (h - 1) * (alpha**2 + alpha * beta * h + beta**2 * h * (2 * h - 1) / 6)
    return SeriesForecast(points, z * sigma * np.sqrt(spread), alpha, beta, "holt")


def monthly_series(
    conn: duckdb.DuckDBPyConnection,
    allocation: Allocation,
    first: date,
    end: date,
    cost: CostBasis = "effective",
    lines: pa.Table | None = None,
) -> pa.Table:
    """Allocated cost per billing month in [first, end) and team (month, team, amount).
    `lines`: allocation lines spanning those months (`allocation_history`), else computed."""
    # A month-kind period spanning several months selects by BillingPeriodStart, as a
    # month or quarter does.
    span = Period(f"{first:%Y-%m}..{end:%Y-%m}", "month", first, end)
    conn.register("forecast_lines", lines_for(conn, span, allocation, cost, lines))
    try:
        return conn.sql(
            "SELECT month, recipient AS team, sum(amount) AS amount FROM forecast_lines "
            "GROUP BY ALL ORDER BY month, team"
        ).to_arrow_table()
    finally:
        conn.unregister("forecast_lines")


def history_start(conn: duckdb.DuckDBPyConnection) -> date | None:
    span = history_span(conn)
    return None if span is None else span.start


def _months(first: date, end: date) -> list[date]:
    months, month = [], first
    while month < end:
        months.append(month)
        month = add_months(month, 1)
    return months


def forecast_table(
    series: pa.Table, period: Period, now: datetime, *, key: str = "team"
) -> pa.Table:
    """Per key: the period's actual so far and its forecast total with an 80% interval.

    `series` holds monthly totals (month, key, amount). Months of the period before `now`'s
    month are actual; the rest are forecast from the complete months before `now`'s month.
    `month_to_date` is what `now`'s own month has cost so far, when it is in the period.
    """
    this_month = date(now.year, now.month, 1)
    rows = series.to_pylist()
    keys = sorted({r[key] for r in rows})
    if not rows:
        return pa.table({key: pa.array([], pa.string())})
    first = min(r["month"] for r in rows)
    history = _months(first, this_month)
    period_months = _months(period.start, period.end)
    ahead = [m for m in period_months if m >= this_month]
    horizon = len(_months(this_month, period.end)) if ahead else 0
    out = []
    for name in keys:
        by_month = {r["month"]: r["amount"] for r in rows if r[key] == name}
        values = np.array([float(by_month.get(m, 0)) for m in history])
        actual = sum(
            (by_month.get(m, Decimal(0)) for m in period_months if m < this_month), Decimal(0)
        )
        month_to_date = by_month.get(this_month) if this_month in period_months else None
        forecast, lower, upper, method = float(actual), float(actual), float(actual), "actual"
        if ahead:
            result = forecast_series(values, horizon)
            # Forecast months of the period are the last len(ahead) of the horizon.
            points = result.points[horizon - len(ahead) :]
            forecast += float(points.sum())
            width = (
                0.0
                if result.half_widths is None
                else float(result.half_widths[horizon - len(ahead) :].sum())
            )
            lower, upper, method = forecast - width, forecast + width, result.method
        out.append(
            {
                key: name,
                "actual": actual,
                "month_to_date": month_to_date,
                "forecast": round(forecast, 2),
                "lower": round(lower, 2),
                "upper": round(upper, 2),
                "method": method,
            }
        )
    out.sort(key=lambda r: -r["forecast"])
    return pa.Table.from_pylist(out)


def forecast(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    allocation: Allocation,
    *,
    now: datetime,
    cost: CostBasis = "effective",
    lines: pa.Table | None = None,
) -> pa.Table:
    """Per team: the period's (month's or quarter's) allocated spend, actual so far and
    forecast to its end with an 80% interval. `lines`: see `monthly_series`."""
    first = history_start(conn)
    if first is None:
        return pa.table({"team": pa.array([], pa.string())})
    end = max(period.end, add_months(date(now.year, now.month, 1), 1))
    series = monthly_series(conn, allocation, first, end, cost, lines)
    return forecast_table(series, period, now)


def forecast_variance(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    allocation: Allocation,
    *,
    cost: CostBasis = "effective",
    lines: pa.Table | None = None,
) -> pa.Table:
    """Per team and in total: the period's actual against the forecast made at its start
    (from the complete months before it); variance_pct = (actual - forecast) / forecast.
    `lines`: see `monthly_series`."""
    first = history_start(conn)
    if first is None or first >= period.start:
        return pa.table({"team": pa.array([], pa.string())})
    series = monthly_series(conn, allocation, first, period.end, cost, lines)
    conn.register("variance_series", series)
    try:
        # The organisation's total as one more series, and each series' actual in the period.
        both = conn.sql(
            "SELECT month, team, amount FROM variance_series UNION ALL "
            "SELECT month, '(total)', sum(amount) FROM variance_series GROUP BY month"
        ).to_arrow_table()
        actuals = dict(
            conn.execute(
                "SELECT team, sum(amount) FROM variance_series WHERE month >= ? AND month < ? "
                "GROUP BY team UNION ALL "
                "SELECT '(total)', sum(amount) FROM variance_series WHERE month >= ? AND month < ?",
                [period.start, period.end, period.start, period.end],
            ).fetchall()
        )
    finally:
        conn.unregister("variance_series")
    made = forecast_table(both, period, datetime(period.start.year, period.start.month, 1))
    rows = []
    for row in made.to_pylist():
        actual = actuals.get(row["team"]) or Decimal(0)
        expected = row["forecast"]
        variance = round(100 * (float(actual) - expected) / expected, 2) if expected else None
        rows.append(
            {
                "team": row["team"],
                "forecast": expected,
                "actual": round(actual, 2),
                "variance_pct": variance,
                "method": row["method"],
            }
        )
    return pa.Table.from_pylist(rows)
