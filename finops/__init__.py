"""finops: FinOps cost analytics and right-sizing for ML/GPU platforms.

The public surface for library users; everything else is reached through its module.
Names are imported on first use, so that light entry points (the GPU agent on a host
with a minimal install) never load DuckDB or Arrow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finops.config import Config, load_config
    from finops.errors import (
        ActionError,
        ConfigError,
        FinopsError,
        IngestError,
        PartialDeliveryError,
        PolicyError,
        WarehouseBusyError,
        WarehouseError,
    )
    from finops.periods import Period, parse_period
    from finops.warehouse import CostDelivery, GpuDelivery, IngestResult, Warehouse

_EXPORTS = {
    "Config": "finops.config",
    "load_config": "finops.config",
    "ActionError": "finops.errors",
    "ConfigError": "finops.errors",
    "FinopsError": "finops.errors",
    "IngestError": "finops.errors",
    "PartialDeliveryError": "finops.errors",
    "PolicyError": "finops.errors",
    "WarehouseBusyError": "finops.errors",
    "WarehouseError": "finops.errors",
    "Period": "finops.periods",
    "parse_period": "finops.periods",
    "CostDelivery": "finops.warehouse",
    "GpuDelivery": "finops.warehouse",
    "IngestResult": "finops.warehouse",
    "Warehouse": "finops.warehouse",
}

__all__ = [
    "ActionError",
    "Config",
    "ConfigError",
    "CostDelivery",
    "FinopsError",
    "GpuDelivery",
    "IngestError",
    "IngestResult",
    "PartialDeliveryError",
    "Period",
    "PolicyError",
    "Warehouse",
    "WarehouseBusyError",
    "WarehouseError",
    "load_config",
    "parse_period",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'finops' has no attribute {name!r}")
