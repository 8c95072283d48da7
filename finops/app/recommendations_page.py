"""Recommendations: savings, confidence, risk, reason and evidence; accept, snooze and dismiss
through the same call as the CLI (`finops.policies.store.change_state`); upcoming scheduled
stops; estimated against realised savings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from finops.app import data, ui
from finops.errors import FinopsError

COLUMNS = [
    "rec_id",
    "state",
    "team",
    "policy",
    "resource_name",
    "action",
    "monthly_savings",
    "currency",
    "confidence",
    "risk",
    "reason",
    "snoozed_until",
]


def render() -> None:
    ctx = ui.open_page("Recommendations", needs_period=False)
    if ctx is None:
        return
    found = data.recommendations(ctx.db, ctx.marker, ctx.teams)
    if found.num_rows == 0:
        ui.empty("No recommendations for these teams yet.", "finops recommend")
        _scheduled_stops(ctx)
        return
    _savings(ctx)
    states = st.pills(
        "State",
        ["open", "accepted", "snoozed", "dismissed", "applied"],
        selection_mode="multi",
        default=["open", "accepted", "snoozed"],
        key="rec_states",
    )
    shown = found.filter(pc.is_in(found["state"], pa.array(states or [], pa.string())))
    ui.show_table(shown.select(COLUMNS), "recommendations", key="recs", currency=ctx.currency)
    if shown.num_rows:
        _act(ctx, shown)
    _scheduled_stops(ctx)


def _savings(ctx: ui.Context) -> None:
    totals = {
        r["state"]: r["monthly_savings"]
        for r in data.savings(ctx.db, ctx.marker, ctx.teams).to_pylist()
    }
    realised = data.realised(
        ctx.db, ctx.marker, ctx.teams, data.clock().replace(second=0, microsecond=0)
    )
    columns = st.columns(4)
    columns[0].metric(
        "Open (monthly)",
        ui.money(totals.get("open", 0), ctx.currency),
        help="Each resource counted once",
    )
    columns[1].metric("Accepted", ui.money(totals.get("accepted", 0), ctx.currency))
    columns[2].metric("Applied, estimated", ui.money(totals.get("applied", 0), ctx.currency))
    columns[3].metric(
        "Applied, realised",
        ui.money(ui.total(realised, "realised"), ctx.currency),
        help="Resources' cost before and after the change, as a monthly figure",
    )
    if realised.num_rows:
        with st.expander("Estimated vs realised, per applied recommendation"):
            ui.show_table(realised, "realised-savings", key="realised", currency=ctx.currency)


def _act(ctx: ui.Context, shown: pa.Table) -> None:
    st.subheader("Act on one")
    rows = {r["rec_id"]: r for r in shown.to_pylist()}
    rec_id = st.selectbox(
        "Recommendation",
        list(rows),
        format_func=lambda rid: (
            f"{rid} · {rows[rid]['resource_name'] or rows[rid]['resource_id']} · "
            f"{ui.money(rows[rid]['monthly_savings'], rows[rid]['currency'])}/month"
        ),
        key="rec_chosen",
    )
    chosen = rows[rec_id]
    allowed = ctx.viewer.may_change(chosen["team"])
    with st.expander("Evidence and history"):
        st.json(json.loads(chosen["evidence"]) if chosen["evidence"] else {})
        ui.show_table(
            data.recommendation_history(ctx.db, ctx.marker, rec_id),
            f"history-{rec_id}",
            key="history",
        )
    if not allowed:
        owner = chosen["team"] or "the whole organisation"
        st.info(f"Only {owner}'s lead or an admin may change this recommendation.")
    accept, snooze, dismiss = st.columns(3)
    now = data.clock()
    if accept.button("Accept", key="rec_accept", disabled=not allowed, type="primary"):
        _change(ctx, rec_id, "accepted", now)
    until = snooze.date_input(
        "Snooze until",
        now.date() + timedelta(days=14),
        min_value=now.date() + timedelta(days=1),
        key="rec_until",
    )
    if snooze.button("Snooze", key="rec_snooze", disabled=not allowed):
        _change(ctx, rec_id, "snoozed", now, until=datetime.combine(until, time(), UTC))
    reason = dismiss.text_input("Reason for dismissing", key="rec_reason")
    if dismiss.button("Dismiss", key="rec_dismiss", disabled=not allowed or not reason.strip()):
        _change(ctx, rec_id, "dismissed", now, reason=reason)


def _change(ctx: ui.Context, rec_id: str, to_state: str, now: datetime, **kw: object) -> None:
    # Checked again here, not only by the disabled button: a session's request is not proof.
    rows = data.recommendations(ctx.db, ctx.marker, ctx.viewer.teams).to_pylist()
    team = next((r["team"] for r in rows if r["rec_id"] == rec_id), None)
    if not any(r["rec_id"] == rec_id for r in rows) or not ctx.viewer.may_change(team):
        st.error(f"You may not change {rec_id}.")
        return
    try:
        row = data.change_recommendation(
            ctx.db, rec_id, to_state, actor=ctx.viewer.name, now=now, **kw
        )  # type: ignore[arg-type]
    except FinopsError as exc:
        st.error(str(exc))
        return
    st.toast(f"{rec_id}: {row['state']}")
    st.rerun()


def _scheduled_stops(ctx: ui.Context) -> None:
    st.subheader("Upcoming scheduled stops")
    now = data.clock()
    stops = data.scheduled_stops(
        ctx.db, ctx.marker, ctx.teams, now.replace(second=0, microsecond=0)
    )
    if stops.num_rows == 0:
        st.info(
            "Nothing is scheduled to stop. Accepted idle-cluster stops (and those of `mode: auto` "
            "policies) are warned about and scheduled by `finops scheduler run` (or "
            "`finops actions warn`); they appear here until they act."
        )
        return
    ui.show_table(stops, "scheduled-stops", key="stops", currency=ctx.currency)
    rows = {r["rec_id"]: r for r in stops.to_pylist() if r["state"] == "pending"}
    if not rows:
        return
    rec_id = st.selectbox(
        "Stop",
        list(rows),
        format_func=lambda rid: (
            f"{rows[rid]['cluster'] or rid} at {rows[rid]['act_at']:%Y-%m-%d %H:%M}"
        ),
        key="stop_chosen",
    )
    allowed = ctx.viewer.may_change(rows[rec_id]["team"])
    until = st.date_input(
        "Snooze the stop until",
        now.date() + timedelta(days=7),
        min_value=now.date() + timedelta(days=1),
        key="stop_until",
    )
    if st.button("Snooze this stop", key="stop_snooze", disabled=not allowed):
        # Snoozing the recommendation cancels its pending stop (the action runner acts only
        # on recommendations that are still actionable when the stop is due).
        _change(ctx, rec_id, "snoozed", now, until=datetime.combine(until, time(), UTC))


if __name__ == "__main__":
    render()
