"""GPU fleet: utilisation by cluster and team over time (an hour x weekday heatmap), idle
GPU-hours and their cost, the busiest and idlest clusters, and attribution gaps."""

from __future__ import annotations

import altair as alt
import pyarrow as pa
import streamlit as st

from finops.analytics.gpu import UNMATCHED
from finops.app import data, ui

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def heatmap_cells(hourly: pa.Table) -> pa.Table:
    """Mean utilisation (GPU-hour weighted) and idle GPU-hours per weekday and hour of day."""
    with ui.scratch() as conn:
        conn.register("hourly", hourly)
        return conn.sql(
            """
            SELECT dayofweek(strptime(hour, '%Y-%m-%d %H:%M')) AS day_number,
                   ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][
                       dayofweek(strptime(hour, '%Y-%m-%d %H:%M')) + 1] AS weekday,
                   hour(strptime(hour, '%Y-%m-%d %H:%M')) AS hour_of_day,
                   round(sum(mean_util_pct * gpu_hours) / nullif(sum(gpu_hours), 0), 1) AS mean_util_pct,
                   round(sum(gpu_hours), 2) AS gpu_hours,
                   round(sum(coalesce(idle_gpu_hours, 0)), 2) AS idle_gpu_hours
            FROM hourly GROUP BY ALL ORDER BY day_number, hour_of_day
            """
        ).to_arrow_table()


def daily(hourly: pa.Table) -> pa.Table:
    with ui.scratch() as conn:
        conn.register("hourly", hourly)
        return conn.sql(
            """
            SELECT left(hour, 10) AS day, team,
                   round(sum(gpu_hours), 2) AS gpu_hours,
                   round(sum(coalesce(idle_gpu_hours, 0)), 2) AS idle_gpu_hours,
                   round(sum(idle_cost), 2) AS idle_cost
            FROM hourly GROUP BY ALL ORDER BY day, team
            """
        ).to_arrow_table()


def render() -> None:
    ctx = ui.open_page("GPU fleet")
    if ctx is None:
        return
    threshold = data.settings().gpu.idle_threshold_pct
    with st.spinner("Joining GPU-hours to their cost..."):
        by_cluster_team = ui.only_teams(
            data.gpu(ctx.db, ctx.marker, ctx.filters.period, "cluster,team"), ctx.teams
        )
    if by_cluster_team.num_rows == 0:
        ui.empty(
            "No GPU metrics for this period and these teams.",
            "finops ingest dcgm PATH` (or `finops agent gpu`",
        )
        return
    if ctx.teams is None:
        by_cluster = data.gpu(ctx.db, ctx.marker, ctx.filters.period, "cluster")
    else:
        by_cluster = by_cluster_team
    by_team = ui.only_teams(data.gpu(ctx.db, ctx.marker, ctx.filters.period, "team"), ctx.teams)
    gpu_hours = ui.total(by_team, "gpu_hours")
    idle_hours = ui.total(by_team, "idle_gpu_hours")
    columns = st.columns(4)
    columns[0].metric("GPU-hours", f"{gpu_hours:,.0f}")
    columns[1].metric(
        "Idle GPU-hours",
        f"{idle_hours:,.0f}",
        help=f"Hours whose mean utilisation was under {threshold:g}%",
    )
    columns[2].metric("GPU cost", ui.money(ui.total(by_team, "cost"), ctx.currency))
    columns[3].metric("Idle GPU cost", ui.money(ui.total(by_team, "idle_cost"), ctx.currency))
    _heatmap(ctx)
    st.subheader("Busiest and idlest clusters")
    ranked = by_cluster.sort_by([("idle_pct", "ascending")]) if by_cluster.num_rows else by_cluster
    st.altair_chart(_cluster_chart(ranked), width="stretch")
    ui.show_table(
        ranked, f"gpu-clusters-{ctx.filters.period}", key="gpu-clusters", currency=ctx.currency
    )
    st.subheader("By team")
    ui.show_table(
        by_team, f"gpu-teams-{ctx.filters.period}", key="gpu-teams", currency=ctx.currency
    )
    _gaps(ctx, by_team)


def _heatmap(ctx: ui.Context) -> None:
    st.subheader("Utilisation by hour and weekday")
    hourly = ui.only_teams(
        data.gpu(ctx.db, ctx.marker, ctx.filters.period, "cluster,team,hour"), ctx.teams
    )
    clusters = [ui.ALL, *sorted(set(hourly["cluster"].to_pylist()) - {None})]
    chosen = st.selectbox("Cluster", clusters, key="gpu_cluster")
    if chosen != ui.ALL:
        hourly = hourly.filter(pa.compute.equal(hourly["cluster"], chosen))
    cells = heatmap_cells(hourly)
    heat = (
        alt.Chart(ui.chart_data(cells))
        .mark_rect()
        .encode(
            x=alt.X("hour_of_day:O", title="Hour of day (UTC)"),
            y=alt.Y("weekday:N", sort=WEEKDAYS, title=None),
            color=alt.Color(
                "mean_util_pct:Q",
                title="Mean GPU utilisation (%)",
                scale=alt.Scale(scheme="viridis", domain=[0, 100]),
            ),
            tooltip=[
                alt.Tooltip("weekday:N"),
                alt.Tooltip("hour_of_day:O", title="hour (UTC)"),
                alt.Tooltip("mean_util_pct:Q", title="mean utilisation (%)"),
                alt.Tooltip("gpu_hours:Q", title="GPU-hours", format=",.1f"),
                alt.Tooltip("idle_gpu_hours:Q", title="idle GPU-hours", format=",.1f"),
            ],
        )
    )
    st.altair_chart(heat, width="stretch")
    per_day = daily(hourly)
    line = (
        alt.Chart(ui.chart_data(per_day), title="Idle GPU-hours per day")
        .mark_area()
        .encode(
            x=alt.X("day:T", title="Day"),
            y=alt.Y("idle_gpu_hours:Q", title="Idle GPU-hours", stack=True),
            color=alt.Color("team:N", title="Team"),
            tooltip=[
                alt.Tooltip("day:T"),
                alt.Tooltip("team:N"),
                alt.Tooltip("idle_gpu_hours:Q", title="idle GPU-hours", format=",.1f"),
                alt.Tooltip("idle_cost:Q", title=f"idle cost ({ctx.currency})", format=",.2f"),
            ],
        )
    )
    st.altair_chart(line, width="stretch")


def _cluster_chart(by_cluster: pa.Table) -> alt.Chart:
    return (
        alt.Chart(ui.chart_data(by_cluster))
        .mark_bar()
        .encode(
            x=alt.X(
                "mean_util_pct:Q",
                title="Mean GPU utilisation (%)",
                scale=alt.Scale(domain=[0, 100]),
            ),
            y=alt.Y("cluster:N", sort="-x", title="Cluster"),
            color=alt.Color(
                "idle_pct:Q", title="Idle GPU-hours (%)", scale=alt.Scale(scheme="orangered")
            ),
            tooltip=[
                alt.Tooltip("cluster:N"),
                alt.Tooltip("mean_util_pct:Q", title="mean utilisation (%)"),
                alt.Tooltip("idle_pct:Q", title="idle GPU-hours (%)"),
                alt.Tooltip("gpu_hours:Q", title="GPU-hours", format=",.0f"),
            ],
        )
    )


def _gaps(ctx: ui.Context, by_team: pa.Table) -> None:
    if not ctx.viewer.sees_everything:
        return
    st.subheader("Attribution gaps")
    unmatched = data.gpu(ctx.db, ctx.marker, ctx.filters.period, "team")
    unmatched = unmatched.filter(pa.compute.equal(unmatched["team"], UNMATCHED))
    hours = ui.total(unmatched, "gpu_hours")
    silent = data.silent_gpu_instances(ctx.db, ctx.marker, ctx.filters.period)
    left, right = st.columns(2)
    left.metric(
        "GPU-hours matching no billed instance",
        f"{hours:,.0f}",
        help="Samples whose node or instance id no billing row names: check gpu.join_keys",
    )
    right.metric(
        "Billed GPU instances without samples",
        f"{silent.num_rows:,}",
        help="GPU instance types billed in the period that sent no metrics",
    )
    if silent.num_rows:
        ui.show_table(
            silent, f"gpu-silent-{ctx.filters.period}", key="gpu-silent", currency=ctx.currency
        )


if __name__ == "__main__":
    render()
