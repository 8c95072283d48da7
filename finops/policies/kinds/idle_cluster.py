"""idle-cluster: GPU clusters whose GPUs stayed idle for the whole lookback -> stop them.

Utilisation of a sample is GR_ENGINE_ACTIVE x 100 where the source has it, else GPU_UTIL
(`metric: auto`, the one definition the dashboards share), or one of them on purpose. The
cluster's p95 (or max) over every raw sample of the lookback must stay under the threshold
(default `gpu.idle_threshold_pct`), with metrics for at least `min_coverage_pct` of the
instance-hours billed in the lookback and at least `min_metric_hours` node-hours of them. Savings: what the cluster's GPU instances cost over the lookback, amortised
(EffectiveCost), as a month's worth; usage a commitment covered saves nothing by being
stopped, so it is left out of the savings and lowers the confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from finops.policies.facts import (
    INSTANCE_COSTS_SQL,
    Window,
    as_decimal,
    cluster_nodes_sql,
    cluster_targets,
    majority_tags,
)
from finops.policies.model import Decision, Finding, Policy, Subject
from finops.policies.registry import Context, KindParams, register

METRICS: dict[str, str] = {
    "auto": "gpu_utilisation(s.gr_engine_active, s.gpu_util_pct)",
    "gr_engine_active": "s.gr_engine_active * 100",
    "gpu_util": "s.gpu_util_pct",
}


class IdleClusterParams(KindParams):
    lookback_days: Annotated[int, Field(ge=1, le=90)] = 7
    metric: Literal["auto", "gr_engine_active", "gpu_util"] = "auto"
    statistic: Literal["p95", "max"] = "p95"
    max_util_pct: Annotated[float, Field(gt=0, le=100)] | None = None
    """Idle when the statistic stays under this (default: `gpu.idle_threshold_pct`)."""
    min_coverage_pct: Annotated[float, Field(ge=0, le=100)] = 80.0
    """Share of the cluster's billed instance-hours that must have metrics."""
    min_metric_hours: Annotated[int, Field(ge=1)] = 24
    """Node-hours of metrics needed at the least, however few hours were billed."""
    protect_tags: dict[str, str] = {"finops:protect": "true"}
    """Opt-out: a cluster any of whose instances carries one of these tags is never stopped."""


@dataclass(frozen=True)
class ClusterWindow:
    """One GPU cluster over the lookback: its metrics, its cost and its tags."""

    cluster: str
    samples: int
    metric_hours: int
    """Node-hours with at least one sample."""
    billed_hours: Decimal
    """Instance-hours billed for the cluster's GPU nodes."""
    utilisation: float
    """The policy's statistic (p95 or max) of sample utilisation, %."""
    gpus: int
    cost: Decimal
    committed_cost: Decimal
    commitment: str | None
    instance_ids: tuple[str, ...]
    tags: dict[str, str]
    protected_by: str | None
    provider: str | None
    account: str | None
    region: str | None

    @property
    def coverage_pct(self) -> float:
        if not self.billed_hours:
            return 0.0
        return min(100.0, 100.0 * self.metric_hours / float(self.billed_hours))


def decide(
    cluster: ClusterWindow, params: IdleClusterParams, threshold: float, window: Window
) -> tuple[bool, str]:
    """Stop an idle cluster, or say why not."""
    statistic = f"{params.statistic} GPU utilisation {cluster.utilisation:.1f}%"
    if cluster.protected_by:
        return False, f"tag {cluster.protected_by} is set"
    if not cluster.billed_hours:
        return False, f"no billed instance-hours in the last {window.days} days to price"
    if cluster.metric_hours < params.min_metric_hours:
        return False, (
            f"only {cluster.metric_hours} node-hours of metrics, need {params.min_metric_hours}"
        )
    if cluster.coverage_pct < params.min_coverage_pct:
        return False, (
            f"metrics for {cluster.coverage_pct:.0f}% of {cluster.billed_hours:,.0f} billed "
            f"instance-hours, need {params.min_coverage_pct:.0f}%"
        )
    if cluster.utilisation < threshold:
        return True, f"{statistic} < {threshold:g}% over the last {window.days} days"
    return False, f"{statistic} >= {threshold:g}%"


def _confidence(cluster: ClusterWindow, threshold: float) -> float:
    """Full coverage, a signal far under the threshold and no commitment: 1.0."""
    margin = max(0.0, min(1.0, (threshold - cluster.utilisation) / threshold))
    committed = float(cluster.committed_cost / cluster.cost) if cluster.cost else 0.0
    coverage = min(1.0, cluster.coverage_pct / 100)
    return round(coverage * (0.6 + 0.4 * margin) * (1 - 0.5 * committed), 2)


def _risk(tags: dict[str, str]) -> Literal["low", "medium", "high"]:
    if tags.get("workload") == "inference":
        return "high"
    return "medium" if tags.get("env", "prod") == "prod" else "low"


def _clusters(ctx: Context, params: IdleClusterParams, window: Window) -> list[ClusterWindow]:
    nodes_sql, nodes_params = cluster_nodes_sql(ctx, window)
    ctx.conn.execute(f"CREATE OR REPLACE TEMP TABLE policy_nodes AS {nodes_sql}", nodes_params)
    metric = METRICS[params.metric]
    # Percentiles come from every raw sample; coverage and GPU counts from the hourly
    # rollups. A month of minute samples is tens of millions of values: they are counted
    # per (cluster, utilisation to 0.01 %) first, a few thousand rows, and the percentile is
    # read off the cumulative counts (interpolated as quantile_cont does) instead of
    # sorting every value, which would spill a 43 M-row sort to disk.
    metrics = ctx.conn.sql(
        f"""
        WITH node_cluster AS (SELECT DISTINCT node, cluster FROM policy_nodes),
        counts AS (
            SELECT n.cluster, round({metric}, 2) AS util, count(*) AS samples
            FROM gpu_samples s JOIN node_cluster n ON n.node = s.node
            WHERE s.ts >= ? AND s.ts < ? AND {metric} IS NOT NULL
            GROUP BY ALL
        ),
        ranked AS (
            SELECT cluster, util,
                   sum(samples) OVER (PARTITION BY cluster ORDER BY util) AS up_to,
                   sum(samples) OVER (PARTITION BY cluster) AS total
            FROM counts
        ),
        per_cluster AS (
            SELECT cluster, any_value(total) AS samples,
                   min(util) FILTER (WHERE up_to > floor(0.95 * (total - 1))) AS low,
                   min(util) FILTER (WHERE up_to > floor(0.95 * (total - 1)) + 1) AS high,
                   any_value(0.95 * (total - 1) - floor(0.95 * (total - 1))) AS fraction,
                   max(util) AS highest
            FROM ranked GROUP BY cluster
        )
        SELECT p.cluster, p.samples, n.metric_hours,
               CASE WHEN ? = 'max' THEN p.highest
                    ELSE p.low + p.fraction * (coalesce(p.high, p.low) - p.low) END,
               n.gpus
        FROM per_cluster p
        JOIN (SELECT cluster, sum(metric_hours) AS metric_hours, sum(gpus) AS gpus
              FROM policy_nodes GROUP BY cluster) n USING (cluster)
        ORDER BY p.cluster
        """,
        params=[window.start, window.end, params.statistic],
    ).fetchall()
    costs = ctx.conn.sql(
        f"""
        WITH instances AS ({INSTANCE_COSTS_SQL.format(nodes="policy_nodes")})
        SELECT n.cluster, sum(i.cost), sum(i.committed_cost), min(i.commitment), sum(i.hours),
               list(DISTINCT i.resource_id ORDER BY i.resource_id),
               list(i.tags), any_value(i.provider), any_value(i.account), any_value(i.region)
        FROM instances i JOIN (SELECT DISTINCT cluster, resource_id FROM policy_nodes) n
          ON n.resource_id = i.resource_id
        GROUP BY 1
        """,
        params=[window.start, window.end],
    ).fetchall()
    by_cluster = {row[0]: row[1:] for row in costs}
    clusters: list[ClusterWindow] = []
    for name, samples, metric_hours, utilisation, gpus in metrics:
        cost, committed, commitment, hours, ids, tag_maps, provider, account, region = (
            by_cluster.get(name, (0, 0, None, 0, [], [], None, None, None))
        )
        tags = majority_tags(tag_maps)
        protected = next(
            (
                f"{key}={value}"
                for tag_map in tag_maps
                for key, value in (tag_map or {}).items()
                if params.protect_tags.get(key, "").lower() == str(value).lower()
            ),
            None,
        )
        clusters.append(
            ClusterWindow(
                cluster=name,
                samples=samples,
                metric_hours=metric_hours,
                billed_hours=as_decimal(hours),
                utilisation=float(utilisation),
                gpus=gpus,
                cost=as_decimal(cost),
                committed_cost=as_decimal(committed),
                commitment=commitment,
                instance_ids=tuple(ids),
                tags=tags,
                protected_by=protected,
                provider=provider,
                account=account,
                region=region,
            )
        )
    return clusters


@register("idle-cluster", IdleClusterParams, actions=("stop", "scale-to-zero"))
def evaluate(ctx: Context, policy: Policy, params: IdleClusterParams) -> list[Decision]:
    """GPU clusters idle for the whole lookback: stop them or scale them to zero."""
    window = Window.ending(ctx.now, params.lookback_days)
    threshold = params.max_util_pct or ctx.config.gpu.idle_threshold_pct
    decisions: list[Decision] = []
    for cluster in _clusters(ctx, params, window):
        idle, reason = decide(cluster, params, threshold, window)
        if not idle:
            decisions.append(Decision.keep(f"{cluster.cluster}: {reason}"))
            continue
        savings = window.monthly(cluster.cost - cluster.committed_cost)
        if cluster.committed_cost:
            reason += (
                f"; {window.monthly(cluster.committed_cost):,.2f} a month of it is covered by "
                f"commitment {cluster.commitment}, which stopping saves only if used elsewhere"
            )
        subject = Subject(
            provider=cluster.provider,
            account=cluster.account,
            region=cluster.region,
            cluster=cluster.cluster,
            resource_ids=cluster.instance_ids,
            environment=cluster.tags.get("env"),
            team=ctx.team(cluster.tags),
            tags=cluster.tags,
        )
        targets = cluster_targets(ctx, cluster.cluster, list(cluster.instance_ids), policy.action)
        evidence = {
            "window": window.as_json(),
            "metric": params.metric,
            "statistic": params.statistic,
            "utilisation_pct": round(cluster.utilisation, 2),
            "threshold_pct": threshold,
            "samples": cluster.samples,
            "gpus": cluster.gpus,
            "metric_node_hours": cluster.metric_hours,
            "billed_instance_hours": str(cluster.billed_hours),
            "coverage_pct": round(cluster.coverage_pct, 1),
            "window_cost": str(cluster.cost),
            "committed_cost": str(cluster.committed_cost),
            "commitment": cluster.commitment,
            "instances": len(cluster.instance_ids),
            "savings_basis": "window EffectiveCost less commitment-covered, x 30.4375 / days",
        }
        decisions.append(
            Decision.recommend(
                Finding(
                    resource_id=cluster.cluster,
                    resource_name=cluster.cluster,
                    reason=f"{cluster.cluster}: {reason}",
                    monthly_savings=savings,
                    confidence=_confidence(cluster, threshold),
                    risk=_risk(cluster.tags),
                    evidence=evidence,
                    action=policy.action,
                    subject=subject,
                    targets=targets,
                    billed_resource_ids=cluster.instance_ids,
                )
            )
        )
    return decisions
