"""GPU fleet: GPU-hours joined to what they cost, by cluster, team, node or model.

The join every GPU question needs: a GPU-hour (from `gpu_hourly`) -> the instance it ran
on -> its cluster and team -> the instance's cost in that hour (from `cost_resolved`).

- Instance: the sample's own resource id (a DCGM `instance_id` label, the agent's spool),
  else the inventory resource whose private DNS or node name is the sample's node, else
  the billed resource whose ResourceName is the node (GCE instance names).
- Cluster: the sample's `cluster`, else the inventory's, else the instance's billing tag
  (`gpu.cluster_tag_keys`, in order). Team: the allocation tag of the instance's billing
  row (`allocation.tag_key` and aliases); on a shared cluster whose pods name a team
  namespace, each namespace's share of the GPU-hour goes to that team.
- Cost of a GPU-hour: the instance's usage charges for that hour, divided by the
  instance's GPUs reporting that hour. A charge in instance-hours (a day's row billing the
  9 hours a dev node ran) costs its amount / its hours for each hour in its period; any
  other charge is spread evenly over its charge period.
- Idle GPU-hour: one whose mean utilisation (GR_ENGINE_ACTIVE x 100 where present, else
  GPU_UTIL) is under `gpu.idle_threshold_pct`, decided when the hour was rolled up.

GPU-hours that match no billed instance stay in the results under `(unmatched)`: they are
reported, never dropped. `unmatched_gpu_instances` lists the other side: billed GPU
instances that sent no samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import pyarrow as pa

from finops.config import AllocationSettings, Config, Team
from finops.errors import ConfigError
from finops.periods import Period

GROUPINGS: dict[str, str] = {
    "cluster": "cluster",
    "team": "team",
    "node": "node",
    "resource": "resource_id",
    "model": "model",
    "day": "strftime(hour, '%Y-%m-%d')",
    "hour": "strftime(hour, '%Y-%m-%d %H:00')",
}
JoinKey = Literal["instance_id", "private_dns", "node_name", "resource_name"]
JOIN_KEYS: tuple[JoinKey, ...] = ("instance_id", "private_dns", "node_name", "resource_name")
UNMATCHED = "(unmatched)"
GPU_INSTANCE_TYPES = r"^(p[0-9]|g[0-9]|a2-|a3-|g2-|ml\.(p|g)[0-9])"
"""Instance types that carry NVIDIA GPUs (AWS p/g families, GCP a2/a3/g2, SageMaker ml.p/ml.g)."""
UNALLOCATED = "(unallocated)"
NO_CLUSTER = "(no cluster)"


@dataclass(frozen=True)
class GpuAttribution:
    """How GPU-hours are attributed: tag keys for clusters and teams, and team aliases."""

    cluster_tag_keys: tuple[str, ...]
    allocation: AllocationSettings
    teams: tuple[Team, ...] = ()
    join_keys: tuple[JoinKey, ...] = JOIN_KEYS
    """How a sample finds its instance, tried in order (`gpu.join_keys`)."""
    join_keys_by_source: dict[str, tuple[JoinKey, ...]] = field(default_factory=dict)
    """Per GPU source, another order (`gpu.join_keys_by_source`)."""

    @classmethod
    def from_config(cls, config: Config) -> GpuAttribution:
        return cls(
            cluster_tag_keys=config.gpu.cluster_tag_keys,
            allocation=config.allocation,
            teams=config.teams,
            join_keys=config.gpu.join_keys,
            join_keys_by_source=dict(config.gpu.join_keys_by_source),
        )


_JOIN_EXPRESSIONS: dict[str, str] = {
    "instance_id": "h.resource_id",
    "private_dns": "by_dns.resource_id",
    "node_name": "by_node.resource_id",
    "resource_name": "by_name.resource_id",
}


def _instance_sql(attribution: GpuAttribution) -> tuple[str, list[object]]:
    """The sample's instance id, by the join keys of its source."""

    def chain(keys: tuple[JoinKey, ...]) -> str:
        return f"coalesce({', '.join(_JOIN_EXPRESSIONS[k] for k in keys)})" if keys else "NULL"

    if not attribution.join_keys_by_source:
        return chain(attribution.join_keys), []
    whens = " ".join(
        f"WHEN ? THEN {chain(keys)}" for keys in attribution.join_keys_by_source.values()
    )
    return (
        f"CASE h.source {whens} ELSE {chain(attribution.join_keys)} END",
        list(attribution.join_keys_by_source),
    )


def _first_tag(keys: tuple[str, ...]) -> tuple[str, list[object]]:
    """The first of these tag keys present on the instance's billing row."""
    if not keys:
        return "CAST(NULL AS VARCHAR)", []
    return f"coalesce({', '.join('ts.tags[?]' for _ in keys)})", list(keys)


def _team_name(
    value: str, params: list[object], attribution: GpuAttribution
) -> tuple[str, list[object]]:
    """Normalise a team value and map team aliases to the team's name (as charge-back does)."""
    if attribution.allocation.normalise_values:
        value = f"regexp_replace(lower(trim({value})), '[\\s_]+', '-', 'g')"
    aliases = [(a.lower(), t.name) for t in attribution.teams for a in (t.name, *t.aliases)]
    if not aliases:
        return value, params
    whens = " ".join("WHEN ? THEN ?" for _ in aliases)
    pairs = [x for pair in aliases for x in pair]
    return f"coalesce(CASE {value} {whens} END, {value})", params + pairs + params


def _namespace_team(attribution: GpuAttribution) -> tuple[str, list[object]]:
    """A namespace's team: `allocation.namespace_teams`, else the namespace as a team name."""
    named, params = _team_name("ns", [], attribution)
    mapping = attribution.allocation.namespace_teams
    if not mapping:
        return named, params
    whens = " ".join("WHEN ? THEN ?" for _ in mapping)
    pairs = [x for pair in mapping.items() for x in pair]
    return f"coalesce(CASE ns {whens} END, {named})", pairs + params


def gpu_hours_sql(
    period: Period, attribution: GpuAttribution, clusters: tuple[str, ...] = ()
) -> tuple[str, list[object]]:
    """One row per GPU-hour (or per team share of one) with its cluster, team and cost:
    hour, node, gpu_uuid, gpu_index, model, resource_id, cluster, team, gpu_hours,
    mean_util_pct, idle, cost. `gpu_usage` groups it; policies read it directly.

    `clusters`: only GPU-hours that may belong to these (their sample names one of them or
    none), read before anything is joined; the caller still selects on `cluster`."""
    cluster_tag, cluster_params = _first_tag(attribution.cluster_tag_keys)
    team_tag, team_tag_params = _first_tag(attribution.allocation.tag_keys)
    tag_team, tag_team_params = _team_name(team_tag, team_tag_params, attribution)
    namespace_team, namespace_params = _namespace_team(attribution)
    instance, instance_params = _instance_sql(attribution)
    sample_clusters = (
        f"AND (h.cluster IS NULL OR h.cluster IN ({', '.join('?' for _ in clusters)}))"
        if clusters
        else ""
    )
    sql = f"""
        WITH sampled AS (
            SELECT * FROM gpu_hourly h WHERE h.hour >= ? AND h.hour < ? {sample_clusters}
        ),
        by_dns AS (
            SELECT private_dns AS key, any_value(resource_id) AS resource_id
            FROM resources WHERE private_dns IS NOT NULL GROUP BY 1
        ),
        by_node AS (
            SELECT node_name AS key, any_value(resource_id) AS resource_id
            FROM resources WHERE node_name IS NOT NULL GROUP BY 1
        ),
        by_name AS (
            SELECT "ResourceName" AS key, any_value("ResourceId") AS resource_id
            FROM cost_resolved
            WHERE "ResourceName" IN (SELECT DISTINCT node FROM sampled)
              AND "ResourceId" IS NOT NULL
            GROUP BY 1
        ),
        hours AS (
            SELECT h.*, {instance} AS rid
            FROM sampled h
            LEFT JOIN by_dns ON by_dns.key = h.node
            LEFT JOIN by_node ON by_node.key = h.node
            LEFT JOIN by_name ON by_name.key = h.node
        ),
        node_gpus AS (
            SELECT rid, hour, count(*) AS gpus FROM hours WHERE rid IS NOT NULL GROUP BY ALL
        ),
        charges AS (
            SELECT c."ResourceId" AS rid, c."x_TagSetId" AS tag_set_id,
                   -- Every whole hour the charge covers within the period, so that an
                   -- instance-hour finds its charges by equality rather than by range.
                   unnest(range(
                       greatest(date_trunc('hour', c."ChargePeriodStart" - INTERVAL 1 MICROSECOND)
                                + INTERVAL 1 HOUR, ?),
                       least(c."ChargePeriodEnd", ?), INTERVAL 1 HOUR)) AS hour,
                   -- A row billing the hours an instance ran (a dev node's 9 hours of a
                   -- day) costs that per hour it ran; any other charge is spread evenly.
                   CASE WHEN c."PricingUnit" = 'Hours' AND c."PricingQuantity" > 0
                         AND c."PricingQuantity" * 3600
                             <= epoch(c."ChargePeriodEnd") - epoch(c."ChargePeriodStart") + 1
                        THEN CAST(c."EffectiveCost" AS DOUBLE) / CAST(c."PricingQuantity" AS DOUBLE)
                        ELSE CAST(c."EffectiveCost" AS DOUBLE) * 3600
                             / greatest(epoch(c."ChargePeriodEnd") - epoch(c."ChargePeriodStart"), 1)
                   END AS per_hour
            FROM cost_resolved c
            WHERE c."ChargeCategory" = 'Usage'
              AND c."ResourceId" IN (SELECT rid FROM node_gpus)
              AND c."ChargePeriodEnd" > ? AND c."ChargePeriodStart" < ?
        ),
        -- Each instance-hour is priced once (not once per GPU), then shared by its GPUs.
        node_hours AS (
            SELECT n.rid, n.hour, n.gpus, sum(c.per_hour) AS node_cost,
                   any_value(c.tag_set_id) AS tag_set_id
            FROM node_gpus n
            JOIN charges c ON c.rid = n.rid AND c.hour = n.hour
            GROUP BY ALL
        ),
        -- Tag and namespace rules run once per distinct tag set and namespace, not per row.
        set_labels AS (
            SELECT tag_set_id, {cluster_tag} AS tag_cluster, {tag_team} AS tag_team
            FROM tag_sets ts
            WHERE tag_set_id IN (SELECT tag_set_id FROM node_hours)
        ),
        namespace_teams AS (
            SELECT ns, {namespace_team} AS ns_team
            FROM (SELECT DISTINCT unnest(namespaces) AS ns FROM hours)
        ),
        attributed AS (
            SELECT h.hour, h.node, h.gpu_uuid, h.gpu_index, h.model, h.rid,
                   h.mean_util_pct, h.idle, n.node_cost, n.node_cost / n.gpus AS gpu_cost,
                   coalesce(h.cluster, r.cluster, l.tag_cluster,
                            CASE WHEN n.node_cost IS NULL THEN '{UNMATCHED}' END, '{NO_CLUSTER}')
                       AS cluster,
                   l.tag_team,
                   greatest(len(coalesce(h.namespaces, [])), 1) AS shares,
                   unnest(CASE WHEN len(coalesce(h.namespaces, [])) > 0 THEN h.namespaces
                               ELSE [NULL] END) AS ns
            FROM hours h
            LEFT JOIN node_hours n ON n.rid = h.rid AND n.hour = h.hour
            LEFT JOIN (SELECT resource_id, any_value(cluster) AS cluster FROM resources GROUP BY 1) r
              ON r.resource_id = h.rid
            LEFT JOIN set_labels l ON l.tag_set_id = n.tag_set_id
        )
        SELECT a.hour, a.node, a.gpu_uuid, a.gpu_index, a.model, a.rid AS resource_id, a.cluster,
               CASE WHEN a.node_cost IS NULL THEN '{UNMATCHED}'
                    WHEN a.ns IS NOT NULL THEN t.ns_team
                    ELSE coalesce(a.tag_team, '{UNALLOCATED}') END AS team,
               1.0 / a.shares AS gpu_hours, a.mean_util_pct, a.idle, a.gpu_cost / a.shares AS cost
        FROM attributed a
        LEFT JOIN namespace_teams t ON t.ns = a.ns
    """
    params: list[object] = [period.start_ts, period.end_ts, *clusters, *instance_params]
    params += [period.start_ts, period.end_ts, period.start_ts, period.end_ts]
    params += cluster_params + tag_team_params + namespace_params
    return sql, params


@contextmanager
def _gpu_hours_from(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    attribution: GpuAttribution,
    hours: pa.Table | None,
) -> Iterator[tuple[str, list[object]]]:
    """What to select GPU-hours from: `hours` (the period's `gpu_hours_sql` rows, fetched
    once for several questions) or that query itself, with its parameters."""
    if hours is None:
        inner, params = gpu_hours_sql(period, attribution)
        yield f"({inner})", params
        return
    conn.register("fetched_gpu_hours", hours)
    try:
        yield "fetched_gpu_hours", []
    finally:
        conn.unregister("fetched_gpu_hours")


def gpu_hours(
    conn: duckdb.DuckDBPyConnection, period: Period, attribution: GpuAttribution
) -> pa.Table:
    """The period's GPU-hours with their cluster, team and cost (`gpu_hours_sql`), fetched:
    pass them as `hours=` to answer several groupings with one join."""
    sql, params = gpu_hours_sql(period, attribution)
    return conn.sql(sql, params=params).to_arrow_table()


def gpu_usage(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    by: str,
    attribution: GpuAttribution,
    hours: pa.Table | None = None,
) -> pa.Table:
    """GPU-hours, utilisation, idle GPU-hours and their cost per group, largest cost first.

    `p95_util_pct` is the 95th percentile of the group's hourly GPU utilisations: 95% of
    its GPU-hours ran at or below it. By `cluster,hour` this is the per-cluster, per-hour
    view of the fleet (GPUs, mean and p95 utilisation, idle GPU-hours, cost, idle cost).
    `hours`: the period's `gpu_hours` rows, when already fetched.
    """
    groups = [g.strip() for g in by.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPINGS]
    if not groups or unknown:
        raise ConfigError(f"--by {by!r}: use one or more of {', '.join(GROUPINGS)}")
    keys = ", ".join(f'{GROUPINGS[g]} AS "{g}"' for g in groups)
    names = ", ".join(f'"{g}"' for g in groups)
    with _gpu_hours_from(conn, period, attribution, hours) as (source, params):
        sql = f"""
            SELECT {keys},
                   count(DISTINCT coalesce(gpu_uuid, node || '/' || gpu_index)) AS gpus,
                   round(sum(gpu_hours), 2) AS gpu_hours,
                   round(sum(mean_util_pct * gpu_hours) / nullif(sum(gpu_hours), 0), 1) AS mean_util_pct,
                   round(quantile_cont(mean_util_pct, 0.95), 1) AS p95_util_pct,
                   round(sum(gpu_hours) FILTER (WHERE idle), 2) AS idle_gpu_hours,
                   round(100 * coalesce(sum(gpu_hours) FILTER (WHERE idle), 0) / nullif(sum(gpu_hours), 0), 1)
                       AS idle_pct,
                   round(sum(cost), 2) AS cost,
                   round(coalesce(sum(cost) FILTER (WHERE idle), 0), 2) AS idle_cost
            FROM {source} AS gpu_hours
            GROUP BY ALL
            ORDER BY cost DESC NULLS LAST, {names}
        """
        return conn.sql(sql, params=params).to_arrow_table()


def unmatched_gpu_instances(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    attribution: GpuAttribution,
    hours: pa.Table | None = None,
) -> pa.Table:
    """Billed GPU instances (by instance type) that sent no GPU samples in the period.
    `hours`: the period's `gpu_hours` rows, when already fetched."""
    with _gpu_hours_from(conn, period, attribution, hours) as (source, params):
        sql = f"""
            SELECT "ResourceId" AS resource_id, any_value("x_InstanceType") AS instance_type,
                   any_value("ProviderName") AS provider, round(sum("EffectiveCost"), 2) AS cost
            FROM cost_resolved
            WHERE "ChargeCategory" = 'Usage' AND "ResourceId" IS NOT NULL
              AND "CommitmentDiscountStatus" IS DISTINCT FROM 'Unused'
              AND regexp_matches(coalesce("x_InstanceType", ''), ?)
              AND "ChargePeriodEnd" > ? AND "ChargePeriodStart" < ?
              AND "ResourceId" NOT IN (
                  SELECT resource_id FROM {source} WHERE resource_id IS NOT NULL
              )
            GROUP BY 1
            ORDER BY cost DESC, resource_id
        """
        return conn.sql(
            sql, params=[GPU_INSTANCE_TYPES, period.start_ts, period.end_ts, *params]
        ).to_arrow_table()


def gpu_hours_by_team(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    attribution: GpuAttribution,
    clusters: tuple[str, ...] = (),
) -> pa.Table:
    """GPU-hours per billing month, cluster and team, busy and idle apart, exact (unrounded).

    What a shared cluster's cost is split by (as Kubecost splits a cluster by its
    namespaces): each namespace's share of a GPU-hour goes to its team. GPU-hours that
    match no billed instance are left out: they carry no cost to split.
    """
    inner, params = gpu_hours_sql(period, attribution, clusters)
    only = f"AND cluster IN ({', '.join('?' for _ in clusters)})" if clusters else ""
    sql = f"""
        SELECT CAST(date_trunc('month', hour) AS DATE) AS month, cluster, team,
               coalesce(sum(gpu_hours) FILTER (WHERE NOT coalesce(idle, false)), 0) AS busy_gpu_hours,
               coalesce(sum(gpu_hours) FILTER (WHERE idle), 0) AS idle_gpu_hours
        FROM ({inner}) AS gpu_hours
        WHERE team <> '{UNMATCHED}' {only}
        GROUP BY ALL
        ORDER BY month, cluster, team
    """
    return conn.sql(sql, params=[*params, *clusters]).to_arrow_table()


def gpu_totals(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    attribution: GpuAttribution,
    team: str | None = None,
    hours: pa.Table | None = None,
) -> dict[str, float | None]:
    """The fleet's GPU-hours, idle GPU-hours, their cost and the mean utilisation, unrounded.

    For the FinOps KPIs (idle GPU cost %, GPU utilisation, cost per GPU-hour): the same
    GPU-hours and costs as `gpu_usage`, summed before any rounding. `hours`: the period's
    `gpu_hours` rows, when already fetched.
    """
    only = "AND team = ?" if team is not None else ""
    with _gpu_hours_from(conn, period, attribution, hours) as (source, params):
        rows = conn.execute(
            f"""
            SELECT sum(gpu_hours), coalesce(sum(gpu_hours) FILTER (WHERE idle), 0),
                   sum(cost), coalesce(sum(cost) FILTER (WHERE idle), 0),
                   sum(mean_util_pct * gpu_hours) / nullif(sum(gpu_hours), 0)
            FROM {source} AS gpu_hours
            WHERE team <> '{UNMATCHED}' {only}
            """,
            [*params, *([team] if team is not None else [])],
        ).fetchall()
    names = ("gpu_hours", "idle_gpu_hours", "cost", "idle_cost", "mean_util_pct")
    return {
        name: (None if value is None else float(value))
        for name, value in zip(names, rows[0], strict=True)
    }
