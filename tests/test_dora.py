"""DORA's four keys and their bands, on a small delivery history computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finops.analytics.dora import DeliveryScope, dora, load_bands
from finops.analytics.scope import TeamMapping, quarters
from finops.collectors.events import read_events
from finops.config import Team
from finops.errors import ConfigError
from finops.periods import parse_period
from finops.warehouse import Warehouse

SCOPE = DeliveryScope(
    production_environments=("prod",),
    teams=TeamMapping(
        teams=(Team(name="search-ranking", aliases=("ranking",)), Team(name="fraud-detection")),
        service_teams={"ranker": "search-ranking", "scorer": "fraud-detection"},
    ),
)


def deploy(deploy_id: str, service: str, finished_at: str, shas: list[str], **extra: str) -> dict:
    return {
        "kind": "deploy",
        "deploy_id": deploy_id,
        "service": service,
        "environment": "prod",
        "result": "success",
        "finished_at": finished_at,
        "commit_shas": shas,
        **extra,
    }


def change(sha: str, committed_at: str) -> dict:
    return {"kind": "change", "sha": sha, "committed_at": committed_at}


def incident(incident_id: str, service: str, created_at: str, **extra: str) -> dict:
    return {
        "kind": "incident",
        "incident_id": incident_id,
        "service": service,
        "created_at": created_at,
        **extra,
    }


HISTORY = [
    # ranker (search-ranking): three production deploys in Q1, none in Q2.
    deploy("r1", "ranker", "2026-01-10T12:00:00Z", ["a1", "a2"], team="search-ranking"),
    deploy("r2", "ranker", "2026-02-10T12:00:00Z", ["a3"], team="Ranking"),  # a team alias
    deploy("r3", "ranker", "2026-03-10T12:00:00Z", ["a4", "a1"]),  # a1 shipped already in r1
    deploy("r4", "ranker", "2026-03-20T12:00:00Z", ["a5"], environment="staging"),
    deploy("r5", "ranker", "2026-03-25T12:00:00Z", ["a5"], result="failure"),
    # scorer (fraud-detection, by service_teams): one production deploy a quarter.
    deploy("s1", "scorer", "2026-02-01T00:00:00Z", ["b1"]),
    deploy("s2", "scorer", "2026-04-15T00:00:00Z", ["b2"]),
    change("a1", "2026-01-10T00:00:00Z"),  # 12 h to r1
    change("a2", "2026-01-09T12:00:00Z"),  # 24 h to r1
    change("a3", "2026-02-08T12:00:00Z"),  # 48 h to r2
    change("a4", "2026-03-10T06:00:00Z"),  # 6 h to r3
    change("a5", "2026-03-19T00:00:00Z"),  # never in production
    change("b1", "2026-01-31T22:00:00Z"),  # 2 h to s1
    change("b2", "2026-04-14T00:00:00Z"),  # 24 h to s2
    # i1 names r1; i2 names nothing: the last production deploy before it is r3 (r4 was
    # staging); i3 names commit a1, first in production with r1; i4 (Q2, open) names
    # nothing and falls back to r3; i5 came before scorer's first deploy: unlinked; i6
    # names a deploy nobody reported: unlinked.
    incident(
        "i1",
        "ranker",
        "2026-02-11T00:00:00Z",
        resolved_at="2026-02-11T03:00:00Z",
        caused_by_deploy="r1",
    ),
    incident("i2", "ranker", "2026-03-12T00:00:00Z", resolved_at="2026-03-12T01:00:00Z"),
    incident(
        "i3",
        "ranker",
        "2026-03-26T00:00:00Z",
        resolved_at="2026-03-27T00:00:00Z",
        caused_by_sha="a1",
    ),
    incident("i4", "ranker", "2026-04-20T00:00:00Z"),
    incident("i5", "scorer", "2026-01-15T00:00:00Z", resolved_at="2026-01-15T02:00:00Z"),
    incident(
        "i6",
        "scorer",
        "2026-04-16T00:00:00Z",
        resolved_at="2026-04-16T06:00:00Z",
        caused_by_deploy="s-unknown",
    ),
]


def load(warehouse: Warehouse, folder: Path, records: list[dict], time_zone: str = "UTC") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    warehouse.ingest_events(
        lambda: read_events(str(path), time_zone=time_zone),
        source="events",
        collector="events",
        uri=str(path),
    )


@pytest.fixture
def history(tmp_path: Path, warehouse: Warehouse) -> Warehouse:
    load(warehouse, tmp_path / "events", HISTORY)
    return warehouse


def keys(warehouse: Warehouse, period: str, report: str = "2024", **options) -> dict:
    with warehouse.reader() as conn:
        table = dora(
            conn, quarters(parse_period(period)), load_bands(report), scope=SCOPE, **options
        )
    by = options.get("by", "team")
    return {(row["quarter"], row[by]): row for row in table.to_pylist()}


def test_four_keys_per_team_and_quarter(history: Warehouse) -> None:
    rows = keys(history, "2026-Q1")
    ranking = rows[("2026-Q1", "search-ranking")]
    assert ranking["deployments"] == 3  # r1, r2, r3; staging r4 and failed r5 do not count
    assert ranking["deploys_per_week"] == pytest.approx(3 * 7 / 90)
    assert ranking["changes"] == 4  # a1, a2 (r1), a3 (r2), a4 (r3)
    assert ranking["lead_time_hours"] == pytest.approx(18.0)  # median of 6, 12, 24, 48
    assert ranking["failed_deployments"] == 2  # r1 (i1 by id, i3 by sha) and r3 (i2)
    assert ranking["change_failure_rate_pct"] == pytest.approx(200 / 3)
    assert ranking["recovery_hours"] == pytest.approx(3.0)  # median of 3 (i1), 1 (i2), 24 (i3)
    assert (ranking["recoveries"], ranking["unrecovered"], ranking["unlinked_incidents"]) == (
        3,
        0,
        0,
    )
    fraud = rows[("2026-Q1", "fraud-detection")]
    assert (fraud["deployments"], fraud["lead_time_hours"], fraud["change_failure_rate_pct"]) == (
        1,
        pytest.approx(2.0),
        pytest.approx(0.0),
    )
    assert fraud["recovery_hours"] is None
    assert fraud["unlinked_incidents"] == 1  # i5: no deploy of scorer before it


def test_a_quarter_without_deploys_shows_zero_and_no_rates(history: Warehouse) -> None:
    rows = keys(history, "2026-Q2")
    ranking = rows[("2026-Q2", "search-ranking")]
    assert ranking["deployments"] == 0
    assert ranking["deploys_per_week"] == 0
    assert ranking["lead_time_hours"] is None
    assert ranking["change_failure_rate_pct"] is None
    assert ranking["recovery_hours"] is None
    assert ranking["unrecovered"] == 1  # i4, still open, linked to r3 of Q1
    assert ranking["deployment_frequency_band"] == "low"
    assert ranking["lead_time_hours_band"] is None
    assert ranking["band"] == "low"
    fraud = rows[("2026-Q2", "fraud-detection")]
    assert (fraud["deployments"], fraud["lead_time_hours"]) == (1, pytest.approx(24.0))
    assert fraud["unlinked_incidents"] == 1  # i6 names a deploy nobody reported


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        # frequency 0.233/week, lead 18 h, failure rate 66.7%, recovery 3 h
        ("2021", ("high", "high", "low", "high", "low")),
        ("2023", ("medium", "elite", "low", "high", "low")),
        ("2024", ("medium", "elite", "low", "high", "low")),
    ],
)
def test_bands_follow_the_chosen_report(history: Warehouse, report: str, expected: tuple) -> None:
    row = keys(history, "2026-Q1", report)[("2026-Q1", "search-ranking")]
    assert (
        row["deployment_frequency_band"],
        row["lead_time_hours_band"],
        row["change_failure_rate_pct_band"],
        row["recovery_hours_band"],
        row["band"],
    ) == expected


def test_band_limits_of_the_2024_table() -> None:
    bands = load_bands("2024")
    assert bands.band("deployment_frequency", 7) == "elite"
    assert bands.band("deployment_frequency", 6.9) == "high"
    assert bands.band("deployment_frequency", 0.1) == "low"
    assert bands.band("lead_time_hours", 24) == "elite"
    assert bands.band("lead_time_hours", 24.5) == "high"
    assert bands.band("lead_time_hours", 800) == "low"
    # 2024 published medium (10%) below high (20%): 15% is high, 25% is low.
    assert bands.band("change_failure_rate_pct", 15) == "high"
    assert bands.band("change_failure_rate_pct", 25) == "low"
    assert bands.band("recovery_hours", None) is None
    with pytest.raises(ConfigError, match="no bands for '2019'"):
        load_bands("2019")


def test_by_service_and_one_team(history: Warehouse) -> None:
    rows = keys(history, "2026-Q1", by="service")
    assert {k: r["deployments"] for k, r in rows.items()} == {
        ("2026-Q1", "ranker"): 3,
        ("2026-Q1", "scorer"): 1,
    }
    only = keys(history, "2026-Q1", team="fraud-detection")
    assert list(only) == [("2026-Q1", "fraud-detection")]


def test_a_date_range_is_cut_into_clipped_quarters(history: Warehouse) -> None:
    rows = keys(history, "2026-02-01..2026-04-30")
    first = rows[("2026-Q1 (2026-02-01..2026-03-31)", "search-ranking")]
    assert first["deployments"] == 2  # r2, r3
    assert first["deploys_per_week"] == pytest.approx(2 * 7 / 59)
    assert first["lead_time_hours"] == pytest.approx(27.0)  # median of 48 and 6
    assert first["change_failure_rate_pct"] == pytest.approx(50.0)  # r3 of r2, r3
    second = rows[("2026-Q2 (2026-04-01..2026-04-30)", "fraud-detection")]
    assert second["deploys_per_week"] == pytest.approx(7 / 30)


def test_lead_time_across_a_dst_change_counts_real_hours(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    # London clocks went forward at 01:00 GMT on 29 March 2026: from 00:30 to 03:30 on the
    # wall clock is two real hours.
    load(
        warehouse,
        tmp_path / "dst",
        [
            change("c1", "2026-03-29T00:30:00"),
            deploy("d1", "ranker", "2026-03-29T03:30:00", ["c1"]),
        ],
        time_zone="Europe/London",
    )
    row = keys(warehouse, "2026-Q1")[("2026-Q1", "search-ranking")]
    assert row["lead_time_hours"] == pytest.approx(2.0)
