"""The scorecard commands as a CI pipeline and a user run them: the real console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import finops

pytestmark = pytest.mark.slow


def test_ci_events_spooled_then_ingested_give_dora_figures(tmp_path: Path) -> None:
    db = str(tmp_path / "wh.duckdb")
    spool = str(tmp_path / "spool")
    finops(
        "event", "change", "--sha", "a1", "--committed-at", "2026-02-01T08:00:00Z",
        "--service", "ranker", "--spool", spool, cwd=tmp_path,
    )  # fmt: skip
    sent = finops(
        "event", "deploy", "--id", "gh-1", "--service", "ranker", "--team", "search-ranking",
        "--sha", "a1", "--env", "prod", "--result", "success",
        "--finished-at", "2026-02-01T12:00:00Z", "--spool", spool, cwd=tmp_path,
    )  # fmt: skip
    assert "spooled deploy gh-1" in sent.stdout
    loaded = finops("ingest", "events", spool, "--db", db, cwd=tmp_path)
    assert "1 change (1 new), 1 deploy (1 new)" in loaded.stdout
    # An incident straight into the warehouse, then resolved by sending it again.
    for resolved in ([], ["--resolved-at", "2026-02-02T03:00:00Z"]):
        finops(
            "event", "incident", "--id", "INC-1", "--service", "ranker",
            "--created-at", "2026-02-02T00:00:00Z", *resolved, "--db", db, cwd=tmp_path,
        )  # fmt: skip
    out = finops("dora", "--period", "2026-Q1", "--format", "json", "--db", db, cwd=tmp_path)
    (row,) = json.loads(out.stdout)
    assert (row["team"], row["deployments"], row["lead_time_hours"]) == ("search-ranking", 1, 4.0)
    assert (row["change_failure_rate_pct"], row["recovery_hours"]) == (100.0, 3.0)
    assert row["band"] == "low"


def test_bad_event_options_are_a_clear_error(tmp_path: Path) -> None:
    result = finops(
        "event", "deploy", "--id", "x", "--service", "s", "--env", "prod", "--result", "ok",
        "--db", str(tmp_path / "wh.duckdb"), cwd=tmp_path, ok=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "finops event deploy, result: 'ok' must be one of success, failure, cancelled" in (
        result.stderr
    )


def test_roi_quality_and_process_health_print(tmp_path: Path) -> None:
    db = str(tmp_path / "wh.duckdb")
    events = tmp_path / "events.jsonl"
    records = [
        {"kind": "kpi", "period": "2026-Q1", "project": "p", "metric": "revenue_lift",
         "value": 10, "currency": "USD"},
        {"kind": "evaluation", "model": "m", "version": "v1", "dataset": "d", "precision": 0.9,
         "evaluated_at": "2026-01-05T00:00:00Z"},
        {"kind": "evaluation", "model": "m", "version": "v2", "dataset": "d", "precision": 0.8,
         "evaluated_at": "2026-02-05T00:00:00Z"},
        {"kind": "page", "page_id": "p1", "service": "s", "team": "t",
         "paged_at": "2026-01-05T00:00:00Z"},
        {"kind": "adoption", "project": "p", "stage": "production",
         "passed_at": "2026-01-05T00:00:00Z"},
    ]  # fmt: skip
    events.write_text("".join(json.dumps(r) + "\n" for r in records))
    finops("ingest", "events", str(events), "--db", db, cwd=tmp_path)
    finops("event", "kpi", "--period", "2026-Q1", "--project", "p", "--metric", "predictions",
           "--value", "4000", "--db", db, cwd=tmp_path)  # fmt: skip
    roi = json.loads(
        finops("roi", "--period", "2026-Q1", "-f", "json", "--db", db, cwd=tmp_path).stdout
    )
    assert [(r["project"], r["value"], r["predictions"], r["roi_pct"]) for r in roi] == [
        ("p", 10.0, 4000.0, None)  # no cost billed, so no ROI
    ]
    payback = finops("roi", "--period", "2026-Q1", "--payback", "--db", db, cwd=tmp_path)
    assert "Optimisation payback, 2026-Q1 (hurdle 15% a year)" in payback.stdout
    regressions = finops(
        "quality", "--period", "2026-Q1", "--show", "regressions", "-f", "json", "--db", db,
        cwd=tmp_path,
    )  # fmt: skip
    (regression,) = json.loads(regressions.stdout)
    assert (regression["version"], regression["metric"], regression["previous_value"]) == (
        "v2",
        "precision",
        0.9,
    )
    health = finops("process-health", "--period", "2026-Q1", "-f", "json", "--db", db, cwd=tmp_path)
    assert [(r["team"], r["pages"]) for r in json.loads(health.stdout)] == [("t", 1)]
    adopted = finops(
        "process-health", "--period", "2026-Q1", "--show", "adoption", "-f", "json", "--db", db,
        cwd=tmp_path,
    )  # fmt: skip
    assert [(r["projects"], r["adopted"]) for r in json.loads(adopted.stdout)] == [(1, 1)]
