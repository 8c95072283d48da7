"""The demo organisation under the repository's finops.yaml: allocation adds up every month."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from finops.analytics.chargeback import (
    Allocation,
    allocate,
    allocation_coverage,
    allocation_history,
    allocation_lines,
    period_total,
)
from finops.analytics.forecast import forecast_variance
from finops.config import load_config
from finops.periods import parse_period
from finops.warehouse import Warehouse
from tests.conftest import DemoRun

REPO = Path(__file__).resolve().parents[1]
MONTHS = ("2026-07", "2026-08", "2026-09")


@pytest.fixture(scope="module")
def demo_warehouse(demo_run: DemoRun) -> Warehouse:
    assert demo_run.months == MONTHS
    return demo_run.warehouse


@pytest.mark.slow
def test_allocated_plus_unallocated_is_the_bill_every_month_and_quarter(
    demo_warehouse: Warehouse,
) -> None:
    config = load_config(REPO)
    allocation = Allocation.from_config(config)
    assert allocation.rules, "the repository's finops.yaml ships shared-cost rules"
    for text in (*MONTHS, "2026-Q3"):
        period = parse_period(text)
        with demo_warehouse.reader() as conn:
            for by in ("team", "cost-centre", "business-unit"):
                table = allocate(conn, period, allocation, by=by)  # type: ignore[arg-type]
                (bill,) = period_total(conn, period, "effective").values()
                assert sum(table["exact_cost"].to_pylist(), Decimal(0)) == bill, (text, by)
                assert round(sum(table["exact_cost"].to_pylist(), Decimal(0)), 2) == round(bill, 2)
            (coverage,) = allocation_coverage(conn, period, allocation).to_pylist()
        # Every rule moves cost on the demo: the shared training cluster by GPU-hours (with
        # idle GPU-hours apart), the shared-services account's untagged cost and the tax.
        assert coverage["shared"] > 0, text
        assert coverage["idle"] > 0, text
        assert (
            coverage["direct"] + coverage["shared"] + coverage["idle"] + coverage["unallocated"]
            == coverage["bill"]
        )


@pytest.mark.slow
def test_each_month_is_allocated_on_its_own_so_the_history_serves_every_period(
    demo_warehouse: Warehouse,
) -> None:
    """What the app relies on: a month's or quarter's lines are the history's rows of its
    months, so the allocation is computed once for all of them."""
    allocation = Allocation.from_config(load_config(REPO))
    with demo_warehouse.reader() as conn:
        history = allocation_history(conn, allocation)
        assert sorted({m.strftime("%Y-%m") for m in history["month"].to_pylist()}) == list(MONTHS)
        for text in (*MONTHS, "2026-Q3"):
            period = parse_period(text)
            own = allocation_lines(conn, period, allocation)
            assert own.num_rows > 0
            assert allocate(conn, period, allocation, lines=history) == allocate(
                conn, period, allocation
            ), text
            assert allocation_coverage(
                conn, period, allocation, lines=history
            ) == allocation_coverage(conn, period, allocation), text
        september = parse_period("2026-09")
        assert forecast_variance(conn, september, allocation, lines=history) == forecast_variance(
            conn, september, allocation
        )


@pytest.mark.slow
def test_the_shared_training_cluster_goes_to_the_teams_whose_pods_ran_there(
    demo_warehouse: Warehouse,
) -> None:
    allocation = Allocation.from_config(load_config(REPO))
    with demo_warehouse.reader() as conn:
        table = allocate(conn, parse_period("2026-09"), allocation)
    shared = {r["team"]: r["shared_cost"] for r in table.to_pylist()}
    # The cluster is tagged ml-platform, but its namespaces are four teams'.
    for team in ("ml-platform", "nlp-research", "vision", "search-ranking"):
        assert shared[team] > 0, team
