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
from datetime import date
from decimal import Decimal
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from finops.analytics.gpu import UNALLOCATED as GPU_UNALLOCATED
from finops.analytics.gpu import GpuAttribution, gpu_hours_by_team
from finops.config import AllocationSettings, Config, SharedCostRule, SharedCostScope, Team
from finops.errors import ConfigError
from finops.periods import Period, add_months, quarter_containing

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


# --- allocation: direct attribution, then shared-cost rules -------------------------------

Hierarchy = Literal["team", "cost-centre", "business-unit"]
HIERARCHY: tuple[Hierarchy, ...] = ("team", "cost-centre", "business-unit")
Grain = Literal["month", "quarter", "period"]
_WEIGHT_SCHEMA = pa.schema(
    [
        ("rule_index", pa.int32()),
        ("month", pa.date32()),
        ("cluster", pa.string()),
        ("recipient", pa.string()),
        ("recipient_kind", pa.string()),
        ("weight", pa.float64()),
        ("basis", pa.string()),
    ]
)
"""A rule's recipients. basis: `weight` (this weight; month null = every month),
`direct-cost` (each team's direct cost that month; recipient null = every team) or
`direct-team` (1 for each team with direct cost that month)."""


@dataclass(frozen=True)
class Allocation:
    """What allocating a bill needs from finops.yaml: tag keys, teams, rules and currency."""

    settings: AllocationSettings
    teams: tuple[Team, ...] = ()
    cluster_tag_keys: tuple[str, ...] = ("cluster",)
    reporting_currency: str = "USD"
    fiscal_year_start_month: int = 1
    fiscal_year_label: str = "start"
    gpu: GpuAttribution | None = None
    """For gpu-hours rules: how GPU-hours find their cluster and team."""

    @classmethod
    def from_config(cls, config: Config) -> Allocation:
        return cls(
            settings=config.allocation,
            teams=config.teams,
            cluster_tag_keys=config.gpu.cluster_tag_keys,
            reporting_currency=config.reporting_currency,
            fiscal_year_start_month=config.fiscal_year_start_month,
            fiscal_year_label=config.fiscal_year_label,
            gpu=GpuAttribution.from_config(config),
        )

    @property
    def rules(self) -> tuple[SharedCostRule, ...]:
        return self.settings.shared


def _base_sql(allocation: Allocation, period: Period, cost: CostBasis) -> tuple[str, list[object]]:
    """The one pass over cost rows: sums per tag set, billing month, currency and what the
    rules look at. Grouping by the integer tag-set id keeps the 10 M-row pass fast, so an
    account, service or charge-category column is added only when a rule or mapping needs it.
    """
    scopes = [rule.scope for rule in allocation.rules]
    wanted = {
        "account": bool(allocation.settings.accounts) or any(s.accounts for s in scopes),
        "service": any(s.services for s in scopes),
        "charge_category": any(s.charge_categories for s in scopes),
    }
    expressions = {
        "account": _PLAIN_DIMENSIONS["account"],
        "service": '"ServiceName"',
        "charge_category": '"ChargeCategory"',
    }
    extra = "".join(
        f"{expressions[name] if needed else 'CAST(NULL AS VARCHAR)'} AS {name}, "
        for name, needed in wanted.items()
    )
    where, params = period.where()
    sql = f"""
        SELECT "x_TagSetId" AS tag_set_id, "BillingPeriodStart" AS billing_period_start,
               {extra}"BillingCurrency" AS currency, sum("{COST_COLUMN[cost]}") AS cost
        FROM cost_resolved WHERE {where}
        GROUP BY ALL
    """
    return sql, list(params)


def _scope_sql(scope: SharedCostScope) -> tuple[str, list[object]]:
    """A condition over a labelled row (account, service, tags, cluster, direct_team)."""
    parts: list[str] = []
    params: list[object] = []
    for expr, values in (
        ("account", scope.accounts),
        ("cluster", scope.clusters),
        ("service", scope.services),
        ("charge_category", scope.charge_categories),
    ):
        if values:
            parts.append(f"{expr} IN ({', '.join('?' for _ in values)})")
            params += list(values)
    for key, value in scope.tags.items():
        parts.append("tags[?] = ?")
        params += [key, value]
    if scope.unallocated:
        parts.append("direct_team IS NULL")
    return f"coalesce({' AND '.join(parts)}, false)", params


def _conversion_rates(conn: duckdb.DuckDBPyConnection, reporting: str) -> pa.Table:
    """The rate into the reporting currency for each (currency, billing month) of
    `allocation_base`: the newest `fx_rates` rate dated on or before the month's last day."""
    rates = conn.sql(
        """
        SELECT b.currency, b.month,
               CASE WHEN b.currency = ? THEN CAST(1 AS DECIMAL(38,10)) ELSE (
                   SELECT f.rate FROM fx_rates f
                   WHERE f.from_currency = b.currency AND f.to_currency = ?
                     AND f.rate_date < b.month + INTERVAL 1 MONTH
                   ORDER BY f.rate_date DESC, f.source LIMIT 1
               ) END AS rate
        FROM (SELECT DISTINCT currency,
                     CAST(date_trunc('month', billing_period_start) AS DATE) AS month
              FROM allocation_base) b
        """,
        params=[reporting, reporting],
    ).to_arrow_table()
    missing = [r for r in rates.to_pylist() if r["rate"] is None]
    if missing:
        first = missing[0]
        raise ConfigError(
            f"no {first['currency']}->{reporting} rate dated on or before the end of "
            f"{first['month']:%Y-%m} ({len(missing)} currency-month(s) lack one): add it to "
            "fx.rates or fx.rates_file in finops.yaml and run `finops fx load`"
        )
    return rates


def _rule_weights(
    conn: duckdb.DuckDBPyConnection, period: Period, allocation: Allocation
) -> pa.Table:
    """Who shares each rule's cost, with what weight (see _WEIGHT_SCHEMA)."""
    rows: list[dict[str, object]] = []
    configured = [team.name for team in allocation.teams]

    def add(index: int, recipient: str | None, weight: float, basis: str, **more: object) -> None:
        rows.append(
            {
                "rule_index": index,
                "recipient": recipient,
                "weight": weight,
                "basis": basis,
                "recipient_kind": "shared",
                **more,
            }
        )

    for index, rule in enumerate(allocation.rules):
        if rule.split == "fixed":
            for team, percent in rule.percentages.items():
                add(index, team, percent, "weight")
        elif rule.split == "even" and (rule.teams or configured):
            for team in rule.teams or configured:
                add(index, team, 1.0, "weight")
        elif rule.split == "even":
            add(index, None, 1.0, "direct-team")
        elif rule.split == "proportional":
            for team in rule.teams or [None]:
                add(index, team, 1.0, "direct-cost")
        else:
            rows += _gpu_hour_weights(conn, period, allocation, index, rule)
    return pa.Table.from_pylist(rows, schema=_WEIGHT_SCHEMA)


def _gpu_hour_weights(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    allocation: Allocation,
    index: int,
    rule: SharedCostRule,
) -> list[dict[str, object]]:
    """A gpu-hours rule's weights: each team's busy GPU-hours per month and cluster; idle
    GPU-hours weigh for the `(idle)` row, or not at all when idle cost is shared."""
    if allocation.gpu is None:
        raise ConfigError(f"rule {rule.name!r}: a gpu-hours split needs the GPU settings")
    hours = gpu_hours_by_team(conn, period, allocation.gpu, rule.scope.clusters).to_pylist()
    separate = allocation.settings.idle == "separate"
    rows: list[dict[str, object]] = []
    idle: dict[tuple[object, object], float] = {}
    for h in hours:
        unallocated = h["team"] == GPU_UNALLOCATED
        rows.append(
            {
                "rule_index": index,
                "month": h["month"],
                "cluster": h["cluster"],
                "recipient": None if unallocated else h["team"],
                "recipient_kind": "unallocated" if unallocated else "shared",
                "weight": h["busy_gpu_hours"],
                "basis": "weight",
            }
        )
        key = (h["month"], h["cluster"])
        idle[key] = idle.get(key, 0.0) + h["idle_gpu_hours"]
    if separate:
        rows += [
            {
                "rule_index": index,
                "month": month,
                "cluster": cluster,
                "recipient": allocation.settings.idle_label,
                "recipient_kind": "idle",
                "weight": weight,
                "basis": "weight",
            }
            for (month, cluster), weight in idle.items()
        ]
    return rows


def allocation_lines(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    allocation: Allocation,
    *,
    cost: CostBasis = "effective",
) -> pa.Table:
    """Every amount of the period's bill and where it went, exact, in the reporting currency:
    one row per billing month, recipient, kind and rule.

    Kinds: `direct` (the team's tag, else its account in `allocation.accounts`), `shared`
    (a rule's split), `idle` (idle GPU-hours' share of a gpu-hours split, shown separately)
    and `unallocated`. A cost row in a rule's scope is that rule's, tagged or not (the
    first rule that matches wins). A rule that finds no one to split among in a month (no
    direct cost, no GPU-hours) leaves that cost where direct attribution puts it. Splits are
    exact: each recipient but the largest gets its share rounded to 1e-6 and the largest
    the remainder, so the lines add up to the bill to the last decimal.
    """
    base_sql, base_params = _base_sql(allocation, period, cost)
    base = conn.sql(base_sql, params=base_params).to_arrow_table()
    settings = allocation.settings
    team_sql, team_params = _team_sql(settings, allocation.teams)
    account_sql, account_params = "CAST(NULL AS VARCHAR)", []
    if settings.accounts:
        whens = " ".join("WHEN ? THEN ?" for _ in settings.accounts)
        account_sql = f"CASE account {whens} END"
        account_params = [x for pair in settings.accounts.items() for x in pair]
    cluster_keys = allocation.cluster_tag_keys
    cluster_sql = (
        f"coalesce({', '.join('tags[?]' for _ in cluster_keys)})"
        if cluster_keys
        else "CAST(NULL AS VARCHAR)"
    )
    rule_cases, rule_params = [], []
    for index, rule in enumerate(allocation.rules):
        condition, params = _scope_sql(rule.scope)
        rule_cases.append(f"WHEN {condition} THEN {index}")
        rule_params += params
    rule_sql = f"CASE {' '.join(rule_cases)} END" if rule_cases else "CAST(NULL AS INTEGER)"
    by_cluster = [i for i, rule in enumerate(allocation.rules) if rule.split == "gpu-hours"]
    pool_cluster = (
        f"CASE WHEN rule_index IN ({', '.join(map(str, by_cluster))}) THEN cluster END"
        if by_cluster
        else "CAST(NULL AS VARCHAR)"
    )
    conn.register("allocation_base", base)
    try:
        rates = _conversion_rates(conn, allocation.reporting_currency)
        weights = _rule_weights(conn, period, allocation)
        conn.register("allocation_rates", rates)
        conn.register("allocation_weights", weights)
        lines = conn.sql(
            _LINES_SQL.format(
                team=team_sql,
                account=account_sql,
                cluster=cluster_sql,
                rule=rule_sql,
                pool_cluster=pool_cluster,
            ),
            params=[
                *team_params,
                *account_params,
                *cluster_keys,
                *rule_params,
                settings.unallocated_label,
                allocation.reporting_currency,
            ],
        ).to_arrow_table()
    finally:
        for name in ("allocation_base", "allocation_rates", "allocation_weights"):
            conn.unregister(name)
    names = pa.array(
        [None if i is None else allocation.rules[i].name for i in lines["rule_index"].to_pylist()],
        pa.string(),
    )
    return lines.set_column(lines.schema.get_field_index("rule_index"), "rule", names)


def history_span(conn: duckdb.DuckDBPyConnection, until: date | None = None) -> Period | None:
    """Every billing month the warehouse holds (up to `until`), as one month-kind period;
    None when it holds no cost rows."""
    rows = conn.execute(
        """
        SELECT CAST(min(date_trunc('month', "BillingPeriodStart")) AS DATE),
               CAST(max(date_trunc('month', "BillingPeriodStart")) AS DATE)
        FROM cost_resolved
        """
    ).fetchall()
    first, last = rows[0]
    if first is None:
        return None
    end = add_months(last, 1) if until is None else until
    return Period(f"{first:%Y-%m}..{end:%Y-%m}", "month", first, max(end, first))


def allocation_history(
    conn: duckdb.DuckDBPyConnection,
    allocation: Allocation,
    *,
    cost: CostBasis = "effective",
    until: date | None = None,
) -> pa.Table:
    """`allocation_lines` of every billing month held (before `until`), in one pass.

    Each month is allocated on its own (its rules' pools, weights and splits are that
    month's), so a month's or quarter's lines are these lines' rows for its months: pass
    them as `lines=` to `allocate`, `allocation_coverage` or the forecasts to compute the
    allocation once for several figures.
    """
    span = history_span(conn, until)
    if span is None:
        span = Period("none", "month", date(1970, 1, 1), date(1970, 1, 1))
    return allocation_lines(conn, span, allocation, cost=cost)


def lines_for(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    allocation: Allocation,
    cost: CostBasis,
    lines: pa.Table | None,
) -> pa.Table:
    """The period's allocation lines: its months' rows of `lines` (which must span them,
    on the same cost basis), else computed. A date range selects rows by charge period, not
    by billing month, so its lines are always computed."""
    if lines is None or period.kind == "range":
        return allocation_lines(conn, period, allocation, cost=cost)
    month = lines["month"]
    inside = pc.and_(
        pc.greater_equal(month, pa.scalar(period.start, pa.date32())),
        pc.less(month, pa.scalar(period.end, pa.date32())),
    )
    return lines.filter(inside)


_LINES_SQL = """
    WITH labelled AS (
        SELECT CAST(date_trunc('month', b.billing_period_start) AS DATE) AS month,
               CASE WHEN r.rate = 1 THEN b.cost
                    ELSE CAST(b.cost * r.rate AS DECIMAL(38,10)) END AS amount,
               ts.tags, b.account, b.service, b.charge_category
        FROM allocation_base b
        LEFT JOIN tag_sets ts USING (tag_set_id)
        JOIN allocation_rates r ON r.currency = b.currency
         AND r.month = CAST(date_trunc('month', b.billing_period_start) AS DATE)
    ),
    attributed AS (
        SELECT *, coalesce({team}, {account}) AS direct_team, {cluster} AS cluster
        FROM labelled
    ),
    claimed AS (
        SELECT month, amount, direct_team, cluster, {rule} AS rule_index FROM attributed
    ),
    pooled AS (
        SELECT month, direct_team, rule_index, {pool_cluster} AS cluster, amount
        FROM claimed WHERE rule_index IS NOT NULL
    ),
    pools AS (
        SELECT month, rule_index, cluster, sum(amount) AS amount FROM pooled GROUP BY ALL
    ),
    direct AS (
        SELECT month, direct_team AS recipient, sum(amount) AS amount
        FROM claimed WHERE rule_index IS NULL AND direct_team IS NOT NULL
        GROUP BY ALL
    ),
    recipients AS (
        SELECT w.rule_index, m.month, w.cluster, w.recipient, w.recipient_kind, w.weight
        FROM allocation_weights w
        JOIN (SELECT DISTINCT month FROM pools) m ON w.month IS NULL OR w.month = m.month
        WHERE w.basis = 'weight'
        UNION ALL
        SELECT w.rule_index, d.month, NULL, d.recipient, 'shared',
               CASE WHEN w.basis = 'direct-team' THEN 1.0
                    ELSE CAST(greatest(d.amount, 0) AS DOUBLE) END
        FROM allocation_weights w
        JOIN direct d ON w.recipient IS NULL OR w.recipient = d.recipient
        WHERE w.basis IN ('direct-cost', 'direct-team') AND d.amount > 0
    ),
    split AS (
        SELECT p.month, p.rule_index, p.cluster, p.amount, r.recipient, r.recipient_kind,
               r.weight / sum(r.weight) OVER pool AS fraction,
               row_number() OVER (pool ORDER BY r.weight DESC, r.recipient_kind, r.recipient)
                   AS rank
        FROM pools p
        JOIN recipients r ON r.rule_index = p.rule_index AND r.month = p.month
         AND r.cluster IS NOT DISTINCT FROM p.cluster
        WHERE r.weight > 0
        WINDOW pool AS (PARTITION BY p.month, p.rule_index, p.cluster)
    ),
    parts AS (
        SELECT *, CASE WHEN rank > 1 THEN
                      CAST(round(CAST(amount AS DOUBLE) * fraction, 6) AS DECIMAL(38,10))
                  END AS part
        FROM split
    ),
    shared AS (
        SELECT month, rule_index, recipient, recipient_kind,
               CASE WHEN rank = 1
                    THEN amount - coalesce(sum(part) OVER (PARTITION BY month, rule_index, cluster), 0)
                    ELSE part END AS amount
        FROM parts
    ),
    unsplit AS (
        SELECT o.month, o.direct_team AS recipient, sum(o.amount) AS amount
        FROM pooled o
        WHERE NOT EXISTS (
            SELECT 1 FROM split s
            WHERE s.month = o.month AND s.rule_index = o.rule_index
              AND s.cluster IS NOT DISTINCT FROM o.cluster
        )
        GROUP BY ALL
    ),
    lines AS (
        SELECT month, recipient, 'direct' AS kind, CAST(NULL AS INTEGER) AS rule_index, amount
        FROM direct
        UNION ALL
        SELECT month, NULL, 'unallocated', NULL, amount
        FROM claimed WHERE rule_index IS NULL AND direct_team IS NULL
        UNION ALL
        SELECT month, recipient, CASE WHEN recipient IS NULL THEN 'unallocated' ELSE 'direct' END,
               NULL, amount
        FROM unsplit
        UNION ALL
        SELECT month, recipient, recipient_kind, rule_index, amount FROM shared
    )
    SELECT month, CASE WHEN kind = 'unallocated' THEN ? ELSE recipient END AS recipient,
           kind, rule_index, CAST(? AS VARCHAR) AS currency,
           CAST(sum(amount) AS DECIMAL(38,10)) AS amount
    FROM lines
    GROUP BY ALL
    ORDER BY month, kind, recipient, rule_index
"""


NO_PARENT: dict[str, str] = {
    "cost-centre": "(no cost centre)",
    "business-unit": "(no business unit)",
}
"""Where a team finops.yaml does not know (or gives no cost centre) rolls up to."""


def _bucket_labels(
    lines: pa.Table, period: Period, allocation: Allocation, grain: Grain
) -> pa.Table:
    """month -> the label of the reporting bucket it falls in (month, fiscal quarter, period)."""
    months = sorted(set(lines["month"].to_pylist()))
    if grain == "month":
        labels = [f"{m:%Y-%m}" for m in months]
    elif grain == "quarter":
        labels = [
            quarter_containing(
                m,
                fiscal_year_start_month=allocation.fiscal_year_start_month,
                fiscal_year_label=allocation.fiscal_year_label,
            ).label
            for m in months
        ]
    else:
        labels = [period.label] * len(months)
    return pa.table(
        {"month": pa.array(months, pa.date32()), "period": pa.array(labels, pa.string())}
    )


def _group_names(allocation: Allocation, by: Hierarchy) -> pa.Table:
    """team -> its group at the `by` level of team -> cost centre -> business unit."""
    if by == "team":
        teams = [t.name for t in allocation.teams]
        return pa.table({"team": teams, "group_name": teams})
    parent = [t.cost_centre if by == "cost-centre" else t.business_unit for t in allocation.teams]
    return pa.table(
        {"team": [t.name for t in allocation.teams], "group_name": pa.array(parent, pa.string())}
    )


def allocate(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    allocation: Allocation,
    *,
    by: Hierarchy = "team",
    grain: Grain = "period",
    cost: CostBasis = "effective",
    lines: pa.Table | None = None,
) -> pa.Table:
    """Charge-back with allocation: per reporting bucket (month, fiscal quarter or the whole
    period) and team, cost centre or business unit, its direct and shared cost.

    Columns: period, the `by` level, currency (the reporting one), direct_cost, shared_cost,
    cost (rounded to the cent for display), share (% of the bucket's bill) and exact_cost.
    The `(unallocated)` and `(idle)` rows keep their labels at every level; a team
    finops.yaml does not list rolls up to `(no cost centre)` / `(no business unit)`.
    Every bucket's rows add up to its bill exactly. `lines`: see `lines_for`.
    """
    if by not in HIERARCHY:
        raise ConfigError(f"--by {by!r}: allocation groups by one of {', '.join(HIERARCHY)}")
    lines = lines_for(conn, period, allocation, cost, lines)
    buckets = _bucket_labels(lines, period, allocation, grain)
    groups = _group_names(allocation, by)
    column = by.replace("-", "_")
    conn.register("allocated_lines", lines)
    conn.register("allocation_buckets", buckets)
    conn.register("allocation_groups", groups)
    try:
        return conn.sql(
            f"""
            WITH grouped AS (
                SELECT b.period,
                       CASE WHEN l.kind IN ('unallocated', 'idle') THEN l.recipient
                            WHEN ? THEN l.recipient
                            ELSE coalesce(g.group_name, ?) END AS "{column}",
                       l.currency,
                       sum(l.amount) FILTER (WHERE l.kind = 'direct') AS direct,
                       sum(l.amount) FILTER (WHERE l.kind IN ('shared', 'idle')) AS shared,
                       sum(l.amount) AS exact_cost
                FROM allocated_lines l
                JOIN allocation_buckets b USING (month)
                LEFT JOIN allocation_groups g ON g.team = l.recipient
                GROUP BY ALL
            )
            SELECT period, "{column}", currency,
                   round(coalesce(direct, 0), 2) AS direct_cost,
                   round(coalesce(shared, 0), 2) AS shared_cost,
                   round(exact_cost, 2) AS cost,
                   round(100 * exact_cost / nullif(sum(exact_cost) OVER (PARTITION BY period), 0), 2)
                       AS share,
                   exact_cost
            FROM grouped
            ORDER BY period, exact_cost DESC, "{column}"
            """,
            params=[by == "team", NO_PARENT.get(by, "")],
        ).to_arrow_table()
    finally:
        for name in ("allocated_lines", "allocation_buckets", "allocation_groups"):
            conn.unregister(name)


def allocation_coverage(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    allocation: Allocation,
    *,
    grain: Grain = "period",
    cost: CostBasis = "effective",
    lines: pa.Table | None = None,
) -> pa.Table:
    """Per reporting bucket: the bill and how it was allocated, exact, with coverage.

    `coverage_pct` is the share of the bill attributed directly (tag or account);
    `allocated_pct` adds what rules split among teams; `untagged` is what direct attribution
    found no team for (before rules), so `untagged_pct` is the FinOps untagged share.
    `lines`: see `lines_for`.
    """
    lines = lines_for(conn, period, allocation, cost, lines)
    untagged = _untagged_by_month(conn, period, allocation, cost)
    buckets = _bucket_labels(lines, period, allocation, grain)
    conn.register("allocated_lines", lines)
    conn.register("allocation_buckets", buckets)
    conn.register("untagged_months", untagged)
    try:
        return conn.sql(
            """
            WITH totals AS (
                SELECT b.period, any_value(l.currency) AS currency, sum(l.amount) AS bill,
                       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'direct'), 0) AS direct,
                       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'shared'), 0) AS shared,
                       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'idle'), 0) AS idle,
                       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'unallocated'), 0) AS unallocated
                FROM allocated_lines l JOIN allocation_buckets b USING (month)
                GROUP BY 1
            ),
            untagged AS (
                SELECT b.period, sum(u.untagged) AS untagged
                FROM untagged_months u JOIN allocation_buckets b USING (month) GROUP BY 1
            )
            SELECT t.*, coalesce(u.untagged, 0) AS untagged,
                   round(100 * direct / nullif(bill, 0), 2) AS coverage_pct,
                   round(100 * (direct + shared) / nullif(bill, 0), 2) AS allocated_pct,
                   round(100 * coalesce(u.untagged, 0) / nullif(bill, 0), 2) AS untagged_pct
            FROM totals t LEFT JOIN untagged u USING (period)
            ORDER BY period
            """
        ).to_arrow_table()
    finally:
        for name in ("allocated_lines", "allocation_buckets", "untagged_months"):
            conn.unregister(name)


def _untagged_by_month(
    conn: duckdb.DuckDBPyConnection, period: Period, allocation: Allocation, cost: CostBasis
) -> pa.Table:
    """Cost per billing month that carries none of the allocation tag keys, in the reporting
    currency (rows already summed per tag set: the keys are looked up once per tag set)."""
    where, params = period.where("c")
    keys = allocation.settings.tag_keys
    has_key = " OR ".join("ts.tags[?] IS NOT NULL" for _ in keys)
    return conn.sql(
        f"""
        WITH per_tag_set AS (
            SELECT c."x_TagSetId" AS tag_set_id, c."BillingCurrency" AS currency,
                   CAST(date_trunc('month', c."BillingPeriodStart") AS DATE) AS month,
                   sum(c."{COST_COLUMN[cost]}") AS cost
            FROM cost_resolved c WHERE {where} GROUP BY ALL
        )
        SELECT p.month, sum(CASE WHEN p.currency = ? THEN p.cost ELSE p.cost * (
                   SELECT f.rate FROM fx_rates f
                   WHERE f.from_currency = p.currency AND f.to_currency = ?
                     AND f.rate_date < p.month + INTERVAL 1 MONTH
                   ORDER BY f.rate_date DESC, f.source LIMIT 1) END) AS untagged
        FROM per_tag_set p LEFT JOIN tag_sets ts USING (tag_set_id)
        WHERE NOT coalesce({has_key}, false)
        GROUP BY 1
        """,
        params=[
            *params,
            allocation.reporting_currency,
            allocation.reporting_currency,
            *keys,
        ],
    ).to_arrow_table()
