"""`finops apply`, `finops actions ...` and `finops audit ...` as a user runs them (in-process,
so that moto can play AWS), with the clock frozen at NOW."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from moto import mock_aws
from typer.testing import CliRunner

from finops.cli import app
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
)

# moto and a warehouse file per test: several seconds each on a shared machine.
pytestmark = pytest.mark.slow

FINOPS_YAML = """
organisation: Test
warehouse:
  path: wh/warehouse.duckdb
actions:
  retry_backoff_s: 0
  max_sample_age: 30m
"""


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[Path, Warehouse, Fleet]]:
    (tmp_path / "finops.yaml").write_text(FINOPS_YAML)
    warehouse = Warehouse(tmp_path / "wh" / "warehouse.duckdb")
    with mock_aws(), time_machine.travel(NOW, tick=False):
        fleet = build_fleet()
        add_samples(warehouse, "train-a", utils=[0.0, 1.0], newest=NOW - timedelta(minutes=1))
        recommend(
            warehouse,
            "rec-train",
            cluster="train-a",
            targets=[instance_target(fleet.on_demand), instance_target(fleet.spot)],
        )
        yield tmp_path, warehouse, fleet


def finops(folder: Path, *args: str, code: int = 0, **env: str) -> str:
    result = CliRunner().invoke(
        app,
        [*args, "--config", str(folder)],
        env={"COLUMNS": "250", "FINOPS_ACTOR": "alice", **env},
        catch_exceptions=False,
    )
    assert result.exit_code == code, result.output
    return result.output


def test_apply_is_a_dry_run_by_default_then_acts_with_apply(
    deployment: tuple[Path, Warehouse, Fleet],
) -> None:
    folder, _, fleet = deployment
    shown = finops(folder, "apply")
    assert "dry run (pass --apply to act): 2 would-stop" in shown
    assert fleet.on_demand in shown
    assert instance_state(fleet.on_demand) == "running"

    as_json = json.loads(finops(folder, "apply", "--apply", "--format", "json"))
    assert [(r["resource"], r["action"], r["result"]) for r in as_json] == [
        (fleet.on_demand, "stop", "stopped"),
        (fleet.spot, "stop", "stopped"),
    ]
    assert instance_state(fleet.on_demand) == "stopped"
    assert instance_state(fleet.spot) == "stopped"

    # Dry run: 1 and 2; then intent and outcome per instance: 3 and 4, 5 and 6.
    entries = json.loads(
        finops(folder, "audit", "list", "--resource", fleet.spot, "--format", "json")
    )
    assert [(e["seq"], e["actor"], e["phase"], e["result"], e["dry_run"]) for e in entries] == [
        (2, "alice", "outcome", "would-stop", True),
        (5, "alice", "intent", "started", False),
        (6, "alice", "outcome", "stopped", False),
    ]
    assert "audit log intact: 6 entries, 0 problem(s), 0 intent(s)" in finops(
        folder, "audit", "verify"
    )


def test_the_kill_switch_keeps_apply_a_dry_run(deployment: tuple[Path, Warehouse, Fleet]) -> None:
    folder, _, fleet = deployment
    shown = finops(folder, "apply", "--apply", FINOPS_ACTIONS="off")
    assert "kill switch: FINOPS_ACTIONS=off: 2 would-stop" in shown
    assert instance_state(fleet.on_demand) == "running"


def test_audit_verify_fails_on_a_tampered_log(deployment: tuple[Path, Warehouse, Fleet]) -> None:
    folder, warehouse, _ = deployment
    finops(folder, "apply", "--apply")
    with warehouse.writer() as conn:
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    shown = finops(folder, "audit", "verify", code=1)
    assert "tampered: entry 2: content does not match its hash (it was edited)" in shown
    assert "audit log NOT intact: 4 entries, 1 problem(s)" in shown


def test_snooze_from_the_command_line(deployment: tuple[Path, Warehouse, Fleet]) -> None:
    folder, warehouse, _ = deployment
    with warehouse.writer() as conn:
        conn.execute(
            """
            INSERT INTO scheduled_actions (action_id, rec_id, policy, action, resource_id,
                cluster, owner, reason, warned_at, act_at, state, updated_at)
            VALUES ('a1', 'rec-train', 'idle-gpu', 'stop', 'i-1', 'train-a', 'vision', 'idle',
                    ?, ?, 'pending', ?)
            """,
            [NOW, NOW + timedelta(hours=1), NOW],
        )
    shown = finops(folder, "actions", "snooze", "a1", "--until", "8h")
    assert "snoozed a1 (cluster train-a) until 2026-06-02 03:00 UTC" in shown
    with pytest.raises(ActionError, match="no pending stop has the id 'nope'"):
        finops(folder, "actions", "snooze", "nope", "--until", "1d")
