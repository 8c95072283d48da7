"""GPU-hours joined to cost: cluster, team, idle GPU-hours and idle cost, to the cent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from finops.analytics.gpu import GpuAttribution, gpu_usage, unmatched_gpu_instances
from finops.collectors.focus import read_focus
from finops.config import AllocationSettings, Team
from finops.periods import parse_period
from finops.warehouse import GpuDelivery, Warehouse
from tests.conftest import row, write_csv

ATTRIBUTION = GpuAttribution(
    cluster_tag_keys=("cluster", "goog-k8s-cluster-name"),
    allocation=AllocationSettings(tag_key="team", tag_aliases=("owner",)),
    teams=(Team(name="vision", aliases=("cv",)),),
)
MIDNIGHT = datetime(2026, 5, 1, tzinfo=UTC)


def sample_rows(
    node: str, gpu: int, util: float, resource_id: str | None, namespaces: list[str] | None
):
    """Four readings an hour for hours 00-02 of 1 May, one namespace (or none) per reading."""
    rows = []
    for minute in range(0, 180, 15):
        pods = namespaces or [None]
        rows.append(
            {
                "ts": MIDNIGHT + timedelta(minutes=minute),
                "node": node,
                "gpu_index": gpu,
                "gpu_uuid": f"GPU-{node}-{gpu}",
                "model": "NVIDIA H100 80GB HBM3",
                "resource_id": resource_id,
                "gpu_util_pct": util,
                "namespace": pods[(minute // 15) % len(pods)],
            }
        )
    return rows


@pytest.fixture
def fleet(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    bill = [
        # A 2-GPU AWS node: 48.00 a day = 2.00 an hour = 1.00 per GPU-hour.
        row(
            "05-01",
            "48.00",
            ResourceId="i-0aa1",
            x_InstanceType="p5.48xlarge",
            tags={"cluster": "train-a", "team": "vision"},
        ),
        # A 1-GPU GKE node found by its name: 24.00 a day = 1.00 a GPU-hour.
        row(
            "05-01",
            "24.00",
            ResourceId="projects/p/zones/z/instances/gke-serve-1",
            ResourceName="gke-serve-1",
            x_InstanceType="a3-highgpu-1g",
            tags={"goog-k8s-cluster-name": "serve-b", "owner": "CV"},
        ),
        # A billed GPU instance that never reported.
        row(
            "05-01",
            "10.00",
            ResourceId="i-0silent",
            x_InstanceType="g5.xlarge",
            tags={"cluster": "dev-c"},
        ),
    ]
    path = write_csv(tmp_path / "bill.csv", bill)
    warehouse.ingest_cost(
        lambda: read_focus(str(path)), source="aws", collector="focus", uri="bill"
    )
    samples = [
        *sample_rows("ip-10-0-0-1", 0, 50.0, "i-0aa1", None),
        *sample_rows("ip-10-0-0-1", 1, 1.0, "i-0aa1", None),
        *sample_rows("gke-serve-1", 0, 30.0, None, ["search", "cv"]),
        *sample_rows("ghost-host", 0, 70.0, None, None),
    ]
    table = pa.Table.from_pylist(samples)
    warehouse.ingest_gpu(
        lambda: GpuDelivery(uri="t", select_sql="SELECT * FROM s", tables={"s": table}),
        source="test",
        collector="test",
        uri="t",
    )
    return warehouse


def usage(warehouse: Warehouse, by: str) -> dict:
    with warehouse.reader() as conn:
        table = gpu_usage(conn, parse_period("2026-05-01..2026-05-01"), by, ATTRIBUTION)
    return {r[by]: {k: v for k, v in r.items() if k != by} for r in table.to_pylist()}


def test_by_cluster_gives_gpu_hours_idle_hours_and_their_cost(fleet: Warehouse) -> None:
    result = usage(fleet, "cluster")
    assert result["train-a"] == {
        "gpus": 2,
        "gpu_hours": 6.0,
        "mean_util_pct": 25.5,
        "p95_util_pct": 50.0,
        "idle_gpu_hours": 3.0,
        "idle_pct": 50.0,
        "cost": 6.0,
        "idle_cost": 3.0,
    }
    assert result["serve-b"] == {
        "gpus": 1,
        "gpu_hours": 3.0,
        "mean_util_pct": 30.0,
        "p95_util_pct": 30.0,
        "idle_gpu_hours": None,
        "idle_pct": 0.0,
        "cost": 3.0,
        "idle_cost": 0.0,
    }
    assert result["(unmatched)"]["gpu_hours"] == 3.0
    assert result["(unmatched)"]["cost"] is None


def test_by_team_splits_shared_nodes_by_namespace_and_maps_aliases(fleet: Warehouse) -> None:
    result = usage(fleet, "team")
    assert (result["vision"]["gpu_hours"], result["vision"]["cost"]) == (7.5, 7.5)
    assert (result["search"]["gpu_hours"], result["search"]["cost"]) == (1.5, 1.5)
    assert result["(unmatched)"]["gpu_hours"] == 3.0
    assert sum(r["gpu_hours"] for r in result.values()) == 12.0


def test_billed_gpu_instances_without_samples_are_listed(fleet: Warehouse) -> None:
    with fleet.reader() as conn:
        silent = unmatched_gpu_instances(conn, parse_period("2026-05"), ATTRIBUTION).to_pylist()
    assert silent == [
        {
            "resource_id": "i-0silent",
            "instance_type": "g5.xlarge",
            "provider": "AWS",
            "cost": Decimal("10.00"),
        }
    ]


def test_join_keys_are_configurable_per_source(fleet: Warehouse) -> None:
    from dataclasses import replace

    # Without the billed-name key, the GKE node (found only by its name) is unmatched...
    by_instance_only = replace(ATTRIBUTION, join_keys=("instance_id",))
    with fleet.reader() as conn:
        table = gpu_usage(conn, parse_period("2026-05-01..2026-05-01"), "cluster", by_instance_only)
    clusters = {r["cluster"]: r["gpu_hours"] for r in table.to_pylist()}
    assert "serve-b" not in clusters
    assert clusters["(unmatched)"] == 6.0  # the GKE node and the ghost host
    # ...unless its source is told to use it.
    per_source = replace(
        by_instance_only, join_keys_by_source={"test": ("instance_id", "resource_name")}
    )
    with fleet.reader() as conn:
        table = gpu_usage(conn, parse_period("2026-05-01..2026-05-01"), "cluster", per_source)
    assert {r["cluster"]: r["gpu_hours"] for r in table.to_pylist()}["serve-b"] == 3.0


def test_cluster_by_hour_is_the_hourly_fleet_view(fleet: Warehouse) -> None:
    with fleet.reader() as conn:
        table = gpu_usage(conn, parse_period("2026-05-01..2026-05-01"), "cluster,hour", ATTRIBUTION)
    train = [r for r in table.to_pylist() if r["cluster"] == "train-a"]
    assert [r["hour"] for r in sorted(train, key=lambda r: r["hour"])] == [
        "2026-05-01 00:00",
        "2026-05-01 01:00",
        "2026-05-01 02:00",
    ]
    for hour in train:
        assert (hour["gpus"], hour["gpu_hours"], hour["idle_gpu_hours"]) == (2, 2.0, 1.0)
        assert (hour["mean_util_pct"], hour["cost"], hour["idle_cost"]) == (25.5, 2.0, 1.0)
