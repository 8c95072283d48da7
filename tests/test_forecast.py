"""Forecasts: Holt's level and trend by hand, team totals to the period's end, last quarter's miss."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from finops.analytics.chargeback import Allocation
from finops.analytics.forecast import Z_80, forecast, forecast_series, forecast_variance, holt
from finops.collectors.focus import read_focus
from finops.config import AllocationSettings, Team
from finops.periods import parse_period
from finops.warehouse import Warehouse
from tests.conftest import row, write_csv

ALLOCATION = Allocation(
    settings=AllocationSettings(), teams=(Team(name="vision"), Team(name="search"))
)


def test_holt_by_hand() -> None:
    # level0 = 100, trend0 = 20; t=1 predicts 120 (exact); t=2 predicts 140, sees 110:
    # level = .5*110 + .5*140 = 125, trend = .5*(125-120) + .5*20 = 12.5.
    predictions, level, trend = holt(np.array([100.0, 120.0, 110.0]), 0.5, 0.5)
    assert predictions.tolist() == [140.0]
    assert (level, trend) == (125.0, 12.5)
    result = forecast_series(np.array([100.0, 120.0, 110.0]), 2, alpha=0.5, beta=0.5)
    assert result.points.tolist() == [137.5, 150.0]
    # sigma = 30 (one error of -30); at h=2 the variance grows by 1 + (.25 + .5 + .25) = 2.
    assert result.half_widths is not None
    assert result.half_widths.tolist() == pytest.approx([Z_80 * 30, Z_80 * 30 * np.sqrt(2)])


def test_a_straight_line_is_forecast_exactly_with_no_spread() -> None:
    result = forecast_series(np.array([100.0, 110.0, 120.0, 130.0]), 2)
    assert result.points.tolist() == pytest.approx([140.0, 150.0])
    assert result.half_widths is not None
    assert result.half_widths.tolist() == pytest.approx([0.0, 0.0])


def test_too_little_history_repeats_the_last_month() -> None:
    result = forecast_series(np.array([50.0, 60.0]), 3)
    assert result.points.tolist() == [60.0, 60.0, 60.0]
    assert result.half_widths is None


@pytest.fixture
def history(tmp_path: Path, warehouse: Warehouse) -> Warehouse:
    rows = [
        row(f"{m:02d}-01", amount, tags={"team": "vision"})
        for m, amount in ((5, "100"), (6, "110"), (7, "120"), (8, "130"))
    ]
    rows += [
        row("09-03", "20", tags={"team": "vision"}),
        row("07-02", "7", tags={"team": "search"}),
    ]
    path = write_csv(tmp_path / "h.csv", rows)
    warehouse.ingest_cost(lambda: read_focus(str(path)), source="a", collector="focus", uri="h")
    return warehouse


def test_quarter_end_forecast_is_actual_months_plus_forecast_months(history: Warehouse) -> None:
    now = datetime(2026, 9, 10, tzinfo=UTC)
    with history.reader() as conn:
        table = forecast(conn, parse_period("2026-Q3"), ALLOCATION, now=now)
    rows = {r["team"]: r for r in table.to_pylist()}
    # July 120 + August 130 are actual; September is forecast from May-August: 140.
    assert rows["vision"]["actual"] == Decimal("250")
    assert rows["vision"]["month_to_date"] == Decimal("20")
    assert (rows["vision"]["forecast"], rows["vision"]["lower"], rows["vision"]["upper"]) == (
        390.0,
        390.0,
        390.0,
    )
    # search: 0, 0, 7, 0 and nothing in September.
    assert rows["search"]["actual"] == Decimal("7")


def test_last_quarters_forecast_variance(history: Warehouse) -> None:
    with history.reader() as conn:
        table = forecast_variance(conn, parse_period("2026-Q3"), ALLOCATION)
    rows = {r["team"]: r for r in table.to_pylist()}
    # Made on 1 July from May and June only: June's 110 repeated, 330; actual 120+130+20 = 270.
    assert rows["vision"]["forecast"] == 330.0
    assert rows["vision"]["actual"] == Decimal("270.00")
    assert rows["vision"]["variance_pct"] == pytest.approx(-18.18)
    assert rows["(total)"]["actual"] == Decimal("277.00")
