"""A stand-in for the Cloud Billing Catalog REST API (cloudbilling.googleapis.com) on loopback.

It answers the two calls google-cloud-billing's CloudCatalogClient makes over REST:
`GET /v1/services` and `GET /v1/services/{id}/skus`, paginated with `pageToken` /
`nextPageToken` (a few SKUs a page, so the client must follow pages), in the real API's
JSON (camelCase fields, `unitPrice` as string `units` + integer `nanos`). It can answer
the first calls with 429, as the API does when a project exceeds its quota.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from google.auth.credentials import AnonymousCredentials
from google.cloud import billing_v1

COMPUTE_ENGINE_ID = "6F81-5844-456A"
SERVICES = [
    {
        "name": "services/95FF-2EF5-5EA1",
        "serviceId": "95FF-2EF5-5EA1",
        "displayName": "Cloud Storage",
        "businessEntityName": "businessEntities/GCP",
    },
    {
        "name": f"services/{COMPUTE_ENGINE_ID}",
        "serviceId": COMPUTE_ENGINE_ID,
        "displayName": "Compute Engine",
        "businessEntityName": "businessEntities/GCP",
    },
]


def sku(
    sku_id: str,
    description: str,
    resource_group: str,
    usage_type: str,
    regions: list[str],
    price: str,
    unit: str = "h",
) -> dict[str, Any]:
    """A SKU as the API returns it; `price` in USD per `unit`."""
    units, _, fraction = Decimal(price).quantize(Decimal("1e-9")).to_eng_string().partition(".")
    return {
        "name": f"services/{COMPUTE_ENGINE_ID}/skus/{sku_id}",
        "skuId": sku_id,
        "description": description,
        "category": {
            "serviceDisplayName": "Compute Engine",
            "resourceFamily": "Compute",
            "resourceGroup": resource_group,
            "usageType": usage_type,
        },
        "serviceRegions": regions,
        "pricingInfo": [
            {
                "summary": "",
                "pricingExpression": {
                    "usageUnit": unit,
                    "displayQuantity": 1,
                    "tieredRates": [
                        {
                            "startUsageAmount": 0,
                            "unitPrice": {
                                "currencyCode": "USD",
                                "units": units,
                                "nanos": int(fraction or 0),
                            },
                        }
                    ],
                    "usageUnitDescription": "gibibyte hour" if unit == "GiBy.h" else "hour",
                    "baseUnit": "By.s" if unit == "GiBy.h" else "s",
                    "baseUnitDescription": "byte second" if unit == "GiBy.h" else "second",
                    "baseUnitConversionFactor": 3865470566400 if unit == "GiBy.h" else 3600,
                },
                "currencyConversionRate": 1,
                "effectiveTime": "2026-05-30T12:04:11.374Z",
            }
        ],
        "serviceProviderName": "Google",
        "geoTaxonomy": {"type": "REGIONAL", "regions": regions},
    }


@dataclass
class FakeCatalog:
    skus: list[dict[str, Any]]
    page_size: int = 2
    throttle_first: int = 0
    """Answer this many requests with 429 before answering."""
    services: list[dict[str, Any]] = field(default_factory=lambda: list(SERVICES))
    refuse_with: int | None = None
    """Answer every request with this HTTP status (e.g. 403) instead."""
    requests: list[str] = field(default_factory=list)

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        self.requests.append(path)
        if len(self.requests) <= self.throttle_first:
            return 429, {
                "error": {
                    "code": 429,
                    "message": "Quota exceeded for quota metric 'Read requests'",
                    "status": "RESOURCE_EXHAUSTED",
                }
            }
        if self.refuse_with is not None:
            return self.refuse_with, {
                "error": {
                    "code": self.refuse_with,
                    "message": "The caller does not have permission",
                    "status": "PERMISSION_DENIED",
                }
            }
        url = urlparse(path)
        if url.path == "/v1/services":
            return 200, {"services": self.services, "nextPageToken": ""}
        if url.path == f"/v1/services/{COMPUTE_ENGINE_ID}/skus":
            start = int(parse_qs(url.query).get("pageToken", ["0"])[0] or 0)
            end = start + self.page_size
            return 200, {
                "skus": self.skus[start:end],
                "nextPageToken": str(end) if end < len(self.skus) else "",
            }
        return 404, {
            "error": {"code": 404, "message": f"no route {url.path}", "status": "NOT_FOUND"}
        }


@contextmanager
def catalog_serving(catalog: FakeCatalog) -> Iterator[billing_v1.CloudCatalogClient]:
    """Serve `catalog` on 127.0.0.1; yields a real REST client pointed at it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = catalog.answer(self.path)
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
        yield billing_v1.CloudCatalogClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": f"http://127.0.0.1:{server.server_port}"},
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
