"""What a report records about its inputs: data as of which ingest, which rules, which settings.

- Data: per source, the newest successful ingest in `ingest_runs` (and the status of its
  newest attempt, so a failed refresh is visible).
- Rules: the policy pack's git commit (`git log -1 -- policies`), flagged when the folder
  has uncommitted changes; outside a git checkout, a sha256 over its files.
- Settings: a sha256 of the validated configuration in canonical form (sorted-key JSON of
  every setting, defaults included), so a reformatted finops.yaml keeps its hash.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict
from pathlib import Path

import duckdb

import finops
from finops.config import Config
from finops.periods import Period
from finops.reports.model import PolicyPackRevision, ReportInputs, SourceIngest

_GIT_TIMEOUT_S = 10


def config_hash(config: Config) -> str:
    """sha256 of the settings in canonical form (comments, order and layout don't count)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def policy_pack_revision(folder: Path) -> PolicyPackRevision:
    """The git commit that last changed `folder`, else a hash of its files' names and bytes."""
    if not folder.is_dir():
        return PolicyPackRevision("none", f"no policy pack at {folder}")
    commit = _git(folder, "log", "-1", "--format=%H", "--", ".")
    if commit:
        changes = _git(folder, "status", "--porcelain", "--", ".")
        return PolicyPackRevision("git", commit, modified=bool(changes))
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return PolicyPackRevision("content-hash", digest.hexdigest())


def _git(folder: Path, *args: str) -> str:
    """Output of a git command run in `folder`, or "" outside a checkout or without git."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def last_ingests(conn: duckdb.DuckDBPyConnection) -> tuple[SourceIngest, ...]:
    """Per source, its newest successful ingest and the status of its newest attempt."""
    rows = conn.execute(
        """
        WITH newest AS (
            SELECT source, arg_max(status, started_at) AS latest_status
            FROM ingest_runs GROUP BY source
        ),
        succeeded AS (
            SELECT source, arg_max(run_id, finished_at) AS run_id, max(finished_at) AS finished_at
            FROM ingest_runs WHERE status = 'success' GROUP BY source
        )
        SELECT s.source, r.collector, s.finished_at, s.run_id, r.rows, r.checksum, n.latest_status
        FROM succeeded s
        JOIN ingest_runs r ON r.run_id = s.run_id
        JOIN newest n ON n.source = s.source
        ORDER BY s.source
        """
    ).fetchall()
    return tuple(SourceIngest(*row) for row in rows)


def report_inputs(
    conn: duckdb.DuckDBPyConnection, config: Config, period: Period, team: str | None
) -> ReportInputs:
    """The inputs of a report on `period` (and `team`), with one digest over them all.

    The digest leaves out where finops.yaml lies: moving the file changes no figure.
    """
    hashed = config_hash(config)
    policy_pack = policy_pack_revision(config.base_dir / "policies")
    sources = last_ingests(conn)
    recorded = {
        "period": period.label,
        "team": team,
        "cost_basis": config.allocation.cost_basis,
        "config_hash": hashed,
        "policy_pack": asdict(policy_pack),
        "sources": [asdict(source) for source in sources],
        "finops_version": finops.__version__,
    }
    canonical = json.dumps(recorded, sort_keys=True, default=str)
    return ReportInputs(
        period=period.label,
        team=team,
        cost_basis=config.allocation.cost_basis,
        config_file=str(config.source_file) if config.source_file else "(built-in defaults)",
        config_hash=hashed,
        policy_pack=policy_pack,
        sources=sources,
        finops_version=finops.__version__,
        digest=hashlib.sha256(canonical.encode()).hexdigest(),
    )
