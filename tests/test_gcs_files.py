"""gs:// locations through the real google-cloud-storage client and a loopback emulator."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from finops.collectors.focus import read_focus
from finops.errors import IngestError
from finops.warehouse import Warehouse
from tests.conftest import JUNE_ROWS, MAY_ROWS, write_csv


class _Storage(BaseHTTPRequestHandler):
    """The two calls the client makes here: objects.list and a media download."""

    objects: ClassVar[dict[str, dict[str, bytes]]] = {}

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = url.path.split("/")
        if url.path.startswith("/storage/v1/b/") and url.path.endswith("/o"):
            bucket = parts[4]
            if bucket not in self.objects:
                return self._send(404, {"error": {"code": 404, "message": "bucket not found"}})
            prefix = query.get("prefix", [""])[0]
            items = [
                {
                    "kind": "storage#object",
                    "name": name,
                    "bucket": bucket,
                    "size": str(len(data)),
                    "generation": "1",
                }
                for name, data in sorted(self.objects[bucket].items())
                if name.startswith(prefix)
            ]
            return self._send(200, {"kind": "storage#objects", "items": items})
        if url.path.startswith("/download/storage/v1/b/"):
            bucket, name = parts[5], urllib.parse.unquote("/".join(parts[7:]))
            data = self.objects.get(bucket, {}).get(name)
            if data is None:
                return self._send(404, {"error": {"code": 404, "message": "no such object"}})
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(data)
            return None
        return self._send(404, {"error": {"code": 404, "message": self.path}})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, dict[str, bytes]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Storage)
    _Storage.objects = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    yield _Storage.objects
    server.shutdown()


def test_focus_files_from_a_gcs_prefix(gcs: dict, tmp_path: Path) -> None:
    gcs["billing"] = {
        "focus/2026-05/part-0.csv": write_csv(tmp_path / "may.csv", MAY_ROWS).read_bytes(),
        "focus/2026-06/part-0.csv": write_csv(tmp_path / "june.csv", JUNE_ROWS).read_bytes(),
        "focus/README.txt": b"not data",
        "other/ignored.csv": b"x",
    }
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    result = warehouse.ingest_cost(
        lambda: read_focus("gs://billing/focus/"), source="gcs-focus", collector="focus", uri="gs"
    )
    assert (result.rows, result.billed_cost) == (7, Decimal("376.00"))

    june_only = read_focus("gs://billing/focus/2026-06/*.csv")
    assert june_only.rows == 2
    assert june_only.files[0].exists()
    june_only.cleanup()
    assert not june_only.files[0].exists()


def test_missing_bucket_is_a_clear_error(gcs: dict) -> None:
    with pytest.raises(
        IngestError, match=r"gs://nowhere/focus: cannot read from Cloud Storage: 404"
    ):
        read_focus("gs://nowhere/focus")


def test_gcp_billing_export_files_from_gcs(gcs: dict, tmp_path: Path) -> None:
    from finops.collectors.gcp_billing import read_gcp_export_files
    from tests.test_gcp_billing import RECORDS, billed_by_month, write_ndjson

    gcs["exports"] = {
        "billing/2026-05.json": write_ndjson(tmp_path / "e.json", RECORDS).read_bytes()
    }
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    warehouse.ingest_cost(
        lambda: read_gcp_export_files("gs://exports/billing/"),
        source="gcp-billing",
        collector="gcp-billing",
        uri="gs://exports/billing/",
    )
    # The same figures as the local-file test of the same records.
    assert billed_by_month(warehouse) == {"202605": Decimal("18.82"), "202606": Decimal("-1.01")}
