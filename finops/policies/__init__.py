"""Policy-as-code: the engine that turns `policies/*.yaml` into recommendations.

Policies decide; `finops.actions` does. Kinds live in `finops.policies.kinds`, each a
small decision with a reason; `engine` runs them, `store` keeps their state.
"""

from finops.policies.engine import Evaluation, evaluate, run
from finops.policies.loader import Problem, load_policies, validate_policies
from finops.policies.model import Decision, Finding, LoadedPolicy, Policy

__all__ = [
    "Decision",
    "Evaluation",
    "Finding",
    "LoadedPolicy",
    "Policy",
    "Problem",
    "evaluate",
    "load_policies",
    "run",
    "validate_policies",
]
