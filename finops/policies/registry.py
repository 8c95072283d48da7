"""Policy kinds register here under their name, each with a pydantic model of its params.

A kind is a function `(context, policy, params) -> list[Decision]`: it queries the
warehouse once (SQL does the heavy work), then decides each candidate with a small pure
function that returns a finding or the reason there is none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from finops.errors import PolicyError

if TYPE_CHECKING:
    import duckdb

    from finops.analytics.gpu import GpuAttribution
    from finops.config import Config
    from finops.policies.calendar import WorkCalendar
    from finops.policies.model import Decision, Policy


class KindParams(BaseModel):
    """Base of every kind's parameters: unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Context:
    """What every kind evaluates against: one read connection, the config, and the time."""

    conn: duckdb.DuckDBPyConnection
    config: Config
    now: datetime
    attribution: GpuAttribution
    calendar: WorkCalendar
    policy_dir: Path | None = None
    """The folder of the policy file being evaluated: its relative paths start there."""

    def team(self, tags: dict[str, str]) -> str | None:
        """The team these tags give, by charge-back's rules (aliases, normalisation)."""
        from finops.analytics.chargeback import team_from_tags

        return team_from_tags(tags, self.config.allocation, self.config.teams)


Evaluate = Callable[["Context", "Policy", Any], list["Decision"]]


@dataclass(frozen=True)
class Kind:
    name: str
    params: type[KindParams]
    evaluate: Evaluate
    actions: tuple[str, ...] = ("notify",)
    """Actions the runner may take on this kind's findings (besides notifying people)."""
    summary: str = ""


KINDS: dict[str, Kind] = {}


def register(
    name: str, params: type[KindParams], *, actions: tuple[str, ...] = ()
) -> Callable[[Evaluate], Evaluate]:
    """Register a kind; `actions` are what the runner may do besides notifying people."""

    def decorate(evaluate: Evaluate) -> Evaluate:
        if name in KINDS:
            raise PolicyError(f"policy kind {name!r} is registered twice")
        KINDS[name] = Kind(
            name, params, evaluate, ("notify", *actions), (evaluate.__doc__ or "").split("\n")[0]
        )
        return evaluate

    return decorate


def kind(name: str) -> Kind:
    _load_kinds()
    try:
        return KINDS[name]
    except KeyError:
        raise PolicyError(
            f"unknown policy kind {name!r}: use one of {', '.join(sorted(KINDS))}"
        ) from None


def all_kinds() -> dict[str, Kind]:
    _load_kinds()
    return dict(KINDS)


def _load_kinds() -> None:
    import finops.policies.kinds  # noqa: F401  (each module registers its kind on import)
