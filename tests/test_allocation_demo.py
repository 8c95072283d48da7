"""The demo organisation under the repository's finops.yaml: allocation adds up every month."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from finops import demo as demo_data
from finops.analytics.chargeback import Allocation, allocate, allocation_coverage, period_total
from finops.collectors import focus
from finops.collectors.dcgm import read_openmetrics
from finops.config import load_config
from finops.periods import parse_period
from finops.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
MONTHS = ("2026-07", "2026-08", "2026-09")


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    root = tmp_path_factory.mktemp("demo")
    files = demo_data.generate(
        root / "data", seed=7, months=3, end_month=parse_period(MONTHS[-1]).start
    )
    warehouse = Warehouse(root / "warehouse.duckdb")
    for path in (files.aws_dir, files.gcp_dir):
        warehouse.ingest_cost(
            lambda path=path: focus.read_focus(str(path)),
            source=path.name,
            collector="focus",
            uri=str(path),
        )
    metrics = str(files.gpu_openmetrics_dir)
    warehouse.ingest_gpu(
        lambda: read_openmetrics(metrics), source="dcgm", collector="openmetrics", uri=metrics
    )
    return warehouse


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
