"""An inventory derived from billing tags, and GPU samples joined through it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from finops.collectors.billing_inventory import inventory_from_billing
from finops.collectors.focus import read_focus
from finops.warehouse import Warehouse
from tests.conftest import row, write_csv

CLUSTER_TAGS = ("cluster", "aws:eks:cluster-name", "goog-k8s-cluster-name")


def test_clusters_node_groups_and_names_come_from_billing_tags(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    bill = [
        row(
            "05-01",
            "10.00",
            ResourceId="i-eks",
            ResourceName="ip-10-0-0-7.ec2.internal",
            x_InstanceType="p4d.24xlarge",
            x_PurchaseOption="OnDemand",
            tags={
                "aws:eks:cluster-name": "train-a",
                "eks:nodegroup-name": "gpu-ng",
                "team": "vision",
            },
        ),
        row(
            "05-02",
            "10.00",
            ResourceId="i-eks",
            ResourceName="ip-10-0-0-7.ec2.internal",
            x_InstanceType="p4d.24xlarge",
            x_PurchaseOption="OnDemand",
            tags={
                "aws:eks:cluster-name": "train-a",
                "eks:nodegroup-name": "gpu-ng",
                "team": "search",
            },
        ),
        row(
            "05-01",
            "5.00",
            ResourceId="i-asg",
            x_InstanceType="g5.12xlarge",
            x_PurchaseOption="Spot",
            tags={"aws:autoscaling:groupName": "infer-b-asg"},
        ),
        row(
            "05-01",
            "1.00",
            ResourceId="projects/p/zones/z/instances/gke-n1",
            ResourceName="gke-n1",
            ProviderName="Google Cloud",
            PricingCategory="Dynamic",
            tags={"goog-k8s-cluster-name": "serve-c", "goog-k8s-node-pool-name": "l4-pool"},
        ),
        row("05-01", "-2.00", ChargeCategory="Credit"),
    ]
    path = write_csv(tmp_path / "bill.csv", bill)
    warehouse.ingest_cost(
        lambda: read_focus(str(path)), source="aws", collector="focus", uri="bill"
    )
    until = datetime(2026, 5, 3, tzinfo=UTC)

    def read():
        with warehouse.reader() as conn:
            return inventory_from_billing(
                conn,
                cluster_tag_keys=CLUSTER_TAGS,
                since=datetime(2026, 5, 1, tzinfo=UTC),
                until=until,
            )

    result = warehouse.refresh_inventory(
        read, source="billing", collector="billing-inventory", uri="b"
    )

    assert (result.resources, result.new) == (3, 3)
    rows = warehouse.query(
        "SELECT resource_id, cluster, node_group, node_name, instance_type, purchase_option, "
        "state, tags['team'] AS team, last_seen FROM resources ORDER BY resource_id"
    ).to_pylist()
    assert rows == [
        {
            "resource_id": "i-asg",
            "cluster": "infer-b-asg",
            "node_group": "infer-b-asg",
            "node_name": None,
            "instance_type": "g5.12xlarge",
            "purchase_option": "Spot",
            "state": "billed",
            "team": None,
            "last_seen": until,
        },
        {
            "resource_id": "i-eks",
            "cluster": "train-a",
            "node_group": "gpu-ng",
            "node_name": "ip-10-0-0-7.ec2.internal",
            "instance_type": "p4d.24xlarge",
            "purchase_option": "OnDemand",
            "state": "billed",
            "team": "search",
            "last_seen": until,
        },
        {
            "resource_id": "projects/p/zones/z/instances/gke-n1",
            "cluster": "serve-c",
            "node_group": "l4-pool",
            "node_name": "gke-n1",
            "instance_type": None,
            "purchase_option": "Dynamic",
            "state": "billed",
            "team": None,
            "last_seen": until,
        },
    ]
