"""The policy kinds; importing this package registers each one."""

from finops.policies.kinds import idle_cluster, untagged_spend

__all__ = ["idle_cluster", "untagged_spend"]
