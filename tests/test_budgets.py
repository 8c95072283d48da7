"""Budgets: a month's or quarter's amount against actual and forecast, and the overrun alert."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from finops.analytics.budgets import budget_status
from finops.analytics.chargeback import Allocation
from finops.collectors.focus import read_focus
from finops.config import AllocationSettings, Budget, BudgetSettings, Team
from finops.periods import parse_period
from finops.warehouse import Warehouse
from tests.conftest import row, write_csv

ALLOCATION = Allocation(
    settings=AllocationSettings(), teams=(Team(name="vision"), Team(name="search"))
)
NOW = datetime(2026, 9, 10, tzinfo=UTC)


@pytest.fixture
def spend(tmp_path: Path, warehouse: Warehouse) -> Warehouse:
    rows = [
        row(f"{m:02d}-01", amount, tags={"team": "vision", "project": "detector"})
        for m, amount in ((5, "100"), (6, "110"), (7, "120"), (8, "130"))
    ]
    rows.append(row("07-05", "7", tags={"team": "search"}))
    path = write_csv(tmp_path / "s.csv", rows)
    warehouse.ingest_cost(lambda: read_focus(str(path)), source="a", collector="focus", uri="s")
    return warehouse


def statuses(warehouse: Warehouse, period: str, *items: Budget) -> dict:
    with warehouse.reader() as conn:
        table = budget_status(
            conn, parse_period(period), ALLOCATION, BudgetSettings(items=items), now=NOW
        )
    return {r["budget"]: r for r in table.to_pylist()}


def test_forecast_past_the_budget_is_an_overrun(spend: Warehouse) -> None:
    # Q3: July 120 + August 130 actual, September forecast 140 (the trend): 390.
    result = statuses(spend, "2026-Q3", Budget(team="vision", monthly=Decimal("120")))
    vision = result["team vision"]
    assert (vision["amount"], vision["actual"], vision["forecast"]) == (
        Decimal("360.00"),
        Decimal("250.00"),
        Decimal("390.00"),
    )
    assert vision["forecast_pct"] == pytest.approx(108.33)
    assert vision["status"] == "overrun"


def test_warn_ok_and_over(spend: Warehouse) -> None:
    result = statuses(
        spend,
        "2026-Q3",
        Budget(team="vision", monthly=Decimal("140")),  # 390 of 420: 92.9% >= 90
        Budget(team="search", quarterly=Decimal("100")),  # 7 of 100
        Budget(project="detector", quarterly=Decimal("200")),  # already 250
    )
    assert result["team vision"]["status"] == "warn"
    assert result["team search"]["status"] == "ok"
    assert result["project detector"]["actual"] == Decimal("250.00")
    assert result["project detector"]["status"] == "over"


def test_a_quarterly_budget_over_one_month_is_a_third(spend: Warehouse) -> None:
    result = statuses(spend, "2026-08", Budget(team="vision", quarterly=Decimal("390")))
    assert result["team vision"]["amount"] == Decimal("130.00")
    assert result["team vision"]["actual"] == Decimal("130.00")
    # Exactly on budget: a warning, not yet an overrun.
    assert result["team vision"]["status"] == "warn"


def test_budget_names_must_be_teams() -> None:
    from finops.config import Config

    with pytest.raises(ValueError, match=r"budgets.items.0.team: 'visoin'"):
        Config.model_validate(
            {
                "teams": [{"name": "vision"}],
                "budgets": {"items": [{"team": "visoin", "monthly": 1}]},
            }
        )
    with pytest.raises(ValueError, match="give exactly one of monthly or quarterly"):
        Budget(team="vision")
