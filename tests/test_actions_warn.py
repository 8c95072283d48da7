"""Warn, then act: the webhook (a local HTTP server) gets the warning a lead time before the
stop; a snooze from the CLI or the app cancels it. moto plays AWS; the clock is passed in."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from finops.actions.executors import Executors
from finops.actions.runner import Actions
from finops.actions.warn_then_act import act_on_due, pending, schedule_stops, snooze
from finops.errors import ActionError
from finops.warehouse import Warehouse
from tests.actions_fixtures import (
    NOW,
    Fleet,
    add_samples,
    build_fleet,
    instance_state,
    instance_target,
    recommend,
    settings_config,
)

# moto and a warehouse file per test: several seconds each on a shared machine.
pytestmark = pytest.mark.slow


class Webhook:
    """A loopback stand-in for a Slack incoming webhook: records each JSON body it receives
    and answers with the statuses queued in `answers` (then 200)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[int] = []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                webhook.received.append(json.loads(self.rfile.read(length)))
                status = webhook.answers.pop(0) if webhook.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/secret"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()
    thread.join()


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with mock_aws():
        yield build_fleet()


def runner(
    warehouse: Warehouse, tmp_path: Path, webhook: Webhook, actor: str = "scheduler"
) -> Actions:
    config = settings_config(tmp_path, webhook_url="${TEAM_WEBHOOK}", warn_lead_time="1h")
    return Actions(
        warehouse,
        config,
        actor=actor,
        trigger="warn-then-act",
        executors=Executors.from_settings(config.actions),
        environ={},
    )


@pytest.fixture
def idle_train(
    fleet: Fleet, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, webhook: Webhook
) -> Fleet:
    monkeypatch.setenv("TEAM_WEBHOOK", webhook.url)
    # Idle readings up to each time the test acts at (the re-check wants fresh samples).
    for hours in (0, 1, 2):
        add_samples(warehouse, "train-a", utils=[0.0, 1.0], newest=NOW + timedelta(hours=hours))
    recommend(
        warehouse,
        "rec-train",
        cluster="train-a",
        mode="auto",
        state="open",
        owner="vision",
        targets=[instance_target(fleet.on_demand)],
    )
    return fleet


def test_warning_goes_out_a_lead_time_before_the_stop(
    idle_train: Fleet, warehouse: Warehouse, tmp_path: Path, webhook: Webhook
) -> None:
    actions = runner(warehouse, tmp_path, webhook)
    report = schedule_stops(actions, NOW)

    (stop,) = report.scheduled
    assert stop.act_at == NOW + timedelta(hours=1)
    text = (
        "finops will stop cluster train-a at 2026-06-01 20:00 UTC (in 60 min). Owner: vision. "
        "Reason: cluster train-a idle: p95 GPU util 1.0% < 5% over 7 days."
    )
    snooze_text = (
        f"To keep it running: `finops actions snooze {stop.action_id} --until 8h`, "
        "or snooze recommendation rec-train in the app."
    )
    assert webhook.received == [
        {
            "text": f"{text} {snooze_text}",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {"type": "section", "text": {"type": "mrkdwn", "text": snooze_text}},
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": "policy idle-gpu | recommendation rec-train | "
                            f"scheduled action {stop.action_id}",
                        }
                    ],
                },
            ],
        }
    ]
    # A second planning run does not warn twice.
    assert schedule_stops(actions, NOW + timedelta(minutes=5)).scheduled == []
    assert len(webhook.received) == 1

    # Not yet due: nothing happens.
    _, closed = act_on_due(actions, NOW + timedelta(minutes=30))
    assert closed == []
    assert instance_state(idle_train.on_demand) == "running"

    run, closed = act_on_due(actions, NOW + timedelta(hours=1))
    assert [o.result for o in run.outcomes] == ["stopped"]
    assert [(c.action_id, c.state, c.outcome) for c in closed] == [
        (stop.action_id, "done", "1 stopped")
    ]
    assert instance_state(idle_train.on_demand) == "stopped"
    # The webhook address is a credential: it appears in no audit entry.
    mirror = (tmp_path / "audit.jsonl").read_text()
    assert "secret" not in mirror
    assert webhook.url not in mirror


def test_a_snooze_from_the_cli_cancels_the_stop(
    idle_train: Fleet, warehouse: Warehouse, tmp_path: Path, webhook: Webhook
) -> None:
    actions = runner(warehouse, tmp_path, webhook)
    (stop,) = schedule_stops(actions, NOW).scheduled

    person = runner(warehouse, tmp_path, webhook, actor="bob")
    until = NOW + timedelta(days=1)
    (snoozed,) = snooze(person, stop.action_id, until, NOW + timedelta(minutes=10))
    assert (snoozed.state, snoozed.snoozed_until, snoozed.changed_by) == ("snoozed", until, "bob")

    run, closed = act_on_due(actions, NOW + timedelta(hours=1))
    assert (run.outcomes, closed) == ([], [])
    assert instance_state(idle_train.on_demand) == "running"
    # While the snooze holds, planning neither warns nor schedules again.
    assert schedule_stops(actions, NOW + timedelta(hours=2)).scheduled == []
    assert len(webhook.received) == 1
    assert [(p.action_id, p.state) for p in pending(actions, NOW + timedelta(hours=2))] == [
        (stop.action_id, "snoozed")
    ]
    with pytest.raises(ActionError, match="no pending stop has the id 'nope'"):
        snooze(person, "nope", until, NOW)


def test_a_snooze_in_the_app_cancels_the_stop(
    idle_train: Fleet, warehouse: Warehouse, tmp_path: Path, webhook: Webhook
) -> None:
    actions = runner(warehouse, tmp_path, webhook)
    (stop,) = schedule_stops(actions, NOW).scheduled
    # The app snoozes the recommendation (the policy engine's state API writes this).
    with warehouse.writer() as conn:
        conn.execute(
            "UPDATE recommendations SET state = 'snoozed', snoozed_until = ? WHERE rec_id = ?",
            [NOW + timedelta(days=1), "rec-train"],
        )

    run, closed = act_on_due(actions, NOW + timedelta(hours=1))

    assert run.outcomes == []
    assert [(c.action_id, c.state, c.outcome) for c in closed] == [
        (stop.action_id, "cancelled", "no longer actionable (snoozed, dismissed or applied)")
    ]
    assert instance_state(idle_train.on_demand) == "running"


def test_no_stop_is_scheduled_when_the_warning_cannot_go_out(
    idle_train: Fleet, warehouse: Warehouse, tmp_path: Path, webhook: Webhook
) -> None:
    webhook.answers = [503, 503, 503, 503, 503]
    actions = runner(warehouse, tmp_path, webhook)
    report = schedule_stops(actions, NOW)
    assert report.scheduled == []
    assert report.refused == [("rec-train", "the webhook did not take the warning: HTTP 503")]
    assert len(webhook.received) == 5  # retried actions.retry_attempts times
    assert pending(actions, NOW) == []


def test_a_throttled_webhook_is_retried(
    idle_train: Fleet, warehouse: Warehouse, tmp_path: Path, webhook: Webhook
) -> None:
    webhook.answers = [429]
    report = schedule_stops(runner(warehouse, tmp_path, webhook), NOW)
    assert len(report.scheduled) == 1
    assert len(webhook.received) == 2


def test_an_unset_webhook_variable_is_named(
    idle_train: Fleet,
    warehouse: Warehouse,
    tmp_path: Path,
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEAM_WEBHOOK")
    with pytest.raises(ActionError, match=r"actions.webhook_url refers to \$\{TEAM_WEBHOOK\}"):
        schedule_stops(runner(warehouse, tmp_path, webhook), NOW)
