"""Compute Engine and GKE executors, through the real google-cloud clients against a local
server speaking their REST APIs (tests/gcp_actions_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from finops.actions.executors import Executors
from finops.actions.gcp import GcpClients, gcp_executors
from finops.actions.retry import Retry
from finops.actions.runner import Actions
from finops.warehouse import Warehouse
from tests.actions_fixtures import NOW, add_samples, audit_rows, recommend, settings_config
from tests.gcp_actions_server import FakeGcp, gcp_serving

ZONE = "europe-west4-a"
PROJECT = "ml-prod"


def vm(name: str) -> dict[str, str]:
    return {
        "provider": "gcp",
        "resource_type": "gce-instance",
        "resource_id": name,
        "zone": ZONE,
        "project": PROJECT,
    }


POOL = {
    "provider": "gcp",
    "resource_type": "gke-nodepool",
    "resource_id": "gpu-pool",
    "cluster": "train-g",
    "zone": ZONE,
    "project": PROJECT,
}


@pytest.fixture
def fake() -> FakeGcp:
    return FakeGcp(
        instances={
            "gpu-vm-1": {"status": "RUNNING", "labels": {"team": "vision"}},
            "gpu-vm-2": {"status": "RUNNING", "labels": {"finops-protect": "true"}},
            "gpu-vm-3": {"status": "TERMINATED", "labels": {}},
        },
        # One managed instance group per zone, two nodes in each.
        groups={"gke-train-g-gpu-pool-a-grp": 2, "gke-train-g-gpu-pool-b-grp": 2},
        pools={
            "gpu-pool": {
                "autoscaling": {"enabled": True, "minNodeCount": 1, "maxNodeCount": 4},
                "groups": ["gke-train-g-gpu-pool-a-grp", "gke-train-g-gpu-pool-b-grp"],
            }
        },
    )


@pytest.fixture
def clients(fake: FakeGcp) -> Iterator[GcpClients]:
    with gcp_serving(fake) as served:
        yield served


def actions(warehouse: Warehouse, tmp_path: Path, clients: GcpClients) -> Actions:
    config = settings_config(tmp_path)
    return Actions(
        warehouse,
        config,
        actor="scheduler",
        trigger="offhours",
        executors=Executors(gcp_executors(clients, Retry(3, 0), timeout_s=30, poll_s=0)),
        environ={},
    )


@pytest.fixture
def idle_gcp(warehouse: Warehouse) -> Warehouse:
    add_samples(warehouse, "train-g", utils=[0.0, 2.0], newest=NOW - timedelta(minutes=3))
    recommend(
        warehouse,
        "rec-vms",
        cluster="train-g",
        policy="offhours",
        targets=[vm("gpu-vm-1"), vm("gpu-vm-2"), vm("gpu-vm-3")],
    )
    recommend(
        warehouse,
        "rec-pool",
        cluster="train-g",
        policy="offhours",
        action="scale-to-zero",
        targets=[POOL],
    )
    return warehouse


def test_stop_instances_and_scale_a_node_pool_to_zero_then_restore(
    idle_gcp: Warehouse, tmp_path: Path, clients: GcpClients, fake: FakeGcp
) -> None:
    runner = actions(idle_gcp, tmp_path, clients)
    report = runner.apply(NOW, dry_run=False)

    assert [(o.target.resource_id, o.result) for o in report.outcomes] == [
        ("gpu-pool", "stopped"),
        ("gpu-vm-1", "stopped"),
        ("gpu-vm-2", "skipped"),
        ("gpu-vm-3", "already-stopped"),
    ]
    assert report.outcomes[2].reason == "protected: tag finops-protect=true on the resource"
    assert fake.instances["gpu-vm-1"]["status"] == "TERMINATED"
    assert fake.instances["gpu-vm-2"]["status"] == "RUNNING"
    assert fake.groups == {"gke-train-g-gpu-pool-a-grp": 0, "gke-train-g-gpu-pool-b-grp": 0}
    assert fake.pools["gpu-pool"]["autoscaling"] == {"enabled": False}
    pool_path = f"/v1/projects/{PROJECT}/locations/{ZONE}/clusters/train-g/nodePools/gpu-pool"
    posts = [(path, body) for method, path, body in fake.requests if method == "POST"]
    assert posts[:2] == [
        # JSON leaves false and zero out: autoscaling disabled, then nodeCount 0.
        (f"{pool_path}:setAutoscaling", {"autoscaling": {}}),
        (f"{pool_path}:setSize", {}),
    ]
    # Each GKE operation came back RUNNING and was polled until DONE.
    polled = [p for m, p, _ in fake.requests if m == "GET" and "/operations/" in p]
    assert len(polled) == 2
    (before,) = [o.before for o in report.outcomes if o.target.resource_id == "gpu-pool"]
    assert before["capacity"] == {
        "node_count": 4,
        "nodes_per_zone": 2,
        "autoscaling": {"enabled": True, "min": 1, "max": 4},
    }

    morning = NOW + timedelta(hours=12)
    restored = runner.restore(morning, policy="offhours")
    assert sorted((o.target.resource_id, o.result) for o in restored.outcomes) == [
        ("gpu-pool", "started"),
        ("gpu-vm-1", "started"),
    ]
    assert fake.instances["gpu-vm-1"]["status"] == "RUNNING"
    assert fake.instances["gpu-vm-3"]["status"] == "TERMINATED"  # finops did not stop it
    assert fake.groups == {"gke-train-g-gpu-pool-a-grp": 2, "gke-train-g-gpu-pool-b-grp": 2}
    assert fake.pools["gpu-pool"]["autoscaling"] == {
        "enabled": True,
        "minNodeCount": 1,
        "maxNodeCount": 4,
    }


def test_a_throttled_google_call_is_retried(
    idle_gcp: Warehouse, tmp_path: Path, clients: GcpClients, fake: FakeGcp
) -> None:
    fake.throttle = [("/instances/gpu-vm-1/stop", 429), ("/instances/gpu-vm-1/stop", 503)]
    report = actions(idle_gcp, tmp_path, clients).apply(NOW, dry_run=False, rec_ids=["rec-vms"])
    assert [o.result for o in report.outcomes] == ["stopped", "skipped", "already-stopped"]
    stops = [p for m, p, _ in fake.requests if p.endswith("/gpu-vm-1/stop")]
    assert len(stops) == 3
    assert fake.instances["gpu-vm-1"]["status"] == "TERMINATED"


def test_a_refused_google_call_fails_that_resource_only(
    idle_gcp: Warehouse, tmp_path: Path, clients: GcpClients, fake: FakeGcp
) -> None:
    fake.throttle = [("nodePools/gpu-pool:setAutoscaling", 403)]
    report = actions(idle_gcp, tmp_path, clients).apply(NOW, dry_run=False)
    results = {o.target.resource_id: o.result for o in report.outcomes}
    assert results == {
        "gpu-pool": "failed",
        "gpu-vm-1": "stopped",
        "gpu-vm-2": "skipped",
        "gpu-vm-3": "already-stopped",
    }
    assert sum(fake.groups.values()) == 4
    assert [(r[1], r[2], r[3]) for r in audit_rows(idle_gcp) if r[1] == "gpu-pool"] == [
        ("gpu-pool", "intent", "started"),
        ("gpu-pool", "outcome", "failed"),
    ]
