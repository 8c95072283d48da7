"""Google Cloud executors: Compute Engine instances and GKE node pools, through the
google-cloud-compute and google-cloud-container clients (REST transport).

| type | stop | start | remembered |
| --- | --- | --- | --- |
| gce-instance | `instances.stop` | `instances.start` | - |
| gke-nodepool | autoscaling off (`setAutoscaling`), then `setSize` 0 | `setSize` to the remembered nodes per zone, then the remembered autoscaling | node_count, nodes_per_zone, autoscaling (enabled, min, max) |

A node pool's current size is the sum of its managed instance groups' target sizes
(`instanceGroupManagers.get` on each of the pool's `instanceGroupUrls`, one per zone): the
pool itself reports only the size it was created with. `setSize` takes a count per zone,
so restore gives each zone the largest count any zone had. Operations are waited for (polled until DONE, up
to `actions.operation_timeout_s`); one that ends in error fails the action. Calls go through
`Retry`, so 429 and 503 answers are retried with backoff.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as google_errors
from google.cloud import compute_v1, container_v1

from finops.actions.retry import Retry
from finops.actions.targets import Executor, ResourceState, Status, Target
from finops.errors import ActionError

INSTANCE_STATUS: dict[str, Status] = {
    "RUNNING": "running",
    "TERMINATED": "stopped",
    "STOPPED": "stopped",
    "SUSPENDED": "stopped",
    "PROVISIONING": "changing",
    "STAGING": "changing",
    "STOPPING": "changing",
    "SUSPENDING": "changing",
    "REPAIRING": "changing",
}
NODE_POOL_STATUS: dict[str, Status] = {
    "RUNNING": "running",
    "RUNNING_WITH_ERROR": "running",
    "PROVISIONING": "changing",
    "RECONCILING": "changing",
    "STOPPING": "gone",
    "ERROR": "gone",
}
_GROUP_URL = re.compile(r"projects/([^/]+)/zones/([^/]+)/instanceGroupManagers/([^/]+)$")


@dataclass(frozen=True)
class GcpClients:
    instances: compute_v1.InstancesClient
    instance_groups: compute_v1.InstanceGroupManagersClient
    clusters: container_v1.ClusterManagerClient

    @classmethod
    def default(cls) -> GcpClients:
        """Clients with Application Default Credentials."""
        return cls(
            compute_v1.InstancesClient(transport="rest"),
            compute_v1.InstanceGroupManagersClient(transport="rest"),
            container_v1.ClusterManagerClient(transport="rest"),
        )


class GceInstances:
    def __init__(self, clients: GcpClients, retry: Retry, timeout_s: float) -> None:
        self.clients = clients
        self.retry = retry
        self.timeout_s = timeout_s

    def _where(self, target: Target) -> dict[str, str]:
        assert target.project is not None
        assert target.zone is not None
        return {"project": target.project, "zone": target.zone, "instance": target.resource_id}

    def describe(self, target: Target) -> ResourceState:
        try:
            instance = self.retry(self.clients.instances.get, **self._where(target))
        except google_errors.NotFound:
            return ResourceState("gone", "not found")
        native = instance.status
        return ResourceState(INSTANCE_STATUS.get(native, "changing"), native, dict(instance.labels))

    def stop(self, target: Target, before: ResourceState) -> ResourceState:
        self._wait(self.retry(self.clients.instances.stop, **self._where(target)), target)
        return self.describe(target)

    def start(self, target: Target, remembered: Mapping[str, Any]) -> ResourceState:
        self._wait(self.retry(self.clients.instances.start, **self._where(target)), target)
        return self.describe(target)

    def _wait(self, operation: Any, target: Target) -> None:
        """Wait for a Compute Engine operation; its error, if any, fails the action."""
        try:
            operation.result(timeout=self.timeout_s)
        except google_errors.GoogleAPICallError as exc:
            raise ActionError(f"{target.label}: the operation failed: {exc.message}") from None
        except TimeoutError:
            raise ActionError(
                f"{target.label}: the operation did not finish in {self.timeout_s:.0f} s"
            ) from None


class GkeNodePools:
    def __init__(
        self, clients: GcpClients, retry: Retry, timeout_s: float, poll_s: float = 2.0
    ) -> None:
        self.clients = clients
        self.retry = retry
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    @staticmethod
    def name(target: Target) -> str:
        return (
            f"projects/{target.project}/locations/{target.zone}/clusters/{target.cluster}"
            f"/nodePools/{target.resource_id}"
        )

    def describe(self, target: Target) -> ResourceState:
        try:
            pool = self.retry(self.clients.clusters.get_node_pool, name=self.name(target))
        except google_errors.NotFound:
            return ResourceState("gone", "not found")
        native = container_v1.NodePool.Status(pool.status).name
        sizes = [self._group_size(url) for url in pool.instance_group_urls]
        node_count = sum(sizes)
        scaling = pool.autoscaling
        capacity = {
            "node_count": node_count,
            "nodes_per_zone": max(sizes, default=0),
            "autoscaling": {
                "enabled": scaling.enabled,
                "min": scaling.min_node_count,
                "max": scaling.max_node_count,
            },
        }
        status = NODE_POOL_STATUS.get(native, "changing")
        if status == "running" and node_count == 0:
            status = "stopped"
        labels = {**pool.config.labels, **pool.config.resource_labels}
        return ResourceState(status, native, labels, capacity)

    def _group_size(self, url: str) -> int:
        match = _GROUP_URL.search(url)
        if not match:
            raise ActionError(f"node pool instance group {url!r} is not a zonal group URL")
        project, zone, name = match.groups()
        group = self.retry(
            self.clients.instance_groups.get,
            project=project,
            zone=zone,
            instance_group_manager=name,
        )
        return int(group.target_size)

    def stop(self, target: Target, before: ResourceState) -> ResourceState:
        assert before.capacity is not None
        if before.capacity["autoscaling"]["enabled"]:
            self._autoscale(target, container_v1.NodePoolAutoscaling(enabled=False))
        self._resize(target, 0)
        return self.describe(target)

    def start(self, target: Target, remembered: Mapping[str, Any]) -> ResourceState:
        capacity = remembered.get("capacity") or {}
        if "nodes_per_zone" not in capacity or "autoscaling" not in capacity:
            raise ActionError(f"{target.label}: no remembered capacity to restore")
        self._resize(target, capacity["nodes_per_zone"])
        scaling = capacity["autoscaling"]
        if scaling["enabled"]:
            self._autoscale(
                target,
                container_v1.NodePoolAutoscaling(
                    enabled=True, min_node_count=scaling["min"], max_node_count=scaling["max"]
                ),
            )
        return self.describe(target)

    def _resize(self, target: Target, node_count: int) -> None:
        self._operate(
            target,
            self.clients.clusters.set_node_pool_size,
            container_v1.SetNodePoolSizeRequest(name=self.name(target), node_count=node_count),
        )

    def _autoscale(self, target: Target, autoscaling: container_v1.NodePoolAutoscaling) -> None:
        self._operate(
            target,
            self.clients.clusters.set_node_pool_autoscaling,
            container_v1.SetNodePoolAutoscalingRequest(
                name=self.name(target), autoscaling=autoscaling
            ),
        )

    def _operate(self, target: Target, call: Callable[..., Any], request: Any) -> None:
        """Start a GKE operation and poll it until DONE; its error fails the action."""
        operation = self.retry(call, request=request)
        deadline = time.monotonic() + self.timeout_s
        done = container_v1.Operation.Status.DONE
        while operation.status != done:
            if time.monotonic() > deadline:
                raise ActionError(
                    f"{target.label}: operation {operation.name} did not finish in "
                    f"{self.timeout_s:.0f} s"
                )
            time.sleep(self.poll_s)
            operation = self.retry(
                self.clients.clusters.get_operation,
                request=container_v1.GetOperationRequest(
                    name=f"projects/{target.project}/locations/{target.zone}"
                    f"/operations/{operation.name}"
                ),
            )
        if operation.error.message:
            raise ActionError(
                f"{target.label}: operation {operation.name} failed: {operation.error.message}"
            )


def gcp_executors(
    clients: GcpClients, retry: Retry, timeout_s: float, poll_s: float = 2.0
) -> dict[str, Executor]:
    return {
        "gce-instance": GceInstances(clients, retry, timeout_s),
        "gke-nodepool": GkeNodePools(clients, retry, timeout_s, poll_s),
    }
