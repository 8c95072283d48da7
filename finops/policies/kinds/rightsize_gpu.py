"""rightsize-gpu: GPU nodes whose memory use and utilisation fit a cheaper GPU type.

Per cluster and instance type, over every raw sample of the lookback: the p95 of GPU
memory used and of utilisation. A step of the ladder (`from` type -> `to` type, with the
`to` type's GPU memory) fits when the p95 memory use leaves at least `min_headroom` of the
smaller GPU's memory free and the p95 utilisation stays under `max_util_pct`. Savings: the
nodes' billed hours x (what they cost an hour, amortised - the `to` type's price in the
`prices` table, same purchase option where known, else on-demand). Risk from the headroom
left: over 50% low, 30-50% medium, less high.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from finops.policies.facts import (
    INSTANCE_COSTS_SQL,
    Window,
    as_decimal,
    cluster_nodes_sql,
    latest_prices,
    majority_tags,
)
from finops.policies.model import Decision, Finding, Policy, Subject
from finops.policies.registry import Context, KindParams, register


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_type: str = Field(alias="from")
    to_type: str = Field(alias="to")
    to_gpu_memory_mib: Annotated[int, Field(gt=0)]


DEFAULT_LADDER: tuple[Step, ...] = (
    Step(**{"from": "p5.48xlarge", "to": "p4d.24xlarge", "to_gpu_memory_mib": 40_960}),
    Step(**{"from": "p4d.24xlarge", "to": "g5.48xlarge", "to_gpu_memory_mib": 23_028}),
    Step(**{"from": "g5.12xlarge", "to": "g6.12xlarge", "to_gpu_memory_mib": 23_034}),
    Step(**{"from": "a3-highgpu-8g", "to": "a2-highgpu-8g", "to_gpu_memory_mib": 40_960}),
    Step(**{"from": "a2-highgpu-8g", "to": "g2-standard-96", "to_gpu_memory_mib": 23_034}),
    Step(**{"from": "a2-highgpu-1g", "to": "g2-standard-12", "to_gpu_memory_mib": 23_034}),
)
"""Same GPU count, a cheaper GPU: H100 -> A100 -> A10G/L4 (AWS p/g, GCP a3/a2/g2)."""


class RightsizeParams(KindParams):
    lookback_days: Annotated[int, Field(ge=1, le=90)] = 14
    ladder: tuple[Step, ...] = DEFAULT_LADDER
    min_headroom: Annotated[float, Field(ge=0, lt=1)] = 0.2
    max_util_pct: Annotated[float, Field(gt=0, le=100)] = 60.0
    min_samples: Annotated[int, Field(ge=1)] = 168
    """Raw samples needed per cluster and type (a week of hourly scrapes)."""
    min_monthly_savings: Annotated[Decimal, Field(ge=0)] = Decimal(100)


def headroom_risk(headroom: float) -> Literal["low", "medium", "high"]:
    if headroom > 0.5:
        return "low"
    return "medium" if headroom >= 0.3 else "high"


@register("rightsize-gpu", RightsizeParams)
def evaluate(ctx: Context, policy: Policy, params: RightsizeParams) -> list[Decision]:
    """GPU nodes using little of their GPUs' memory and compute: a cheaper GPU type."""
    window = Window.ending(ctx.now, params.lookback_days)
    nodes_sql, nodes_params = cluster_nodes_sql(ctx, window)
    ctx.conn.execute(f"CREATE OR REPLACE TEMP TABLE policy_nodes AS {nodes_sql}", nodes_params)
    groups = ctx.conn.sql(
        f"""
        WITH instances AS ({INSTANCE_COSTS_SQL.format(nodes="policy_nodes")}),
        node_type AS (
            SELECT DISTINCT n.node, n.cluster, i.instance_type
            FROM policy_nodes n JOIN instances i USING (resource_id)
        ),
        usage AS (
            SELECT t.cluster, t.instance_type, count(*) AS samples,
                   quantile_cont(s.mem_used_mib, 0.95) AS p95_mem_mib,
                   max(s.mem_total_mib) AS mem_total_mib,
                   quantile_cont(gpu_utilisation(s.gr_engine_active, s.gpu_util_pct), 0.95)
                       AS p95_util_pct
            FROM gpu_samples s JOIN node_type t USING (node)
            WHERE s.ts >= ? AND s.ts < ?
            GROUP BY ALL
        ),
        billed AS (
            SELECT n.cluster, i.instance_type, sum(i.cost) AS cost, sum(i.hours) AS hours,
                   list(DISTINCT i.resource_id ORDER BY i.resource_id) AS ids, list(i.tags) AS tags,
                   any_value(i.provider) AS provider, any_value(i.account) AS account,
                   any_value(i.region) AS region,
                   sum(i.committed_cost) AS committed_cost
            FROM instances i JOIN (SELECT DISTINCT cluster, resource_id FROM policy_nodes) n
              USING (resource_id)
            GROUP BY ALL
        )
        SELECT u.*, b.cost, b.hours, b.ids, b.tags, b.provider, b.account, b.region,
               b.committed_cost
        FROM usage u JOIN billed b USING (cluster, instance_type)
        ORDER BY u.cluster, u.instance_type
        """,
        params=[window.start, window.end, window.start, window.end],
    ).fetchall()
    prices = latest_prices(ctx)
    ladder = {step.from_type: step for step in params.ladder}
    decisions: list[Decision] = []
    for (
        cluster,
        itype,
        samples,
        p95_mem,
        mem_total,
        p95_util,
        cost,
        hours,
        ids,
        tag_maps,
        provider,
        account,
        region,
        committed,
    ) in groups:
        label = f"{cluster} {itype}"
        step = ladder.get(itype)
        if step is None:
            decisions.append(Decision.keep(f"{label}: no smaller step on the ladder"))
            continue
        if samples < params.min_samples:
            decisions.append(Decision.keep(f"{label}: only {samples} samples"))
            continue
        if p95_mem is None or p95_util is None:
            decisions.append(Decision.keep(f"{label}: no memory or utilisation metrics"))
            continue
        headroom = 1 - p95_mem / step.to_gpu_memory_mib
        if headroom < params.min_headroom:
            decisions.append(
                Decision.keep(
                    f"{label}: p95 memory {p95_mem:,.0f} MiB leaves {headroom:.1%} of a "
                    f"{step.to_type} GPU's {step.to_gpu_memory_mib:,} MiB, need "
                    f"{params.min_headroom:.1%}"
                )
            )
            continue
        if p95_util >= params.max_util_pct:
            decisions.append(
                Decision.keep(
                    f"{label}: p95 utilisation {p95_util:.1f}% >= {params.max_util_pct:g}%"
                )
            )
            continue
        hours = as_decimal(hours)
        current = (as_decimal(cost) - as_decimal(committed)) / hours if hours else Decimal(0)
        target = next(
            (
                prices[(provider, region, step.to_type, option)][0]
                for option in ("OnDemand", "OnDemand (list)")
                if (provider, region, step.to_type, option) in prices
            ),
            None,
        )
        if target is None:
            decisions.append(
                Decision.keep(
                    f"{label}: fits {step.to_type}, but no price for it in {region}: "
                    "run `finops prices refresh`"
                )
            )
            continue
        savings = window.monthly(hours * (current - target))
        if savings < params.min_monthly_savings:
            decisions.append(Decision.keep(f"{label}: {savings:,.2f} a month, under the minimum"))
            continue
        tags = majority_tags(tag_maps)
        decisions.append(
            Decision.recommend(
                Finding(
                    resource_id=f"{cluster}/{itype}",
                    resource_name=label,
                    reason=(
                        f"{label}: p95 GPU memory {p95_mem:,.0f} of {mem_total:,.0f} MiB and p95 "
                        f"utilisation {p95_util:.1f}% over {window.days} days fit {step.to_type} "
                        f"({step.to_gpu_memory_mib:,} MiB, {headroom:.0%} headroom) at "
                        f"{target:.4f}/h instead of {current:.4f}/h"
                    ),
                    monthly_savings=savings,
                    confidence=round(min(1.0, samples / (params.min_samples * 10)) * 0.4 + 0.5, 2),
                    risk=headroom_risk(headroom),
                    evidence={
                        "window": window.as_json(),
                        "samples": samples,
                        "p95_mem_used_mib": round(p95_mem, 1),
                        "mem_total_mib": mem_total,
                        "p95_util_pct": round(p95_util, 2),
                        "to_type": step.to_type,
                        "to_gpu_memory_mib": step.to_gpu_memory_mib,
                        "headroom": round(headroom, 3),
                        "billed_hours": str(hours),
                        "current_hourly": str(round(current, 6)),
                        "target_hourly": str(target),
                    },
                    action=policy.action,
                    subject=Subject(
                        provider=provider,
                        account=account,
                        region=region,
                        cluster=cluster,
                        resource_ids=tuple(ids),
                        environment=tags.get("env"),
                        team=ctx.team(tags),
                        tags=tags,
                    ),
                    billed_resource_ids=tuple(ids),
                )
            )
        )
    return decisions
