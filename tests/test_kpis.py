"""FinOps KPIs on a hand-made bill: spot and commitment coverage, utilisation, savings rate."""

from __future__ import annotations

from pathlib import Path

import pytest

from finops.analytics.chargeback import Allocation
from finops.analytics.kpis import finops_kpis, rate_status
from finops.collectors.focus import read_focus
from finops.config import AllocationSettings, KpiTarget, KpiTargets, Team
from finops.periods import parse_period
from finops.warehouse import Warehouse
from tests.conftest import row, write_csv

ALLOCATION = Allocation(settings=AllocationSettings(), teams=(Team(name="vision"),))
VISION = {"team": "vision"}


@pytest.fixture
def bill(tmp_path: Path, warehouse: Warehouse) -> Warehouse:
    rows = [
        row("05-01", "60", tags=VISION, PricingCategory="Standard"),
        # Spot: 20 against a list price of 50.
        row("05-02", "20", tags=VISION, PricingCategory="Dynamic", ListCost="50"),
        # Covered by a commitment: 20 amortised, 40 at list.
        row(
            "05-03",
            "0",
            "20",
            tags=VISION,
            PricingCategory="Committed",
            CommitmentDiscountStatus="Used",
            CommitmentDiscountId="ri-1",
            ListCost="40",
        ),
        row(
            "05-03",
            "5",
            tags=VISION,
            PricingCategory="Committed",
            CommitmentDiscountStatus="Unused",
            CommitmentDiscountId="ri-1",
        ),
        row("05-04", "15", ServiceCategory="Storage", ServiceName="Amazon S3"),
    ]
    path = write_csv(tmp_path / "k.csv", rows)
    warehouse.ingest_cost(lambda: read_focus(str(path)), source="a", collector="focus", uri="k")
    return warehouse


def test_cost_kpis_by_hand(bill: Warehouse) -> None:
    with bill.reader() as conn:
        table = finops_kpis(conn, parse_period("2026-05"), ALLOCATION, KpiTargets())
    kpis = {r["kpi"]: (r["value"], r["status"]) for r in table.to_pylist()}
    # Bill (effective) 60+20+20+5+15 = 120; vision's 105 is tagged, the storage 15 is not.
    assert kpis["allocation_coverage_pct"] == (87.5, "amber")
    assert kpis["untagged_pct"] == (12.5, "red")
    # Eligible compute: 60 + 20 + 20 (the unused 5 is not usage anyone ran).
    assert kpis["spot_coverage_pct"] == (20.0, "green")
    assert kpis["commitment_coverage_pct"] == (20.0, "red")
    assert kpis["commitment_utilisation_pct"] == (80.0, "amber")  # 20 / (20 + 5)
    # Usage (storage too) at list 60+50+40+5+15 = 170 against 120 effective: 50/170.
    assert kpis["effective_savings_rate_pct"] == (29.41, "green")
    assert kpis["idle_gpu_cost_pct"] == (None, "n/a")  # no GPU samples
    assert kpis["forecast_variance_pct"] == (None, "n/a")  # no month before May


def test_a_team_scorecard_has_its_own_cost_kpis_but_not_the_organisations(bill: Warehouse) -> None:
    with bill.reader() as conn:
        table = finops_kpis(conn, parse_period("2026-05"), ALLOCATION, KpiTargets(), team="vision")
    kpis = {r["kpi"]: r["value"] for r in table.to_pylist()}
    assert "allocation_coverage_pct" not in kpis
    assert kpis["spot_coverage_pct"] == 20.0


def test_status_follows_the_direction_the_thresholds_give() -> None:
    higher = KpiTarget(green=90, amber=80)
    lower = KpiTarget(green=5, amber=10)
    assert [rate_status(v, higher) for v in (95, 90, 85, 79.9)] == [
        "green",
        "green",
        "amber",
        "red",
    ]
    assert [rate_status(v, lower) for v in (2, 5, 10, 10.1)] == ["green", "green", "amber", "red"]
    assert rate_status(-8, KpiTarget(green=5, amber=15), absolute=True) == "amber"
    assert rate_status(None, higher) == "n/a"
