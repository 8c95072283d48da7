"""Spend by team: the first page, for finance and team leads."""

from __future__ import annotations

import altair as alt
import streamlit as st

from finops.app import data


def render() -> None:
    config = data.settings()
    wh = data.warehouse()
    st.title("Spend by team")
    if not wh.path.exists():
        st.info(
            "No data yet. Run `finops demo` for the demo organisation, or `finops ingest focus PATH`."
        )
        return
    marker = data.last_change(wh)
    with st.spinner("Reading the warehouse..."):
        months = data.months(str(wh.path), marker)
    if not months:
        st.info("The warehouse holds no cost rows yet. Run `finops ingest focus PATH`.")
        return
    left, right = st.columns([3, 1])
    period = left.selectbox("Billing month", months, key="period")
    bases = ["effective", "billed"]
    cost = right.radio(
        "Cost basis",
        bases,
        index=bases.index(config.allocation.cost_basis),
        horizontal=True,
        key="cost",
        help="effective: commitments amortised over the usage they cover; billed: as invoiced",
    )
    with st.spinner("Computing charge-back..."):
        table = data.spend_by(str(wh.path), marker, period, "team", cost)
    rows = table.to_pylist()
    total = sum(r["exact_cost"] for r in rows)
    currency = rows[0]["currency"] if rows else config.currency
    st.metric(f"Total {cost} cost, {period}", f"{total:,.2f} {currency}")
    chart_rows = [{"team": r["team"], "cost": float(r["cost"])} for r in rows]
    chart = (
        alt.Chart(alt.Data(values=chart_rows))
        .mark_bar()
        .encode(
            x=alt.X("cost:Q", title=f"Cost ({currency})"),
            y=alt.Y("team:N", sort="-x", title="Team"),
            tooltip=[alt.Tooltip("team:N"), alt.Tooltip("cost:Q", format=",.2f")],
        )
    )
    st.altair_chart(chart, use_container_width=True)
    st.dataframe(
        [
            {"team": r["team"], "cost": float(r["cost"]), "share %": r["share"], "rows": r["rows"]}
            for r in rows
        ],
        hide_index=True,
        use_container_width=True,
        column_config={
            "cost": st.column_config.NumberColumn(f"cost ({currency})", format="%.2f"),
            "share %": st.column_config.NumberColumn(format="%.2f"),
        },
    )
