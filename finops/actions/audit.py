"""The audit log: every action finops takes, or would take, in an append-only hash chain.

An entry records who or what triggered it, the policy and recommendation, the resource, the
action, whether it was a dry run, the state before and after, the result and the reason.
A cloud call is bracketed by two entries: the *intent*, committed before the call, and the
*outcome* (pointing back at its intent by `intent_seq`), written after it. A crash between
them leaves an intent without an outcome, which `verify` reports. Decisions that make no
call (a dry run, a skip) are a single outcome entry.

Each entry's `hash` is the SHA-256 of the previous entry's hash followed by the entry's
canonical JSON (every column but the two hashes, keys sorted, times in UTC to the
microsecond). Editing an entry changes its hash; deleting or reordering entries breaks the
chain or the numbering. A JSON-lines mirror (one entry a line, written after the table)
catches what a chain alone cannot: entries deleted from the end of the table.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa

from finops.config import Config
from finops.errors import ActionError
from finops.warehouse import Warehouse
from finops.warehouse.runs import transaction

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first entry."""

AUDIT_COLUMNS = (
    "seq",
    "entry_id",
    "occurred_at",
    "actor",
    "trigger",
    "policy",
    "rec_id",
    "provider",
    "resource_id",
    "resource_type",
    "action",
    "dry_run",
    "phase",
    "intent_seq",
    "before_state",
    "after_state",
    "result",
    "reason",
    "prev_hash",
    "hash",
)

# One process appends at a time, so that two threads never chain onto the same entry.
_APPEND_LOCK = threading.Lock()


@dataclass(frozen=True)
class AuditEvent:
    """What a caller records; the log adds the number, time, id and hashes."""

    actor: str
    """Who: a user name, or `scheduler`."""
    trigger: str
    """What: the command or job, e.g. `finops apply`, `warn-then-act`, `offhours restore`."""
    action: str
    dry_run: bool
    result: str
    phase: Literal["intent", "outcome"] = "outcome"
    policy: str | None = None
    rec_id: str | None = None
    provider: str | None = None
    resource_id: str | None = None
    resource_type: str | None = None
    intent_seq: int | None = None
    before_state: dict[str, Any] | None = None
    after_state: dict[str, Any] | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AuditVerification:
    """What `verify` found: the number of entries, broken links, and unfinished intents."""

    entries: int
    problems: list[str] = field(default_factory=list)
    open_intents: list[dict[str, Any]] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def mirror_path(config: Config, warehouse: Warehouse) -> Path:
    """actions.audit_mirror (relative to finops.yaml's folder), else audit.jsonl by the warehouse."""
    configured = config.actions.audit_mirror
    if configured is None:
        return warehouse.path.parent / "audit.jsonl"
    return configured if configured.is_absolute() else config.base_dir / configured


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(entry: dict[str, Any]) -> str:
    """The entry as hashed: every column but the hashes, keys sorted, times as UTC text."""
    content = {k: v for k, v in entry.items() if k not in ("hash", "prev_hash")}
    content["occurred_at"] = _utc_text(content["occurred_at"])
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(entry)).encode()).hexdigest()


class AuditLog:
    """The `audit_log` table of one warehouse, and its JSON-lines mirror."""

    def __init__(self, warehouse: Warehouse, mirror: Path) -> None:
        self.warehouse = warehouse
        self.mirror = mirror

    @classmethod
    def from_config(cls, config: Config, warehouse: Warehouse) -> AuditLog:
        return cls(warehouse, mirror_path(config, warehouse))

    def append(
        self,
        event: AuditEvent,
        now: datetime,
        *,
        along: Callable[[duckdb.DuckDBPyConnection, int], None] | None = None,
    ) -> int:
        """Commit one entry (then copy it to the mirror); return its sequence number.

        `along(conn, seq)` writes what belongs with the entry in the same transaction (the
        memory of what an outcome stopped), so that both land or neither does.
        """
        with _APPEND_LOCK:
            with self.warehouse.writer() as conn, transaction(conn, refused="audit log"):
                entry = self._insert(conn, event, now)
                if along is not None:
                    along(conn, entry["seq"])
            self._mirror([entry])
        return int(entry["seq"])

    def append_many(self, events: list[AuditEvent], now: datetime) -> list[int]:
        """Commit several entries in one transaction (decisions that make no cloud call)."""
        if not events:
            return []
        with _APPEND_LOCK:
            with self.warehouse.writer() as conn, transaction(conn, refused="audit log"):
                entries = [self._insert(conn, event, now) for event in events]
            self._mirror(entries)
        return [int(e["seq"]) for e in entries]

    @staticmethod
    def _insert(
        conn: duckdb.DuckDBPyConnection, event: AuditEvent, now: datetime
    ) -> dict[str, Any]:
        last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()
        seq, prev_hash = (last[0][0] + 1, last[0][1]) if last else (1, GENESIS_HASH)
        entry: dict[str, Any] = {
            "seq": seq,
            "entry_id": uuid.uuid4().hex,
            "occurred_at": now.astimezone(UTC),
            **asdict(event),
        }
        entry["prev_hash"] = prev_hash
        entry["hash"] = entry_hash(prev_hash, entry)
        row = {**entry}
        for column in ("before_state", "after_state"):
            if row[column] is not None:
                row[column] = json.dumps(row[column], sort_keys=True)
        conn.execute(
            f"INSERT INTO audit_log ({', '.join(AUDIT_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in AUDIT_COLUMNS)})",
            [row[c] for c in AUDIT_COLUMNS],
        )
        return entry

    def _mirror(self, entries: list[dict[str, Any]]) -> None:
        lines = [
            json.dumps(
                {**e, "occurred_at": _utc_text(e["occurred_at"])},
                sort_keys=True,
                ensure_ascii=False,
            )
            + "\n"
            for e in entries
        ]
        try:
            self.mirror.parent.mkdir(parents=True, exist_ok=True)
            with self.mirror.open("a", encoding="utf-8") as handle:
                handle.writelines(lines)
        except OSError as exc:
            seqs = ", ".join(str(e["seq"]) for e in entries)
            raise ActionError(
                f"{self.mirror}: audit entries {seqs} are in the warehouse but could not be "
                f"mirrored ({exc.strerror}); check actions.audit_mirror"
            ) from None

    def entries(self) -> list[dict[str, Any]]:
        """Every entry in sequence order, JSON columns parsed."""
        with self.warehouse.reader() as conn:
            table = conn.sql(
                f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log ORDER BY seq"
            ).to_arrow_table()
        rows = table.to_pylist()
        for row in rows:
            for column in ("before_state", "after_state"):
                if row[column] is not None:
                    row[column] = json.loads(row[column])
        return rows

    def verify(self) -> AuditVerification:
        """Check the chain, the numbering and the mirror; list intents without an outcome."""
        rows = self.entries()
        problems: list[str] = []
        # A hash chain is sequential by nature: each link needs the one before it.
        expected_prev = GENESIS_HASH
        for position, row in enumerate(rows, start=1):
            seq = row["seq"]
            if seq != position:
                problems.append(
                    f"entry {seq}: expected entry {position} here (an entry was deleted or renumbered)"
                )
            if row["prev_hash"] != expected_prev:
                problems.append(
                    f"entry {seq}: does not follow the entry before it (one was deleted, "
                    "inserted or moved)"
                )
            if entry_hash(row["prev_hash"], row) != row["hash"]:
                problems.append(f"entry {seq}: content does not match its hash (it was edited)")
            expected_prev = row["hash"]
        problems += self._compare_mirror(rows)
        return AuditVerification(len(rows), problems, self._open_intents())

    def _compare_mirror(self, rows: list[dict[str, Any]]) -> list[str]:
        if not self.mirror.exists():
            return [f"{self.mirror}: the mirror is missing"] if rows else []
        mirrored: dict[int, str] = {}
        with self.mirror.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    entry = json.loads(line)
                    mirrored[int(entry["seq"])] = str(entry["hash"])
                except (ValueError, KeyError, TypeError):
                    return [f"{self.mirror}, line {number}: not an audit entry"]
        in_table = {row["seq"]: row["hash"] for row in rows}
        problems = [
            f"entry {seq}: in the mirror but not in the warehouse (deleted)"
            for seq in sorted(mirrored.keys() - in_table.keys())
        ]
        problems += [
            f"entry {seq}: in the warehouse but not in the mirror {self.mirror}"
            for seq in sorted(in_table.keys() - mirrored.keys())
        ]
        problems += [
            f"entry {seq}: differs between the warehouse and the mirror (edited)"
            for seq in sorted(in_table.keys() & mirrored.keys())
            if in_table[seq] != mirrored[seq]
        ]
        return problems

    def _open_intents(self) -> list[dict[str, Any]]:
        with self.warehouse.reader() as conn:
            return (
                conn.sql(
                    """
                    SELECT i.seq, i.occurred_at, i.actor, i.policy, i.rec_id, i.resource_id,
                           i.action
                    FROM audit_log i
                    WHERE i.phase = 'intent'
                      AND NOT EXISTS (
                          SELECT 1 FROM audit_log o
                          WHERE o.phase = 'outcome' AND o.intent_seq = i.seq
                      )
                    ORDER BY i.seq
                    """
                )
                .to_arrow_table()
                .to_pylist()
            )

    def find(self, *, since: datetime | None = None, resource_id: str | None = None) -> pa.Table:
        """Entries, oldest first, optionally from a time on and for one resource."""
        with self.warehouse.reader() as conn:
            return conn.sql(
                """
                SELECT seq, occurred_at, actor, trigger, policy, rec_id, provider, resource_type,
                       resource_id, action, dry_run, phase, intent_seq, result, reason,
                       before_state, after_state
                FROM audit_log
                WHERE (?::TIMESTAMPTZ IS NULL OR occurred_at >= ?::TIMESTAMPTZ)
                  AND (?::VARCHAR IS NULL OR resource_id = ?::VARCHAR)
                ORDER BY seq
                """,
                params=[since, since, resource_id, resource_id],
            ).to_arrow_table()
