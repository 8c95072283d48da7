"""Facts several policy kinds share: the evaluation window, the GPU clusters seen in it,
the billed cost of their instances, their tags, and the cloud resources an action targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from finops.analytics.gpu import NO_CLUSTER, UNMATCHED, gpu_hours_sql
from finops.periods import Period
from finops.policies.model import Target
from finops.policies.registry import Context

DAYS_PER_MONTH = Decimal("30.4375")
"""An average month (365.25 / 12 days): what a window's cost is projected to."""
HOURS_PER_MONTH = DAYS_PER_MONTH * 24


@dataclass(frozen=True)
class Window:
    """Whole UTC days before `now`: [start, end)."""

    start: datetime
    end: datetime

    @classmethod
    def ending(cls, now: datetime, days: int) -> Window:
        end = datetime.combine(now.astimezone(UTC).date(), time(), UTC)
        return cls(end - timedelta(days=days), end)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def hours(self) -> int:
        return self.days * 24

    @property
    def period(self) -> Period:
        label = f"{self.start:%Y-%m-%d}..{self.end - timedelta(days=1):%Y-%m-%d}"
        return Period(label, "range", self.start.date(), self.end.date())

    def monthly(self, amount: Decimal) -> Decimal:
        """`amount` spent over this window, as a month's worth."""
        return amount * DAYS_PER_MONTH / self.days

    def as_json(self) -> dict[str, str | int]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "days": self.days}


def cluster_nodes_sql(ctx: Context, window: Window) -> tuple[str, list[object]]:
    """Every GPU node that reported in the window: cluster, node, resource_id, the hours it
    reported (`metric_hours`) and its GPUs, from the hourly rollups."""
    hours, params = gpu_hours_sql(window.period, ctx.attribution)
    sql = f"""
        SELECT cluster, node, resource_id, count(DISTINCT hour) AS metric_hours,
               count(DISTINCT coalesce(gpu_uuid, node || '/' || gpu_index)) AS gpus
        FROM ({hours})
        WHERE cluster NOT IN ('{NO_CLUSTER}', '{UNMATCHED}')
        GROUP BY ALL
    """
    return sql, params


INSTANCE_COSTS_SQL = """
    SELECT c."ResourceId" AS resource_id,
           any_value(c."ResourceName") AS resource_name,
           any_value(c."ProviderName") AS provider,
           any_value(coalesce(c."SubAccountId", c."BillingAccountId")) AS account,
           any_value(c."RegionId") AS region,
           any_value(c."x_InstanceType") AS instance_type,
           sum(c."EffectiveCost") AS cost,
           coalesce(sum(c."EffectiveCost") FILTER (WHERE c."CommitmentDiscountId" IS NOT NULL), 0)
               AS committed_cost,
           any_value(c."CommitmentDiscountId") AS commitment,
           coalesce(sum(c."PricingQuantity") FILTER (WHERE c."PricingUnit" = 'Hours'), 0) AS hours,
           arg_max(ts.tags, c."ChargePeriodStart") AS tags
    FROM cost_resolved c
    LEFT JOIN tag_sets ts ON ts.tag_set_id = c."x_TagSetId"
    WHERE c."ChargeCategory" = 'Usage'
      AND c."ChargePeriodStart" >= ? AND c."ChargePeriodStart" < ?
      AND c."ResourceId" IN (SELECT resource_id FROM {nodes})
    GROUP BY 1
"""
"""Billed usage per instance in the window: cost (amortised), the part a commitment covered,
billed hours and the newest tags. `{nodes}` is a relation with a `resource_id` column."""


_TARGET_TYPES: dict[str, str] = {
    "ec2:instance": "ec2-instance",
    "autoscaling:group": "asg",
    "eks:nodegroup": "eks-nodegroup",
    "sagemaker:notebook-instance": "sagemaker-notebook",
    "NotebookInstance": "sagemaker-notebook",
}
_GROUP_TYPES = frozenset({"asg", "eks-nodegroup", "gke-nodepool"})


def _target_type(provider: str, resource_type: str, resource_id: str) -> str | None:
    """What kind of target a resource is, by its inventory type or, where billing gave no
    type, by the shape of its id."""
    if resource_type in _TARGET_TYPES:
        return _TARGET_TYPES[resource_type]
    if provider == "AWS" and resource_id.startswith("i-"):
        return "ec2-instance"
    if ":notebook-instance/" in resource_id:
        return "sagemaker-notebook"
    if resource_id.startswith("arn:aws:autoscaling:"):
        return "asg"
    if ":nodegroup/" in resource_id:
        return "eks-nodegroup"
    if "/zones/" in resource_id and "/instances/" in resource_id:
        return "gce-instance"
    return None


def cluster_targets(
    ctx: Context, cluster: str, instance_ids: list[str], action: str
) -> tuple[Target, ...]:
    """What stopping `cluster` changes: the node groups holding its GPU instances for
    scale-to-zero (when the inventory knows them), else the GPU instances themselves; the
    cluster's other nodes (system pools, CPU workers) are left running."""
    rows = ctx.conn.sql(
        """
        WITH gpu_groups AS (
            SELECT DISTINCT node_group FROM resources
            WHERE list_contains(?::VARCHAR[], resource_id) AND node_group IS NOT NULL
        )
        SELECT DISTINCT resource_id, provider, resource_type, region, account_id, cluster
        FROM resources
        WHERE (list_contains(?::VARCHAR[], resource_id)
               OR (cluster = ? AND node_group IN (SELECT node_group FROM gpu_groups)
                   AND resource_id NOT LIKE 'i-%' AND resource_id NOT LIKE '%/instances/%'))
          AND coalesce(state, '') NOT IN ('terminated', 'deleted')
        ORDER BY resource_id
        """,
        params=[instance_ids, instance_ids, cluster],
    ).fetchall()
    targets: list[Target] = []
    for resource_id, provider, resource_type, region, account, owner_cluster in rows:
        kind = _target_type(provider or "", resource_type or "", resource_id)
        if kind is None:
            continue
        extra: dict[str, str] = {}
        if kind == "eks-nodegroup" and owner_cluster:
            extra["cluster"] = owner_cluster
        if kind == "gce-instance":
            parts = resource_id.split("/")
            extra = {
                "project": parts[parts.index("projects") + 1],
                "zone": parts[parts.index("zones") + 1],
            }
        targets.append(
            Target(
                provider="aws" if provider == "AWS" else "gcp",
                resource_type=kind,
                resource_id=resource_id,
                region=region,
                account_id=account,
                extra=extra,
            )
        )
    groups = tuple(t for t in targets if t.resource_type in _GROUP_TYPES)
    if action == "scale-to-zero" and groups:
        return groups
    return tuple(t for t in targets if t.resource_type not in _GROUP_TYPES)


def majority_tags(tag_maps: list[dict[str, str] | None]) -> dict[str, str]:
    """Each key's most common value over the maps (ties: the smallest value)."""
    counts: dict[str, dict[str, int]] = {}
    for tags in tag_maps:
        for key, value in (tags or {}).items():
            counts.setdefault(key, {}).setdefault(value, 0)
            counts[key][value] += 1
    return {
        key: min(values, key=lambda v: (-values[v], v)) for key, values in sorted(counts.items())
    }


def as_decimal(value: object) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value or 0))


PROVIDER_PRICE_SOURCES = ("aws-spot", "aws-price-list", "gcp-catalog")
"""Price sources that ask the provider; prices observed in billing come after them."""

Prices = dict[tuple[str, str, str, str], tuple[Decimal, str, date]]
"""(provider, region, instance type, purchase option) -> (hourly price, source, day)."""


def latest_prices(ctx: Context) -> Prices:
    """The newest hourly price per provider, region, type and purchase option; on the same
    day a provider's own source before a price observed in billing."""
    rows = ctx.conn.sql(
        """
        SELECT provider, region, instance_type, purchase_option,
               arg_max(hourly_price, (as_of, list_contains(?, source))),
               arg_max(source, (as_of, list_contains(?, source))), max(as_of)
        FROM prices GROUP BY ALL
        """,
        params=[list(PROVIDER_PRICE_SOURCES), list(PROVIDER_PRICE_SOURCES)],
    ).fetchall()
    return {(r[0], r[1], r[2], r[3]): (as_decimal(r[4]), r[5], r[6]) for r in rows}
