"""Google Cloud list prices from the Cloud Billing Catalog, through the real REST client."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from finops.collectors.gcp_prices import gcp_catalog_prices
from finops.errors import IngestError
from finops.warehouse import Warehouse
from tests.catalog_server import SERVICES, FakeCatalog, catalog_serving, sku

AS_OF = date(2026, 5, 31)
IOWA, NETHERLANDS = ["us-central1"], ["europe-west4"]

SKUS = [
    sku("A2C1-0001", "A2 Instance Core running in Americas", "CPU", "OnDemand", IOWA, "0.031611"),
    sku("A2R1-0002", "A2 Instance Ram running in Americas", "RAM", "OnDemand", IOWA, "0.004237",
        unit="GiBy.h"),
    sku("A100-0003", "Nvidia Tesla A100 GPU running in Americas", "GPU", "OnDemand", IOWA,
        "2.933908"),
    sku("A2C1-0004", "Spot Preemptible A2 Instance Core running in Americas", "CPU",
        "Preemptible", IOWA, "0.00948"),
    sku("A2R1-0005", "Spot Preemptible A2 Instance Ram running in Americas", "RAM",
        "Preemptible", IOWA, "0.00127", unit="GiBy.h"),
    sku("A100-0006", "Nvidia Tesla A100 GPU attached to Spot Preemptible VMs running in Americas",
        "GPU", "Preemptible", IOWA, "1.10"),
    sku("A100-0007", "Commitment v1: Nvidia Tesla A100 GPU running in Americas for 1 Year",
        "GPU", "Commit1Yr", IOWA, "1.84837"),
    sku("G2C1-0008", "G2 Instance Core running in Americas", "CPU", "OnDemand", IOWA, "0.02499"),
    sku("G2R1-0009", "G2 Instance Ram running in Americas", "RAM", "OnDemand", IOWA, "0.002928",
        unit="GiBy.h"),
    sku("L4G1-0010", "Nvidia L4 GPU running in Americas", "GPU", "OnDemand", IOWA, "0.56"),
    # Spot G2 has a core SKU but no memory SKU here: no spot G2 machine price.
    sku("G2C1-0011", "Spot Preemptible G2 Instance Core running in Americas", "CPU",
        "Preemptible", IOWA, "0.0075"),
    sku("N1C1-0012", "N1 Predefined Instance Core running in Americas", "N1Standard", "OnDemand",
        IOWA, "0.031611"),
    sku("N1R1-0013", "N1 Predefined Instance Ram running in Americas", "N1Standard", "OnDemand",
        IOWA, "0.004237", unit="GiBy.h"),
    sku("T4G1-0014", "Nvidia Tesla T4 GPU running in Americas", "GPU", "OnDemand", IOWA, "0.35"),
    sku("T4G1-0015", "Nvidia Tesla T4 GPU running in Netherlands", "GPU", "OnDemand",
        NETHERLANDS, "0.41"),
    # Left out: custom machines, and anything in a region not asked for.
    sku("N1C1-0016", "Custom Instance Core running in Americas", "CPU", "OnDemand", IOWA, "0.9"),
    sku("A2C1-0017", "A2 Instance Core running in Netherlands", "CPU", "OnDemand", NETHERLANDS,
        "0.0348"),
]  # fmt: skip


def prices_by_type(rows: list[dict]) -> dict[tuple[str, str], Decimal]:
    return {(r["instance_type"], r["purchase_option"]): r["hourly_price"] for r in rows}


def test_machine_types_are_vcpus_memory_and_gpus_priced_from_their_skus(tmp_path: Path) -> None:
    catalog = FakeCatalog(SKUS)
    with catalog_serving(catalog) as client:
        prices = gcp_catalog_prices(regions=["us-central1"], as_of=AS_OF, client=client)

    rows = prices.table.to_pylist()
    assert {r["region"] for r in rows} == {"us-central1"}
    assert {(r["provider"], r["currency"]) for r in rows} == {("Google Cloud", "USD")}
    by_type = prices_by_type(rows)
    # 12 x 0.031611 + 85 x 0.004237 + 1 x 2.933908
    assert by_type["a2-highgpu-1g", "OnDemand (list)"] == Decimal("3.673385")
    # 96 x 0.031611 + 680 x 0.004237 + 8 x 2.933908
    assert by_type["a2-highgpu-8g", "OnDemand (list)"] == Decimal("29.387080")
    # 12 x 0.00948 + 85 x 0.00127 + 1 x 1.10
    assert by_type["a2-highgpu-1g", "Spot"] == Decimal("1.321710")
    # 4 x 0.02499 + 16 x 0.002928 + 1 x 0.56, and 24 vCPUs, 96 GiB, 2 GPUs
    assert by_type["g2-standard-4", "OnDemand (list)"] == Decimal("0.706808")
    assert by_type["g2-standard-24", "OnDemand (list)"] == Decimal("2.000848")
    # 8 x 0.031611 + 30 x 0.004237; an N1's GPUs are attached, priced on their own
    assert by_type["n1-standard-8", "OnDemand (list)"] == Decimal("0.379998")
    assert by_type["nvidia-tesla-t4", "OnDemand (list)"] == Decimal("0.35")
    assert by_type["nvidia-tesla-a100", "Committed 1yr"] == Decimal("1.84837")
    assert by_type["nvidia-l4", "OnDemand (list)"] == Decimal("0.56")
    # No spot G2 memory SKU, no A2 committed core/memory SKUs, no A3 or N2 SKUs at all.
    assert ("g2-standard-4", "Spot") not in by_type
    assert ("a2-highgpu-1g", "Committed 1yr") not in by_type
    assert not any(t.startswith(("a3-", "n2-")) for t, _ in by_type)
    details = json.loads(next(r["details"] for r in rows if r["instance_type"] == "a2-highgpu-8g"))
    assert details["skus"] == ["A2C1-0001", "A2R1-0002", "A100-0003"]
    # The client followed every page of SKUs (2 a page).
    sku_pages = [p for p in catalog.requests if "/skus" in p]
    assert len(sku_pages) == 9

    warehouse = Warehouse(tmp_path / "wh.duckdb")
    assert warehouse.store_prices(prices) == len(rows)
    stored = warehouse.query(
        """SELECT hourly_price FROM prices WHERE source = 'gcp-catalog'
           AND instance_type = 'a2-highgpu-8g' AND purchase_option = 'OnDemand (list)'"""
    ).column("hourly_price")
    assert stored.to_pylist() == [Decimal("29.387080")]


def test_without_regions_every_region_of_the_catalog_is_priced() -> None:
    with catalog_serving(FakeCatalog(SKUS)) as client:
        prices = gcp_catalog_prices(as_of=AS_OF, client=client)

    rows = prices.table.to_pylist()
    t4 = {r["region"]: r["hourly_price"] for r in rows if r["instance_type"] == "nvidia-tesla-t4"}
    assert t4 == {"us-central1": Decimal("0.35"), "europe-west4": Decimal("0.41")}
    # The Netherlands has an A2 core SKU but no memory or GPU SKU: no A2 machine there.
    assert not any(
        r["region"] == "europe-west4" and r["instance_type"].startswith("a2") for r in rows
    )


def test_throttled_calls_are_retried_with_backoff() -> None:
    catalog = FakeCatalog(SKUS, page_size=100, throttle_first=2)
    with catalog_serving(catalog) as client:
        prices = gcp_catalog_prices(regions=["us-central1"], as_of=AS_OF, client=client)

    assert len(catalog.requests) == 4  # two 429s, then services and one page of SKUs
    assert prices_by_type(prices.table.to_pylist())["nvidia-l4", "OnDemand (list)"] == Decimal(
        "0.56"
    )


def test_a_catalog_without_compute_engine_is_a_clear_error() -> None:
    with (
        catalog_serving(FakeCatalog([], services=SERVICES[:1])) as client,
        pytest.raises(IngestError, match="no Compute Engine service"),
    ):
        gcp_catalog_prices(as_of=AS_OF, client=client)


def test_a_refused_call_is_named_and_not_retried() -> None:
    catalog = FakeCatalog(SKUS, refuse_with=403)
    with (
        catalog_serving(catalog) as client,
        pytest.raises(IngestError, match=r"cloudbilling services.list: 403 .*permission"),
    ):
        gcp_catalog_prices(as_of=AS_OF, client=client)
    assert len(catalog.requests) == 1
