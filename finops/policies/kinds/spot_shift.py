"""spot-shift: interruptible work on on-demand capacity -> Spot; deadline-bound or saturated
Spot capacity -> on-demand.

Capacity is grouped by provider, account, region, instance type and cluster (else project)
over the lookback, from billed usage not covered by a commitment. A group is interruptible
when its tags say so (`interruptible_tags`, e.g. `workload: [training, batch]` or
`checkpointing: ["true"]`). Savings: the group's on-demand hours x (on-demand - Spot price),
both from the `prices` table (newest day; a provider's own price source before prices
observed in billing); with no Spot price the `default_spot_discount` is assumed and the
confidence is lower. Risk comes from the instance family's interruption bucket (a shipped,
editable table: `finops/policies/data/spot_interruption.yaml`, overridden per policy).

The reverse: Spot capacity whose `deadline` tag (ISO date) or a row of `deadlines_file`
falls within `deadline_horizon_days`, or whose GPUs run saturated (hourly p95 over
`saturation_pct`), is better guaranteed on on-demand capacity; its "savings" are negative:
what guaranteeing it costs a month.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field

from finops.analytics.chargeback import parse_dimensions
from finops.analytics.gpu import gpu_usage
from finops.errors import PolicyError
from finops.policies.facts import Prices, Window, as_decimal, latest_prices
from finops.policies.model import Decision, Finding, Policy, Subject
from finops.policies.registry import Context, KindParams, register

Bucket = Literal["<5%", "5-10%", "10-15%", "15-20%", ">20%"]
_RISK: dict[str, Literal["low", "medium", "high"]] = {
    "<5%": "low",
    "5-10%": "medium",
    "10-15%": "medium",
    "15-20%": "high",
    ">20%": "high",
}


class SpotShiftParams(KindParams):
    lookback_days: Annotated[int, Field(ge=1, le=90)] = 30
    interruptible_tags: dict[str, tuple[str, ...]] = {
        "workload": ("training", "batch"),
        "checkpointing": ("true",),
    }
    """A group is interruptible when any of these tags holds one of its values."""
    min_monthly_savings: Annotated[Decimal, Field(ge=0)] = Decimal(100)
    default_spot_discount: Annotated[float, Field(gt=0, lt=1)] = 0.6
    """Assumed when the prices table has no Spot price for the type and region."""
    interruption: dict[str, Bucket] = {}
    """Per instance family (e.g. `p4d`, `a2-highgpu`), overriding the shipped table."""
    deadline_tag: str = "deadline"
    deadlines_file: str | None = None
    """CSV with columns `group,deadline` (a cluster or project name, an ISO date), relative
    to the policy file's folder."""
    deadline_horizon_days: Annotated[int, Field(ge=0)] = 14
    saturation_pct: Annotated[float, Field(gt=0, le=100)] = 90.0


@dataclass(frozen=True)
class Capacity:
    """Billed hours of one instance type in one group, on one purchase option."""

    provider: str
    account: str
    region: str
    instance_type: str
    group: str
    pricing_category: str
    cost: Decimal
    hours: Decimal
    resource_ids: tuple[str, ...]
    tags: dict[str, str]
    team: str | None
    currency: str
    cluster: str | None = None
    """The first of `gpu.cluster_tag_keys` its tags hold."""


@cache
def _shipped_buckets() -> tuple[str, dict[str, str]]:
    text = resources.files("finops.policies").joinpath("data/spot_interruption.yaml").read_text()
    table = yaml.safe_load(text)
    return table["default"], dict(table["families"])


def family(instance_type: str) -> str:
    """`p4d.24xlarge` -> `p4d`; `a2-highgpu-8g` -> `a2-highgpu`; `g2-standard-24` -> `g2-standard`."""
    if "." in instance_type:
        return (
            instance_type.split(".")[-2]
            if instance_type.startswith("ml.")
            else instance_type.split(".")[0]
        )
    return "-".join(instance_type.split("-")[:2])


def interruption_bucket(instance_type: str, overrides: dict[str, str]) -> str:
    default, shipped = _shipped_buckets()
    name = family(instance_type)
    return overrides.get(name) or shipped.get(name) or default


def is_interruptible(tags: dict[str, str], wanted: dict[str, tuple[str, ...]]) -> str | None:
    """The tag that marks the work interruptible, or None."""
    for key, values in wanted.items():
        value = tags.get(key)
        if value is not None and value.lower() in {v.lower() for v in values}:
            return f"{key}={value}"
    return None


def _capacity(ctx: Context, window: Window) -> list[Capacity]:
    team = parse_dimensions("team", ctx.config.allocation, ctx.config.teams)[0]
    cluster_keys = ctx.config.gpu.cluster_tag_keys
    cluster = ", ".join("ts.tags[?]" for _ in cluster_keys)
    rows = ctx.conn.sql(
        f"""
        WITH per_tag_set AS (
            SELECT "ProviderName" AS provider,
                   coalesce("SubAccountId", "BillingAccountId") AS account,
                   "RegionId" AS region, "x_InstanceType" AS instance_type,
                   "PricingCategory" AS pricing_category, "x_TagSetId" AS tag_set_id,
                   sum("EffectiveCost") AS cost, sum("PricingQuantity") AS hours,
                   list(DISTINCT "ResourceId") AS resource_ids,
                   any_value("BillingCurrency") AS currency
            FROM cost_resolved
            WHERE "ChargeCategory" = 'Usage' AND "PricingUnit" = 'Hours'
              AND "x_InstanceType" IS NOT NULL AND "ResourceId" IS NOT NULL
              AND "CommitmentDiscountId" IS NULL
              AND "PricingCategory" IN ('Standard', 'Dynamic')
              AND "ServiceCategory" IN ('Compute', 'AI and Machine Learning')
              AND NOT regexp_matches("x_InstanceType", '^(db|cache)[.]')
              AND "ChargePeriodStart" >= ? AND "ChargePeriodStart" < ?
            GROUP BY ALL
        ),
        labelled AS (
            SELECT p.*, ts.tags,
                   coalesce({cluster}{", " if cluster else ""}ts.tags['project'], '(none)') AS grp,
                   {team.tag_sql} AS team
            FROM per_tag_set p LEFT JOIN tag_sets ts USING (tag_set_id)
        )
        SELECT provider, account, region, instance_type, grp, pricing_category,
               sum(cost), sum(hours), list_sort(list_distinct(flatten(list(resource_ids)))),
               arg_max(tags, cost), arg_max(team, cost), any_value(currency)
        FROM labelled
        GROUP BY provider, account, region, instance_type, grp, pricing_category
        HAVING sum(hours) > 0
        ORDER BY sum(cost) DESC, grp, instance_type
        """,
        params=[window.start, window.end, *cluster_keys, *team.params],
    ).fetchall()
    return [
        Capacity(
            provider=r[0],
            account=r[1],
            region=r[2],
            instance_type=r[3],
            group=r[4],
            pricing_category=r[5],
            cost=as_decimal(r[6]),
            hours=as_decimal(r[7]),
            resource_ids=tuple(r[8]),
            tags=dict(r[9] or {}),
            team=r[10],
            currency=r[11],
            cluster=next((r[9][k] for k in cluster_keys if (r[9] or {}).get(k)), None),
        )
        for r in rows
    ]


def _deadlines(params: SpotShiftParams, policy_dir: Path | None) -> dict[str, date]:
    """Deadlines per group from `deadlines_file` (none when the policy names no file)."""
    if not params.deadlines_file:
        return {}
    path = Path(params.deadlines_file)
    if not path.is_absolute() and policy_dir is not None:
        path = policy_dir / path
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            found: dict[str, date] = {}
            for line, row in enumerate(reader, start=2):
                try:
                    found[row["group"]] = date.fromisoformat(row["deadline"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise PolicyError(
                        f"{path}:{line}: expected columns group,deadline (ISO date): {exc}"
                    ) from None
            return found
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the deadlines file: {exc.strerror}") from None


def _subject(capacity: Capacity) -> Subject:
    return Subject(
        provider=capacity.provider,
        account=capacity.account,
        region=capacity.region,
        cluster=capacity.cluster,
        resource_ids=capacity.resource_ids,
        environment=capacity.tags.get("env"),
        team=capacity.team,
        tags=capacity.tags,
    )


def _to_spot(
    capacity: Capacity,
    params: SpotShiftParams,
    window: Window,
    prices: Prices,
    policy: Policy,
) -> Decision:
    label = f"{capacity.group} {capacity.instance_type} ({capacity.region})"
    marker = is_interruptible(capacity.tags, params.interruptible_tags)
    if marker is None:
        return Decision.keep(f"{label}: no tag marks its work interruptible")
    on_demand = capacity.cost / capacity.hours
    spot = prices.get((capacity.provider, capacity.region, capacity.instance_type, "Spot"))
    if spot is not None:
        spot_price, source, as_of = spot
        basis = f"Spot {spot_price:.4f}/h ({source}, {as_of})"
        confidence = 0.8
    else:
        spot_price = on_demand * Decimal(str(1 - params.default_spot_discount))
        basis = f"no Spot price known: assumed {params.default_spot_discount:.0%} off"
        confidence = 0.5
    savings = window.monthly(capacity.hours * (on_demand - spot_price))
    if savings < params.min_monthly_savings:
        return Decision.keep(f"{label}: {savings:,.2f} a month on Spot, under the minimum")
    bucket = interruption_bucket(capacity.instance_type, params.interruption)
    reason = (
        f"{label}: {capacity.hours:,.0f} on-demand hours in {window.days} days of "
        f"interruptible work ({marker}) at {on_demand:.4f}/h; {basis}; "
        f"interruption {bucket} a month"
    )
    return Decision.recommend(
        Finding(
            resource_id=f"{capacity.account}/{capacity.region}/{capacity.group}/{capacity.instance_type}",
            resource_name=f"{capacity.group} {capacity.instance_type}",
            reason=reason,
            monthly_savings=savings,
            confidence=confidence,
            risk=_RISK[bucket],
            evidence={
                "window": window.as_json(),
                "direction": "to-spot",
                "group": capacity.group,
                "instance_type": capacity.instance_type,
                "on_demand_hours": str(capacity.hours),
                "on_demand_cost": str(capacity.cost),
                "on_demand_hourly": str(round(on_demand, 6)),
                "spot_hourly": str(round(spot_price, 6)),
                "spot_price_basis": basis,
                "interruption_bucket": bucket,
                "interruptible_by": marker,
                "instances": len(capacity.resource_ids),
            },
            action=policy.action,
            subject=_subject(capacity),
            billed_resource_ids=capacity.resource_ids,
        )
    )


def _to_on_demand(
    capacity: Capacity,
    params: SpotShiftParams,
    window: Window,
    prices: Prices,
    deadlines: dict[str, date],
    saturation: dict[str, float],
    ctx: Context,
    policy: Policy,
) -> Decision:
    label = f"{capacity.group} {capacity.instance_type} ({capacity.region}, Spot)"
    today = ctx.now.date()
    deadline = deadlines.get(capacity.group)
    tagged = capacity.tags.get(params.deadline_tag)
    if deadline is None and tagged:
        try:
            deadline = date.fromisoformat(tagged)
        except ValueError:
            return Decision.keep(f"{label}: tag {params.deadline_tag}={tagged} is not an ISO date")
    p95 = saturation.get(capacity.cluster) if capacity.cluster else None
    why: str | None = None
    if deadline is not None and 0 <= (deadline - today).days <= params.deadline_horizon_days:
        why = f"deadline {deadline} is {(deadline - today).days} days away"
    elif p95 is not None and p95 > params.saturation_pct:
        why = f"its GPUs run saturated (hourly p95 {p95:.1f}% > {params.saturation_pct:g}%)"
    if why is None:
        return Decision.keep(f"{label}: no deadline within {params.deadline_horizon_days} days")
    spot_hourly = capacity.cost / capacity.hours
    listed = prices.get((capacity.provider, capacity.region, capacity.instance_type, "OnDemand"))
    if listed is None:
        listed = prices.get(
            (capacity.provider, capacity.region, capacity.instance_type, "OnDemand (list)")
        )
    if listed is None:
        return Decision.keep(f"{label}: {why}, but no on-demand price is known to cost it")
    on_demand = listed[0]
    cost = window.monthly(capacity.hours * (on_demand - spot_hourly))
    return Decision.recommend(
        Finding(
            resource_id=f"{capacity.account}/{capacity.region}/{capacity.group}/{capacity.instance_type}",
            resource_name=f"{capacity.group} {capacity.instance_type}",
            reason=(
                f"{label}: {why}; guaranteeing its {capacity.hours:,.0f} hours on on-demand "
                f"capacity costs {cost:,.2f} a month more"
            ),
            monthly_savings=-cost,
            confidence=0.7,
            risk="high",
            evidence={
                "window": window.as_json(),
                "direction": "to-on-demand",
                "group": capacity.group,
                "instance_type": capacity.instance_type,
                "spot_hours": str(capacity.hours),
                "spot_hourly": str(round(spot_hourly, 6)),
                "on_demand_hourly": str(on_demand),
                "on_demand_price_source": listed[1],
                "deadline": deadline.isoformat() if deadline else None,
                "p95_util_pct": p95,
            },
            action=policy.action,
            subject=_subject(capacity),
            billed_resource_ids=capacity.resource_ids,
        )
    )


@register("spot-shift", SpotShiftParams)
def evaluate(ctx: Context, policy: Policy, params: SpotShiftParams) -> list[Decision]:
    """On-demand capacity running interruptible work -> Spot, and Spot at risk -> on-demand."""
    window = Window.ending(ctx.now, params.lookback_days)
    prices = latest_prices(ctx)
    deadlines = _deadlines(params, ctx.policy_dir)
    usage = gpu_usage(ctx.conn, window.period, "cluster", ctx.attribution)
    saturation = dict(
        zip(
            usage.column("cluster").to_pylist(),
            usage.column("p95_util_pct").to_pylist(),
            strict=True,
        )
    )
    decisions: list[Decision] = []
    for capacity in _capacity(ctx, window):
        if capacity.pricing_category == "Dynamic":
            decisions.append(
                _to_on_demand(capacity, params, window, prices, deadlines, saturation, ctx, policy)
            )
        else:
            decisions.append(_to_spot(capacity, params, window, prices, policy))
    return decisions
