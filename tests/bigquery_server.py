"""A stand-in for BigQuery's REST API on loopback, holding one billing export table.

It answers `jobs.query` (POST /bigquery/v2/projects/{project}/queries), the one call that
google-cloud-bigquery's `query_and_wait` makes when a job completes at once, for the two
queries the GCP collector sends: the distinct invoice months, and the rows of some
invoice months (`@months`). Responses follow the real export table's schema (RECORD and
REPEATED fields) and BigQuery's `f`/`v` row encoding; any other call is answered 404.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery


def _field(name: str, kind: str, mode: str = "NULLABLE", fields: list | None = None) -> dict:
    spec: dict[str, Any] = {"name": name, "type": kind, "mode": mode}
    if fields is not None:
        spec["fields"] = fields
    return spec


def _key_values(name: str) -> dict:
    return _field(name, "RECORD", "REPEATED", [_field("key", "STRING"), _field("value", "STRING")])


EXPORT_SCHEMA: list[dict] = [
    _field("billing_account_id", "STRING"),
    _field("service", "RECORD", fields=[_field("id", "STRING"), _field("description", "STRING")]),
    _field("sku", "RECORD", fields=[_field("id", "STRING"), _field("description", "STRING")]),
    _field("usage_start_time", "TIMESTAMP"),
    _field("usage_end_time", "TIMESTAMP"),
    _field(
        "project",
        "RECORD",
        fields=[_field("id", "STRING"), _field("name", "STRING"), _key_values("labels")],
    ),
    _key_values("labels"),
    _key_values("system_labels"),
    _field("location", "RECORD", fields=[_field("region", "STRING"), _field("zone", "STRING")]),
    _field("cost", "FLOAT"),
    _field("currency", "STRING"),
    _field(
        "usage",
        "RECORD",
        fields=[
            _field("amount", "FLOAT"),
            _field("unit", "STRING"),
            _field("amount_in_pricing_units", "FLOAT"),
            _field("pricing_unit", "STRING"),
        ],
    ),
    _field(
        "credits",
        "RECORD",
        "REPEATED",
        [
            _field("name", "STRING"),
            _field("amount", "FLOAT"),
            _field("full_name", "STRING"),
            _field("id", "STRING"),
            _field("type", "STRING"),
        ],
    ),
    _field("invoice", "RECORD", fields=[_field("month", "STRING")]),
    _field("cost_type", "STRING"),
    _field(
        "resource", "RECORD", fields=[_field("name", "STRING"), _field("global_name", "STRING")]
    ),
    _field("cost_at_list", "FLOAT"),
]
"""The detailed usage cost export's columns that the tests fill (a subset of the real ones)."""


def _cell(spec: dict, value: Any) -> dict:
    if spec["mode"] == "REPEATED":
        item = {**spec, "mode": "NULLABLE"}
        return {"v": [_cell(item, v) for v in value or []]}
    if value is None:
        return {"v": None}
    if spec["type"] == "RECORD":
        return {"v": {"f": [_cell(f, value.get(f["name"])) for f in spec["fields"]]}}
    if spec["type"] == "TIMESTAMP":
        # Asked for with formatOptions.useInt64Timestamp: microseconds since the epoch.
        moment = datetime.fromisoformat(value.replace(" UTC", "+00:00"))
        return {"v": str(int(moment.timestamp() * 1_000_000))}
    return {"v": str(value)}


@dataclass
class FakeBigQuery:
    """The export table's rows (as `bq extract` would write them) and every query received."""

    rows: list[dict]
    queries: list[dict] = field(default_factory=list)

    def answer(self, request: dict) -> dict:
        self.queries.append(request)
        if "SELECT DISTINCT invoice.month" in request["query"]:
            schema = [_field("month", "STRING")]
            months = sorted({r["invoice"]["month"] for r in self.rows})
            rows = [{"month": m} for m in months]
        else:
            schema = EXPORT_SCHEMA
            wanted = {v["value"] for v in month_parameter(request)}
            rows = [r for r in self.rows if r["invoice"]["month"] in wanted]
        return {
            "kind": "bigquery#queryResponse",
            "jobComplete": True,
            "jobReference": {
                "projectId": "p",
                "jobId": f"job{len(self.queries)}",
                "location": "US",
            },
            "schema": {"fields": schema},
            "rows": [{"f": [_cell(spec, r.get(spec["name"])) for spec in schema]} for r in rows],
            "totalRows": str(len(rows)),
        }


def month_parameter(request: dict) -> list[dict]:
    """The `@months` query parameter's array values, as the client sent them."""
    (parameter,) = [p for p in request.get("queryParameters", []) if p["name"] == "months"]
    assert parameter["parameterType"] == {"type": "ARRAY", "arrayType": {"type": "STRING"}}
    return parameter["parameterValue"]["arrayValues"]


@contextmanager
def bigquery_serving(table: FakeBigQuery) -> Iterator[bigquery.Client]:
    """Serve `table` on 127.0.0.1; yields a real client pointed at it."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if not self.path.startswith("/bigquery/v2/projects/p/queries"):
                self._reply(404, {"error": {"code": 404, "message": f"no route {self.path}"}})
                return
            length = int(self.headers.get("Content-Length", 0))
            self._reply(200, table.answer(json.loads(self.rfile.read(length))))

        def do_GET(self) -> None:
            self._reply(404, {"error": {"code": 404, "message": f"no route {self.path}"}})

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield bigquery.Client(
            project="p",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": f"http://127.0.0.1:{server.server_port}"},
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
