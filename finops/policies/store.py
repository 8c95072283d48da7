"""Recommendations in the warehouse: their state, its history, totals and realised savings.

States: open -> accepted | snoozed (until a date) | dismissed (with a reason) -> applied.
Every change is kept in `recommendation_history`. Re-running the engine updates the
evidence and savings of a recommendation in place (its id is stable: policy + kind +
resource), never duplicates it, and never re-opens a dismissed one unless its savings grew
past `policies.reopen_factor`. A recommendation the engine no longer finds turns inactive:
the action runner ignores it, people still see its history.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from finops.errors import PolicyError
from finops.policies.facts import DAYS_PER_MONTH
from finops.policies.model import Finding, LoadedPolicy
from finops.warehouse import Warehouse
from finops.warehouse.runs import transaction

STATES = ("open", "accepted", "snoozed", "dismissed", "applied")
_ALLOWED: dict[str, tuple[str, ...]] = {
    "accepted": ("open", "snoozed"),
    "snoozed": ("open", "accepted"),
    "dismissed": ("open", "accepted", "snoozed"),
    "applied": ("accepted", "open"),
    "open": ("accepted", "snoozed", "dismissed"),
}
"""Which states each state may be entered from (by a person, or the action runner)."""


def rec_id(policy: str, kind: str, resource_id: str) -> str:
    digest = hashlib.sha256(f"{policy}\x00{kind}\x00{resource_id}".encode()).hexdigest()
    return f"{kind}-{digest[:12]}"


@dataclass(frozen=True)
class Change:
    rec_id: str
    policy: str
    resource_id: str
    event: str
    """created | updated | reopened | unchanged | dismissed-kept | resolved | snooze-ended"""
    monthly_savings: Decimal
    previous_savings: Decimal | None
    reason: str


_COLUMNS = (
    "rec_id, policy, kind, resource_id, resource_name, provider, account_id, region, cluster, "
    "team, owner, action, mode, monthly_savings, currency, confidence, risk, reason, evidence, "
    "state, state_reason, state_by, snoozed_until, active, first_seen_at, last_evaluated_at, "
    "updated_at, applied_at"
)


def _evidence(finding: Finding) -> str:
    return json.dumps(
        {
            **finding.evidence,
            "targets": [t.as_json() for t in finding.targets],
            "billed_resource_ids": list(finding.billed_resource_ids),
        },
        sort_keys=True,
        default=str,
    )


def reconcile(
    existing: dict[str, Any] | None,
    finding: Finding,
    now: datetime,
    reopen_factor: float,
) -> tuple[str, str, str | None]:
    """What a new finding does to a stored recommendation: (event, state, state_reason)."""
    savings = finding.monthly_savings
    if existing is None:
        return "created", "open", None
    state, reason = existing["state"], existing["state_reason"]
    old = Decimal(existing["monthly_savings"])
    if state == "dismissed":
        if old > 0 and savings > old * Decimal(str(reopen_factor)):
            return "reopened", "open", f"savings grew from {old:,.2f} to {savings:,.2f}"
        return "dismissed-kept", state, reason
    if state == "snoozed" and existing["snoozed_until"] and existing["snoozed_until"] <= now:
        return "snooze-ended", "open", None
    changed = (
        round(old, 2) != round(savings, 2)
        or existing["reason"] != finding.reason
        or not existing["active"]
    )
    return ("updated" if changed else "unchanged"), state, reason


def save_findings(
    warehouse: Warehouse,
    policy: LoadedPolicy,
    findings: list[Finding],
    *,
    now: datetime,
    currency: str,
    reopen_factor: float,
    actor: str = "engine",
) -> list[Change]:
    """Store one policy's findings in one transaction; return what changed."""
    p = policy.policy
    ids = [rec_id(p.name, p.kind, f.resource_id) for f in findings]
    changes: list[Change] = []
    with warehouse.writer() as conn, transaction(conn, refused=f"policy {p.name}"):
        stored = conn.sql(
            f"SELECT {_COLUMNS} FROM recommendations WHERE policy = ?", params=[p.name]
        ).to_arrow_table()
        existing = {row["rec_id"]: row for row in stored.to_pylist()}
        for rid, finding in zip(ids, findings, strict=True):
            before = existing.get(rid)
            event, state, state_reason = reconcile(before, finding, now, reopen_factor)
            savings = finding.monthly_savings.quantize(Decimal("0.0000000001"))
            updated = before["updated_at"] if event == "unchanged" and before else now
            _write(
                conn, rid, p, finding, savings, state, state_reason, before, now, updated, currency
            )
            if event in ("created", "reopened", "snooze-ended", "updated"):
                _history(
                    conn,
                    rid,
                    now,
                    event,
                    before["state"] if before else None,
                    state,
                    actor,
                    state_reason if event == "reopened" else finding.reason,
                    savings,
                    _evidence(finding),
                )
            changes.append(
                Change(
                    rid,
                    p.name,
                    finding.resource_id,
                    event,
                    savings,
                    Decimal(before["monthly_savings"]) if before else None,
                    finding.reason,
                )
            )
        for rid, before in existing.items():
            if rid in ids or not before["active"]:
                continue
            conn.execute(
                "UPDATE recommendations SET active = false, last_evaluated_at = ?, updated_at = ? "
                "WHERE rec_id = ?",
                [now, now, rid],
            )
            note = "no longer found by the policy"
            _history(conn, rid, now, "resolved", before["state"], before["state"], actor, note)
            changes.append(
                Change(
                    rid,
                    p.name,
                    before["resource_id"],
                    "resolved",
                    Decimal(0),
                    Decimal(before["monthly_savings"]),
                    note,
                )
            )
    return changes


def _write(
    conn: duckdb.DuckDBPyConnection,
    rid: str,
    policy: Any,
    finding: Finding,
    savings: Decimal,
    state: str,
    state_reason: str | None,
    before: dict[str, Any] | None,
    now: datetime,
    updated_at: datetime,
    currency: str,
) -> None:
    conn.execute("DELETE FROM recommendations WHERE rec_id = ?", [rid])
    subject = finding.subject
    conn.execute(
        f"INSERT INTO recommendations ({_COLUMNS}) VALUES ({', '.join('?' * 28)})",
        [
            rid,
            policy.name,
            policy.kind,
            finding.resource_id,
            finding.resource_name,
            subject.provider,
            subject.account,
            subject.region,
            subject.cluster,
            subject.team,
            finding.owner or policy.owner,
            finding.action,
            policy.mode,
            savings,
            currency,
            finding.confidence,
            finding.risk,
            finding.reason,
            _evidence(finding),
            state,
            state_reason,
            before["state_by"] if before and state == before["state"] else None,
            before["snoozed_until"] if before and state == "snoozed" else None,
            True,
            before["first_seen_at"] if before else now,
            now,
            updated_at,
            before["applied_at"] if before else None,
        ],
    )


def _history(
    conn: duckdb.DuckDBPyConnection,
    rid: str,
    at: datetime,
    event: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    reason: str | None,
    savings: Decimal | None = None,
    evidence: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO recommendation_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [rid, at, event, from_state, to_state, actor, reason, savings, evidence],
    )


def change_state(
    warehouse: Warehouse,
    rid: str,
    to_state: str,
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Move one recommendation to `to_state` (accepted, snoozed, dismissed, applied, open)."""
    if to_state not in _ALLOWED:
        raise PolicyError(f"unknown state {to_state!r}: use one of {', '.join(_ALLOWED)}")
    if to_state == "dismissed" and not (reason and reason.strip()):
        raise PolicyError("dismissing a recommendation needs a reason (--reason)")
    if to_state == "snoozed" and (until is None or until <= now):
        raise PolicyError("snoozing needs a date in the future (--until)")
    with warehouse.writer() as conn, transaction(conn, refused=f"recommendation {rid}"):
        found = conn.sql(
            "SELECT state FROM recommendations WHERE rec_id = ?", params=[rid]
        ).fetchall()
        if not found:
            raise PolicyError(f"no recommendation {rid}: `finops recommendations list` shows them")
        state = found[0][0]
        if state not in _ALLOWED[to_state]:
            raise PolicyError(f"{rid} is {state}: it cannot become {to_state}")
        conn.execute(
            """
            UPDATE recommendations
            SET state = ?, state_reason = ?, state_by = ?, updated_at = ?,
                snoozed_until = ?, applied_at = CASE WHEN ? = 'applied' THEN ? ELSE applied_at END
            WHERE rec_id = ?
            """,
            [to_state, reason, actor, now, until, to_state, now, rid],
        )
        _history(conn, rid, now, to_state, state, to_state, actor, reason)
        row = conn.sql(f"SELECT {_COLUMNS} FROM recommendations WHERE rec_id = ?", params=[rid])
        return row.to_arrow_table().to_pylist()[0]


def list_recommendations(
    conn: duckdb.DuckDBPyConnection,
    *,
    states: tuple[str, ...] = (),
    policy: str | None = None,
    teams: tuple[str, ...] | None = None,
    active_only: bool = True,
) -> pa.Table:
    """Recommendations, largest savings first. `teams` limits them to those teams' rows."""
    where = ["(NOT ? OR active)"]
    params: list[object] = [active_only]
    if states:
        where.append("list_contains(?, state)")
        params.append(list(states))
    if policy:
        where.append("policy = ?")
        params.append(policy)
    if teams is not None:
        where.append("list_contains(?, team)")
        params.append(list(teams))
    return conn.sql(
        f"SELECT {_COLUMNS} FROM recommendations WHERE {' AND '.join(where)} "
        "ORDER BY monthly_savings DESC, rec_id",
        params=params,
    ).to_arrow_table()


def history(conn: duckdb.DuckDBPyConnection, rid: str) -> pa.Table:
    return conn.sql(
        "SELECT changed_at, event, from_state, to_state, actor, reason, monthly_savings "
        "FROM recommendation_history WHERE rec_id = ? ORDER BY changed_at, rowid",
        params=[rid],
    ).to_arrow_table()


def savings_totals(
    conn: duckdb.DuckDBPyConnection, *, teams: tuple[str, ...] | None = None
) -> pa.Table:
    """Monthly savings per state, each resource counted once (its largest recommendation):
    two policies that would both stop one cluster do not save twice."""
    return conn.sql(
        """
        WITH ranked AS (
            SELECT state, monthly_savings, currency,
                   row_number() OVER (PARTITION BY resource_id
                                      ORDER BY monthly_savings DESC, rec_id) AS nth
            FROM recommendations
            WHERE active AND monthly_savings > 0 AND (? OR list_contains(?, team))
        )
        SELECT state, count(*) AS recommendations, sum(monthly_savings) AS monthly_savings,
               any_value(currency) AS currency
        FROM ranked WHERE nth = 1 GROUP BY state ORDER BY monthly_savings DESC
        """,
        params=[teams is None, list(teams or ())],
    ).to_arrow_table()


def realised_savings(conn: duckdb.DuckDBPyConnection, now: datetime) -> pa.Table:
    """For applied recommendations: the resources' daily cost in equal windows before and
    after the change (up to 30 days each), as monthly figures beside the estimate."""
    return conn.sql(
        """
        WITH applied AS (
            SELECT rec_id, policy, resource_id, monthly_savings AS estimated, applied_at,
                   least(30, date_diff('day', applied_at, ?::TIMESTAMPTZ)) AS days,
                   CAST(json_extract_string(evidence, '$.billed_resource_ids[*]') AS VARCHAR[])
                       AS billed
            FROM recommendations WHERE state = 'applied' AND applied_at IS NOT NULL
        ),
        windows AS (
            SELECT *, applied_at - to_days(days) AS before_start,
                   applied_at + to_days(days) AS after_end
            FROM applied WHERE days >= 1
        ),
        costs AS (
            SELECT w.rec_id,
                   coalesce(sum(c."EffectiveCost") FILTER (
                       WHERE c."ChargePeriodStart" >= w.before_start
                         AND c."ChargePeriodStart" < w.applied_at), 0) AS cost_before,
                   coalesce(sum(c."EffectiveCost") FILTER (
                       WHERE c."ChargePeriodStart" >= w.applied_at
                         AND c."ChargePeriodStart" < w.after_end), 0) AS cost_after
            FROM windows w LEFT JOIN cost_resolved c
              ON list_contains(w.billed, c."ResourceId")
             AND c."ChargePeriodStart" >= w.before_start AND c."ChargePeriodStart" < w.after_end
            GROUP BY w.rec_id
        )
        SELECT w.rec_id, w.policy, w.resource_id, w.applied_at, w.days, w.estimated,
               c.cost_before, c.cost_after,
               CAST((c.cost_before - c.cost_after) * ? / w.days AS DECIMAL(38,10)) AS realised
        FROM windows w JOIN costs c USING (rec_id)
        ORDER BY realised DESC, w.rec_id
        """,
        params=[now, DAYS_PER_MONTH],
    ).to_arrow_table()
