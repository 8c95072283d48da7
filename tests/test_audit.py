"""The audit log: hash-chained, mirrored, and `verify` catches every kind of tampering."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from finops.actions.audit import GENESIS_HASH, AuditEvent, AuditLog
from finops.warehouse import Warehouse

NOW = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)


@pytest.fixture
def log(warehouse: Warehouse, tmp_path: Path) -> AuditLog:
    return AuditLog(warehouse, tmp_path / "audit" / "audit.jsonl")


def record_three(log: AuditLog) -> None:
    """A stop's intent and outcome on i-1, then a dry run on i-2."""
    intent = log.append(
        AuditEvent(
            actor="alice",
            trigger="finops apply",
            action="stop",
            dry_run=False,
            result="started",
            phase="intent",
            policy="idle-gpu",
            rec_id="rec-1",
            provider="aws",
            resource_id="i-1",
            resource_type="ec2-instance",
            before_state={"status": "running"},
        ),
        NOW,
    )
    log.append(
        AuditEvent(
            actor="alice",
            trigger="finops apply",
            action="stop",
            dry_run=False,
            result="stopped",
            intent_seq=intent,
            policy="idle-gpu",
            rec_id="rec-1",
            provider="aws",
            resource_id="i-1",
            resource_type="ec2-instance",
            after_state={"status": "stopped"},
        ),
        NOW + timedelta(seconds=2),
    )
    log.append(
        AuditEvent(
            actor="alice",
            trigger="finops apply",
            action="stop",
            dry_run=True,
            result="would-stop",
            resource_id="i-2",
            reason="p95 GPU util 1.0% < 5%",
        ),
        NOW + timedelta(seconds=3),
    )


def test_entries_chain_each_hash_onto_the_one_before(log: AuditLog) -> None:
    record_three(log)
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev_hash"] == GENESIS_HASH
    assert entries[1]["prev_hash"] == entries[0]["hash"]
    assert entries[2]["prev_hash"] == entries[1]["hash"]
    assert entries[1]["intent_seq"] == 1
    # The first hash, computed by hand from the documented canonical form.
    first = entries[0]
    canonical = {k: v for k, v in first.items() if k not in ("hash", "prev_hash")}
    canonical["occurred_at"] = "2026-06-01T18:00:00.000000Z"
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    assert first["hash"] == hashlib.sha256((GENESIS_HASH + text).encode()).hexdigest()

    result = log.verify()
    assert result.intact, result.problems
    assert result.entries == 3
    assert result.open_intents == []


def test_mirror_holds_one_line_per_entry(log: AuditLog) -> None:
    record_three(log)
    lines = [json.loads(line) for line in log.mirror.read_text().splitlines()]
    assert [(line["seq"], line["resource_id"], line["result"]) for line in lines] == [
        (1, "i-1", "started"),
        (2, "i-1", "stopped"),
        (3, "i-2", "would-stop"),
    ]
    assert lines[0]["occurred_at"] == "2026-06-01T18:00:00.000000Z"


def test_an_edited_entry_is_caught(log: AuditLog, warehouse: Warehouse) -> None:
    record_three(log)
    with warehouse.writer() as conn:
        conn.execute("UPDATE audit_log SET result = 'skipped' WHERE seq = 2")
    result = log.verify()
    assert not result.intact
    assert "entry 2: content does not match its hash (it was edited)" in result.problems


def test_an_edit_that_also_rewrites_the_hash_is_caught_by_the_next_link(
    log: AuditLog, warehouse: Warehouse
) -> None:
    record_three(log)
    from finops.actions.audit import entry_hash

    entry = log.entries()[1]
    forged = {**entry, "result": "skipped"}
    with warehouse.writer() as conn:
        conn.execute(
            "UPDATE audit_log SET result = 'skipped', hash = ? WHERE seq = 2",
            [entry_hash(entry["prev_hash"], forged)],
        )
    problems = log.verify().problems
    assert "entry 3: does not follow the entry before it (one was deleted, inserted or moved)" in (
        problems
    )
    assert "entry 2: differs between the warehouse and the mirror (edited)" in problems


def test_a_deleted_entry_is_caught(log: AuditLog, warehouse: Warehouse) -> None:
    record_three(log)
    with warehouse.writer() as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 2")
    problems = log.verify().problems
    assert "entry 3: expected entry 2 here (an entry was deleted or renumbered)" in problems
    assert "entry 2: in the mirror but not in the warehouse (deleted)" in problems


def test_deleting_the_last_entry_is_caught_by_the_mirror(
    log: AuditLog, warehouse: Warehouse
) -> None:
    record_three(log)
    with warehouse.writer() as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 3")
    assert log.verify().problems == ["entry 3: in the mirror but not in the warehouse (deleted)"]


def test_reordered_entries_are_caught(log: AuditLog, warehouse: Warehouse) -> None:
    record_three(log)
    with warehouse.writer() as conn:
        conn.execute("UPDATE audit_log SET seq = seq + 10 WHERE seq = 2")
        conn.execute("UPDATE audit_log SET seq = 2 WHERE seq = 3")
        conn.execute("UPDATE audit_log SET seq = 3 WHERE seq = 12")
    problems = log.verify().problems
    assert "entry 2: content does not match its hash (it was edited)" in problems
    assert "entry 2: does not follow the entry before it (one was deleted, inserted or moved)" in (
        problems
    )


def test_an_intent_without_an_outcome_is_reported(log: AuditLog) -> None:
    log.append(
        AuditEvent(
            actor="scheduler",
            trigger="warn-then-act",
            action="scale-to-zero",
            dry_run=False,
            result="started",
            phase="intent",
            resource_id="train-a/gpu-ng",
        ),
        NOW,
    )
    result = log.verify()
    assert result.intact
    assert [(i["seq"], i["resource_id"], i["action"]) for i in result.open_intents] == [
        (1, "train-a/gpu-ng", "scale-to-zero")
    ]


def test_find_filters_by_time_and_resource(log: AuditLog) -> None:
    record_three(log)
    assert log.find(resource_id="i-1").column("seq").to_pylist() == [1, 2]
    later = log.find(since=NOW + timedelta(seconds=2))
    assert later.column("seq").to_pylist() == [2, 3]
