"""Charge-back by direct attribution: who spent what in a period, with an explicit unallocated row.

A team comes from the allocation tag (`allocation.tag_key`, then its aliases in order),
with values normalised (`ML-Platform` = `ml-platform`) and team aliases from finops.yaml
mapped to the team's name. Rows without the tag land in `(unallocated)`; nothing is
dropped, so the groups always add up to the bill for the period. Reads `cost_resolved`
(the bill once, overlaps between sources resolved).
"""

from __future__ import annotations

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
    """One `--by` grouping: its output column name and the SQL that yields it."""

    name: str
    sql: str
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
    if name == "team" or name == f"tag:{allocation.tag_key}":
        sql, params = _team_sql(allocation, teams)
        return Dimension("team" if name == "team" else name, sql, params, True)
    if name.startswith("tag:") and len(name) > 4:
        return Dimension(name, '"Tags"[?]', (name[4:],), False)
    if name in _PLAIN_DIMENSIONS:
        return Dimension(name, _PLAIN_DIMENSIONS[name], (), False)
    raise ConfigError(f"--by {name!r} not understood: use one of {', '.join(DIMENSIONS)}")


def _team_sql(
    allocation: AllocationSettings, teams: tuple[Team, ...]
) -> tuple[str, tuple[object, ...]]:
    lookups = ", ".join(['"Tags"[?]'] * len(allocation.tag_keys))
    value = f"coalesce({lookups})"
    params: list[object] = list(allocation.tag_keys)
    if allocation.normalise_values:
        value = f"regexp_replace(lower(trim({value})), '[\\s_]+', '-', 'g')"
    aliases = [(alias, team.name) for team in teams for alias in (team.name, *team.aliases)]
    if aliases:
        normalise = (
            (lambda a: a.strip().lower().replace("_", "-").replace(" ", "-"))
            if allocation.normalise_values
            else (lambda a: a)
        )
        whens = " ".join("WHEN ? THEN ?" for _ in aliases)
        value = f"coalesce(CASE {value} {whens} END, {value})"
        # The value expression appears twice (in CASE and in coalesce): its params too.
        params = params + [x for alias, team in aliases for x in (normalise(alias), team)] + params
    return value, tuple(params)


def chargeback(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    dimensions: list[Dimension],
    *,
    cost: CostBasis = "billed",
    unallocated_label: str = "(unallocated)",
) -> pa.Table:
    """Cost per group for the period, largest first, with each group's share of the total.

    Money is exact; `cost` is rounded to the cent for display, `share` is a percentage.
    """
    where, where_params = period.where()
    labels = []
    params: list[object] = []
    for dim in dimensions:
        empty = unallocated_label if dim.is_allocation else "(none)"
        labels.append(f'coalesce(CAST({dim.sql} AS VARCHAR), ?) AS "{dim.name}"')
        params += [*dim.params, empty]
    group_cols = ", ".join(f'"{d.name}"' for d in dimensions)
    measure = COST_COLUMN[cost]
    sql = f"""
        WITH grouped AS (
            SELECT {", ".join(labels)}, "BillingCurrency" AS currency,
                   sum("{measure}") AS exact_cost, count(*) AS rows
            FROM cost_resolved WHERE {where}
            GROUP BY ALL
        )
        SELECT {group_cols}, currency,
               round(exact_cost, 2) AS cost,
               round(100 * exact_cost / nullif(sum(exact_cost) OVER (PARTITION BY currency), 0), 2) AS share,
               rows, exact_cost
        FROM grouped
        ORDER BY currency, exact_cost DESC, {group_cols}
    """
    return conn.sql(sql, params=params + where_params).to_arrow_table()


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
