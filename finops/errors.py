"""The exceptions finops raises, in one tree, so a caller knows what to catch.

    FinopsError                 anything finops refuses to do, with a message for a person
    ├── ConfigError             a configuration file or value is wrong (names file and key)
    ├── WarehouseError          the warehouse file cannot be opened or migrated
    │   └── WarehouseBusyError  another process held the file for longer than we wait
    ├── IngestError             a source cannot be ingested (names file, row and column)
    │   └── PartialDeliveryError a delivery covers fewer days than the data it would replace
    │   └── NvmlUnavailableError (finops.collectors.nvml) no NVIDIA driver or GPU on this host
    ├── PolicyError             a policy file is invalid or a policy cannot be evaluated
    └── ActionError             a cloud action failed or was refused

Every message says what was wrong, where, and what to do about it.
"""

from __future__ import annotations


class FinopsError(Exception):
    """Base of every error finops raises on purpose."""


class ConfigError(FinopsError):
    """A configuration file or value is invalid."""


class WarehouseError(FinopsError):
    """The warehouse file cannot be opened, created or migrated."""


class WarehouseBusyError(WarehouseError):
    """Another process kept the warehouse file locked for longer than we are willing to wait."""


class IngestError(FinopsError):
    """A source could not be ingested; the warehouse was left as it was."""


class PartialDeliveryError(IngestError):
    """A delivery covers fewer days of a billing period than the rows it would replace."""


class PolicyError(FinopsError):
    """A policy file is invalid, or a policy could not be evaluated."""


class ActionError(FinopsError):
    """A cloud action failed or was refused."""
