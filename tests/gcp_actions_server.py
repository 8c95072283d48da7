"""A stand-in for the Compute Engine and GKE REST APIs on loopback, for the action executors.

It answers the calls google-cloud-compute and google-cloud-container make (REST transport):

- GET  /compute/v1/projects/P/zones/Z/instances/NAME                 an instance
- POST /compute/v1/projects/P/zones/Z/instances/NAME/stop | /start   a DONE zone operation
- GET  /compute/v1/projects/P/zones/Z/instanceGroupManagers/NAME     a group's targetSize
- GET  /v1/projects/P/locations/L/clusters/C/nodePools/NAME          a node pool
- POST /v1/.../nodePools/NAME:setSize | :setAutoscaling              a RUNNING operation ...
- GET  /v1/projects/P/locations/L/operations/OP                      ... that is DONE when asked

Anything else is a 404. `throttle` queues (path fragment, status) answers to give before the
real one, to exercise retries. Every request is kept in `requests` as (method, path, body).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1, container_v1

from finops.actions.gcp import GcpClients

INSTANCE = re.compile(
    r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/instances/([^/]+)(/stop|/start)?$"
)
GROUP = re.compile(r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/instanceGroupManagers/([^/]+)$")
POOL = re.compile(
    r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/]+)/nodePools/([^/:]+)(:setSize|:setAutoscaling)?$"
)
OPERATION = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/operations/([^/]+)$")


@dataclass
class FakeGcp:
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By name: status and labels."""
    groups: dict[str, int] = field(default_factory=dict)
    """Managed instance group name -> target size."""
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By name: autoscaling, labels, the groups that carry its nodes."""
    throttle: list[tuple[str, int]] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    operations: int = 0

    def answer(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        self.requests.append((method, path, body))
        for index, (fragment, status) in enumerate(self.throttle):
            if fragment in path:
                del self.throttle[index]
                return status, {"error": {"code": status, "message": "slow down", "status": "x"}}
        if match := INSTANCE.match(path):
            return self._instance(method, match)
        if (match := GROUP.match(path)) and method == "GET":
            _, zone, name = match.groups()
            return 200, {"name": name, "zone": zone, "targetSize": self.groups[name]}
        if match := POOL.match(path):
            return self._pool(method, match, body)
        if (match := OPERATION.match(path)) and method == "GET":
            return 200, {"name": match.group(3), "status": "DONE"}
        return 404, {"error": {"code": 404, "message": f"no route {method} {path}"}}

    def _instance(self, method: str, match: re.Match[str]) -> tuple[int, dict[str, Any]]:
        _, zone, name, verb = match.groups()
        instance = self.instances.get(name)
        if instance is None:
            return 404, {"error": {"code": 404, "message": f"instance {name} not found"}}
        if method == "GET" and verb is None:
            return 200, {"name": name, "zone": zone, **instance}
        if method == "POST" and verb:
            instance["status"] = "TERMINATED" if verb == "/stop" else "RUNNING"
            self.operations += 1
            return 200, {
                "kind": "compute#operation",
                "name": f"operation-{self.operations}",
                "zone": zone,
                "operationType": verb[1:],
                "status": "DONE",
                "progress": 100,
            }
        return 404, {"error": {"code": 404, "message": "no such call"}}

    def _pool(self, method: str, match: re.Match[str], body: Any) -> tuple[int, dict[str, Any]]:
        project, location, _, name, verb = match.groups()
        pool = self.pools.get(name)
        if pool is None:
            return 404, {"error": {"code": 404, "message": f"node pool {name} not found"}}
        if method == "GET" and verb is None:
            return 200, {
                "name": name,
                "status": "RUNNING",
                "initialNodeCount": 1,
                "autoscaling": pool["autoscaling"],
                "config": {"labels": pool.get("labels", {}), "resourceLabels": {}},
                "instanceGroupUrls": [
                    f"https://www.googleapis.com/compute/v1/projects/{project}/zones/{location}"
                    f"/instanceGroupManagers/{group}"
                    for group in pool["groups"]
                ],
            }
        if method == "POST" and verb == ":setSize":
            # nodeCount is per zone (each zone's group gets it); JSON leaves a 0 out.
            for group in pool["groups"]:
                self.groups[group] = int(body.get("nodeCount", 0))
        elif method == "POST" and verb == ":setAutoscaling":
            pool["autoscaling"] = {"enabled": False, **body["autoscaling"]}
        else:
            return 404, {"error": {"code": 404, "message": "no such call"}}
        self.operations += 1
        return 200, {"name": f"operation-{self.operations}", "status": "RUNNING"}


@contextmanager
def gcp_serving(fake: FakeGcp) -> Iterator[GcpClients]:
    """Serve `fake` on 127.0.0.1; yields real clients pointed at it."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, answer = fake.answer(method, urlparse(self.path).path, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    options = {"api_endpoint": f"http://127.0.0.1:{server.server_port}"}
    credentials = AnonymousCredentials()
    try:
        yield GcpClients(
            compute_v1.InstancesClient(
                transport="rest", credentials=credentials, client_options=options
            ),
            compute_v1.InstanceGroupManagersClient(
                transport="rest", credentials=credentials, client_options=options
            ),
            container_v1.ClusterManagerClient(
                transport="rest", credentials=credentials, client_options=options
            ),
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
