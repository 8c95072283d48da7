"""The policy kinds; importing this package registers each one."""

from finops.policies.kinds import (
    commitment_coverage,
    idle_cluster,
    offhours,
    rightsize_gpu,
    spot_shift,
    untagged_spend,
)

__all__ = [
    "commitment_coverage",
    "idle_cluster",
    "offhours",
    "rightsize_gpu",
    "spot_shift",
    "untagged_spend",
]
