"""Data health: the last ingest of every source and its status, months a source skipped,
overlapping sources, GPUs and GPU instances that match nothing, and months still estimated.

Finance and admins only: it shows organisation-wide figures that belong to no one team.
"""

from __future__ import annotations

import pyarrow.compute as pc
import streamlit as st

from finops.analytics.gpu import UNMATCHED
from finops.app import data, ui


def render() -> None:
    ctx = ui.open_page("Data health", needs_period=False, caption=False)
    if ctx is None:
        return
    found = data.health(ctx.db, ctx.marker)
    runs = found["runs"]
    st.subheader("Last ingest per source")
    if runs.num_rows == 0:
        ui.empty("Nothing has been ingested yet.", "finops collect")
    else:
        failed = runs.filter(pc.not_equal(runs["status"], "success")).num_rows
        left, right = st.columns(2)
        left.metric("Sources", f"{runs.num_rows}")
        right.metric("Last ingest failed", f"{failed}")
        ui.show_table(runs, "ingest-status", key="runs", currency=ctx.currency)
    st.subheader("Coverage gaps")
    gaps = found["gaps"]
    if gaps.num_rows == 0:
        st.success("Every source covers each month between its first and its last.")
    else:
        st.warning(f"{gaps.num_rows} month(s) missing inside a source's history.")
        ui.show_table(gaps, "coverage-gaps", key="gaps")
    st.subheader("Overlapping sources")
    overlaps = found["overlaps"]
    if overlaps.num_rows == 0:
        st.success("No billing account and month is delivered by two sources.")
    else:
        st.caption("Counted once: the winner's rows are used (`ingest.source_priority`).")
        ui.show_table(overlaps, "overlaps", key="overlaps")
    st.subheader("Months still estimated")
    estimated = found["estimated"]
    if estimated.num_rows == 0:
        st.success("No source says its figures are still estimated.")
    else:
        ui.show_table(estimated, "estimated-months", key="estimated")
    if ctx.filters.period == ui.ALL:
        return
    st.subheader(f"Unmatched GPUs and GPU instances, {ctx.filters.period}")
    by_team = data.gpu(ctx.db, ctx.marker, ctx.filters.period, "team")
    unmatched = by_team.filter(pc.equal(by_team["team"], UNMATCHED))
    silent = data.silent_gpu_instances(ctx.db, ctx.marker, ctx.filters.period)
    left, right = st.columns(2)
    left.metric("GPU-hours matching no billed instance", f"{ui.total(unmatched, 'gpu_hours'):,.0f}")
    right.metric("Billed GPU instances without samples", f"{silent.num_rows:,}")
    if unmatched.num_rows:
        ui.show_table(
            data.gpu(ctx.db, ctx.marker, ctx.filters.period, "node,team").filter(
                pc.equal(
                    data.gpu(ctx.db, ctx.marker, ctx.filters.period, "node,team")["team"], UNMATCHED
                )
            ),
            "unmatched-gpus",
            key="unmatched",
        )
    if silent.num_rows:
        ui.show_table(silent, "silent-gpu-instances", key="silent", currency=ctx.currency)


if __name__ == "__main__":
    render()
