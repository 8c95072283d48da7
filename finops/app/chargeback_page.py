"""Charge-back: who spent what, with shared and unallocated cost per the allocation rules,
tag coverage, a breakdown by any dimension and a drill-down to resources.

The allocated view (team, cost centre, business unit) splits the whole bill by finops.yaml's
rules: it follows the period, team and cost-basis filters; the provider and environment
filters apply to the direct breakdowns, which are `chargeback` over the filtered rows.
"""

from __future__ import annotations

import pyarrow as pa
import streamlit as st

from finops.app import data, ui

LEVELS: dict[str, str] = {
    "team": "Team",
    "cost_centre": "Cost centre",
    "business_unit": "Business unit",
}
BREAKDOWNS: dict[str, str] = {
    "project": "tag:project",
    "environment": "environment",
    "provider": "provider",
    "service": "service",
    "account": "account",
    "region": "region",
}


def rolled_up(allocated: pa.Table, level: str) -> pa.Table:
    """Allocated team rows summed to cost centres or business units (finops.yaml's teams)."""
    if level == "team":
        return allocated
    config = data.settings()
    groups = pa.table(
        {
            "team": [t.name for t in config.teams],
            "group_name": pa.array(
                [
                    t.cost_centre if level == "cost_centre" else t.business_unit
                    for t in config.teams
                ],
                pa.string(),
            ),
        }
    )
    missing = "(no cost centre)" if level == "cost_centre" else "(no business unit)"
    known = {t.name for t in config.teams}
    with ui.scratch() as conn:
        conn.register("allocated_rows", allocated)
        conn.register("team_groups", groups)
        return conn.sql(
            f"""
            SELECT a.period,
                   CASE WHEN list_contains(?, a.team) THEN coalesce(g.group_name, ?)
                        ELSE a.team END AS "{level}",
                   a.currency,
                   round(sum(a.direct_cost), 2) AS direct_cost,
                   round(sum(a.shared_cost), 2) AS shared_cost,
                   round(sum(a.exact_cost), 2) AS cost,
                   round(100 * sum(a.exact_cost) / nullif(sum(sum(a.exact_cost)) OVER (), 0), 2) AS share,
                   sum(a.exact_cost) AS exact_cost
            FROM allocated_rows a LEFT JOIN team_groups g USING (team)
            GROUP BY 1, 2, 3 ORDER BY exact_cost DESC, "{level}"
            """,
            params=[sorted(known), missing],
        ).to_arrow_table()


def render() -> None:
    ctx = ui.open_page("Charge-back")
    if ctx is None:
        return
    f = ctx.filters
    with st.spinner("Allocating shared cost..."):
        allocated = ui.only_teams(data.allocated(ctx.db, ctx.marker, f.period, f.cost), ctx.teams)
        coverage = data.coverage(ctx.db, ctx.marker, f.period, f.cost).to_pylist()
    if ctx.viewer.sees_everything and coverage:
        _coverage(coverage[0], ctx)
    st.subheader("Allocated, with shared cost split")
    level = (
        st.segmented_control(
            "Group by", list(LEVELS), format_func=LEVELS.__getitem__, default="team", key="cb_level"
        )
        or "team"
    )
    table = rolled_up(allocated, level)
    if table.num_rows == 0:
        st.info("No cost for the chosen teams in this period.")
    else:
        st.altair_chart(_stacked(table, level, ctx.currency), width="stretch")
        ui.show_table(
            table, f"chargeback-{level}-{f.period}", key="allocated", currency=ctx.currency
        )
    _breakdown(ctx)
    _drill_down(ctx)


def _coverage(row: dict, ctx: ui.Context) -> None:
    columns = st.columns(4)
    columns[0].metric("Bill", ui.money(row["bill"], ctx.currency))
    columns[1].metric(
        "Tag coverage",
        f"{row['coverage_pct']:.1f}%",
        help="Share of the bill attributed directly (tag or account)",
    )
    columns[2].metric("Shared, split by rules", ui.money(row["shared"] + row["idle"], ctx.currency))
    columns[3].metric(
        "Unallocated",
        ui.money(row["unallocated"], ctx.currency),
        help=f"Untagged before rules: {row['untagged_pct']:.1f}% of the bill",
    )


def _stacked(table: pa.Table, level: str, currency: str) -> object:
    import altair as alt

    with ui.scratch() as conn:
        conn.register("t", ui.for_display(table))
        long = conn.sql(
            f"""
            SELECT "{level}", 'direct' AS part, direct_cost AS cost FROM t
            UNION ALL SELECT "{level}", 'shared', shared_cost FROM t
            """
        ).to_arrow_table()
    return (
        alt.Chart(ui.chart_data(long))
        .mark_bar()
        .encode(
            x=alt.X("sum(cost):Q", title=f"Cost ({currency})", axis=alt.Axis(format=",.0f")),
            y=alt.Y(f"{level}:N", sort="-x", title=LEVELS[level]),
            color=alt.Color("part:N", title="Cost", scale=alt.Scale(domain=["direct", "shared"])),
            tooltip=[
                alt.Tooltip(f"{level}:N"),
                alt.Tooltip("part:N"),
                alt.Tooltip("cost:Q", format=",.2f", title=f"cost ({currency})"),
            ],
        )
    )


def _breakdown(ctx: ui.Context) -> None:
    st.subheader("Direct cost by dimension")
    st.caption("Tagged cost where it was spent, before shared-cost rules; filters apply.")
    chosen = st.selectbox("Break down by", list(BREAKDOWNS), key="cb_breakdown")
    dimension = BREAKDOWNS[chosen]
    spend = ui.narrow(
        data.spend(ctx.db, ctx.marker, ctx.filters.period, ctx.filters.cost, (dimension,)), ctx
    )
    table = ui.regroup(spend, ["team", dimension])
    ui.show_table(
        table, f"spend-by-{chosen}-{ctx.filters.period}", key="breakdown", currency=ctx.currency
    )


def _drill_down(ctx: ui.Context) -> None:
    st.subheader("Drill down to resources")
    options = [t for t in ui.team_options(ctx.viewer) if t != ui.ALL]
    if ctx.filters.team != ui.ALL:
        options = [ctx.filters.team]
    team = st.selectbox("Team", options, key="cb_drill_team")
    spend = ui.narrow(
        data.spend(
            ctx.db, ctx.marker, ctx.filters.period, ctx.filters.cost, ("resource", "service")
        ),
        ctx,
    )
    rows = spend.filter(pa.compute.equal(spend["team"], team))
    table = ui.regroup(rows, ["resource", "service", "provider", "environment"])
    st.caption(f"{table.num_rows:,} resources")
    ui.show_table(
        table, f"resources-{team}-{ctx.filters.period}", key="resources", currency=ctx.currency
    )


if __name__ == "__main__":
    render()
