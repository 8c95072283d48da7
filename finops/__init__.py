"""finops: FinOps cost analytics and right-sizing for ML/GPU platforms.

The public surface for library users; everything else is reached through its module.
"""

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
from finops.warehouse import CostDelivery, IngestResult, Warehouse

__all__ = [
    "ActionError",
    "Config",
    "ConfigError",
    "CostDelivery",
    "FinopsError",
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
