"""AWS inventory: what runs in an account's regions, read from the EC2, Auto Scaling, EKS and
SageMaker APIs into one `ResourceSnapshot` for the warehouse's `resources` table.

What is read, and where it lands (every row has provider `aws` and its region):

| Resource (API) | resource_id / resource_type | cluster | node_group | other columns |
| --- | --- | --- | --- | --- |
| EC2 instance (`describe_instances`) | instance id / `ec2:instance` | EKS tag, else the Auto Scaling group, else the `cluster_tag` tag | `eks:nodegroup-name` tag, else the Auto Scaling group | instance_type; purchase_option from InstanceLifecycle; private_dns = node_name = PrivateDnsName; state; launched_at = LaunchTime; account_id = the reservation's OwnerId; details: availability_zone, private_ip |
| Auto Scaling group (`describe_auto_scaling_groups`) | group ARN / `autoscaling:group` | EKS tag, else the group name | `eks:nodegroup-name` tag, else the group name | state = Status (set only while deleting); launched_at = CreatedTime; details: min_size, desired_capacity, max_size, instance_ids, launch_template |
| EKS cluster (`list_clusters`, `describe_cluster`) | cluster ARN / `eks:cluster` | its name | - | state = status; launched_at = createdAt; details: version |
| EKS managed node group (`list_nodegroups`, `describe_nodegroup`) | node group ARN / `eks:nodegroup` | its cluster | its name | instance_type when it has one type; purchase_option from capacityType; state = status; details: min_size, desired_capacity, max_size (its scalingConfig), instance_types |
| SageMaker notebook instance (`list_notebook_instances`, `list_tags`) | notebook ARN / `sagemaker:notebook-instance` | the `cluster_tag` tag | - | instance_type (ml.*); purchase_option OnDemand; state = NotebookInstanceStatus; launched_at = CreationTime; details: name |

The EKS tags are `eks:cluster-name` and `aws:eks:cluster-name`; the Auto Scaling group of an
instance is its `aws:autoscaling:groupName` tag. Purchase options: InstanceLifecycle `spot` ->
Spot, `scheduled` -> Scheduled, `capacity-block` -> CapacityBlock, absent -> OnDemand;
capacityType SPOT / ON_DEMAND / CAPACITY_BLOCK likewise. An unknown value is kept as AWS spells it.
account_id of the other resources is the account in their ARN. Tags become a MAP column.

Terminated instances are left out (and counted in the notes): AWS no longer reports their
private DNS name, so leaving them out keeps the row the inventory already holds, with the
DNS name GPU samples join on and the `last_seen` of the last time the instance was seen alive.

Throttling and transient failures are retried by botocore (adaptive mode, 8 attempts). Any
other refusal (AccessDenied, an expired token) fails the snapshot with an `IngestError` naming
the call and region. A region where the EKS or SageMaker endpoint still does not answer after
those retries (the service is not offered there) is skipped for that service, with a note, and
the rest is kept. `regions=None` reads the session's default region only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

import boto3
import pyarrow as pa
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from finops.errors import IngestError
from finops.warehouse import ResourceSnapshot
from finops.warehouse.schema import RESOURCE_COLUMNS

RETRIES = Config(retries={"mode": "adaptive", "max_attempts": 8})
EKS_CLUSTER_TAGS = ("eks:cluster-name", "aws:eks:cluster-name")
EKS_NODEGROUP_TAG = "eks:nodegroup-name"
ASG_TAG = "aws:autoscaling:groupName"
INSTANCE_LIFECYCLES: dict[str, str] = {
    "spot": "Spot",
    "scheduled": "Scheduled",
    "capacity-block": "CapacityBlock",
}
CAPACITY_TYPES: dict[str, str] = {
    "ON_DEMAND": "OnDemand",
    "SPOT": "Spot",
    "CAPACITY_BLOCK": "CapacityBlock",
}
OPTIONAL_SERVICES = ("eks", "sagemaker")
"""Services not offered in every region: an unreachable endpoint skips them, with a note."""

_ACCESS_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
_ARROW_TYPES: dict[str, pa.DataType] = {
    "launched_at": pa.timestamp("us", tz="UTC"),
    "tags": pa.map_(pa.string(), pa.string()),
}

Row = dict[str, Any]


def read_aws_inventory(
    *,
    regions: list[str] | None = None,
    cluster_tag: str = "cluster",
    session: boto3.session.Session | None = None,
    now: datetime,
) -> ResourceSnapshot:
    """Read the resources of `regions` (None or empty: the session's default region only).

    `session` defaults to boto3's default credential chain; `cluster_tag` is the tag key that
    names the cluster of a resource that is neither in EKS nor in an Auto Scaling group.
    """
    session = session or boto3.Session()
    if not regions:
        if not session.region_name:
            raise IngestError(
                "aws: no region given and none configured; pass --region or set AWS_REGION"
            )
        regions = [session.region_name]
    regions = list(dict.fromkeys(regions))
    rows: list[Row] = []
    notes: list[str] = []
    for region in regions:
        api = _RegionApi(session, region)
        rows += _instances(api, cluster_tag, notes)
        rows += _auto_scaling_groups(api)
        optional = (
            ("eks", partial(_eks, api)),
            ("sagemaker", partial(_notebooks, api, cluster_tag)),
        )
        for service, read in optional:
            try:
                rows += read()
            except _NoEndpoint as exc:
                notes.append(f"{region}: {service} skipped, {exc} (is it offered in this region?)")
    return ResourceSnapshot(
        uri=f"aws:{','.join(regions)}", table=_table(rows), seen_at=now, notes=notes
    )


class _NoEndpoint(Exception):
    """A service's endpoint did not answer in a region."""


class _RegionApi:
    """One region's clients; every call's failure is an IngestError naming the call and region."""

    def __init__(self, session: boto3.session.Session, region: str) -> None:
        self.session = session
        self.region = region
        self._clients: dict[str, Any] = {}

    def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        with self._named(service, operation):
            response: dict[str, Any] = getattr(self._client(service), operation)(**params)
            return response

    def pages(self, service: str, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
        with self._named(service, operation):
            yield from self._client(service).get_paginator(operation).paginate(**params)

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service, region_name=self.region, config=RETRIES
            )
        return self._clients[service]

    @contextmanager
    def _named(self, service: str, operation: str) -> Iterator[None]:
        call = f"{service}.{operation} in {self.region}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            hint = (
                f" (finops needs the read-only permission {service}:{exc.operation_name})"
                if code in _ACCESS_DENIED
                else ""
            )
            raise IngestError(f"{call}: {code}: {error.get('Message', '')}{hint}") from None
        except BotoCoreError as exc:
            if isinstance(exc, EndpointConnectionError) and service in OPTIONAL_SERVICES:
                raise _NoEndpoint(f"no endpoint answered at {exc.kwargs['endpoint_url']}") from None
            raise IngestError(f"{call}: {exc}") from None


def _instances(api: _RegionApi, cluster_tag: str, notes: list[str]) -> list[Row]:
    rows: list[Row] = []
    terminated = 0
    for page in api.pages("ec2", "describe_instances"):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                if instance["State"]["Name"] == "terminated":
                    terminated += 1
                    continue
                tags = _tag_dict(instance.get("Tags", []))
                lifecycle = instance.get("InstanceLifecycle")
                dns = instance.get("PrivateDnsName") or None
                rows.append(
                    _row(
                        resource_id=instance["InstanceId"],
                        account_id=reservation["OwnerId"],
                        region=api.region,
                        resource_type="ec2:instance",
                        instance_type=instance["InstanceType"],
                        purchase_option=(
                            INSTANCE_LIFECYCLES.get(lifecycle, lifecycle)
                            if lifecycle
                            else "OnDemand"
                        ),
                        cluster=(
                            _first(tags, EKS_CLUSTER_TAGS)
                            or tags.get(ASG_TAG)
                            or tags.get(cluster_tag)
                        ),
                        node_group=tags.get(EKS_NODEGROUP_TAG) or tags.get(ASG_TAG),
                        private_dns=dns,
                        node_name=dns,
                        state=instance["State"]["Name"],
                        launched_at=instance.get("LaunchTime"),
                        tags=tags,
                        details={
                            "availability_zone": instance.get("Placement", {}).get(
                                "AvailabilityZone"
                            ),
                            "private_ip": instance.get("PrivateIpAddress"),
                        },
                    )
                )
    if terminated:
        notes.append(f"{api.region}: {terminated} terminated instance(s) left out")
    return rows


def _auto_scaling_groups(api: _RegionApi) -> list[Row]:
    rows: list[Row] = []
    for page in api.pages("autoscaling", "describe_auto_scaling_groups"):
        for group in page["AutoScalingGroups"]:
            name = group["AutoScalingGroupName"]
            tags = _tag_dict(group.get("Tags", []))
            mixed = group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {})
            rows.append(
                _row(
                    resource_id=group["AutoScalingGroupARN"],
                    account_id=_arn_account(group["AutoScalingGroupARN"]),
                    region=api.region,
                    resource_type="autoscaling:group",
                    cluster=_first(tags, EKS_CLUSTER_TAGS) or name,
                    node_group=tags.get(EKS_NODEGROUP_TAG) or name,
                    state=group.get("Status"),
                    launched_at=group.get("CreatedTime"),
                    tags=tags,
                    details={
                        "min_size": group["MinSize"],
                        "desired_capacity": group["DesiredCapacity"],
                        "max_size": group["MaxSize"],
                        "instance_ids": [i["InstanceId"] for i in group.get("Instances", [])],
                        "launch_template": (
                            group.get("LaunchTemplate") or mixed.get("LaunchTemplateSpecification")
                        ),
                    },
                )
            )
    return rows


def _eks(api: _RegionApi) -> list[Row]:
    rows: list[Row] = []
    for page in api.pages("eks", "list_clusters"):
        for name in page["clusters"]:
            cluster = api.call("eks", "describe_cluster", name=name)["cluster"]
            rows.append(
                _row(
                    resource_id=cluster["arn"],
                    account_id=_arn_account(cluster["arn"]),
                    region=api.region,
                    resource_type="eks:cluster",
                    cluster=name,
                    state=cluster.get("status"),
                    launched_at=cluster.get("createdAt"),
                    tags=cluster.get("tags") or {},
                    details={"version": cluster.get("version")},
                )
            )
            rows += _nodegroups(api, name)
    return rows


def _nodegroups(api: _RegionApi, cluster: str) -> list[Row]:
    rows: list[Row] = []
    for page in api.pages("eks", "list_nodegroups", clusterName=cluster):
        for name in page["nodegroups"]:
            group = api.call("eks", "describe_nodegroup", clusterName=cluster, nodegroupName=name)[
                "nodegroup"
            ]
            types = group.get("instanceTypes") or []
            capacity = group.get("capacityType")
            scaling = group.get("scalingConfig", {})
            rows.append(
                _row(
                    resource_id=group["nodegroupArn"],
                    account_id=_arn_account(group["nodegroupArn"]),
                    region=api.region,
                    resource_type="eks:nodegroup",
                    instance_type=types[0] if len(types) == 1 else None,
                    purchase_option=CAPACITY_TYPES.get(capacity, capacity) if capacity else None,
                    cluster=cluster,
                    node_group=name,
                    state=group.get("status"),
                    launched_at=group.get("createdAt"),
                    tags=group.get("tags") or {},
                    details={
                        "min_size": scaling.get("minSize"),
                        "desired_capacity": scaling.get("desiredSize"),
                        "max_size": scaling.get("maxSize"),
                        "instance_types": types,
                    },
                )
            )
    return rows


def _notebooks(api: _RegionApi, cluster_tag: str) -> list[Row]:
    rows: list[Row] = []
    for page in api.pages("sagemaker", "list_notebook_instances"):
        for notebook in page["NotebookInstances"]:
            arn = notebook["NotebookInstanceArn"]
            tags = _tag_dict(
                [t for p in api.pages("sagemaker", "list_tags", ResourceArn=arn) for t in p["Tags"]]
            )
            rows.append(
                _row(
                    resource_id=arn,
                    account_id=_arn_account(arn),
                    region=api.region,
                    resource_type="sagemaker:notebook-instance",
                    instance_type=notebook.get("InstanceType"),
                    purchase_option="OnDemand",
                    cluster=tags.get(cluster_tag),
                    state=notebook.get("NotebookInstanceStatus"),
                    launched_at=notebook.get("CreationTime"),
                    tags=tags,
                    details={"name": notebook["NotebookInstanceName"]},
                )
            )
    return rows


def _row(**values: Any) -> Row:
    return {**dict.fromkeys(RESOURCE_COLUMNS), "provider": "aws", **values}


def _tag_dict(tags: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in tags}


def _first(tags: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((tags[k] for k in keys if tags.get(k)), None)


def _arn_account(arn: str) -> str:
    return arn.split(":")[4]


def _table(rows: list[Row]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [r[name] for r in rows] for name in RESOURCE_COLUMNS}
    columns["tags"] = [list(tags.items()) for tags in columns["tags"]]
    columns["details"] = [json.dumps(d, sort_keys=True) for d in columns["details"]]
    return pa.table(
        {
            name: pa.array(values, _ARROW_TYPES.get(name, pa.string()))
            for name, values in columns.items()
        }
    )
