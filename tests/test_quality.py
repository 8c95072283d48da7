"""Model quality (latest, trend, regressions) and process health (on-call, MTTR, adoption)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finops.analytics.process import adoption, oncall_load
from finops.analytics.quality import model_quality
from finops.analytics.scope import TeamMapping
from finops.collectors.events import read_events
from finops.periods import parse_period
from finops.warehouse import Warehouse


def evaluation(model: str, version: str, at: str, dataset: str = "holdout", **scores) -> dict:
    return {
        "kind": "evaluation",
        "model": model,
        "version": version,
        "dataset": dataset,
        "evaluated_at": at,
        **scores,
    }


EVALUATIONS = [
    evaluation(
        "two-tower",
        "v1",
        "2026-01-05T00:00:00Z",
        precision=0.90,
        recall=0.80,
        calibration_error=0.05,
        metrics={"auc": 0.93, "log_loss": 0.30},
    ),
    # v1 evaluated again: its latest evaluation is its score.
    evaluation(
        "two-tower",
        "v1",
        "2026-01-20T00:00:00Z",
        precision=0.91,
        recall=0.80,
        calibration_error=0.05,
        metrics={"auc": 0.93, "log_loss": 0.30},
    ),
    # v2: precision -0.03 and log loss +0.02 regress; calibration error +0.005 is within 0.01.
    evaluation(
        "two-tower",
        "v2",
        "2026-02-10T00:00:00Z",
        precision=0.88,
        recall=0.85,
        calibration_error=0.055,
        metrics={"auc": 0.935, "log_loss": 0.32},
    ),
    evaluation(
        "two-tower",
        "v3",
        "2026-04-05T00:00:00Z",
        precision=0.92,
        recall=0.85,
        calibration_error=0.04,
    ),
    evaluation("fraud-gnn", "v7", "2026-03-01T00:00:00Z", "2026-01", precision=0.97, recall=0.6),
]

PAGES_AND_INCIDENTS = [
    {"kind": "page", "page_id": "p1", "service": "ranker", "paged_at": "2026-01-05T02:00:00Z",
     "acknowledged_at": "2026-01-05T02:10:00Z"},
    {"kind": "page", "page_id": "p2", "service": "ranker", "paged_at": "2026-02-01T10:00:00Z",
     "acknowledged_at": "2026-02-01T10:30:00Z"},
    {"kind": "page", "page_id": "p3", "service": "ranker", "paged_at": "2026-03-01T10:00:00Z"},
    {"kind": "page", "page_id": "p4", "service": "scorer", "team": "fraud-detection",
     "paged_at": "2026-02-02T00:00:00Z", "acknowledged_at": "2026-02-02T00:04:00Z"},
    {"kind": "incident", "incident_id": "i1", "service": "ranker",
     "created_at": "2026-01-10T00:00:00Z", "resolved_at": "2026-01-10T02:00:00Z"},
    {"kind": "incident", "incident_id": "i2", "service": "ranker",
     "created_at": "2026-02-10T00:00:00Z", "resolved_at": "2026-02-10T07:00:00Z"},
    {"kind": "incident", "incident_id": "i3", "service": "ranker",
     "created_at": "2026-03-30T00:00:00Z"},
]  # fmt: skip

ADOPTION = [
    {"kind": "adoption", "project": "A", "team": "vision", "stage": "prototype",
     "passed_at": "2026-01-10T00:00:00Z"},
    {"kind": "adoption", "project": "A", "team": "vision", "stage": "production",
     "passed_at": "2026-02-15T00:00:00Z"},
    {"kind": "adoption", "project": "B", "team": "recommendations", "stage": "prototype",
     "passed_at": "2026-02-01T00:00:00Z"},
    {"kind": "adoption", "project": "B", "team": "recommendations", "stage": "production",
     "passed_at": "2026-04-10T00:00:00Z"},
    {"kind": "adoption", "project": "C", "team": "vision", "stage": "prototype",
     "passed_at": "2026-03-01T00:00:00Z"},
    {"kind": "adoption", "project": "D", "team": "vision", "stage": "prototype",
     "passed_at": "2026-05-01T00:00:00Z"},
]  # fmt: skip


@pytest.fixture
def loaded(tmp_path: Path, warehouse: Warehouse) -> Warehouse:
    path = tmp_path / "events.jsonl"
    records = EVALUATIONS + PAGES_AND_INCIDENTS + ADOPTION
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    warehouse.ingest_events(
        lambda: read_events(str(path)), source="events", collector="events", uri=str(path)
    )
    return warehouse


def test_latest_version_per_model_and_its_regressions(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        report = model_quality(conn, parse_period("2026-Q1"), tolerance=0.01)
    latest = {(r["model"], r["dataset"]): r for r in report.latest.to_pylist()}
    two_tower = latest[("two-tower", "holdout")]
    assert (two_tower["version"], two_tower["previous_version"]) == ("v2", "v1")
    assert (two_tower["precision"], two_tower["recall"], two_tower["calibration_error"]) == (
        0.88,
        0.85,
        0.055,
    )
    assert two_tower["regressed_metrics"] == ["log_loss", "precision"]
    fraud = latest[("fraud-gnn", "2026-01")]
    assert (fraud["version"], fraud["previous_version"], fraud["regressed_metrics"]) == (
        "v7",
        None,
        None,
    )
    regressions = {
        (r["version"], r["metric"]): (r["previous_value"], r["value"])
        for r in report.regressions.to_pylist()
    }
    assert regressions == {("v2", "precision"): (0.91, 0.88), ("v2", "log_loss"): (0.30, 0.32)}


def test_trend_uses_each_versions_latest_evaluation(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        report = model_quality(conn, parse_period("2026-Q1"))
    precision = [
        (r["version"], r["value"], r["previous_value"])
        for r in report.trend.to_pylist()
        if r["model"] == "two-tower" and r["metric"] == "precision"
    ]
    assert precision == [("v1", 0.91, None), ("v2", 0.88, 0.91)]


def test_next_quarter_shows_the_newer_version_without_regressions(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        report = model_quality(conn, parse_period("2026-Q2"))
    (row,) = [r for r in report.latest.to_pylist() if r["model"] == "two-tower"]
    assert (row["version"], row["precision"], row["regressed_metrics"]) == ("v3", 0.92, None)
    assert report.regressions.num_rows == 0
    assert {r["version"] for r in report.trend.to_pylist()} == {"v3"}


def test_oncall_load_and_mttr_per_team(loaded: Warehouse) -> None:
    teams = TeamMapping(service_teams={"ranker": "search-ranking"})
    with loaded.reader() as conn:
        table = oncall_load(conn, [parse_period("2026-Q1"), parse_period("2026-Q2")], teams)
    rows = {(r["quarter"], r["team"]): r for r in table.to_pylist()}
    ranking = rows[("2026-Q1", "search-ranking")]
    assert ranking["pages"] == 3
    assert ranking["pages_per_week"] == pytest.approx(3 * 7 / 90)
    assert ranking["median_minutes_to_acknowledge"] == pytest.approx(20.0)  # of 10 and 30
    assert ranking["unacknowledged"] == 1
    assert (ranking["incidents"], ranking["open_incidents"]) == (3, 1)
    assert ranking["mttr_hours"] == pytest.approx(4.5)  # mean of 2 and 7
    fraud = rows[("2026-Q1", "fraud-detection")]
    assert (fraud["pages"], fraud["median_minutes_to_acknowledge"], fraud["mttr_hours"]) == (
        1,
        pytest.approx(4.0),
        None,
    )
    quiet = rows[("2026-Q2", "search-ranking")]
    assert (quiet["pages"], quiet["incidents"], quiet["mttr_hours"]) == (0, 0, None)


def test_framework_adoption_rate_by_quarter_end(loaded: Warehouse) -> None:
    quarters = [parse_period("2026-Q1"), parse_period("2026-Q2")]
    with loaded.reader() as conn:
        overall = adoption(conn, quarters, adopted_stage="production").to_pylist()
        by_team = adoption(conn, quarters, adopted_stage="production", by="team").to_pylist()
    assert [
        (r["quarter"], r["projects"], r["adopted"], r["adopted_in_quarter"]) for r in overall
    ] == [("2026-Q1", 3, 1, 1), ("2026-Q2", 4, 2, 1)]
    assert [r["adoption_rate_pct"] for r in overall] == [pytest.approx(100 / 3), 50.0]
    assert [(r["quarter"], r["team"], r["projects"], r["adopted"]) for r in by_team] == [
        ("2026-Q1", "recommendations", 1, 0),
        ("2026-Q1", "vision", 2, 1),
        ("2026-Q2", "recommendations", 1, 1),
        ("2026-Q2", "vision", 3, 1),
    ]
