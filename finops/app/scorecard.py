"""Scorecard: DORA's four keys with bands and trend, model quality, business impact,
process health and the FinOps KPIs against their targets, green / amber / red."""

from __future__ import annotations

import altair as alt
import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from finops.app import data, ui

TREND_QUARTERS = 4
BAND_MARK = {"elite": "🟢 elite", "high": "🟢 high", "medium": "🟠 medium", "low": "🔴 low"}


def render() -> None:
    ctx = ui.open_page("Scorecard")
    if ctx is None:
        return
    _kpis(ctx)
    _dora(ctx)
    _quality(ctx)
    _impact(ctx)
    _process(ctx)


def kpi_tables(ctx: ui.Context) -> list[tuple[str, pa.Table]]:
    """The FinOps KPIs: the organisation's, or each shown team's (a team's cost KPIs)."""
    f = ctx.filters
    if ctx.teams is None:
        return [("Organisation", data.kpis(ctx.db, ctx.marker, f.period, f.cost, None))]
    return [(team, data.kpis(ctx.db, ctx.marker, f.period, f.cost, team)) for team in ctx.teams]


def _kpis(ctx: ui.Context) -> None:
    st.subheader("FinOps KPIs against their targets")
    for name, table in kpi_tables(ctx):
        st.caption(name)
        ui.show_table(
            ui.status_column(table), f"kpis-{name}-{ctx.filters.period}", key=f"kpis-{name}"
        )


def _banded(table: pa.Table) -> pa.Table:
    for column in [c for c in table.column_names if c == "band" or c.endswith("_band")]:
        marks = pc.fill_null(table[column], "n/a")
        for band, mark in BAND_MARK.items():
            marks = pc.if_else(pc.equal(marks, band), mark, marks)
        table = table.set_column(table.column_names.index(column), column, marks)
    return table


def _dora(ctx: ui.Context) -> None:
    st.subheader("DORA four keys")
    period = data.to_period(ctx.filters.period)
    quarter = data.quarter_of(period)
    trend_labels = [quarter.label]
    for _ in range(TREND_QUARTERS - 1):
        trend_labels.insert(0, data.previous_period(data.to_period(trend_labels[0])).label)
    tables = [
        ui.only_teams(data.dora_keys(ctx.db, ctx.marker, label), ctx.teams)
        for label in trend_labels
    ]
    current = tables[-1]
    if current.num_rows == 0:
        ui.empty("No deployments or incidents in this quarter.", "finops ingest events PATH")
        return
    st.caption(
        f"{quarter.label}; bands from the State of DevOps {data.settings().scorecard.dora_bands} report"
    )
    ui.show_table(_banded(current), f"dora-{quarter.label}", key="dora")
    trend = pa.concat_tables(
        t.select(
            [
                "quarter",
                "team",
                "deploys_per_week",
                "lead_time_hours",
                "change_failure_rate_pct",
                "recovery_hours",
            ]
        )
        for t in tables
    )
    metric = st.selectbox(
        "Trend of",
        ["deploys_per_week", "lead_time_hours", "change_failure_rate_pct", "recovery_hours"],
        key="dora_metric",
    )
    chart = (
        alt.Chart(ui.chart_data(trend))
        .mark_line(point=True)
        .encode(
            x=alt.X("quarter:O", title="Quarter"),
            y=alt.Y(f"{metric}:Q", title=_unit(metric)),
            color=alt.Color("team:N", title="Team"),
            tooltip=["quarter:O", "team:N", alt.Tooltip(f"{metric}:Q", format=".2f")],
        )
    )
    st.altair_chart(chart, width="stretch")


def _unit(metric: str) -> str:
    return {
        "deploys_per_week": "Production deployments per week",
        "lead_time_hours": "Lead time for changes (hours, median)",
        "change_failure_rate_pct": "Change failure rate (%)",
        "recovery_hours": "Failed deployment recovery time (hours, median)",
    }[metric]


def _quality(ctx: ui.Context) -> None:
    st.subheader("Model quality")
    report = data.quality(ctx.db, ctx.marker, ctx.filters.period)
    latest = report["latest"]
    if ctx.teams is not None:
        owners = data.settings().scorecard.service_teams
        mine = [model for model, team in owners.items() if team in ctx.teams]
        latest = latest.filter(pc.is_in(latest["model"], pa.array(mine, pa.string())))
    if latest.num_rows == 0:
        ui.empty("No model evaluations for these teams' models.", "finops ingest events PATH")
        return
    ui.show_table(latest, f"quality-{ctx.filters.period}", key="quality")


def _impact(ctx: ui.Context) -> None:
    st.subheader("Business impact")
    report = data.roi_report(ctx.db, ctx.marker, ctx.filters.period, "team")
    returns = ui.only_teams(report["returns"], ctx.teams)
    if returns.num_rows == 0:
        ui.empty("No business KPI inputs for this period.", "finops ingest events PATH")
        return
    ui.show_table(
        returns.select(["quarter", "team", "currency", "cost", "value", "net_value", "roi_pct"]),
        f"impact-{ctx.filters.period}",
        key="impact",
        currency=ctx.currency,
    )


def _process(ctx: ui.Context) -> None:
    st.subheader("Process health")
    health = data.process_health(ctx.db, ctx.marker, ctx.filters.period)
    left, right = st.columns(2)
    with left:
        st.caption("On-call load and time to restore")
        ui.show_table(ui.only_teams(health["oncall"], ctx.teams), "oncall", key="oncall")
    with right:
        st.caption(f"Framework adoption (passed {data.settings().scorecard.adopted_stage!r})")
        ui.show_table(ui.only_teams(health["adoption"], ctx.teams), "adoption", key="adoption")


if __name__ == "__main__":
    render()
