"""ROI: cost against value per model/project (or team), unit costs, and optimisation
projects' payback against the hurdle rate (`scorecard.hurdle_rate`).

Project cost comes from the project tag across teams, so a team lead sees ROI by team
(their teams' rows) and the organisation-wide project views are for finance and admins.
"""

from __future__ import annotations

import altair as alt
import streamlit as st

from finops.app import data, ui


def render() -> None:
    ctx = ui.open_page("ROI")
    if ctx is None:
        return
    options = ["project", "team"] if ctx.teams is None else ["team"]
    by = st.segmented_control("Per", options, default=options[0], key="roi_by") or options[0]
    with st.spinner("Comparing cost and value..."):
        report = data.roi_report(ctx.db, ctx.marker, ctx.filters.period, by)
    returns = ui.only_teams(report["returns"], ctx.teams) if by == "team" else report["returns"]
    if returns.num_rows == 0:
        ui.empty("No cost or value for this period.", "finops ingest events PATH")
    else:
        chart = (
            alt.Chart(ui.chart_data(returns))
            .mark_circle(size=160)
            .encode(
                x=alt.X("cost:Q", title=f"Cost ({ctx.currency})", axis=alt.Axis(format=",.0f")),
                y=alt.Y("value:Q", title=f"Value ({ctx.currency})", axis=alt.Axis(format=",.0f")),
                color=alt.Color(f"{by}:N", title=by.capitalize()),
                tooltip=[
                    alt.Tooltip(f"{by}:N"),
                    alt.Tooltip("quarter:N"),
                    alt.Tooltip("cost:Q", format=",.2f", title=f"cost ({ctx.currency})"),
                    alt.Tooltip("value:Q", format=",.2f", title=f"value ({ctx.currency})"),
                    alt.Tooltip("roi_pct:Q", format=".1f", title="ROI (%)"),
                ],
            )
        )
        diagonal = (
            alt.Chart(ui.chart_data(returns))
            .mark_line(strokeDash=[4, 4], color="gray")
            .encode(x="cost:Q", y=alt.Y("cost:Q", title=f"Value ({ctx.currency})"))
        )
        st.altair_chart(chart + diagonal, width="stretch")
        st.caption("Above the dashed line a model returns more than it costs.")
        ui.show_table(
            returns, f"roi-by-{by}-{ctx.filters.period}", key="roi", currency=ctx.currency
        )
    for note in report["notes"]:
        st.caption(f"Note: {note}")
    if ctx.teams is not None:
        return
    hurdle = data.settings().scorecard.hurdle_rate
    st.subheader(f"Optimisation payback (hurdle rate {hurdle:.0%} a year)")
    payback = report["payback"]
    if payback.num_rows == 0:
        ui.empty("No optimisation projects with engineering cost.", "finops event kpi ...")
        return
    ui.show_table(payback, f"payback-{ctx.filters.period}", key="payback", currency=ctx.currency)


if __name__ == "__main__":
    render()
