"""The demo's delivery history: deterministic, loadable, and its DORA figures check out."""

from __future__ import annotations

import csv
import json
import statistics
from datetime import date, datetime
from pathlib import Path

import pytest

from finops.analytics.dora import DeliveryScope, dora, load_bands
from finops.analytics.roi import roi
from finops.collectors.events import read_events
from finops.config import AllocationSettings
from finops.demo_delivery import DEMO_SERVICES, generate_delivery
from finops.periods import parse_period
from finops.warehouse import Warehouse

MONTHS = (date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1))
Q1_START, Q1_END = (
    datetime.fromisoformat("2026-01-01T00:00:00+00:00"),
    datetime.fromisoformat("2026-04-01T00:00:00+00:00"),
)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def expected_keys(root: Path) -> dict[str, dict]:
    """DORA figures per team for 2026-Q1, from the files, in plain Python."""
    deploys = [
        d
        for d in read_csv(root / "deploys.csv")
        if d["environment"] == "prod" and d["result"] == "success"
    ]
    committed = {c["sha"]: ts(c["committed_at"]) for c in read_csv(root / "changes.csv")}
    first: dict[str, dict] = {}
    for d in sorted(deploys, key=lambda d: d["finished_at"]):
        for sha in d["commit_shas"].split():
            first.setdefault(sha, d)
    incidents = [json.loads(line) for line in (root / "incidents.jsonl").read_text().splitlines()]
    failed: set[str] = set()
    for incident in incidents:
        if incident["caused_by_deploy"]:
            if any(d["deploy_id"] == incident["caused_by_deploy"] for d in deploys):
                failed.add(incident["caused_by_deploy"])
        elif incident["caused_by_sha"]:
            if incident["caused_by_sha"] in first:
                failed.add(first[incident["caused_by_sha"]]["deploy_id"])
        else:
            before = [
                d
                for d in deploys
                if d["service"] == incident["service"]
                and ts(d["finished_at"]) <= ts(incident["created_at"])
            ]
            if before:
                failed.add(max(before, key=lambda d: d["finished_at"])["deploy_id"])
    result = {}
    for team in {s.team for s in DEMO_SERVICES}:
        mine = [
            d for d in deploys if d["team"] == team and Q1_START <= ts(d["finished_at"]) < Q1_END
        ]
        leads = [
            (ts(first[sha]["finished_at"]) - committed[sha]).total_seconds() / 3600
            for sha in first
            if first[sha] in mine and sha in committed
        ]
        result[team] = {
            "deployments": len(mine),
            "lead_time_hours": statistics.median(leads) if leads else None,
            "failed_deployments": sum(d["deploy_id"] in failed for d in mine),
        }
    return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Warehouse]:
    root = tmp_path_factory.mktemp("delivery")
    generate_delivery(root, months=MONTHS, seed=7)
    warehouse = Warehouse(root / "warehouse.duckdb")
    warehouse.ingest_events(
        lambda: read_events(str(root)), source="events", collector="events", uri=str(root)
    )
    return root, warehouse


def test_the_same_seed_writes_the_same_files(tmp_path: Path) -> None:
    first = generate_delivery(tmp_path / "a", months=MONTHS, seed=7)
    second = generate_delivery(tmp_path / "b", months=MONTHS, seed=7)
    assert first.counts == second.counts
    for name in first.counts:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_dora_on_the_demo_matches_a_count_from_the_files(demo: tuple[Path, Warehouse]) -> None:
    root, warehouse = demo
    expected = expected_keys(root)
    with warehouse.reader() as conn:
        table = dora(conn, [parse_period("2026-Q1")], load_bands("2024"), scope=DeliveryScope())
    rows = {r["team"]: r for r in table.to_pylist()}
    assert set(rows) == set(expected)
    for team, figures in expected.items():
        assert rows[team]["deployments"] == figures["deployments"], team
        assert rows[team]["failed_deployments"] == figures["failed_deployments"], team
        assert rows[team]["lead_time_hours"] == pytest.approx(figures["lead_time_hours"]), team
    # The teams deliver differently, so the bands differ too.
    assert rows["search-ranking"]["deployment_frequency_band"] == "elite"
    assert rows["nlp-research"]["deployment_frequency_band"] in ("medium", "low")
    assert sum(r["unlinked_incidents"] for r in rows.values()) > 0  # the shared network's


def test_the_demo_has_value_and_payback_inputs_for_its_models(
    demo: tuple[Path, Warehouse],
) -> None:
    _, warehouse = demo
    with warehouse.reader() as conn:
        report = roi(conn, [parse_period("2026-Q1")], allocation=AllocationSettings())
    values = {r["project"]: r["value"] for r in report.returns.to_pylist()}
    models = {s.model for s in DEMO_SERVICES if s.model}
    assert set(values) == models  # no billing here: value only, every model has some
    assert all(v > 0 for v in values.values())
    payback = {r["project"]: r["meets_hurdle"] for r in report.payback.to_pylist()}
    assert payback == {
        "spot-migration": True,
        "idle-gpu-shutdown": True,
        "gpu-rightsizing": False,
    }


def test_the_models_are_the_projects_the_demo_billing_tags() -> None:
    import pyarrow.compute as pc

    from finops.demo import focus_table

    tags = pc.map_lookup(focus_table(3000, months=1)["Tags"], "project", "first")
    projects = tags.drop_null()
    assert set(pc.unique(projects).to_pylist()) == {s.model for s in DEMO_SERVICES if s.model}
