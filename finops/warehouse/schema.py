"""The canonical cost schema: FOCUS columns, their warehouse types and allowed values.

Every collector yields rows in this shape and the `cost` table is created from it, so
this module is the one place that says what a FOCUS column is called and how it is
stored. Money is exact DECIMAL(38,10), ids are strings, timestamps are TIMESTAMPTZ in
UTC and key-value columns (Tags) are MAP(VARCHAR, VARCHAR).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MONEY = "DECIMAL(38,10)"
QUANTITY = "DECIMAL(38,10)"
TIMESTAMP = "TIMESTAMPTZ"
TEXT = "VARCHAR"
KEY_VALUE = "MAP(VARCHAR, VARCHAR)"
JSON = "JSON"


class Kind(StrEnum):
    """How a column's raw text is parsed and checked."""

    TEXT = "text"
    MONEY = "money"
    QUANTITY = "quantity"
    TIMESTAMP = "timestamp"
    KEY_VALUE = "key_value"
    JSON = "json"
    CURRENCY = "currency"
    HASH = "hash"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    since: str
    """The FOCUS version that introduced it ("1.0" for anything present at 1.0)."""

    @property
    def sql_type(self) -> str:
        return {
            Kind.TEXT: TEXT,
            Kind.CURRENCY: TEXT,
            Kind.MONEY: MONEY,
            Kind.QUANTITY: QUANTITY,
            Kind.TIMESTAMP: TIMESTAMP,
            Kind.KEY_VALUE: KEY_VALUE,
            Kind.JSON: JSON,
            Kind.HASH: "UBIGINT",
        }[self.kind]


def _cols(since: str, kind: Kind, *names: str) -> list[Column]:
    return [Column(name, kind, since) for name in names]


FOCUS_12_COLUMNS: tuple[Column, ...] = tuple(
    sorted(
        [
            *_cols(
                "1.0",
                Kind.TEXT,
                "AvailabilityZone",
                "BillingAccountId",
                "BillingAccountName",
                "ChargeCategory",
                "ChargeClass",
                "ChargeDescription",
                "ChargeFrequency",
                "CommitmentDiscountCategory",
                "CommitmentDiscountId",
                "CommitmentDiscountName",
                "CommitmentDiscountStatus",
                "CommitmentDiscountType",
                "ConsumedUnit",
                "InvoiceIssuerName",
                "PricingCategory",
                "PricingUnit",
                "ProviderName",
                "PublisherName",
                "RegionId",
                "RegionName",
                "ResourceId",
                "ResourceName",
                "ResourceType",
                "ServiceCategory",
                "ServiceName",
                "SkuId",
                "SkuPriceId",
                "SubAccountId",
                "SubAccountName",
            ),
            *_cols("1.0", Kind.CURRENCY, "BillingCurrency"),
            *_cols(
                "1.0",
                Kind.MONEY,
                "BilledCost",
                "ContractedCost",
                "ContractedUnitPrice",
                "EffectiveCost",
                "ListCost",
                "ListUnitPrice",
            ),
            *_cols("1.0", Kind.QUANTITY, "ConsumedQuantity", "PricingQuantity"),
            *_cols(
                "1.0",
                Kind.TIMESTAMP,
                "BillingPeriodEnd",
                "BillingPeriodStart",
                "ChargePeriodEnd",
                "ChargePeriodStart",
            ),
            *_cols("1.0", Kind.KEY_VALUE, "Tags"),
            *_cols(
                "1.1",
                Kind.TEXT,
                "CapacityReservationId",
                "CapacityReservationStatus",
                "CommitmentDiscountUnit",
                "ServiceSubcategory",
                "SkuMeter",
            ),
            *_cols("1.1", Kind.QUANTITY, "CommitmentDiscountQuantity"),
            *_cols("1.1", Kind.JSON, "SkuPriceDetails"),
            *_cols("1.2", Kind.TEXT, "BillingAccountType", "InvoiceId", "SubAccountType"),
            *_cols("1.2", Kind.CURRENCY, "PricingCurrency"),
            *_cols(
                "1.2",
                Kind.MONEY,
                "PricingCurrencyContractedUnitPrice",
                "PricingCurrencyEffectiveCost",
                "PricingCurrencyListUnitPrice",
            ),
        ],
        key=lambda c: c.name,
    )
)
"""The 57 FOCUS 1.2 Cost and Usage columns: what we store and what `export focus` writes."""

FOCUS_13_ADDED: tuple[Column, ...] = (
    *_cols(
        "1.3",
        Kind.TEXT,
        "AllocatedMethodId",
        "AllocatedResourceId",
        "AllocatedResourceName",
        "HostProviderName",
        "ServiceProviderName",
    ),
    *_cols("1.3", Kind.JSON, "AllocatedMethodDetails", "ContractApplied"),
    *_cols("1.3", Kind.KEY_VALUE, "AllocatedTags"),
)
"""Columns FOCUS 1.3 added; kept when a 1.3 file carries them, left out of a 1.2 export."""

PROVIDER_EXTRAS: tuple[Column, ...] = (
    *_cols("x", Kind.TEXT, "x_Source", "x_IngestId", "x_InstanceType", "x_PurchaseOption"),
    *_cols("x", Kind.HASH, "x_TagSetId"),
)
"""Our own columns: which source and ingest run wrote a row, provider extras, and the
row's tag set (a hash of Tags, keyed into `tag_sets`)."""

WAREHOUSE_COLUMNS: frozenset[str] = frozenset({"x_Source", "x_IngestId", "x_TagSetId"})
"""Columns the warehouse sets on every row; a file's own values for them are ignored."""

COST_COLUMNS: tuple[Column, ...] = FOCUS_12_COLUMNS + FOCUS_13_ADDED + PROVIDER_EXTRAS
COLUMNS_BY_NAME: dict[str, Column] = {c.name: c for c in COST_COLUMNS}

REQUIRED_COLUMNS: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "ListCost",
    "ServiceCategory",
    "ServiceName",
)
"""Mandatory, non-null FOCUS columns an ingest cannot do without.

ProviderName is mandatory too, but a FOCUS 1.3 file may carry only its successor
ServiceProviderName, so the collector checks that pair itself.
"""

ALLOWED_VALUES: dict[str, tuple[str, ...]] = {
    "ChargeCategory": ("Usage", "Purchase", "Tax", "Credit", "Adjustment"),
    "ChargeClass": ("Correction",),
    "ChargeFrequency": ("One-Time", "Recurring", "Usage-Based"),
    "PricingCategory": ("Standard", "Dynamic", "Committed", "Other"),
    "CommitmentDiscountCategory": ("Spend", "Usage"),
    "CommitmentDiscountStatus": ("Used", "Unused"),
    "CapacityReservationStatus": ("Used", "Unused"),
    "ServiceCategory": (
        "AI and Machine Learning",
        "Analytics",
        "Business Applications",
        "Compute",
        "Databases",
        "Developer Tools",
        "Multicloud",
        "Identity",
        "Integration",
        "Internet of Things",
        "Management and Governance",
        "Media",
        "Migration",
        "Mobile",
        "Networking",
        "Security",
        "Storage",
        "Web",
        "Other",
    ),
}
"""FOCUS 1.2 allowed values. A casing or separator variant is normalised to these."""


def cost_table_ddl(table: str = "cost") -> str:
    columns = ",\n    ".join(f'"{c.name}" {c.sql_type}' for c in COST_COLUMNS)
    return f"CREATE TABLE {table} (\n    {columns}\n)"


GPU_SAMPLE_COLUMNS: dict[str, str] = {
    "ts": "TIMESTAMPTZ",
    "node": "VARCHAR",
    "gpu_index": "INTEGER",
    "gpu_uuid": "VARCHAR",
    "model": "VARCHAR",
    "mig_profile": "VARCHAR",
    "resource_id": "VARCHAR",
    "cluster": "VARCHAR",
    "gpu_util_pct": "DOUBLE",
    "gr_engine_active": "DOUBLE",
    "sm_active": "DOUBLE",
    "tensor_active": "DOUBLE",
    "mem_used_mib": "DOUBLE",
    "mem_total_mib": "DOUBLE",
    "power_w": "DOUBLE",
    "namespace": "VARCHAR",
    "pod": "VARCHAR",
    "container": "VARCHAR",
}
"""One GPU reading: what every utilisation collector yields. Utilisation is GPU_UTIL as a
percentage, the DCGM profiling fields as 0-1 ratios (null where the source lacks them),
memory in MiB, power in W. `node` is the host as the source names it."""


RESOURCE_COLUMNS: dict[str, str] = {
    "resource_id": "VARCHAR",
    "provider": "VARCHAR",
    "account_id": "VARCHAR",
    "region": "VARCHAR",
    "resource_type": "VARCHAR",
    "instance_type": "VARCHAR",
    "purchase_option": "VARCHAR",
    "cluster": "VARCHAR",
    "node_group": "VARCHAR",
    "private_dns": "VARCHAR",
    "node_name": "VARCHAR",
    "state": "VARCHAR",
    "launched_at": "TIMESTAMPTZ",
    "tags": "MAP(VARCHAR, VARCHAR)",
    "details": "JSON",
}
"""One inventory item (an instance, a node group, an Auto Scaling group, a notebook...):
what `resources` stores per (source, resource_id), with first/last seen kept by the
warehouse. `cluster` is the cluster it belongs to (EKS/ASG membership or a cluster tag);
`private_dns` and `node_name` are the keys GPU samples join on; `details` holds the rest
(e.g. an Auto Scaling group's min/desired/max)."""
