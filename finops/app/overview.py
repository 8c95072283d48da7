"""Overview: the period's spend against the last one and the forecast, trends, top movers,
open anomalies, and savings found against savings realised."""

from __future__ import annotations

import altair as alt
import pyarrow as pa
import streamlit as st

from finops.app import data, ui

TREND_MONTHS = 6


def render() -> None:
    ctx = ui.open_page("Overview")
    if ctx is None:
        return
    period = data.to_period(ctx.filters.period)
    before = data.previous_period(period)
    f = ctx.filters
    with st.spinner("Computing spend..."):
        now = ui.narrow(data.spend(ctx.db, ctx.marker, period.label, f.cost, ("service",)), ctx)
        then = ui.narrow(data.spend(ctx.db, ctx.marker, before.label, f.cost, ("service",)), ctx)
        variance = ui.only_teams(data.variance(ctx.db, ctx.marker, period.label, f.cost), ctx.teams)
    spent, previous = ui.total(now), ui.total(then)
    left, middle, right = st.columns(3)
    left.metric(
        f"Spend, {period.label}",
        ui.money(spent, ctx.currency),
        ui.change_pct(spent, previous),
        delta_color="inverse",
        help=f"{f.cost} cost of the filtered rows",
    )
    middle.metric(f"Spend, {before.label}", ui.money(previous, ctx.currency))
    expected = _forecast_total(variance, ctx)
    right.metric(
        f"Forecast made at the start of {period.label}",
        ui.money(expected, ctx.currency) if expected is not None else "n/a",
        ui.change_pct(spent, expected) if expected else None,
        delta_color="inverse",
        help="Holt forecast of the allocated charge-back from the months before the period "
        "(team and whole-organisation figures; provider and environment filters do not apply)",
    )
    _trend(ctx)
    _movers(now, then, ctx)
    _anomalies(ctx)
    _savings(ctx)


def _forecast_total(variance: pa.Table, ctx: ui.Context) -> float | None:
    rows = variance.to_pylist()
    if not rows:
        return None
    if ctx.teams is None:
        return next((r["forecast"] for r in rows if r["team"] == "(total)"), None)
    return sum(r["forecast"] for r in rows if r["team"] in ctx.teams) or None


def _trend(ctx: ui.Context) -> None:
    st.subheader(f"Trend, last {TREND_MONTHS} months")
    trend = ui.narrow(
        data.spend_trend(
            ctx.db, ctx.marker, ctx.filters.period, ctx.filters.cost, TREND_MONTHS, ()
        ),
        ctx,
    )
    left, right = st.columns(2)
    for column, key in ((left, "provider"), (right, "team")):
        rows = ui.regroup(trend, ["month", key], order="month")
        chart = (
            alt.Chart(ui.chart_data(rows), title=f"By {key}")
            .mark_bar()
            .encode(
                x=alt.X("month:O", title="Billing month"),
                y=alt.Y("cost:Q", title=f"Cost ({ctx.currency})", axis=alt.Axis(format=",.0f")),
                color=alt.Color(f"{key}:N", title=key.capitalize()),
                tooltip=[
                    alt.Tooltip("month:O"),
                    alt.Tooltip(f"{key}:N"),
                    alt.Tooltip("cost:Q", format=",.2f", title=f"cost ({ctx.currency})"),
                ],
            )
        )
        column.altair_chart(chart, width="stretch")


def movers(now: pa.Table, then: pa.Table, keys: list[str]) -> pa.Table:
    """Spend per `keys` in both periods and its change, largest change (either way) first."""
    group = ", ".join(f'"{k}"' for k in keys)
    with ui.scratch() as conn:
        conn.register("spend_now", ui.regroup(now, keys))
        conn.register("spend_then", ui.regroup(then, keys))
        return conn.sql(
            f"""
            SELECT {group}, coalesce(n.currency, t.currency) AS currency,
                   round(coalesce(n.exact_cost, 0), 2) AS cost,
                   round(coalesce(t.exact_cost, 0), 2) AS previous_cost,
                   round(coalesce(n.exact_cost, 0) - coalesce(t.exact_cost, 0), 2) AS change,
                   round(100 * (coalesce(n.exact_cost, 0) - t.exact_cost) / nullif(t.exact_cost, 0), 1)
                       AS change_pct
            FROM spend_now n FULL JOIN spend_then t USING ({group}, currency)
            ORDER BY abs(change) DESC, {group}
            LIMIT 10
            """
        ).to_arrow_table()


def _movers(now: pa.Table, then: pa.Table, ctx: ui.Context) -> None:
    st.subheader("Top movers")
    left, right = st.columns(2)
    with left:
        st.caption("By team")
        ui.show_table(
            movers(now, then, ["team"]), "movers-team", key="movers-team", currency=ctx.currency
        )
    with right:
        st.caption("By team and service")
        ui.show_table(
            movers(now, then, ["team", "service"]),
            "movers-service",
            key="movers-service",
            currency=ctx.currency,
        )


def _anomalies(ctx: ui.Context) -> None:
    st.subheader("Open anomalies")
    found = ui.only_teams(data.anomalies(ctx.db, ctx.marker), ctx.teams)
    if found.num_rows == 0:
        ui.empty("No open anomalies.", "finops anomalies detect")
        return
    ui.show_table(
        found.select(
            ["day", "team", "service", "currency", "actual", "baseline", "z", "anomaly_id"]
        ),
        "anomalies",
        key="anomalies",
    )


def _savings(ctx: ui.Context) -> None:
    st.subheader("Savings found vs realised")
    totals = data.savings(ctx.db, ctx.marker, ctx.teams)
    realised = data.realised(
        ctx.db, ctx.marker, ctx.teams, data.clock().replace(microsecond=0, second=0)
    )
    if totals.num_rows == 0:
        ui.empty("No recommendations yet.", "finops recommend")
        return
    by_state = {r["state"]: r["monthly_savings"] for r in totals.to_pylist()}
    found = sum(by_state.values())
    columns = st.columns(4)
    columns[0].metric("Found (monthly)", ui.money(found, ctx.currency))
    columns[1].metric("Accepted", ui.money(by_state.get("accepted", 0), ctx.currency))
    columns[2].metric("Applied (estimated)", ui.money(by_state.get("applied", 0), ctx.currency))
    columns[3].metric("Realised (monthly)", ui.money(ui.total(realised, "realised"), ctx.currency))


if __name__ == "__main__":
    render()
