"""The action run: which recommendations may be acted on, the safety checks, and the acts.

A run reads the actionable recommendations (active, action `stop` or `scale-to-zero`, and
either accepted by a person or open under a policy in `mode: auto`; a snooze in force,
a dismissal or an earlier apply keeps one out). For each target in a recommendation's
evidence, in this order, it is skipped when:

1. the policy excludes it (the caller passes the policy's exclusions);
2. it carries the protection tag (`actions.protect_tag`=`actions.protect_value`, or the
   label `actions.protect_label` on Google Cloud), in the inventory or live on the resource;
3. the re-check finds its cluster busy, or its newest samples stale (`recheck.py`);
4. its live state says there is nothing to do (already stopped), or not now (changing, gone).

Then the blast radius: if more than `actions.max_resources_per_run` resources, or more than
`actions.max_scope_percent` of one policy's scope, would be acted on, the run acts on
nothing and says so. Otherwise each is stopped (intent and outcome in the audit log around
the call) and remembered in `action_memory`, so that `restore` starts what this stopped,
and only that, with the capacity it had.

A dry run (the default; forced by the kill switch) makes every read and check but no change,
and records what it would have done.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import duckdb

from finops.actions.audit import AuditEvent, AuditLog
from finops.actions.executors import Executors
from finops.actions.recheck import Recheck, recheck_utilisation
from finops.actions.targets import ResourceState, Target
from finops.config import Config
from finops.errors import ActionError
from finops.warehouse import Warehouse
from finops.warehouse.runs import transaction

ACTIONS = ("stop", "scale-to-zero")

OnApplied = Callable[[str, datetime], None]
"""Told (recommendation id, time) once every target of a recommendation is stopped; the
policy engine's state API marks the recommendation applied."""


@dataclass(frozen=True)
class Recommendation:
    """An actionable recommendation, as the run needs it."""

    rec_id: str
    policy: str
    action: str
    mode: str
    state: str
    cluster: str | None
    owner: str | None
    reason: str
    targets: tuple[Target, ...]
    scope_size: int | None = None
    problem: str | None = None
    """Why its targets could not be read (then it is skipped, with this as the reason)."""


@dataclass(frozen=True)
class Outcome:
    """What became of one target: `stopped`, `started`, `would-stop`, `would-start`,
    `already-stopped`, `already-running`, `skipped` or `failed`, and why."""

    rec_id: str | None
    policy: str | None
    action: str
    target: Target | None
    result: str
    reason: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    audit_seq: int | None = None

    @property
    def changed(self) -> bool:
        return self.result in ("stopped", "started")


@dataclass
class RunReport:
    dry_run: bool
    why_dry: str | None
    """Why this was a dry run: asked for, or the kill switch."""
    outcomes: list[Outcome] = field(default_factory=list)
    refused: str | None = None
    """Set when the blast radius stopped the whole run."""
    applied: list[str] = field(default_factory=list)
    """Recommendations every target of which is now stopped."""

    @property
    def changed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.changed]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == "failed"]


def kill_switch(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """Why every action must be a dry run now, or None when actions are allowed."""
    environ = os.environ if environ is None else environ
    if environ.get("FINOPS_ACTIONS", "").strip().lower() in ("off", "false", "0", "no"):
        return "kill switch: FINOPS_ACTIONS=off"
    if not config.actions.enabled:
        return "kill switch: actions.enabled is false in finops.yaml"
    return None


@dataclass
class _Plan:
    rec: Recommendation
    target: Target | None
    """None when the recommendation's evidence names no target that can be read."""
    before: ResourceState | None = None
    recheck: Recheck | None = None
    skip: tuple[str, str] | None = None
    """(result, reason) when the target is not to be acted on."""


class Actions:
    """Acts on one warehouse's recommendations, for one actor and trigger."""

    def __init__(
        self,
        warehouse: Warehouse,
        config: Config,
        *,
        actor: str,
        trigger: str,
        executors: Executors | None = None,
        audit: AuditLog | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.config = config
        self.settings = config.actions
        self.actor = actor
        self.trigger = trigger
        self.executors = executors or Executors.from_settings(config.actions)
        self.audit = audit or AuditLog.from_config(config, warehouse)
        self.environ = environ

    # --- reading -------------------------------------------------------------------------

    def actionable(
        self,
        now: datetime,
        *,
        policy: str | None = None,
        rec_ids: Collection[str] | None = None,
        kinds: Collection[str] | None = None,
    ) -> list[Recommendation]:
        """Recommendations a run may act on now (of these policy `kinds`, if given), oldest
        policy name first."""
        with self.warehouse.reader() as conn:
            rows = (
                conn.sql(
                    """
                    SELECT rec_id, policy, action, mode, state, cluster, owner, reason,
                           evidence::VARCHAR AS evidence
                    FROM recommendations
                    WHERE active AND action IN ('stop', 'scale-to-zero')
                      AND (state = 'accepted'
                           OR (mode = 'auto' AND (state = 'open'
                               OR (state = 'snoozed' AND snoozed_until <= $now))))
                      AND ($policy::VARCHAR IS NULL OR policy = $policy)
                      AND ($ids::VARCHAR[] IS NULL OR list_contains($ids, rec_id))
                      AND ($kinds::VARCHAR[] IS NULL OR list_contains($kinds, kind))
                    ORDER BY policy, rec_id
                    """,
                    params={
                        "now": now,
                        "policy": policy,
                        "ids": list(rec_ids) if rec_ids is not None else None,
                        "kinds": list(kinds) if kinds is not None else None,
                    },
                )
                .to_arrow_table()
                .to_pylist()
            )
        return [_recommendation(row) for row in rows]

    def _protected_in_inventory(self, targets: list[Target]) -> set[str]:
        ids = sorted({t.resource_id for t in targets})
        if not ids:
            return set()
        with self.warehouse.reader() as conn:
            rows = conn.execute(
                """
                SELECT DISTINCT resource_id FROM resources
                WHERE list_contains($ids, resource_id)
                  AND (lower(tags[$tag]) = lower($value) OR lower(tags[$label]) = lower($value))
                """,
                {
                    "ids": ids,
                    "tag": self.settings.protect_tag,
                    "label": self.settings.protect_label,
                    "value": self.settings.protect_value,
                },
            ).fetchall()
        return {r[0] for r in rows}

    def _recheck(self, recs: list[Recommendation], now: datetime) -> dict[str, Recheck]:
        with self.warehouse.reader() as conn:
            return {
                rec.rec_id: recheck_utilisation(
                    conn,
                    cluster=rec.cluster,
                    resource_ids=[t.resource_id for t in rec.targets],
                    now=now,
                    idle_threshold_pct=self.config.gpu.idle_threshold_pct,
                    max_sample_age=self.settings.max_sample_age,
                    window=self.settings.recheck_window,
                )
                for rec in recs
            }

    def _live_protection(self, target: Target, state: ResourceState) -> str | None:
        key = self.settings.protect_label if target.provider == "gcp" else self.settings.protect_tag
        value = state.tags.get(key)
        if value is not None and value.lower() == self.settings.protect_value.lower():
            return f"protected: tag {key}={value} on the resource"
        return None

    # --- the run -------------------------------------------------------------------------

    def apply(
        self,
        now: datetime,
        *,
        dry_run: bool = True,
        policy: str | None = None,
        rec_ids: Collection[str] | None = None,
        kinds: Collection[str] | None = None,
        exclusions: Collection[str] = frozenset(),
        scope_sizes: Mapping[str, int] | None = None,
        on_applied: OnApplied | None = None,
    ) -> RunReport:
        """Act on the actionable recommendations (of `policy`, or these `rec_ids`).

        `exclusions` are resource ids the policy excludes; `scope_sizes` is how many
        resources each policy's scope holds (else a recommendation's evidence `scope_size`),
        for the percentage cap, which is not applied to a policy whose scope is unknown.
        """
        report = self._report(dry_run)
        recs = self.actionable(now, policy=policy, rec_ids=rec_ids, kinds=kinds)
        plans = self._check(recs, now, set(exclusions))
        candidates = [p for p in plans if p.skip is None]
        report.refused = self._blast_radius(candidates, recs, scope_sizes or {})
        if report.refused:
            for plan in candidates:
                plan.skip = ("skipped", f"blast radius: {report.refused}")
        report.outcomes = self._act(plans, now, report.dry_run)
        if not report.dry_run:
            for rec in recs:
                results = {o.result for o in report.outcomes if o.rec_id == rec.rec_id}
                if results and results <= {"stopped", "already-stopped"}:
                    report.applied.append(rec.rec_id)
                    if on_applied is not None:
                        on_applied(rec.rec_id, now)
        return report

    def _report(self, dry_run: bool) -> RunReport:
        why = kill_switch(self.config, self.environ)
        if why is None and dry_run:
            why = "dry run (pass --apply to act)"
        return RunReport(dry_run=why is not None, why_dry=why)

    def _check(self, recs: list[Recommendation], now: datetime, excluded: set[str]) -> list[_Plan]:
        plans: list[_Plan] = []
        for rec in recs:
            if rec.problem:
                plans.append(_Plan(rec, None, skip=("skipped", rec.problem)))
            plans += [_Plan(rec, target) for target in rec.targets]
        protected = self._protected_in_inventory([p.target for p in plans if p.target])
        rechecks = self._recheck([r for r in recs if r.targets], now)
        tag = f"{self.settings.protect_tag}={self.settings.protect_value}"
        for plan in plans:
            target = plan.target
            if plan.skip or target is None:
                continue
            plan.recheck = rechecks[plan.rec.rec_id]
            if target.resource_id in excluded or plan.rec.rec_id in excluded:
                plan.skip = ("skipped", f"excluded by policy {plan.rec.policy}")
            elif target.resource_id in protected:
                plan.skip = ("skipped", f"protected: tag {tag} in the inventory")
            elif plan.recheck.verdict in ("busy", "stale") or (
                plan.recheck.verdict == "no-samples" and not self.settings.act_without_samples
            ):
                plan.skip = ("skipped", plan.recheck.reason)
            else:
                plan.skip = self._check_live(plan)
        return plans

    def _check_live(self, plan: _Plan) -> tuple[str, str] | None:
        assert plan.target is not None
        try:
            plan.before = self.executors.for_target(plan.target).describe(plan.target)
        except Exception as exc:
            return ("failed", f"could not read its state: {_describe_error(exc)}")
        if reason := self._live_protection(plan.target, plan.before):
            return ("skipped", reason)
        status = plan.before.status
        if status == "stopped":
            return ("already-stopped", f"already {plan.before.native_status}; nothing to do")
        if status == "changing":
            return ("skipped", f"is {plan.before.native_status}; left alone until it settles")
        if status == "gone":
            return ("skipped", f"no longer exists ({plan.before.native_status})")
        return None

    def _blast_radius(
        self, candidates: list[_Plan], recs: list[Recommendation], scope_sizes: Mapping[str, int]
    ) -> str | None:
        cap = self.settings.max_resources_per_run
        if len(candidates) > cap:
            return (
                f"{len(candidates)} resources would be acted on, over the cap of {cap} per run "
                "(actions.max_resources_per_run); nothing was done"
            )
        for policy in sorted({p.rec.policy for p in candidates}):
            scope = scope_sizes.get(policy) or next(
                (r.scope_size for r in recs if r.policy == policy and r.scope_size), None
            )
            if not scope:
                continue
            count = sum(1 for p in candidates if p.rec.policy == policy)
            share = 100 * count / scope
            if share > self.settings.max_scope_percent:
                return (
                    f"policy {policy} would act on {count} of the {scope} resources in its scope "
                    f"({share:.0f}%), over the cap of {self.settings.max_scope_percent:g}% "
                    "(actions.max_scope_percent); nothing was done"
                )
        return None

    def _event(
        self, rec: Recommendation | None, target: Target | None, **fields: Any
    ) -> AuditEvent:
        return AuditEvent(
            actor=self.actor,
            trigger=self.trigger,
            policy=rec.policy if rec else fields.pop("policy", None),
            rec_id=rec.rec_id if rec else fields.pop("rec_id", None),
            provider=target.provider if target else None,
            resource_id=target.resource_id if target else None,
            resource_type=target.resource_type if target else None,
            **fields,
        )

    def _act(self, plans: list[_Plan], now: datetime, dry_run: bool) -> list[Outcome]:
        """Record every decision that makes no call (in one transaction), then act on the rest
        one at a time; outcomes come back in the order of `plans`."""
        befores: list[dict[str, Any] | None] = []
        for plan in plans:
            before = plan.before.to_json() if plan.before else None
            if plan.recheck is not None and before is not None:
                before["recheck"] = plan.recheck.to_json()
            befores.append(before)
            if plan.skip is None and dry_run:
                assert plan.recheck is not None
                plan.skip = ("would-stop", f"{plan.rec.reason}; {plan.recheck.reason}")
        decided = [(plan, before) for plan, before in zip(plans, befores, strict=True) if plan.skip]
        seqs = self.audit.append_many(
            [
                self._event(
                    plan.rec,
                    plan.target,
                    action=plan.rec.action,
                    dry_run=dry_run,
                    result=plan.skip[0],
                    reason=plan.skip[1],
                    before_state=before,
                )
                for plan, before in decided
                if plan.skip
            ],
            now,
        )
        recorded = {id(plan): seq for (plan, _), seq in zip(decided, seqs, strict=True)}
        outcomes = []
        for plan, before in zip(plans, befores, strict=True):
            rec, target = plan.rec, plan.target
            if plan.skip is not None:
                result, reason = plan.skip
                outcomes.append(
                    Outcome(
                        rec.rec_id,
                        rec.policy,
                        rec.action,
                        target,
                        result,
                        reason,
                        before,
                        None,
                        recorded[id(plan)],
                    )
                )
                continue
            assert plan.before is not None
            assert target is not None
            outcomes.append(self.stop(rec, target, plan.before, now, before_json=before))
        return outcomes

    # --- stop, start, restore ------------------------------------------------------------

    def stop(
        self,
        rec: Recommendation,
        target: Target,
        before: ResourceState,
        now: datetime,
        *,
        before_json: dict[str, Any] | None = None,
    ) -> Outcome:
        """Stop one running target: intent, the call, outcome; remember what was stopped."""
        before_json = before_json or before.to_json()
        intent = self.audit.append(
            self._event(
                rec,
                target,
                action=rec.action,
                dry_run=False,
                phase="intent",
                result="started",
                reason=rec.reason,
                before_state=before_json,
            ),
            now,
        )
        try:
            after = self.executors.for_target(target).stop(target, before)
        except Exception as exc:
            reason = f"{rec.action} failed: {_describe_error(exc)}"
            seq = self.audit.append(
                self._event(
                    rec,
                    target,
                    action=rec.action,
                    dry_run=False,
                    intent_seq=intent,
                    result="failed",
                    reason=reason,
                ),
                now,
            )
            return Outcome(
                rec.rec_id, rec.policy, rec.action, target, "failed", reason, before_json, None, seq
            )
        seq = self.audit.append(
            self._event(
                rec,
                target,
                action=rec.action,
                dry_run=False,
                intent_seq=intent,
                result="stopped",
                reason=rec.reason,
                after_state=after.to_json(),
            ),
            now,
            along=partial(
                self._remember, rec, target, before, now, f"{self.actor} ({self.trigger})"
            ),
        )
        return Outcome(
            rec.rec_id,
            rec.policy,
            rec.action,
            target,
            "stopped",
            rec.reason,
            before_json,
            after.to_json(),
            seq,
        )

    @staticmethod
    def _remember(
        rec: Recommendation,
        target: Target,
        before: ResourceState,
        now: datetime,
        stopped_by: str,
        conn: duckdb.DuckDBPyConnection,
        seq: int,
    ) -> None:
        """Note what was stopped, and the capacity to give back, with the outcome's entry."""
        conn.execute(
            """
            INSERT INTO action_memory (memory_id, policy, rec_id, provider, resource_type,
                resource_id, target, previous_state, stopped_at, stopped_by, audit_seq)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                uuid.uuid4().hex,
                rec.policy,
                rec.rec_id,
                target.provider,
                target.resource_type,
                target.resource_id,
                json.dumps(target.to_json()),
                json.dumps(before.to_json()),
                now,
                stopped_by,
                seq,
            ],
        )

    def restore(
        self,
        now: datetime,
        *,
        policy: str,
        dry_run: bool = False,
        rec_ids: Collection[str] | None = None,
    ) -> RunReport:
        """Start what `policy`'s runs stopped and have not yet given back, with the capacity
        each had; nothing else (a resource someone else stopped stays stopped)."""
        report = self._report(dry_run)
        with self.warehouse.reader() as conn:
            remembered = (
                conn.sql(
                    """
                    SELECT memory_id, policy, rec_id, target::VARCHAR AS target,
                           previous_state::VARCHAR AS previous_state
                    FROM action_memory
                    WHERE policy = $policy AND restored_at IS NULL
                      AND ($ids::VARCHAR[] IS NULL OR list_contains($ids, rec_id))
                    ORDER BY stopped_at, memory_id
                    """,
                    params={
                        "policy": policy,
                        "ids": list(rec_ids) if rec_ids is not None else None,
                    },
                )
                .to_arrow_table()
                .to_pylist()
            )
        for row in remembered:
            target = Target.parse(json.loads(row["target"]), f"action_memory {row['memory_id']}")
            previous = json.loads(row["previous_state"])
            outcome = self.start(
                target, previous, now, policy=policy, rec_id=row["rec_id"], dry_run=report.dry_run
            )
            report.outcomes.append(outcome)
            if outcome.result in ("started", "already-running") or (
                outcome.result == "skipped"
                and outcome.before
                and outcome.before["status"] == "gone"
            ):
                self._forget(row["memory_id"], now, outcome.result)
        return report

    def start(
        self,
        target: Target,
        remembered: Mapping[str, Any],
        now: datetime,
        *,
        policy: str | None,
        rec_id: str | None,
        dry_run: bool,
    ) -> Outcome:
        """Start one stopped target, giving back the remembered capacity."""
        executor = self.executors.for_target(target)

        def record(result: str, reason: str, before: dict[str, Any] | None, **extra: Any) -> int:
            return self.audit.append(
                self._event(
                    None,
                    target,
                    policy=policy,
                    rec_id=rec_id,
                    action="start",
                    dry_run=dry_run,
                    result=result,
                    reason=reason,
                    before_state=before,
                    **extra,
                ),
                now,
            )

        def outcome(
            result: str, reason: str, before: Any, after: Any = None, seq: int | None = None
        ) -> Outcome:
            return Outcome(rec_id, policy, "start", target, result, reason, before, after, seq)

        try:
            state = executor.describe(target)
        except Exception as exc:
            reason = f"could not read its state: {_describe_error(exc)}"
            return outcome("failed", reason, None, seq=record("failed", reason, None))
        before = state.to_json()
        if state.status != "stopped":
            result, reason = {
                "running": ("already-running", f"already {state.native_status}; nothing to do"),
                "changing": (
                    "skipped",
                    f"is {state.native_status}; will retry at the next restore",
                ),
                "gone": ("skipped", f"no longer exists ({state.native_status})"),
            }[state.status]
            return outcome(result, reason, before, seq=record(result, reason, before))
        capacity = remembered.get("capacity")
        reason = "restoring what finops stopped" + (
            f" to {_capacity_text(capacity)}" if capacity else ""
        )
        if dry_run:
            return outcome("would-start", reason, before, seq=record("would-start", reason, before))
        intent = record("started", reason, before, phase="intent")
        try:
            after = executor.start(target, remembered)
        except Exception as exc:
            failure = f"start failed: {_describe_error(exc)}"
            return outcome(
                "failed", failure, before, seq=record("failed", failure, None, intent_seq=intent)
            )
        seq = record("started", reason, None, intent_seq=intent, after_state=after.to_json())
        return outcome("started", reason, before, after.to_json(), seq)

    def _forget(self, memory_id: str, now: datetime, result: str) -> None:
        with self.warehouse.writer() as conn, transaction(conn, refused="action memory"):
            conn.execute(
                "UPDATE action_memory SET restored_at = ?, restore_result = ? WHERE memory_id = ?",
                [now, result, memory_id],
            )


def _capacity_text(capacity: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in capacity.items())


def _describe_error(exc: BaseException) -> str:
    """A cloud error as one line: its class and message (no credentials are in either)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _recommendation(row: dict[str, Any]) -> Recommendation:
    where = f"recommendation {row['rec_id']} evidence"
    targets: tuple[Target, ...] = ()
    problem = None
    scope_size = None
    try:
        evidence = json.loads(row["evidence"])
        listed = evidence.get("targets") if isinstance(evidence, dict) else None
        if not isinstance(listed, list) or not listed:
            raise ActionError(f"{where}: no `targets` to act on")
        targets = tuple(Target.parse(t, f"{where}, targets[{i}]") for i, t in enumerate(listed))
        if isinstance(evidence.get("scope_size"), int):
            scope_size = evidence["scope_size"]
    except (ActionError, ValueError) as exc:
        problem = str(exc)
    return Recommendation(
        rec_id=row["rec_id"],
        policy=row["policy"],
        action=row["action"],
        mode=row["mode"],
        state=row["state"],
        cluster=row["cluster"],
        owner=row["owner"],
        reason=row["reason"],
        targets=targets,
        scope_size=scope_size,
        problem=problem,
    )
