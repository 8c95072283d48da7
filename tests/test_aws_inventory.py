"""The AWS inventory collector against moto: what each resource becomes in `resources`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from finops.collectors.aws_inventory import read_aws_inventory
from finops.errors import IngestError
from finops.warehouse import InventoryResult, Warehouse

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 6, 1, 13, 0, tzinfo=UTC)
ACCOUNT = "123456789012"  # moto's default account
IMAGE = "ami-12c6146b"  # one of moto's built-in images


@dataclass(frozen=True)
class Fleet:
    train_gpu: str
    """p4d.24xlarge on demand in EKS cluster train-a, node group gpu-ng."""
    infer_gpu: str
    """g5.12xlarge spot in Auto Scaling group infer-b-asg."""
    batch: str
    """m6i.large tagged cluster=batch-c."""
    untagged: str
    asg_arn: str
    launch_template_id: str
    nodegroup_arn: str
    launched_at: dict[str, datetime]
    """Each instance's LaunchTime as EC2 reports it."""


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def build_fleet(region: str) -> Fleet:
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{region}a")[
        "Subnet"
    ]["SubnetId"]

    def launch(instance_type: str, ip: str, tags: dict[str, str], **options: Any) -> str:
        tag_specs = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
        response = ec2.run_instances(
            ImageId=IMAGE,
            MinCount=1,
            MaxCount=1,
            InstanceType=instance_type,
            SubnetId=subnet,
            PrivateIpAddress=ip,
            **({"TagSpecifications": tag_specs} if tags else {}),
            **options,
        )
        return str(response["Instances"][0]["InstanceId"])

    train = launch(
        "p4d.24xlarge", "10.0.1.10", {"eks:cluster-name": "train-a", "eks:nodegroup-name": "gpu-ng"}
    )
    infer = launch("g5.12xlarge", "10.0.1.11", {}, InstanceMarketOptions={"MarketType": "spot"})
    batch = launch("m6i.large", "10.0.1.12", {"cluster": "batch-c"})
    untagged = launch("m6i.large", "10.0.1.13", {})

    template = ec2.create_launch_template(
        LaunchTemplateName="infer-b",
        LaunchTemplateData={"ImageId": IMAGE, "InstanceType": "g5.12xlarge"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling = boto3.client("autoscaling", region_name=region)
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="infer-b-asg",
        LaunchTemplate={"LaunchTemplateName": "infer-b", "Version": "$Latest"},
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=0,
        VPCZoneIdentifier=subnet,
    )
    # Attaching tags the instance aws:autoscaling:groupName and raises the desired capacity to 1.
    autoscaling.attach_instances(AutoScalingGroupName="infer-b-asg", InstanceIds=[infer])
    (group,) = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]

    eks = boto3.client("eks", region_name=region)
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
        scalingConfig={"minSize": 0, "desiredSize": 1, "maxSize": 4},
        instanceTypes=["p4d.24xlarge"],
        capacityType="ON_DEMAND",
    )["nodegroup"]

    boto3.client("sagemaker", region_name=region).create_notebook_instance(
        NotebookInstanceName="research-nb",
        InstanceType="ml.p3.2xlarge",
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
        Tags=[{"Key": "cluster", "Value": "research"}],
    )
    reservations = ec2.describe_instances()["Reservations"]
    return Fleet(
        train,
        infer,
        batch,
        untagged,
        group["AutoScalingGroupARN"],
        template,
        nodegroup["nodegroupArn"],
        {i["InstanceId"]: i["LaunchTime"] for r in reservations for i in r["Instances"]},
    )


def refresh(
    warehouse: Warehouse,
    regions: list[str] | None,
    now: datetime = NOW,
    session: boto3.session.Session | None = None,
) -> InventoryResult:
    return warehouse.refresh_inventory(
        lambda: read_aws_inventory(regions=regions, session=session, now=now),
        source="aws-inventory",
        collector="aws-inventory",
        uri="aws",
    )


def select(warehouse: Warehouse, sql: str, *params: object) -> list[tuple[Any, ...]]:
    table = warehouse.query(sql, list(params))
    return [tuple(row.values()) for row in table.to_pylist()]


INSTANCES = """
    SELECT resource_id, instance_type, purchase_option, cluster, node_group, private_dns,
           node_name, state, account_id, region
    FROM resources WHERE resource_type = 'ec2:instance' ORDER BY private_dns
"""


@pytest.fixture(scope="module")
def us_east_1(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Fleet, Warehouse, InventoryResult]:
    """One refresh of the fleet in us-east-1, shared by the tests that only read it."""
    with mock_aws():
        fleet = build_fleet("us-east-1")
        warehouse = Warehouse(tmp_path_factory.mktemp("us-east-1") / "wh.duckdb")
        return fleet, warehouse, refresh(warehouse, ["us-east-1"])


def test_instances_carry_cluster_node_group_and_purchase_option(
    us_east_1: tuple[Fleet, Warehouse, InventoryResult],
) -> None:
    fleet, warehouse, result = us_east_1

    assert (result.resources, result.new, result.notes) == (8, 8, ())
    dns = "ip-10-0-1-{}.ec2.internal".format
    assert select(warehouse, INSTANCES) == [
        (fleet.train_gpu, "p4d.24xlarge", "OnDemand", "train-a", "gpu-ng", dns(10), dns(10),
         "running", ACCOUNT, "us-east-1"),
        (fleet.infer_gpu, "g5.12xlarge", "Spot", "infer-b-asg", "infer-b-asg", dns(11), dns(11),
         "running", ACCOUNT, "us-east-1"),
        (fleet.batch, "m6i.large", "OnDemand", "batch-c", None, dns(12), dns(12),
         "running", ACCOUNT, "us-east-1"),
        (fleet.untagged, "m6i.large", "OnDemand", None, None, dns(13), dns(13),
         "running", ACCOUNT, "us-east-1"),
    ]  # fmt: skip
    assert select(
        warehouse, "SELECT tags, details FROM resources WHERE resource_id = ?", fleet.train_gpu
    ) == [
        (
            [("eks:cluster-name", "train-a"), ("eks:nodegroup-name", "gpu-ng")],
            '{"availability_zone": "us-east-1a", "private_ip": "10.0.1.10"}',
        )
    ]
    launched = "SELECT resource_id, launched_at FROM resources WHERE resource_type = 'ec2:instance'"
    assert dict(select(warehouse, launched)) == fleet.launched_at


def test_groups_clusters_and_notebooks_carry_their_sizes(
    us_east_1: tuple[Fleet, Warehouse, InventoryResult],
) -> None:
    fleet, warehouse, _ = us_east_1

    rows = select(
        warehouse,
        """
        SELECT resource_id, resource_type, instance_type, purchase_option, cluster, node_group,
               state, account_id, details
        FROM resources WHERE resource_type <> 'ec2:instance' ORDER BY resource_type
        """,
    )
    assert [(*row[:-1], json.loads(row[-1])) for row in rows] == [
        (fleet.asg_arn, "autoscaling:group", None, None, "infer-b-asg", "infer-b-asg", None,
         ACCOUNT, {"min_size": 0, "desired_capacity": 1, "max_size": 2,
                   "instance_ids": [fleet.infer_gpu],
                   "launch_template": {"LaunchTemplateId": fleet.launch_template_id,
                                       "LaunchTemplateName": "infer-b", "Version": "$Latest"}}),
        (f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/train-a", "eks:cluster", None, None,
         "train-a", None, "ACTIVE", ACCOUNT, {"version": "1.31"}),
        (fleet.nodegroup_arn, "eks:nodegroup", "p4d.24xlarge", "OnDemand", "train-a", "gpu-ng",
         "ACTIVE", ACCOUNT, {"min_size": 0, "desired_capacity": 1, "max_size": 4,
                             "instance_types": ["p4d.24xlarge"]}),
        (f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:notebook-instance/research-nb",
         "sagemaker:notebook-instance", "ml.p3.2xlarge", "OnDemand", "research", None,
         "InService", ACCOUNT, {"name": "research-nb"}),
    ]  # fmt: skip


def test_second_refresh_updates_state_and_keeps_first_seen(aws: None, warehouse: Warehouse) -> None:
    fleet = build_fleet("us-east-1")
    refresh(warehouse, ["us-east-1"])
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2.stop_instances(InstanceIds=[fleet.train_gpu])
    ec2.terminate_instances(InstanceIds=[fleet.untagged])

    result = refresh(warehouse, ["us-east-1"], now=LATER)

    assert (result.resources, result.new) == (7, 0)
    assert result.notes == ("us-east-1: 1 terminated instance(s) left out",)
    assert select(
        warehouse,
        """
        SELECT resource_id, state, private_dns, first_seen, last_seen FROM resources
        WHERE resource_type = 'ec2:instance' ORDER BY private_dns
        """,
    ) == [
        (fleet.train_gpu, "stopped", "ip-10-0-1-10.ec2.internal", NOW, LATER),
        (fleet.infer_gpu, "running", "ip-10-0-1-11.ec2.internal", NOW, LATER),
        (fleet.batch, "running", "ip-10-0-1-12.ec2.internal", NOW, LATER),
        # Terminated: the row stays as last seen alive, with the DNS name GPU samples join on.
        (fleet.untagged, "running", "ip-10-0-1-13.ec2.internal", NOW, NOW),
    ]


def test_two_regions_are_read_into_one_snapshot(aws: None, warehouse: Warehouse) -> None:
    east, west = build_fleet("us-east-1"), build_fleet("eu-west-1")

    result = refresh(warehouse, ["us-east-1", "eu-west-1"])

    assert result.resources == 16
    assert select(
        warehouse,
        """
        SELECT region, resource_type, count(*) FROM resources
        GROUP BY ALL ORDER BY region, resource_type
        """,
    ) == [
        ("eu-west-1", "autoscaling:group", 1),
        ("eu-west-1", "ec2:instance", 4),
        ("eu-west-1", "eks:cluster", 1),
        ("eu-west-1", "eks:nodegroup", 1),
        ("eu-west-1", "sagemaker:notebook-instance", 1),
        ("us-east-1", "autoscaling:group", 1),
        ("us-east-1", "ec2:instance", 4),
        ("us-east-1", "eks:cluster", 1),
        ("us-east-1", "eks:nodegroup", 1),
        ("us-east-1", "sagemaker:notebook-instance", 1),
    ]
    assert select(
        warehouse,
        """
        SELECT resource_id, region, cluster, private_dns FROM resources
        WHERE resource_id IN (?, ?) ORDER BY region
        """,
        east.train_gpu,
        west.train_gpu,
    ) == [
        (west.train_gpu, "eu-west-1", "train-a", "ip-10-0-1-10.eu-west-1.compute.internal"),
        (east.train_gpu, "us-east-1", "train-a", "ip-10-0-1-10.ec2.internal"),
    ]


def test_no_regions_reads_the_sessions_default_region(aws: None) -> None:
    for region in ("us-east-1", "eu-west-1"):
        boto3.client("ec2", region_name=region).run_instances(
            ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="m6i.large"
        )

    snapshot = read_aws_inventory(session=boto3.Session(region_name="eu-west-1"), now=NOW)

    assert snapshot.uri == "aws:eu-west-1"
    assert snapshot.table.select(["region", "resource_type"]).to_pylist() == [
        {"region": "eu-west-1", "resource_type": "ec2:instance"}
    ]


def test_access_denied_names_the_call_and_region(aws: None, warehouse: Warehouse) -> None:
    session = boto3.Session(region_name="us-east-1")

    def refuse(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "UnauthorizedOperation", "Message": "You are not authorized."}
        return AWSResponse("https://ec2.us-east-1.amazonaws.com/", 403, {}, None), {"Error": error}

    session.events.register("before-call.ec2.DescribeInstances", refuse)

    expected = (
        "ec2.describe_instances in us-east-1: UnauthorizedOperation: You are not authorized. "
        "(finops needs the read-only permission ec2:DescribeInstances)"
    )
    with pytest.raises(IngestError) as raised:
        refresh(warehouse, ["us-east-1"], session=session)
    assert str(raised.value) == expected
    assert select(warehouse, "SELECT status, error FROM ingest_runs") == [("failed", expected)]
    assert select(warehouse, "SELECT count(*) FROM resources") == [(0,)]


def test_region_without_an_eks_endpoint_is_noted_and_the_rest_kept(
    aws: None, warehouse: Warehouse
) -> None:
    build_fleet("us-east-1")
    session = boto3.Session(region_name="us-east-1")

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://eks.us-east-1.amazonaws.com/clusters")

    session.events.register("before-call.eks.ListClusters", unreachable)

    result = refresh(warehouse, ["us-east-1"], session=session)

    assert result.notes == (
        "us-east-1: eks skipped, no endpoint answered at "
        "https://eks.us-east-1.amazonaws.com/clusters (is it offered in this region?)",
    )
    assert select(
        warehouse, "SELECT resource_type, count(*) FROM resources GROUP BY ALL ORDER BY 1"
    ) == [("autoscaling:group", 1), ("ec2:instance", 4), ("sagemaker:notebook-instance", 1)]
