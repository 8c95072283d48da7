"""What an action touches (a target, as a recommendation's evidence names it) and what an
executor saw of it (its state), plus the interface every executor implements.

A recommendation's `evidence` JSON carries `targets`, a list of objects:

| key | meaning |
| --- | --- |
| provider | `aws` or `gcp` |
| resource_type | `ec2-instance`, `asg`, `eks-nodegroup`, `sagemaker-notebook`, `gce-instance`, `gke-nodepool` |
| resource_id | instance id; Auto Scaling group name or ARN; node group name or ARN; notebook name or ARN; GCE instance name; GKE node pool name |
| region | AWS region (required for AWS); GCP region, optional |
| account_id | AWS account or GCP project number, optional (for the record) |
| cluster | EKS cluster of a node group (or in its ARN); GKE cluster of a node pool |
| zone, project | GCP: the instance's zone, the node pool's cluster location; the project |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from finops.errors import ActionError

RESOURCE_TYPES: dict[str, str] = {
    "ec2-instance": "aws",
    "asg": "aws",
    "eks-nodegroup": "aws",
    "sagemaker-notebook": "aws",
    "gce-instance": "gcp",
    "gke-nodepool": "gcp",
}
"""Every resource type finops can stop, and the provider it belongs to."""

Status = Literal["running", "stopped", "changing", "gone"]
"""Our words for a resource's state: serving, stopped (or scaled to zero), between the two
(starting, stopping, updating), or no longer there."""


@dataclass(frozen=True)
class Target:
    """One resource an action is to stop or start."""

    provider: str
    resource_type: str
    resource_id: str
    region: str | None = None
    account_id: str | None = None
    cluster: str | None = None
    zone: str | None = None
    project: str | None = None

    @classmethod
    def parse(cls, data: Any, where: str) -> Target:
        """Read one entry of evidence `targets`; `where` names it in errors."""
        if not isinstance(data, Mapping):
            raise ActionError(f"{where}: expected an object, found {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ActionError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("provider", "resource_type", "resource_id"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ActionError(f"{where}: `{key}` is missing")
        kind = data["resource_type"]
        if kind not in RESOURCE_TYPES:
            raise ActionError(
                f"{where}: resource_type {kind!r} is not one of {', '.join(RESOURCE_TYPES)}"
            )
        if RESOURCE_TYPES[kind] != data["provider"]:
            raise ActionError(f"{where}: a {kind} belongs to {RESOURCE_TYPES[kind]}")
        required = {
            "aws": ("region",),
            "gce-instance": ("zone", "project"),
            "gke-nodepool": ("zone", "project", "cluster"),
        }
        for key in (*required.get(data["provider"], ()), *required.get(kind, ())):
            if not data.get(key):
                raise ActionError(f"{where}: `{key}` is missing (a {kind} needs it)")
        return cls(**{k: None if v is None else str(v) for k, v in data.items()})

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def label(self) -> str:
        """How a person names it: `ec2-instance i-0abc (eu-west-1)`."""
        where = self.zone or self.region
        return f"{self.resource_type} {self.resource_id}" + (f" ({where})" if where else "")


@dataclass(frozen=True)
class ResourceState:
    """What an executor saw: our status, the provider's own, tags, and capacity to remember."""

    status: Status
    native_status: str
    tags: Mapping[str, str] = field(default_factory=dict)
    capacity: Mapping[str, Any] | None = None
    """Scaling settings to give back on restore (min/desired/max, node count, autoscaling)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Anything else worth recording, e.g. that an instance hibernated."""

    def to_json(self) -> dict[str, Any]:
        state: dict[str, Any] = {"status": self.status, "native_status": self.native_status}
        if self.capacity is not None:
            state["capacity"] = dict(self.capacity)
        if self.details:
            state["details"] = dict(self.details)
        return state


class Executor(Protocol):
    """Stops and starts one kind of resource. Callers describe first and act only on a
    resource in the right state, so each call is safe to repeat."""

    def describe(self, target: Target) -> ResourceState: ...

    def stop(self, target: Target, before: ResourceState) -> ResourceState:
        """Stop (or scale to zero) a running resource; return the state after."""
        ...

    def start(self, target: Target, remembered: Mapping[str, Any]) -> ResourceState:
        """Start a stopped resource, giving back the capacity in `remembered`
        (a `ResourceState.to_json()` taken before it was stopped)."""
        ...
