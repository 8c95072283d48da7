"""The policy engine: evaluate policies against the warehouse, then store what they found.

Evaluation only reads (one read-only connection for every policy); storing is one short
write transaction per policy. `now` is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from finops.analytics.gpu import GpuAttribution
from finops.config import Config
from finops.errors import PolicyError
from finops.policies.calendar import WorkCalendar
from finops.policies.loader import load_policies
from finops.policies.model import Finding, LoadedPolicy
from finops.policies.registry import Context, kind
from finops.policies.scope import out_of_scope
from finops.policies.store import Change, save_findings
from finops.warehouse import Warehouse


@dataclass(frozen=True)
class Evaluation:
    """What one policy found, and why it passed over the other candidates."""

    policy: LoadedPolicy
    findings: list[Finding]
    passed_over: list[str] = field(default_factory=list)


def policy_folder(config: Config) -> Path:
    folder = Path(config.policies.folder)
    return folder if folder.is_absolute() else config.base_dir / folder


def select(policies: list[LoadedPolicy], name: str | None) -> list[LoadedPolicy]:
    """The enabled policies, or the one named (enabled or not)."""
    if name is None:
        return [p for p in policies if p.policy.enabled]
    chosen = [p for p in policies if p.policy.name == name]
    if not chosen:
        known = ", ".join(p.policy.name for p in policies) or "none"
        raise PolicyError(f"no policy named {name!r} (policies: {known})")
    return chosen


def evaluate(
    warehouse: Warehouse, config: Config, policies: list[LoadedPolicy], now: datetime
) -> list[Evaluation]:
    """Run each policy's kind over the warehouse; keep the findings its scope covers."""
    results: list[Evaluation] = []
    with warehouse.reader() as conn:
        ctx = Context(
            conn=conn,
            config=config,
            now=now,
            attribution=GpuAttribution.from_config(config),
            calendar=WorkCalendar.from_config(config),
        )
        for loaded in policies:
            spec = kind(loaded.policy.kind)
            ctx = replace(ctx, policy_dir=loaded.path.parent)
            findings: list[Finding] = []
            passed_over: list[str] = []
            for decision in spec.evaluate(ctx, loaded.policy, loaded.params):
                if decision.finding is None:
                    passed_over.append(decision.reason)
                    continue
                why_not = out_of_scope(loaded.policy.scope, decision.finding.subject)
                if why_not:
                    passed_over.append(f"{decision.finding.resource_id}: {why_not}")
                else:
                    findings.append(decision.finding)
            # How many candidates the policy's scope holds: the action runner's
            # percentage cap (at most P% of a policy's scope per run) reads it.
            in_scope = len(findings) + sum(
                1 for r in passed_over if ": outside" not in r and ": excluded" not in r
            )
            for finding in findings:
                finding.evidence["scope_size"] = in_scope
            results.append(Evaluation(loaded, findings, passed_over))
    return results


def run(
    warehouse: Warehouse,
    config: Config,
    now: datetime,
    *,
    policy: str | None = None,
    folder: Path | None = None,
    actor: str = "engine",
) -> tuple[list[Evaluation], list[Change]]:
    """Evaluate the policy pack (or one policy) and store its recommendations."""
    policies = select(load_policies([folder or policy_folder(config)]), policy)
    evaluations = evaluate(warehouse, config, policies, now)
    changes: list[Change] = []
    for evaluation in evaluations:
        changes += save_findings(
            warehouse,
            evaluation.policy,
            evaluation.findings,
            now=now,
            currency=config.currency,
            reopen_factor=config.policies.reopen_factor,
            actor=actor,
        )
    return evaluations, changes
