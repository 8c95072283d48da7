"""Warn, then act: a stop is announced `actions.warn_lead_time` before it happens, and a
snooze in between cancels it.

`schedule_stops` gives every actionable recommendation without a pending stop one
(`scheduled_actions`, state `pending`, `act_at` = now + lead time) and posts a warning to
`actions.webhook_url` (Slack-compatible JSON: `text` plus `blocks`) naming the cluster,
owner, reason, time and how to snooze. Without a warning there is no stop: if the webhook
refuses, nothing is scheduled. `snooze` (the CLI's `finops actions snooze`) marks a pending
stop `snoozed` until a time; snoozing the recommendation itself (the app) works as well,
since `act_on_due` acts only on recommendations that are still actionable when the time
comes, through the same safety checks as any run.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from finops.actions.audit import AuditEvent
from finops.actions.runner import Actions, OnApplied, RunReport
from finops.config import ActionSettings
from finops.errors import ActionError
from finops.warehouse.runs import transaction

SCHEDULED_COLUMNS = (
    "action_id",
    "rec_id",
    "policy",
    "action",
    "resource_id",
    "cluster",
    "owner",
    "reason",
    "warned_at",
    "act_at",
    "state",
    "snoozed_until",
    "changed_by",
    "outcome",
    "updated_at",
)


@dataclass(frozen=True)
class ScheduledStop:
    """A warned stop: pending until `act_at`, then done or cancelled; or snoozed."""

    action_id: str
    rec_id: str
    policy: str
    action: str
    resource_id: str
    cluster: str | None
    owner: str | None
    reason: str
    warned_at: datetime
    act_at: datetime
    state: str
    snoozed_until: datetime | None = None
    changed_by: str | None = None
    outcome: str | None = None
    updated_at: datetime | None = None

    @property
    def subject(self) -> str:
        return f"cluster {self.cluster}" if self.cluster else self.resource_id


@dataclass
class WarningsReport:
    scheduled: list[ScheduledStop] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(recommendation, why) for each warning that could not be sent (so nothing scheduled)."""


def webhook_url(settings: ActionSettings, environ: Mapping[str, str] | None = None) -> str | None:
    """The webhook to post to, with an `${ENV_VAR}` reference read now."""
    if settings.webhook_url is None:
        return None
    value = settings.webhook_url.get_secret_value()
    environ = os.environ if environ is None else environ
    missing = [name for name in re.findall(r"\$\{(\w+)\}", value) if name not in environ]
    if missing:
        raise ActionError(
            f"actions.webhook_url refers to ${{{missing[0]}}}, which is not set in the environment"
        )
    return re.sub(r"\$\{(\w+)\}", lambda m: environ[m.group(1)], value)


def warning_message(stop: ScheduledStop, now: datetime, time_zone: ZoneInfo) -> dict[str, Any]:
    """The Slack-compatible warning for one scheduled stop."""
    verb = "scale to zero" if stop.action == "scale-to-zero" else "stop"
    when = stop.act_at.astimezone(time_zone).strftime("%Y-%m-%d %H:%M %Z")
    minutes = round((stop.act_at - now).total_seconds() / 60)
    text = (
        f"finops will {verb} {stop.subject} at {when} (in {minutes} min). "
        f"Owner: {stop.owner or 'unknown'}. Reason: {stop.reason}."
    )
    snooze = (
        f"To keep it running: `finops actions snooze {stop.action_id} --until 8h`, "
        f"or snooze recommendation {stop.rec_id} in the app."
    )
    return {
        "text": f"{text} {snooze}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "text": {"type": "mrkdwn", "text": snooze}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"policy {stop.policy} | recommendation {stop.rec_id} | "
                        f"scheduled action {stop.action_id}",
                    }
                ],
            },
        ],
    }


class _WebhookUnavailable(Exception):
    """A 429 or 5xx answer, or no answer: worth another try."""


def post_webhook(url: str, payload: dict[str, Any], settings: ActionSettings) -> None:
    """POST the JSON; errors never repeat the URL (it is a credential)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )

    def send() -> None:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _WebhookUnavailable(f"HTTP {exc.code}") from None
            raise ActionError(f"the webhook refused the warning: HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _WebhookUnavailable(f"no answer ({reason})") from None

    retrying = Retrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, _WebhookUnavailable)),
        wait=wait_exponential(multiplier=settings.retry_backoff_s, max=60),
        stop=stop_after_attempt(settings.retry_attempts),
        reraise=True,
    )
    try:
        retrying(send)
    except _WebhookUnavailable as exc:
        raise ActionError(f"the webhook did not take the warning: {exc}") from None


def schedule_stops(
    actions: Actions,
    now: datetime,
    *,
    policy: str | None = None,
    kinds: Collection[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> WarningsReport:
    """Warn about, and schedule, a stop for each actionable recommendation not yet pending."""
    settings = actions.settings
    with actions.warehouse.reader() as conn:
        taken = {
            r[0]
            for r in conn.execute(
                """
                SELECT rec_id FROM scheduled_actions
                WHERE state = 'pending' OR (state = 'snoozed' AND snoozed_until > ?)
                """,
                [now],
            ).fetchall()
        }
    url = webhook_url(settings, environ)
    report = WarningsReport()
    for rec in actions.actionable(now, policy=policy, kinds=kinds):
        if rec.rec_id in taken:
            continue
        stop = ScheduledStop(
            action_id=uuid.uuid4().hex[:10],
            rec_id=rec.rec_id,
            policy=rec.policy,
            action=rec.action,
            resource_id=", ".join(t.resource_id for t in rec.targets) or rec.rec_id,
            cluster=rec.cluster,
            owner=rec.owner,
            reason=rec.reason,
            warned_at=now,
            act_at=now + settings.warn_lead_time,
            state="pending",
            updated_at=now,
        )
        message = warning_message(stop, now, actions.config.tz)
        try:
            if url is None:
                raise ActionError("actions.webhook_url is not set, so no warning can go out")
            post_webhook(url, message, settings)
        except ActionError as exc:
            report.refused.append((rec.rec_id, str(exc)))
            _record(actions, stop, now, "warn", "failed", f"not scheduled: {exc}")
            continue
        with actions.warehouse.writer() as conn, transaction(conn, refused="scheduled stop"):
            conn.execute(
                f"INSERT INTO scheduled_actions ({', '.join(SCHEDULED_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in SCHEDULED_COLUMNS)})",
                [getattr(stop, c) for c in SCHEDULED_COLUMNS],
            )
        _record(actions, stop, now, "warn", "warned", message["text"])
        report.scheduled.append(stop)
    return report


def snooze(actions: Actions, ident: str, until: datetime, now: datetime) -> list[ScheduledStop]:
    """Cancel the pending stop(s) with this scheduled-action or recommendation id until `until`."""
    if until <= now:
        raise ActionError(f"snooze until {until.isoformat()}: that time has already passed")
    with actions.warehouse.writer() as conn, transaction(conn, refused="snooze"):
        rows = conn.execute(
            f"""
            UPDATE scheduled_actions
            SET state = 'snoozed', snoozed_until = ?, changed_by = ?, updated_at = ?
            WHERE state = 'pending' AND (action_id = ? OR rec_id = ?)
            RETURNING {", ".join(SCHEDULED_COLUMNS)}
            """,
            [until, actions.actor, now, ident, ident],
        ).fetchall()
    if not rows:
        raise ActionError(
            f"no pending stop has the id {ident!r}; `finops actions pending` lists them"
        )
    snoozed = [ScheduledStop(**dict(zip(SCHEDULED_COLUMNS, row, strict=True))) for row in rows]
    for stop in snoozed:
        _record(actions, stop, now, "snooze", "snoozed", f"snoozed until {until.isoformat()}")
    return snoozed


def pending(actions: Actions, now: datetime) -> list[ScheduledStop]:
    """Stops waiting to act, and snoozes still in force, soonest first."""
    with actions.warehouse.reader() as conn:
        rows = conn.execute(
            f"""
            SELECT {", ".join(SCHEDULED_COLUMNS)} FROM scheduled_actions
            WHERE state = 'pending' OR (state = 'snoozed' AND snoozed_until > ?)
            ORDER BY act_at, action_id
            """,
            [now],
        ).fetchall()
    return [ScheduledStop(**dict(zip(SCHEDULED_COLUMNS, row, strict=True))) for row in rows]


def act_on_due(
    actions: Actions,
    now: datetime,
    *,
    dry_run: bool = False,
    exclusions: Collection[str] = frozenset(),
    scope_sizes: Mapping[str, int] | None = None,
    on_applied: OnApplied | None = None,
) -> tuple[RunReport, list[ScheduledStop]]:
    """Act on the pending stops whose time has come, if their recommendations are still
    actionable (not snoozed, dismissed or applied meanwhile); close each as done or cancelled."""
    due = [s for s in pending(actions, now) if s.state == "pending" and s.act_at <= now]
    if not due:
        return RunReport(dry_run=dry_run, why_dry=None), []
    report = actions.apply(
        now,
        dry_run=dry_run,
        rec_ids=[s.rec_id for s in due],
        exclusions=exclusions,
        scope_sizes=scope_sizes,
        on_applied=on_applied,
    )
    closed = []
    for stop in due:
        results = [o.result for o in report.outcomes if o.rec_id == stop.rec_id]
        if not results:
            state, outcome = "cancelled", "no longer actionable (snoozed, dismissed or applied)"
        else:
            counts = {r: results.count(r) for r in dict.fromkeys(results)}
            state = "done"
            outcome = ", ".join(f"{n} {r}" for r, n in counts.items())
            if report.dry_run:
                outcome += f" ({report.why_dry})"
        with actions.warehouse.writer() as conn, transaction(conn, refused="scheduled stop"):
            conn.execute(
                "UPDATE scheduled_actions SET state = ?, outcome = ?, updated_at = ? "
                "WHERE action_id = ?",
                [state, outcome, now, stop.action_id],
            )
        closed.append(_replace(stop, state=state, outcome=outcome, updated_at=now))
    return report, closed


def _replace(stop: ScheduledStop, **changes: Any) -> ScheduledStop:
    return ScheduledStop(**{**stop.__dict__, **changes})


def _record(
    actions: Actions, stop: ScheduledStop, now: datetime, action: str, result: str, reason: str
) -> None:
    actions.audit.append(
        AuditEvent(
            actor=actions.actor,
            trigger=actions.trigger,
            action=action,
            dry_run=False,
            result=result,
            policy=stop.policy,
            rec_id=stop.rec_id,
            resource_id=stop.resource_id,
            reason=reason,
            after_state={
                "scheduled_action": stop.action_id,
                "act_at": stop.act_at.isoformat(),
                **({"snoozed_until": stop.snoozed_until.isoformat()} if stop.snoozed_until else {}),
            },
        ),
        now,
    )
