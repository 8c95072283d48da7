"""Shared set-up for the action tests: recommendations and GPU samples written with SQL (the
contract the policy engine and collectors fill), and a fleet in moto."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from finops.config import ActionSettings, Config, GpuSettings
from finops.warehouse import Warehouse

NOW = datetime(2026, 6, 1, 19, 0, tzinfo=UTC)
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
IMAGE = "ami-12c6146b"  # one of moto's built-in images


def settings_config(tmp_path: Path, **actions: Any) -> Config:
    """Config with no retry backoff, the audit mirror in tmp_path, and any overrides."""
    return Config(
        gpu=GpuSettings(idle_threshold_pct=5.0),
        actions=ActionSettings(retry_backoff_s=0, audit_mirror=tmp_path / "audit.jsonl", **actions),
    )


def add_samples(
    warehouse: Warehouse,
    cluster: str,
    *,
    utils: list[float],
    newest: datetime,
    node: str = "node-1",
    gpu_index: int = 0,
    every: timedelta = timedelta(minutes=1),
) -> None:
    """Readings of one GPU of `cluster`, the last at `newest`, one `every` apart, oldest first."""
    count = len(utils)
    rows = [
        (newest - (count - 1 - i) * every, node, gpu_index, cluster, util)
        for i, util in enumerate(utils)
    ]
    with warehouse.writer() as conn:
        conn.executemany(
            """
            INSERT INTO gpu_samples (ts, node, gpu_index, cluster, gpu_util_pct, source, ingest_id)
            VALUES (?, ?, ?, ?, ?, 'dcgm', 'test')
            """,
            rows,
        )


def recommend(
    warehouse: Warehouse,
    rec_id: str,
    *,
    cluster: str | None,
    targets: list[dict[str, Any]],
    policy: str = "idle-gpu",
    action: str = "stop",
    state: str = "accepted",
    mode: str = "manual",
    active: bool = True,
    snoozed_until: datetime | None = None,
    owner: str = "vision",
    evidence: dict[str, Any] | None = None,
) -> None:
    with warehouse.writer() as conn:
        conn.execute(
            """
            INSERT INTO recommendations (rec_id, policy, kind, resource_id, provider, region,
                cluster, team, owner, action, mode, monthly_savings, currency, confidence, risk,
                reason, evidence, state, snoozed_until, active, first_seen_at,
                last_evaluated_at, updated_at)
            VALUES (?, ?, 'idle-cluster', ?, 'aws', ?, ?, 'vision', ?, ?, ?, 1234.5, 'USD',
                    0.9, 'low', ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                rec_id,
                policy,
                cluster or targets[0]["resource_id"],
                REGION,
                cluster,
                owner,
                action,
                mode,
                f"cluster {cluster} idle: p95 GPU util 1.0% < 5% over 7 days",
                json.dumps({"targets": targets, **(evidence or {})}),
                state,
                snoozed_until,
                active,
                NOW - timedelta(days=1),
                NOW - timedelta(hours=1),
                NOW - timedelta(hours=1),
            ],
        )


def protect_in_inventory(warehouse: Warehouse, resource_id: str) -> None:
    with warehouse.writer() as conn:
        conn.execute(
            """
            INSERT INTO resources (source, resource_id, provider, tags, first_seen, last_seen)
            VALUES ('aws-inventory', ?, 'aws', MAP {'finops:protect': 'TRUE'}, ?, ?)
            """,
            [resource_id, NOW - timedelta(days=3), NOW - timedelta(hours=1)],
        )


def instance_target(instance_id: str) -> dict[str, str]:
    return {
        "provider": "aws",
        "resource_type": "ec2-instance",
        "resource_id": instance_id,
        "region": REGION,
        "account_id": ACCOUNT,
    }


@dataclass(frozen=True)
class Fleet:
    subnet: str
    on_demand: str
    spot: str
    asg_arn: str
    nodegroup_arn: str
    notebook_arn: str


def launch(ec2: Any, subnet: str, tags: dict[str, str] | None = None, **options: Any) -> str:
    tag_specs = [
        {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        for _ in [tags]
        if tags
    ]
    response = ec2.run_instances(
        ImageId=IMAGE,
        MinCount=1,
        MaxCount=1,
        InstanceType="g5.12xlarge",
        SubnetId=subnet,
        **({"TagSpecifications": tag_specs} if tags else {}),
        **options,
    )
    return str(response["Instances"][0]["InstanceId"])


def build_fleet() -> Fleet:
    """In moto: an on-demand and a spot GPU instance, an Auto Scaling group at 1/2/4, an EKS
    node group at 1/2/4 and a SageMaker notebook in service."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")[
        "Subnet"
    ]["SubnetId"]
    on_demand = launch(ec2, subnet, {"eks:cluster-name": "train-a"})
    spot = launch(
        ec2,
        subnet,
        {"eks:cluster-name": "train-a"},
        InstanceMarketOptions={
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "persistent",
                "InstanceInterruptionBehavior": "stop",
            },
        },
    )
    ec2.create_launch_template(
        LaunchTemplateName="infer-b",
        LaunchTemplateData={"ImageId": IMAGE, "InstanceType": "g5.12xlarge"},
    )
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="infer-b-asg",
        LaunchTemplate={"LaunchTemplateName": "infer-b", "Version": "$Latest"},
        MinSize=1,
        MaxSize=4,
        DesiredCapacity=2,
        VPCZoneIdentifier=subnet,
    )
    (group,) = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    eks = boto3.client("eks", region_name=REGION)
    eks.create_cluster(
        name="train-a",
        version="1.31",
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks",
        resourcesVpcConfig={"subnetIds": [subnet]},
    )
    nodegroup = eks.create_nodegroup(
        clusterName="train-a",
        nodegroupName="gpu-ng",
        nodeRole=f"arn:aws:iam::{ACCOUNT}:role/node",
        subnets=[subnet],
        scalingConfig={"minSize": 1, "desiredSize": 2, "maxSize": 4},
        instanceTypes=["p4d.24xlarge"],
    )["nodegroup"]
    notebook = boto3.client("sagemaker", region_name=REGION).create_notebook_instance(
        NotebookInstanceName="research-nb",
        InstanceType="ml.p3.2xlarge",
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
    )
    return Fleet(
        subnet,
        on_demand,
        spot,
        group["AutoScalingGroupARN"],
        nodegroup["nodegroupArn"],
        notebook["NotebookInstanceArn"],
    )


def instance_state(instance_id: str) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(reservation["Instances"][0]["State"]["Name"])


def asg_capacity(name: str = "infer-b-asg") -> tuple[int, int, int]:
    (group,) = boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=[name]
    )["AutoScalingGroups"]
    return group["MinSize"], group["DesiredCapacity"], group["MaxSize"]


def nodegroup_capacity() -> tuple[int, int, int]:
    scaling = boto3.client("eks", region_name=REGION).describe_nodegroup(
        clusterName="train-a", nodegroupName="gpu-ng"
    )["nodegroup"]["scalingConfig"]
    return scaling["minSize"], scaling["desiredSize"], scaling["maxSize"]


def notebook_status() -> str:
    return str(
        boto3.client("sagemaker", region_name=REGION).describe_notebook_instance(
            NotebookInstanceName="research-nb"
        )["NotebookInstanceStatus"]
    )


def audit_rows(warehouse: Warehouse) -> list[tuple[Any, ...]]:
    """(seq, resource_id, phase, result, dry_run, intent_seq) for every entry."""
    table = warehouse.query(
        "SELECT seq, resource_id, phase, result, dry_run, intent_seq FROM audit_log ORDER BY seq"
    )
    return [tuple(r.values()) for r in table.to_pylist()]
