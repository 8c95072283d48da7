"""Quarterly review: one page per fiscal quarter, mirroring the exported report (executive
summary, charge-back with allocation, GPU fleet, recommendations, KPIs, DORA, ROI), with a
button that builds the report and downloads it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow.compute as pc
import streamlit as st

from finops.app import data, ui
from finops.app.chargeback_page import rolled_up
from finops.app.scorecard import kpi_tables
from finops.reports import build_report

TOP_ACTIONS = 3


def quarter_choices(ctx: ui.Context) -> list[str]:
    months = data.months(ctx.db, ctx.marker)
    return [p for p in data.period_choices(months) if data.to_period(p).kind == "quarter"]


def render() -> None:
    ctx = ui.open_page("Quarterly review", needs_period=False, caption=False)
    if ctx is None:
        return
    choices = quarter_choices(ctx)
    if not choices:
        ui.empty(ui.NO_COST_ROWS, "finops ingest focus PATH")
        return
    default = (
        data.quarter_of(data.to_period(ctx.filters.period)).label
        if ctx.filters.period != ui.ALL
        else choices[0]
    )
    quarter = st.selectbox(
        "Quarter",
        choices,
        index=choices.index(default) if default in choices else 0,
        key="qr_quarter",
    )
    ui.scope_caption(ctx)
    _download(ctx, quarter)
    with st.spinner(f"Reading {quarter}..."):
        _summary(ctx, quarter)
        _sections(ctx, quarter)


def _download(ctx: ui.Context, quarter: str) -> None:
    """Build the exported report of the quarter: the organisation's for finance and admins,
    each of a lead's teams' own for a lead (a team report holds no other team's rows)."""
    teams: list[str | None] = [None] if ctx.viewer.sees_everything else list(ctx.teams or ())
    if not teams:
        return
    if st.button("Build the report (HTML, PDF, XLSX)", key="qr_build", type="primary"):
        with st.spinner("Building the report..."):
            files = _build(ctx, quarter, teams)
        for path in files:
            st.download_button(
                f"Download {path.name}", path.read_bytes(), path.name, key=f"qr-{path.name}"
            )


def _build(ctx: ui.Context, quarter: str, teams: list[str | None]) -> list[Path]:
    folder = Path(tempfile.mkdtemp(prefix="finops-report-"))
    written: list[Path] = []
    with data._FILE_ACCESS.reading():
        for team in teams:
            written += build_report(
                data.warehouse(),
                data.settings(),
                data.to_period(quarter),
                team,
                ("html", "pdf", "xlsx"),
                folder,
                data.clock(),
            )
    return written


def _summary(ctx: ui.Context, quarter: str) -> None:
    st.header("Executive summary")
    f = ctx.filters
    before = data.previous_period(data.to_period(quarter)).label
    allocated = ui.only_teams(data.allocated(ctx.db, ctx.marker, quarter, f.cost), ctx.teams)
    previous = ui.only_teams(data.allocated(ctx.db, ctx.marker, before, f.cost), ctx.teams)
    variance = ui.only_teams(data.variance(ctx.db, ctx.marker, quarter, f.cost), ctx.teams)
    spent, last = ui.total(allocated), ui.total(previous)
    forecast_rows = variance.to_pylist()
    expected = (
        next((r["forecast"] for r in forecast_rows if r["team"] == "(total)"), None)
        if ctx.teams is None
        else sum(r["forecast"] for r in forecast_rows) or None
    )
    columns = st.columns(3)
    columns[0].metric(
        f"Spend, {quarter}",
        ui.money(spent, ctx.currency),
        ui.change_pct(spent, last),
        delta_color="inverse",
    )
    columns[1].metric(f"Spend, {before}", ui.money(last, ctx.currency))
    columns[2].metric(
        "Forecast made at the quarter's start",
        ui.money(expected, ctx.currency),
        ui.change_pct(spent, expected) if expected else None,
        delta_color="inverse",
    )
    totals = {
        r["state"]: r["monthly_savings"]
        for r in data.savings(ctx.db, ctx.marker, ctx.teams).to_pylist()
    }
    realised = data.realised(
        ctx.db, ctx.marker, ctx.teams, data.clock().replace(second=0, microsecond=0)
    )
    columns = st.columns(3)
    columns[0].metric("Savings found (monthly)", ui.money(sum(totals.values()), ctx.currency))
    columns[1].metric(
        "Accepted", ui.money(totals.get("accepted", 0) + totals.get("applied", 0), ctx.currency)
    )
    columns[2].metric("Realised (monthly)", ui.money(ui.total(realised, "realised"), ctx.currency))
    recs = data.recommendations(ctx.db, ctx.marker, ctx.teams)
    top = recs.filter(pc.equal(recs["state"], "open"))
    st.subheader(f"Top {TOP_ACTIONS} actions")
    if top.num_rows == 0:
        st.caption("No open recommendations.")
    for row in top.slice(0, TOP_ACTIONS).to_pylist():
        st.markdown(
            f"- **{ui.money(row['monthly_savings'], row['currency'])}/month**: {row['reason']} ({row['team'] or 'organisation'})"
        )


def _sections(ctx: ui.Context, quarter: str) -> None:
    f = ctx.filters
    st.header("Charge-back with allocation")
    allocated = ui.only_teams(data.allocated(ctx.db, ctx.marker, quarter, f.cost), ctx.teams)
    ui.show_table(
        rolled_up(allocated, "team"),
        f"review-chargeback-{quarter}",
        key="qr-cb",
        currency=ctx.currency,
    )
    st.header("GPU fleet")
    fleet = data.gpu(ctx.db, ctx.marker, quarter, "team")
    ui.show_table(
        ui.only_teams(fleet, ctx.teams),
        f"review-gpu-{quarter}",
        key="qr-gpu",
        currency=ctx.currency,
    )
    st.header("Recommendations")
    recs = data.recommendations(ctx.db, ctx.marker, ctx.teams)
    ui.show_table(
        recs.select(
            [
                "rec_id",
                "state",
                "team",
                "policy",
                "monthly_savings",
                "currency",
                "confidence",
                "risk",
                "reason",
            ]
        ).slice(0, 10),
        f"review-recommendations-{quarter}",
        key="qr-recs",
        currency=ctx.currency,
    )
    st.header("FinOps KPIs")
    review = ui.Context(
        ctx.db,
        ctx.marker,
        ctx.viewer,
        ui.Filters(quarter, ui.ALL, f.team, ui.ALL, f.cost),
        ctx.currency,
    )
    for name, table in kpi_tables(review):
        st.caption(name)
        ui.show_table(
            ui.status_column(table), f"review-kpis-{name}-{quarter}", key=f"qr-kpis-{name}"
        )
    st.header("DORA four keys")
    ui.show_table(
        ui.only_teams(data.dora_keys(ctx.db, ctx.marker, quarter), ctx.teams),
        f"review-dora-{quarter}",
        key="qr-dora",
    )
    st.header("ROI")
    report = data.roi_report(
        ctx.db, ctx.marker, quarter, "team" if ctx.teams is not None else "project"
    )
    returns = (
        ui.only_teams(report["returns"], ctx.teams) if ctx.teams is not None else report["returns"]
    )
    ui.show_table(returns, f"review-roi-{quarter}", key="qr-roi", currency=ctx.currency)


if __name__ == "__main__":
    render()
