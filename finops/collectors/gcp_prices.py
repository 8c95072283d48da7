"""Google Cloud list prices from the Cloud Billing Catalog API, per machine type and GPU type.

`list_services` finds Compute Engine; `list_skus` (paginated) gives its SKUs. Compute
Engine does not price a machine type as one SKU: a machine is its vCPUs, its memory and
its attached GPUs, each with a SKU per family, region and usage type, e.g.
"A2 Instance Core running in Americas" (`h`), "A2 Instance Ram running in Americas"
(`GiBy.h`) and "Nvidia Tesla A100 GPU running in Americas" (`h`). So:

- GPU SKUs (`category.resourceGroup` GPU, "Nvidia ... GPU") price each GPU type under
  its accelerator name: "Tesla A100" -> `nvidia-tesla-a100`, "L4" -> `nvidia-l4`;
- vCPU and memory SKUs (a family such as A2, G2, N1 Predefined, N2; custom, sole-tenant,
  extended-memory and premium SKUs are left out) price the machine types of MACHINE_SHAPES:
  vCPUs x core price + GiB x memory price + GPUs x GPU price. A machine type is priced in
  a region only where all of its parts are.

Usage types become purchase options as the other price sources name them: OnDemand ->
`OnDemand (list)` (public list prices, like the AWS Price List), Preemptible -> `Spot`,
Commit1Yr / Commit3Yr -> `Committed 1yr` / `Committed 3yr`. A SKU gives a row for each
of its `serviceRegions` (only the regions asked for, when some are). The hourly price is
the first non-zero tier's `unitPrice` (units + nanos / 10^9); compute SKUs have one tier.

Throttling (429) and unavailability (503) are retried with exponential backoff; any
other refusal is an IngestError naming the call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from finops.errors import IngestError
from finops.warehouse import PriceList

if TYPE_CHECKING:
    from google.cloud.billing_v1 import CloudCatalogClient

COMPUTE_ENGINE = "Compute Engine"


@dataclass(frozen=True)
class MachineShape:
    """What a machine type is made of, as Compute Engine bills it."""

    family: str
    """The SKU family of its vCPUs and memory, as SKU descriptions spell it (A2, N1)."""
    vcpus: int
    memory_gib: Decimal
    gpus: int = 0
    gpu_type: str | None = None
    """Accelerator name, e.g. nvidia-tesla-a100."""


# Machine types the demo and the default policies price (Compute Engine's machine type
# documentation: vCPUs, memory in GB = GiB, and the GPUs A2/A3/G2 machines come with).
# N1 machines take GPUs as separate attachments: their GPU types are priced on their own.
MACHINE_SHAPES: dict[str, MachineShape] = {
    "a2-highgpu-1g": MachineShape("A2", 12, Decimal(85), 1, "nvidia-tesla-a100"),
    "a2-highgpu-2g": MachineShape("A2", 24, Decimal(170), 2, "nvidia-tesla-a100"),
    "a2-highgpu-4g": MachineShape("A2", 48, Decimal(340), 4, "nvidia-tesla-a100"),
    "a2-highgpu-8g": MachineShape("A2", 96, Decimal(680), 8, "nvidia-tesla-a100"),
    "a3-highgpu-8g": MachineShape("A3", 208, Decimal(1872), 8, "nvidia-h100-80gb"),
    "g2-standard-4": MachineShape("G2", 4, Decimal(16), 1, "nvidia-l4"),
    "g2-standard-8": MachineShape("G2", 8, Decimal(32), 1, "nvidia-l4"),
    "g2-standard-12": MachineShape("G2", 12, Decimal(48), 1, "nvidia-l4"),
    "g2-standard-16": MachineShape("G2", 16, Decimal(64), 1, "nvidia-l4"),
    "g2-standard-24": MachineShape("G2", 24, Decimal(96), 2, "nvidia-l4"),
    "g2-standard-32": MachineShape("G2", 32, Decimal(128), 1, "nvidia-l4"),
    "g2-standard-48": MachineShape("G2", 48, Decimal(192), 4, "nvidia-l4"),
    "g2-standard-96": MachineShape("G2", 96, Decimal(384), 8, "nvidia-l4"),
    "n1-standard-4": MachineShape("N1", 4, Decimal(15)),
    "n1-standard-8": MachineShape("N1", 8, Decimal(30)),
    "n1-standard-16": MachineShape("N1", 16, Decimal(60)),
    "n2-standard-8": MachineShape("N2", 8, Decimal(32)),
    "n2-standard-16": MachineShape("N2", 16, Decimal(64)),
}

PURCHASE_OPTIONS: dict[str, str] = {
    "OnDemand": "OnDemand (list)",
    "Preemptible": "Spot",
    "Commit1Yr": "Committed 1yr",
    "Commit3Yr": "Committed 3yr",
}
"""Catalog usage type -> purchase option as the prices table names it."""

_GPU = re.compile(r"\bNvidia (?P<model>.+?) GPU\b", re.IGNORECASE)
_PART = re.compile(
    r"\b(?P<family>[A-Z][0-9][A-Z]?)(?: Predefined)?(?: Instance)? (?P<part>Core|Cpu|Ram)\b"
)
_LEFT_OUT = re.compile(r"Custom|Sole Tenancy|Extended|Premium|DWS|Calendar|Reserved", re.I)
_RETRYABLE_CODES = (429, 503)


def gcp_catalog_prices(
    *,
    regions: Sequence[str] = (),
    as_of: date,
    client: CloudCatalogClient | None = None,
    shapes: dict[str, MachineShape] | None = None,
) -> PriceList:
    """Hourly list prices of GPU types and MACHINE_SHAPES' machine types in `regions`
    (every region the catalog names, when empty)."""
    from google.api_core import exceptions, retry
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import billing_v1

    transient = retry.Retry(
        predicate=retry.if_exception_type(
            exceptions.TooManyRequests, exceptions.ServiceUnavailable
        ),
        initial=0.5,
        maximum=20.0,
        multiplier=2.0,
        timeout=120.0,
    )
    call = "cloudbilling services.list"
    try:
        client = client or billing_v1.CloudCatalogClient()
        services = client.list_services(retry=transient)
        service = next((s for s in services if s.display_name == COMPUTE_ENGINE), None)
        if service is None:
            raise IngestError(
                "cloudbilling services.list: no Compute Engine service in the catalog"
            )
        call = f"cloudbilling {service.name}/skus"
        skus = [
            type(sku).to_dict(sku) for sku in client.list_skus(parent=service.name, retry=transient)
        ]
    except GoogleAuthError as exc:
        raise IngestError(f"{call}: no Google credentials: {exc}") from None
    except exceptions.GoogleAPIError as exc:
        raise IngestError(f"{call}: {exc}") from None
    rates = sku_rates(skus, regions)
    return PriceList(
        source="gcp-catalog", as_of=as_of, table=machine_prices(rates, shapes or MACHINE_SHAPES)
    )


def sku_rates(skus: Iterable[dict[str, Any]], regions: Sequence[str] = ()) -> pa.Table:
    """One row per (region, family or GPU type, part, purchase option) with its hourly rate.

    `skus` are SKUs as dicts (the proto's field names: sku_id, category.usage_type ...).
    """
    wanted = set(regions)
    rows: list[dict[str, object]] = []
    for sku in skus:
        description = sku.get("description", "")
        category = sku.get("category", {})
        option = PURCHASE_OPTIONS.get(category.get("usage_type", ""))
        if option is None or _LEFT_OUT.search(description):
            continue
        part = _part(description, category.get("resource_group", ""))
        priced = _hourly_rate(sku.get("pricing_info", []))
        if part is None or priced is None:
            continue
        (kind, name), (rate, unit) = part, priced
        if (kind == "ram") != (unit == "GiBy.h") or unit not in ("h", "GiBy.h"):
            continue
        for region in sku.get("service_regions", []):
            if wanted and region not in wanted:
                continue
            rows.append(
                {
                    "region": region,
                    "name": name,
                    "part": kind,
                    "purchase_option": option,
                    "rate": rate,
                    "sku": sku.get("sku_id"),
                }
            )
    schema = pa.schema(
        [
            ("region", pa.string()),
            ("name", pa.string()),
            ("part", pa.string()),
            ("purchase_option", pa.string()),
            ("rate", pa.decimal128(38, 10)),
            ("sku", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema)


def _part(description: str, resource_group: str) -> tuple[str, str] | None:
    """('gpu', accelerator name) or ('core' | 'ram', family) for a SKU, else None."""
    gpu = _GPU.search(description)
    if gpu and resource_group == "GPU":
        return "gpu", "nvidia-" + gpu["model"].strip().lower().replace(" ", "-")
    part = _PART.search(description)
    if part is None:
        return None
    return ("ram" if part["part"] == "Ram" else "core"), part["family"]


def _hourly_rate(pricing_info: list[dict[str, Any]]) -> tuple[Decimal, str] | None:
    """The first non-zero tier's unit price and its usage unit, from the newest pricing."""
    if not pricing_info:
        return None
    expression = pricing_info[-1].get("pricing_expression", {})
    for tier in expression.get("tiered_rates", []):
        price = tier.get("unit_price", {})
        rate = Decimal(int(price.get("units") or 0)) + Decimal(price.get("nanos") or 0) / 10**9
        if rate:
            return rate, expression.get("usage_unit", "")
    return None


def machine_prices(rates: pa.Table, shapes: dict[str, MachineShape]) -> pa.Table:
    """GPU types and machine types priced per region and purchase option, in the prices shape."""
    shape_table = pa.Table.from_pylist(
        [
            {
                "machine": name,
                "family": s.family,
                "vcpus": s.vcpus,
                "memory_gib": s.memory_gib,
                "gpus": s.gpus,
                "gpu_type": s.gpu_type,
            }
            for name, s in shapes.items()
        ],
        pa.schema(
            [
                ("machine", pa.string()),
                ("family", pa.string()),
                ("vcpus", pa.int32()),
                ("memory_gib", pa.decimal128(18, 2)),
                ("gpus", pa.int32()),
                ("gpu_type", pa.string()),
            ]
        ),
    )
    conn = duckdb.connect()
    try:
        conn.register("rates", rates)
        conn.register("shapes", shape_table)
        return conn.sql(
            """
            WITH rate AS (
                -- Several SKUs can price one part in one region (e.g. a regional and a
                -- multi-regional one): the lowest is what that region is billed.
                SELECT region, name, part, purchase_option, min(rate) AS rate,
                       min(sku) AS sku
                FROM rates GROUP BY ALL
            ),
            gpu AS (
                SELECT region, name AS instance_type, purchase_option, rate AS hourly_price,
                       json_object('sku', sku, 'basis', 'Cloud Billing Catalog GPU SKU')
                           AS details
                FROM rate WHERE part = 'gpu'
            ),
            machine AS (
                SELECT core.region, s.machine AS instance_type, core.purchase_option,
                       s.vcpus * core.rate + s.memory_gib * ram.rate
                           + coalesce(s.gpus * gpu.rate, 0) AS hourly_price,
                       json_object('vcpus', s.vcpus, 'memory_gib', s.memory_gib,
                                   'gpus', s.gpus, 'gpu_type', s.gpu_type,
                                   'skus', list_filter([core.sku, ram.sku, gpu.sku],
                                                       lambda x: x IS NOT NULL),
                                   'basis', 'Cloud Billing Catalog: vCPU + memory + GPU SKUs')
                           AS details
                FROM shapes AS s
                JOIN rate AS core ON core.part = 'core' AND core.name = s.family
                JOIN rate AS ram ON ram.part = 'ram' AND ram.name = s.family
                     AND ram.region = core.region AND ram.purchase_option = core.purchase_option
                LEFT JOIN rate AS gpu ON gpu.part = 'gpu' AND gpu.name = s.gpu_type
                     AND gpu.region = core.region AND gpu.purchase_option = core.purchase_option
                WHERE s.gpus = 0 OR gpu.rate IS NOT NULL
            )
            SELECT 'Google Cloud' AS provider, region, instance_type, purchase_option,
                   CAST(hourly_price AS DECIMAL(38,10)) AS hourly_price, 'USD' AS currency,
                   CAST(details AS VARCHAR) AS details
            FROM (SELECT * FROM gpu UNION ALL SELECT * FROM machine)
            ORDER BY region, instance_type, purchase_option
            """
        ).to_arrow_table()
    finally:
        conn.close()
