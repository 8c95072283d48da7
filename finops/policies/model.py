"""What a policy file holds, and what a policy decides.

A policy (Cloud Custodian's shape, our vocabulary) names a kind, a scope, the kind's
parameters, when it is evaluated, what the action runner may do and whether a person must
accept each recommendation first:

    policies:
      - name: idle-gpu-clusters
        kind: idle-cluster
        owner: platform-team
        scope:
          include: {providers: [AWS]}
          exclude: {clusters: [nlp-h100]}
        params: {lookback_days: 7}
        schedule: "0 6 * * *"
        action: stop
        mode: recommend

Each kind validates its own `params` (see `registry`); everything else is validated here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Action = Literal["notify", "stop", "scale-to-zero"]
Mode = Literal["recommend", "auto"]
Risk = Literal["low", "medium", "high"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Filter(_Strict):
    """Attributes a subject must match; an empty list matches everything.

    `tags` maps a tag key to the values allowed (any value when the list is empty).
    """

    providers: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    tags: dict[str, tuple[str, ...]] = {}

    @field_validator("tags", mode="before")
    @classmethod
    def _single_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (v,) if isinstance(v, str) else (() if v is None else v)
                for k, v in value.items()
            }
        return value

    def is_empty(self) -> bool:
        return not any(
            (
                self.providers,
                self.accounts,
                self.regions,
                self.clusters,
                self.resources,
                self.environments,
                self.teams,
                self.tags,
            )
        )


class Scope(_Strict):
    """Which subjects a policy looks at: all of `include` and none of `exclude`."""

    include: Filter = Filter()
    exclude: Filter = Filter()


class Policy(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: str
    description: str = ""
    owner: str | None = None
    scope: Scope = Scope()
    params: dict[str, Any] = {}
    schedule: str = "0 6 * * *"
    """A five-field cron expression, in the policy's `time_zone` (else finops.yaml's)."""
    time_zone: str | None = None
    action: Action = "notify"
    mode: Mode = "recommend"
    """`recommend`: a person accepts each recommendation; `auto`: this reviewed file is
    the approval, and the action runner may act on what the policy finds."""
    enabled: bool = True


class PolicyFile(_Strict):
    policies: tuple[Policy, ...]


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy, its kind's validated parameters, and where it was written."""

    policy: Policy
    params: BaseModel
    path: Path
    line: int


@dataclass(frozen=True)
class Subject:
    """What a scope filter sees of a candidate: a cluster, a resource group, an account."""

    provider: str | None = None
    account: str | None = None
    region: str | None = None
    cluster: str | None = None
    resource_ids: tuple[str, ...] = ()
    environment: str | None = None
    team: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """One cloud resource an action would change (what the action runner reads)."""

    provider: str
    resource_type: str
    resource_id: str
    region: str | None = None
    account_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, str | None]:
        return {
            "provider": self.provider,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "region": self.region,
            "account_id": self.account_id,
            **self.extra,
        }


@dataclass(frozen=True)
class Finding:
    """One recommendation as a kind produces it, before the store gives it a state."""

    resource_id: str
    """What the recommendation is about: a cluster, a resource group, an account/service."""
    reason: str
    monthly_savings: Decimal
    confidence: float
    risk: Risk
    evidence: dict[str, Any]
    action: str
    subject: Subject
    resource_name: str | None = None
    owner: str | None = None
    targets: tuple[Target, ...] = ()
    billed_resource_ids: tuple[str, ...] = ()
    """The billing ResourceIds whose cost realised savings are measured on."""


@dataclass(frozen=True)
class Decision:
    """A kind's verdict on one candidate: a finding, or the reason there is none."""

    finding: Finding | None
    reason: str

    @classmethod
    def keep(cls, reason: str) -> Decision:
        return cls(None, reason)

    @classmethod
    def recommend(cls, finding: Finding) -> Decision:
        return cls(finding, finding.reason)
