"""Charge-back by direct attribution: who spent what in a period, with an explicit unallocated row.

A team comes from the allocation tag (`allocation.tag_key`, then its aliases in order),
with values normalised (`ML-Platform` = `ml-platform`) and team aliases from finops.yaml
mapped to the team's name. Rows without the tag land in `(unallocated)`; nothing is
dropped, so the groups always add up to the bill for the period. Reads `cost_resolved`
(the bill once, overlaps between sources resolved).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import duckdb
import pyarrow as pa

from finops.config import AllocationSettings, Team
from finops.errors import ConfigError
from finops.periods import Period

CostBasis = Literal["billed", "effective"]
COST_COLUMN: dict[str, str] = {"billed": "BilledCost", "effective": "EffectiveCost"}

_PLAIN_DIMENSIONS: dict[str, str] = {
    "account": 'coalesce("SubAccountId", "BillingAccountId")',
    "account-name": 'coalesce("SubAccountName", "SubAccountId", "BillingAccountName")',
    "billing-account": '"BillingAccountId"',
    "provider": '"ProviderName"',
    "service": '"ServiceName"',
    "service-category": '"ServiceCategory"',
    "region": '"RegionId"',
    "resource": '"ResourceId"',
    "resource-type": '"ResourceType"',
    "charge-category": '"ChargeCategory"',
    "pricing-category": '"PricingCategory"',
    "instance-type": '"x_InstanceType"',
    "sku": '"SkuId"',
    "source": '"x_Source"',
    "month": "strftime(\"BillingPeriodStart\", '%Y-%m')",
}
DIMENSIONS: tuple[str, ...] = ("team", "tag:KEY", *_PLAIN_DIMENSIONS)


@dataclass(frozen=True)
class Dimension:
    """One `--by` grouping: its output column and how it is computed.

    A plain dimension is an expression over a cost row (`row_sql`); a tag dimension is an
    expression over `tags`, a tag map from `tag_sets`, evaluated once per distinct tag set.
    """

    name: str
    row_sql: str | None
    tag_sql: str | None
    params: tuple[object, ...]
    is_allocation: bool


def parse_dimensions(
    text: str, allocation: AllocationSettings, teams: tuple[Team, ...]
) -> list[Dimension]:
    """Parse `--by tag:team,service` into dimensions."""
    dims = [_dimension(part.strip(), allocation, teams) for part in text.split(",") if part.strip()]
    if not dims:
        raise ConfigError(f"--by {text!r}: name at least one of {', '.join(DIMENSIONS)}")
    return dims


def _dimension(name: str, allocation: AllocationSettings, teams: tuple[Team, ...]) -> Dimension:
    if name in ("team", f"tag:{allocation.tag_key}"):
        sql, params = _team_sql(allocation, teams)
        return Dimension(name, None, sql, params, True)
    if name.startswith("tag:") and len(name) > 4:
        return Dimension(name, None, "tags[?]", (name[4:],), False)
    if name in _PLAIN_DIMENSIONS:
        return Dimension(name, _PLAIN_DIMENSIONS[name], None, (), False)
    raise ConfigError(f"--by {name!r} not understood: use one of {', '.join(DIMENSIONS)}")


def _team_sql(
    allocation: AllocationSettings, teams: tuple[Team, ...]
) -> tuple[str, tuple[object, ...]]:
    lookups = ", ".join(["tags[?]"] * len(allocation.tag_keys))
    value = f"coalesce({lookups})"
    params: list[object] = list(allocation.tag_keys)
    if allocation.normalise_values:
        value = f"regexp_replace(lower(trim({value})), '[\\s_]+', '-', 'g')"
    aliases = [(alias, team.name) for team in teams for alias in (team.name, *team.aliases)]
    if aliases:
        whens = " ".join("WHEN ? THEN ?" for _ in aliases)
        value = f"coalesce(CASE {value} {whens} END, {value})"
        # The value expression appears twice (in CASE and in coalesce): its params too.
        pairs = [x for alias, team in aliases for x in (_normalise(alias, allocation), team)]
        params = params + pairs + params
    return value, tuple(params)


def _normalise(value: str, allocation: AllocationSettings) -> str:
    if not allocation.normalise_values:
        return value
    return re.sub(r"[\s_]+", "-", value.strip().lower())


def chargeback(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    dimensions: list[Dimension],
    *,
    cost: CostBasis = "billed",
    unallocated_label: str = "(unallocated)",
) -> pa.Table:
    """Cost per group for the period, largest first, with each group's share of the total.

    Rows are summed per tag set and plain dimension first, then tag sets are labelled:
    the tag logic runs once per distinct tag set, not once per row. Money is exact in
    `exact_cost`; `cost` is rounded to the cent for display, `share` is a percentage.
    """
    where, where_params = period.where()
    plain = [d for d in dimensions if d.row_sql is not None]
    firsts = [f'{d.row_sql} AS "{d.name}"' for d in plain]
    labels, label_params = [], []
    for dim in dimensions:
        empty = unallocated_label if dim.is_allocation else "(none)"
        expr = dim.tag_sql if dim.tag_sql is not None else f'per_tag_set."{dim.name}"'
        labels.append(f'coalesce(CAST({expr} AS VARCHAR), ?) AS "{dim.name}"')
        label_params += [*dim.params, empty]
    group_cols = ", ".join(f'"{d.name}"' for d in dimensions)
    sql = f"""
        WITH per_tag_set AS (
            SELECT "x_TagSetId" AS tag_set_id, {"".join(f + ", " for f in firsts)}
                   "BillingCurrency" AS currency,
                   sum("{COST_COLUMN[cost]}") AS exact_cost, count(*) AS rows
            FROM cost_resolved WHERE {where}
            GROUP BY ALL
        ),
        grouped AS (
            SELECT {", ".join(labels)}, currency, sum(exact_cost) AS exact_cost, sum(rows) AS rows
            FROM per_tag_set LEFT JOIN tag_sets USING (tag_set_id)
            GROUP BY ALL
        )
        SELECT {group_cols}, currency,
               round(exact_cost, 2) AS cost,
               round(100 * exact_cost / nullif(sum(exact_cost) OVER (PARTITION BY currency), 0), 2)
                   AS share,
               CAST(rows AS BIGINT) AS rows, exact_cost
        FROM grouped
        ORDER BY currency, exact_cost DESC, {group_cols}
    """
    return conn.sql(sql, params=where_params + label_params).to_arrow_table()


def billing_months(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """The billing months the warehouse holds, newest first (YYYY-MM)."""
    rows = conn.execute(
        """
        SELECT DISTINCT strftime("BillingPeriodStart", '%Y-%m') AS month
        FROM cost_resolved ORDER BY month DESC
        """
    ).fetchall()
    return [month for (month,) in rows]


def period_total(
    conn: duckdb.DuckDBPyConnection, period: Period, cost: CostBasis = "billed"
) -> dict[str, Decimal]:
    """The bill for the period per currency: what every charge-back must add up to."""
    where, params = period.where()
    rows = conn.execute(
        f'SELECT "BillingCurrency", sum("{COST_COLUMN[cost]}") FROM cost_resolved WHERE {where} GROUP BY 1',
        params,
    ).fetchall()
    return dict(rows)


def team_from_tags(
    tags: dict[str, str], allocation: AllocationSettings, teams: tuple[Team, ...]
) -> str | None:
    """The team one tag map belongs to, by the same rules as the charge-back's SQL: the
    first allocation tag present, its value normalised, a team alias mapped to its name."""
    value = next((tags[key] for key in allocation.tag_keys if tags.get(key)), None)
    if value is None:
        return None
    value = _normalise(value, allocation)
    for team in teams:
        if value in {_normalise(alias, allocation) for alias in (team.name, *team.aliases)}:
            return team.name
    return value
