"""AWS executors through boto3: EC2 instances, Auto Scaling groups, EKS managed node groups
and SageMaker notebook instances.

| type | stop | start | remembered |
| --- | --- | --- | --- |
| ec2-instance | `StopInstances` with `Hibernate` where the instance was launched with hibernation configured, falling back to a plain stop if hibernation is refused | `StartInstances` | - |
| asg | `UpdateAutoScalingGroup` MinSize=0, DesiredCapacity=0 | the remembered MinSize, DesiredCapacity, MaxSize | min, desired, max |
| eks-nodegroup | `UpdateNodegroupConfig` minSize=0, desiredSize=0 (maxSize kept: EKS needs it >= 1) | the remembered scalingConfig | min, desired, max |
| sagemaker-notebook | `StopNotebookInstance` | `StartNotebookInstance` | - |

Clients use the default credential chain and the target's region, with the SDK's own
retries off: `Retry` (actions.retry_*) is the one retry policy. Tags are read live, at act time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from finops.actions.retry import Retry, is_retryable
from finops.actions.targets import Executor, ResourceState, Status, Target
from finops.errors import ActionError

ONE_ATTEMPT = BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"})

EC2_STATUS: dict[str, Status] = {
    "running": "running",
    "stopped": "stopped",
    "pending": "changing",
    "stopping": "changing",
    "shutting-down": "gone",
    "terminated": "gone",
}
NOTEBOOK_STATUS: dict[str, Status] = {
    "InService": "running",
    "Stopped": "stopped",
    "Failed": "stopped",
    "Pending": "changing",
    "Stopping": "changing",
    "Updating": "changing",
    "Deleting": "gone",
}
NODEGROUP_STATUS: dict[str, Status] = {
    "ACTIVE": "running",
    "DEGRADED": "running",
    "CREATING": "changing",
    "UPDATING": "changing",
    "DELETING": "gone",
    "DELETE_FAILED": "gone",
    "CREATE_FAILED": "gone",
}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _gone(native: str) -> ResourceState:
    return ResourceState("gone", native)


def _scaled_status(capacity: Mapping[str, int]) -> Status:
    return "stopped" if capacity["desired"] == 0 and capacity["min"] == 0 else "running"


class AwsClients:
    """boto3 clients per (service, region) from one session, each call through `Retry`."""

    def __init__(self, retry: Retry, session: boto3.session.Session | None = None) -> None:
        self.retry = retry
        self.session = session or boto3.session.Session()
        self._clients: dict[tuple[str, str], Any] = {}

    def call(self, service: str, target: Target, operation: str, **params: Any) -> Any:
        key = (service, target.region or "")
        if key not in self._clients:
            self._clients[key] = self.session.client(
                service, region_name=target.region, config=ONE_ATTEMPT
            )
        return self.retry(getattr(self._clients[key], operation), **params)


class Ec2Instances:
    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def describe(self, target: Target) -> ResourceState:
        try:
            response = self.clients.call(
                "ec2", target, "describe_instances", InstanceIds=[target.resource_id]
            )
        except ClientError as exc:
            if _code(exc) == "InvalidInstanceID.NotFound":
                return _gone("not found")
            raise
        instances = [i for r in response["Reservations"] for i in r["Instances"]]
        if not instances:
            return _gone("not found")
        instance = instances[0]
        native = instance["State"]["Name"]
        return ResourceState(
            EC2_STATUS.get(native, "changing"),
            native,
            {t["Key"]: t["Value"] for t in instance.get("Tags", [])},
            details={
                "lifecycle": instance.get("InstanceLifecycle", "on-demand"),
                "hibernation_configured": bool(
                    instance.get("HibernationOptions", {}).get("Configured")
                ),
            },
        )

    def stop(self, target: Target, before: ResourceState) -> ResourceState:
        details: dict[str, Any] = {}
        hibernated = False
        if before.details.get("hibernation_configured"):
            try:
                self._stop(target, Hibernate=True)
                hibernated = True
            except ClientError as exc:
                if is_retryable(exc):
                    raise
                details["hibernation_refused"] = _code(exc)
        if not hibernated:
            self._stop(target)
        details["hibernated"] = hibernated
        after = self.describe(target)
        return ResourceState(after.status, after.native_status, after.tags, details=details)

    def _stop(self, target: Target, **options: Any) -> None:
        self.clients.call(
            "ec2", target, "stop_instances", InstanceIds=[target.resource_id], **options
        )

    def start(self, target: Target, remembered: Mapping[str, Any]) -> ResourceState:
        self.clients.call("ec2", target, "start_instances", InstanceIds=[target.resource_id])
        return self.describe(target)


class AutoScalingGroups:
    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    @staticmethod
    def name(target: Target) -> str:
        """The group's name, from a name or an ARN (`...:autoScalingGroupName/NAME`)."""
        return target.resource_id.rsplit("autoScalingGroupName/", 1)[-1]

    def describe(self, target: Target) -> ResourceState:
        response = self.clients.call(
            "autoscaling",
            target,
            "describe_auto_scaling_groups",
            AutoScalingGroupNames=[self.name(target)],
        )
        if not response["AutoScalingGroups"]:
            return _gone("not found")
        group = response["AutoScalingGroups"][0]
        if group.get("Status"):  # set only while the group is being deleted
            return _gone(group["Status"])
        capacity = {
            "min": group["MinSize"],
            "desired": group["DesiredCapacity"],
            "max": group["MaxSize"],
        }
        return ResourceState(
            _scaled_status(capacity),
            f"desired {capacity['desired']}",
            {t["Key"]: t["Value"] for t in group.get("Tags", [])},
            capacity,
        )

    def stop(self, target: Target, before: ResourceState) -> ResourceState:
        self._resize(target, min_size=0, desired=0)
        return self.describe(target)

    def start(self, target: Target, remembered: Mapping[str, Any]) -> ResourceState:
        capacity = _remembered_capacity(target, remembered)
        self._resize(target, capacity["min"], capacity["desired"], capacity["max"])
        return self.describe(target)

    def _resize(
        self, target: Target, min_size: int, desired: int, max_size: int | None = None
    ) -> None:
        sizes = {"MinSize": min_size, "DesiredCapacity": desired}
        if max_size is not None:
            sizes["MaxSize"] = max_size
        self.clients.call(
            "autoscaling",
            target,
            "update_auto_scaling_group",
            AutoScalingGroupName=self.name(target),
            **sizes,
        )


class EksNodegroups:
    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    @staticmethod
    def cluster_and_name(target: Target) -> tuple[str, str]:
        """From `cluster` + a name, or an ARN `...:nodegroup/CLUSTER/NAME/ID`."""
        if target.resource_id.startswith("arn:"):
            _, cluster, name, *_ = target.resource_id.split(":", 5)[-1].split("/")
            return cluster, name
        if not target.cluster:
            raise ActionError(f"{target.label}: a node group name needs its `cluster`")
        return target.cluster, target.resource_id

    def describe(self, target: Target) -> ResourceState:
        cluster, name = self.cluster_and_name(target)
        try:
            response = self.clients.call(
                "eks", target, "describe_nodegroup", clusterName=cluster, nodegroupName=name
            )
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return _gone("not found")
            raise
        group = response["nodegroup"]
        scaling = group["scalingConfig"]
        capacity = {
            "min": scaling["minSize"],
            "desired": scaling["desiredSize"],
            "max": scaling["maxSize"],
        }
        native = group["status"]
        status = NODEGROUP_STATUS.get(native, "changing")
        if status == "running":
            status = _scaled_status(capacity)
        return ResourceState(status, native, dict(group.get("tags", {})), capacity)

    def stop(self, target: Target, before: ResourceState) -> ResourceState:
        assert before.capacity is not None
        self._scale(target, {"minSize": 0, "desiredSize": 0, "maxSize": before.capacity["max"]})
        return self.describe(target)

    def start(self, target: Target, remembered: Mapping[str, Any]) -> ResourceState:
        capacity = _remembered_capacity(target, remembered)
        self._scale(
            target,
            {
                "minSize": capacity["min"],
                "desiredSize": capacity["desired"],
                "maxSize": capacity["max"],
            },
        )
        return self.describe(target)

    def _scale(self, target: Target, scaling: dict[str, int]) -> None:
        cluster, name = self.cluster_and_name(target)
        self.clients.call(
            "eks",
            target,
            "update_nodegroup_config",
            clusterName=cluster,
            nodegroupName=name,
            scalingConfig=scaling,
        )


class SageMakerNotebooks:
    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    @staticmethod
    def name(target: Target) -> str:
        """From a name or an ARN `...:notebook-instance/NAME`."""
        return target.resource_id.rsplit("notebook-instance/", 1)[-1]

    def describe(self, target: Target) -> ResourceState:
        try:
            notebook = self.clients.call(
                "sagemaker",
                target,
                "describe_notebook_instance",
                NotebookInstanceName=self.name(target),
            )
        except ClientError as exc:
            if _code(exc) == "ValidationException" and "RecordNotFound" in str(exc):
                return _gone("not found")
            raise
        tags = self.clients.call(
            "sagemaker", target, "list_tags", ResourceArn=notebook["NotebookInstanceArn"]
        )["Tags"]
        native = notebook["NotebookInstanceStatus"]
        return ResourceState(
            NOTEBOOK_STATUS.get(native, "changing"),
            native,
            {t["Key"]: t["Value"] for t in tags},
        )

    def stop(self, target: Target, before: ResourceState) -> ResourceState:
        self.clients.call(
            "sagemaker", target, "stop_notebook_instance", NotebookInstanceName=self.name(target)
        )
        return self.describe(target)

    def start(self, target: Target, remembered: Mapping[str, Any]) -> ResourceState:
        self.clients.call(
            "sagemaker", target, "start_notebook_instance", NotebookInstanceName=self.name(target)
        )
        return self.describe(target)


def _remembered_capacity(target: Target, remembered: Mapping[str, Any]) -> Mapping[str, int]:
    capacity = remembered.get("capacity")
    if not isinstance(capacity, Mapping) or not {"min", "desired", "max"} <= capacity.keys():
        raise ActionError(f"{target.label}: no remembered capacity to restore")
    return capacity


def aws_executors(clients: AwsClients) -> dict[str, Executor]:
    """One executor per AWS resource type, sharing `clients`."""
    return {
        "ec2-instance": Ec2Instances(clients),
        "asg": AutoScalingGroups(clients),
        "eks-nodegroup": EksNodegroups(clients),
        "sagemaker-notebook": SageMakerNotebooks(clients),
    }
