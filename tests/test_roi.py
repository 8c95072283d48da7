"""ROI per project and team, unit costs, shared cost, and optimisation payback vs a hurdle."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from finops.analytics.chargeback import Allocation
from finops.analytics.roi import roi
from finops.collectors.events import read_events
from finops.collectors.focus import read_focus
from finops.config import AllocationSettings, SharedCostRule
from finops.periods import parse_period
from finops.warehouse import Warehouse
from tests.conftest import row, write_csv

ALLOCATION = AllocationSettings(tag_key="team")
Q1 = [parse_period("2026-Q1")]

BILL = [
    row("01-15", "600.00", tags={"project": "two-tower", "team": "recommendations"}),
    row("02-15", "400.00", tags={"project": "two-tower", "team": "recommendations"}),
    row("03-10", "250.00", tags={"project": "fraud-gnn", "team": "fraud-detection"}),
    row("03-11", "50.00", tags={"team": "ml-platform"}),
    row("02-01", "100.00"),
]
"""Q1 2026: two-tower 1,000.00, fraud-gnn 250.00, no project 150.00 (ml-platform 50.00)."""


def kpi(period: str, metric: str, value: float, **extra: str) -> dict:
    currency = {} if metric in ("predictions", "training_runs") else {"currency": "USD"}
    return {"kind": "kpi", "period": period, "metric": metric, "value": value, **currency, **extra}


KPIS = [
    kpi("2026-Q1", "revenue_lift", 3000, project="two-tower", team="recommendations"),
    kpi("2026-01", "cost_avoidance", 500, project="two-tower"),  # a month of the quarter
    kpi("2026-01-01..2026-12-31", "revenue_lift", 9999, project="two-tower"),  # a whole year
    kpi("2026-Q1", "predictions", 2_000_000, project="two-tower"),
    kpi("2026-Q1", "training_runs", 5, project="fraud-gnn"),
    kpi("2026-Q1", "revenue_lift", 300, team="search-ranking"),
    # Optimisation projects: engineering cost, then realised savings month by month.
    kpi("2026-01", "engineering_cost", 12000, project="spot-migration"),
    kpi("2026-02", "realised_savings", 1500, project="spot-migration"),
    kpi("2026-03", "realised_savings", 1600, project="spot-migration"),
    kpi("2026-02", "engineering_cost", 50000, project="gpu-rightsizing"),
    kpi("2026-03", "realised_savings", 500, project="gpu-rightsizing"),
]


@pytest.fixture
def loaded(tmp_path: Path, warehouse: Warehouse) -> Warehouse:
    bill = write_csv(tmp_path / "bill.csv", BILL)
    warehouse.ingest_cost(
        lambda: read_focus(str(bill)), source="aws", collector="focus", uri=str(bill)
    )
    events = tmp_path / "kpis.jsonl"
    events.write_text("".join(json.dumps(k) + "\n" for k in KPIS))
    warehouse.ingest_events(
        lambda: read_events(str(events)), source="events", collector="events", uri=str(events)
    )
    return warehouse


def test_roi_and_unit_cost_per_project(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        report = roi(conn, Q1, allocation=ALLOCATION, cost_basis="billed")
    rows = {r["project"]: r for r in report.returns.to_pylist()}
    assert set(rows) == {"two-tower", "fraud-gnn"}
    two_tower = rows["two-tower"]
    assert two_tower["cost"] == Decimal("1000.00")
    assert two_tower["value"] == Decimal("3500.00")  # 3,000 for Q1 + 500 for January
    assert two_tower["net_value"] == Decimal("2500.00")
    assert two_tower["roi_pct"] == pytest.approx(250.0)
    assert two_tower["cost_per_1k_predictions"] == pytest.approx(0.50)  # 1,000 / 2,000
    fraud = rows["fraud-gnn"]
    assert (fraud["cost"], fraud["value"]) == (Decimal("250.00"), Decimal("0"))
    assert fraud["roi_pct"] == pytest.approx(-100.0)
    assert fraud["cost_per_training_run"] == pytest.approx(50.0)  # 250 / 5
    assert report.notes == (
        "2026-Q1: 150.00 USD of cost has no project tag, so no ROI",
        "2026-Q1: 1 KPI input(s) span beyond the quarter and are not counted "
        "(e.g. 2026-01-01..2026-12-31//two-tower/revenue_lift)",
    )


def test_a_team_with_only_shared_cost_gets_its_roi_from_its_share(loaded: Warehouse) -> None:
    shared = pa.table(
        {
            "quarter": ["2026-Q1"],
            "key": ["search-ranking"],
            "currency": ["USD"],
            "shared_cost": pa.array([Decimal("200.00")], pa.decimal128(38, 10)),
        }
    )
    with loaded.reader() as conn:
        report = roi(
            conn, Q1, allocation=ALLOCATION, by="team", cost_basis="billed", shared_cost=shared
        )
    rows = {r["team"]: r for r in report.returns.to_pylist()}
    search = rows["search-ranking"]
    assert (search["direct_cost"], search["shared_cost"], search["cost"]) == (
        Decimal("0"),
        Decimal("200.00"),
        Decimal("200.00"),
    )
    assert search["roi_pct"] == pytest.approx(50.0)  # (300 - 200) / 200
    assert rows["recommendations"]["roi_pct"] == pytest.approx(200.0)  # (3,000 - 1,000) / 1,000
    assert rows["ml-platform"]["cost"] == Decimal("50.00")
    assert "(unallocated)" not in rows
    assert report.notes[0] == "2026-Q1: 100.00 USD of cost has no team, so no ROI"


def test_optimisation_payback_against_the_hurdle_rate(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        report = roi(conn, Q1, allocation=ALLOCATION, hurdle_rate=0.15)
    rows = {r["project"]: r for r in report.payback.to_pylist()}
    spot = rows["spot-migration"]
    # 3,100 saved over February and March (59 days): 3,100 / 59 x 30.4375 a month.
    monthly = 3100 / 59 * 365.25 / 12
    assert spot["savings_days"] == 59
    assert spot["monthly_savings"] == pytest.approx(monthly)
    assert spot["payback_months"] == pytest.approx(12000 / monthly)  # about 7.5
    assert spot["annual_return_pct"] == pytest.approx(100 * monthly * 12 / 12000)  # about 160%
    assert (spot["meets_hurdle"], spot["paid_back"]) == (True, False)
    slow = rows["gpu-rightsizing"]
    slow_monthly = 500 / 31 * 365.25 / 12
    assert slow["annual_return_pct"] == pytest.approx(100 * slow_monthly * 12 / 50000)  # 11.8%
    assert slow["meets_hurdle"] is False


def test_no_cost_and_no_inputs_in_a_quarter_gives_no_rows(loaded: Warehouse) -> None:
    with loaded.reader() as conn:
        report = roi(conn, [parse_period("2025-Q4")], allocation=ALLOCATION)
    assert report.returns.num_rows == 0
    assert report.payback.num_rows == 0
    assert report.notes == ()


def test_shared_cost_from_the_allocation_rules_follows_each_teams_projects(
    loaded: Warehouse,
) -> None:
    # The 150.00 no project claims: ml-platform's 50.00 stays ml-platform's; the untagged
    # 100.00 is shared evenly by recommendations and fraud-detection (50.00 each), and each
    # team's share goes to its projects by their part of its direct cost (each has one).
    rule = SharedCostRule(
        name="untagged",
        scope={"unallocated": True},
        split="even",
        teams=("recommendations", "fraud-detection"),
    )
    sharing = Allocation(settings=AllocationSettings(tag_key="team", shared=(rule,)))
    with loaded.reader() as conn:
        report = roi(conn, Q1, allocation=ALLOCATION, cost_basis="billed", sharing=sharing)
        by_team = roi(
            conn, Q1, allocation=ALLOCATION, cost_basis="billed", sharing=sharing, by="team"
        )
    rows = {r["project"]: r for r in report.returns.to_pylist()}
    assert rows["two-tower"]["shared_cost"] == Decimal("50.00")
    assert rows["two-tower"]["cost"] == Decimal("1050.00")
    assert rows["fraud-gnn"]["cost"] == Decimal("300.00")
    teams = {r["team"]: r for r in by_team.returns.to_pylist()}
    assert teams["fraud-detection"]["shared_cost"] == Decimal("50.00")
    assert teams["ml-platform"]["shared_cost"] == Decimal("0")
