"""Return on investment per model/project (or team) and quarter, and optimisation payback.

**Cost** is the charge-back of the quarter grouped by the project tag
(`scorecard.project_tag_key`, e.g. `project`) or by team (the allocation tag), on the
configured cost basis: the direct cost. A share of shared cost, when the caller has one
per project or team, is added to it (`shared_cost`): allocation of shared cost is
charge-back's to compute, and ROI takes its result as it is.

**Value** is the quarter's business KPI inputs of category `value` (revenue lift, cost
avoidance) for the project or team, in the cost's currency. A KPI input counts in a
quarter when its period lies within it (months add up to their quarter); one spanning
beyond the quarter is not counted, and a note says so. ROI = (value - cost) / cost.
**Unit cost** divides cost by the quarter's `count` inputs `predictions` (per 1,000) and
`training_runs`.

**Payback** of an optimisation project compares its `engineering_cost` inputs with its
`realised_savings` inputs (the savings the recommendations it carried out realised,
supplied as KPI inputs until the policy engine records them), all up to the quarter's
end. Monthly savings = realised savings / days they cover x 365.25 / 12; payback =
engineering cost / monthly savings; the annual return (the accounting rate of return,
annual savings / engineering cost) meets the hurdle when it is at least
`scorecard.hurdle_rate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb
import pyarrow as pa

from finops.analytics.chargeback import (
    Allocation,
    CostBasis,
    Dimension,
    allocate,
    chargeback,
    parse_dimensions,
)
from finops.analytics.scope import buckets_table, registered
from finops.config import AllocationSettings, Team
from finops.periods import Period

RoiGrouping = Literal["project", "team"]
_MONEY = pa.decimal128(38, 10)


@dataclass(frozen=True)
class RoiReport:
    returns: pa.Table
    """Per quarter and project (or team): cost, value, ROI and unit costs."""
    payback: pa.Table
    """Per quarter and optimisation project: engineering cost, savings, payback, hurdle."""
    notes: tuple[str, ...]


def roi(
    conn: duckdb.DuckDBPyConnection,
    buckets: list[Period],
    *,
    allocation: AllocationSettings,
    teams: tuple[Team, ...] = (),
    by: RoiGrouping = "project",
    project_tag_key: str = "project",
    cost_basis: CostBasis = "effective",
    hurdle_rate: float = 0.15,
    shared_cost: pa.Table | None = None,
    sharing: Allocation | None = None,
) -> RoiReport:
    """ROI and unit costs per quarter, and payback of optimisation projects.

    `shared_cost`, if given, has columns quarter (a bucket's label), key (project or team),
    currency and shared_cost (decimal): each one's share of shared cost in the quarter.
    Without it, `sharing` (finops.yaml's allocation rules) computes it: see
    `shared_cost_shares`.
    """
    if shared_cost is None and sharing is not None:
        shared_cost = shared_cost_shares(
            conn, buckets, sharing, by=by, project_tag_key=project_tag_key, cost_basis=cost_basis
        )
    dimension = "team" if by == "team" else f"tag:{project_tag_key}"
    (dim,) = parse_dimensions(dimension, allocation, teams)
    unassigned = allocation.unallocated_label if by == "team" else "(none)"
    costs = pa.concat_tables(
        [_direct_costs(conn, bucket, dim.name, dim, cost_basis, allocation) for bucket in buckets]
    )
    shared = shared_cost if shared_cost is not None else _no_shared_cost()
    tables = {"scope_buckets": buckets_table(buckets), "roi_costs": costs, "roi_shared": shared}
    params = {"unassigned": unassigned}
    with registered(conn, tables):
        returns = conn.sql(_returns_sql(by), params=params).to_arrow_table()
        payback = conn.sql(_PAYBACK_SQL, params={"hurdle": hurdle_rate * 100}).to_arrow_table()
        notes = _notes(conn, by, unassigned)
    return RoiReport(returns, payback, tuple(notes))


def shared_cost_shares(
    conn: duckdb.DuckDBPyConnection,
    buckets: list[Period],
    sharing: Allocation,
    *,
    by: RoiGrouping,
    project_tag_key: str,
    cost_basis: CostBasis,
) -> pa.Table:
    """Each team's (or project's) share of shared cost per quarter, from the allocation rules.

    A team's share is what allocation gives it beyond its direct cost. A project's share is
    its team's, split in proportion to the project's part of the team's direct cost (the
    part no project tag claims keeps its share, under `(none)`, outside any project).
    """
    team_dim, project_dim = parse_dimensions(
        f"team,tag:{project_tag_key}", sharing.settings, sharing.teams
    )
    parts = []
    for bucket in buckets:
        allocated = allocate(conn, bucket, sharing, by="team", cost=cost_basis)
        if by == "team":
            parts.append(
                pa.table(
                    {
                        "quarter": pa.array([bucket.label] * allocated.num_rows, pa.string()),
                        "key": allocated["team"].cast(pa.string()),
                        "currency": allocated["currency"].cast(pa.string()),
                        "shared_cost": allocated["shared_cost"].cast(_MONEY),
                    }
                )
            )
            continue
        direct = chargeback(
            conn,
            bucket,
            [team_dim, project_dim],
            cost=cost_basis,
            unallocated_label=sharing.settings.unallocated_label,
        )
        tables = {"roi_allocated": allocated, "roi_direct": direct}
        with registered(conn, tables):
            parts.append(
                conn.sql(
                    f"""
                    WITH direct AS (
                        SELECT team, CAST("{project_dim.name}" AS VARCHAR) AS project, currency,
                               exact_cost / nullif(sum(exact_cost) OVER (PARTITION BY team, currency), 0)
                                   AS part
                        FROM roi_direct
                    )
                    SELECT CAST(? AS VARCHAR) AS quarter, d.project AS key,
                           CAST(d.currency AS VARCHAR) AS currency,
                           CAST(sum(a.shared_cost * d.part) AS DECIMAL(38,10)) AS shared_cost
                    FROM direct d
                    JOIN roi_allocated a ON a.team = d.team AND a.currency = d.currency
                    GROUP BY ALL
                    """,
                    params=[bucket.label],
                ).to_arrow_table()
            )
    return pa.concat_tables(parts) if parts else _no_shared_cost()


def _direct_costs(
    conn: duckdb.DuckDBPyConnection,
    bucket: Period,
    column: str,
    dim: Dimension,
    cost_basis: CostBasis,
    allocation: AllocationSettings,
) -> pa.Table:
    table = chargeback(
        conn,
        bucket,
        [dim],
        cost=cost_basis,
        unallocated_label=allocation.unallocated_label,
    )
    return pa.table(
        {
            "quarter": pa.array([bucket.label] * table.num_rows, pa.string()),
            "key": table[column].cast(pa.string()),
            "currency": table["currency"].cast(pa.string()),
            "direct_cost": table["exact_cost"].cast(_MONEY),
        }
    )


def _no_shared_cost() -> pa.Table:
    return pa.table(
        {"quarter": [], "key": [], "currency": [], "shared_cost": []},
        schema=pa.schema(
            [("quarter", pa.string()), ("key", pa.string()), ("currency", pa.string()),
             ("shared_cost", _MONEY)]
        ),
    )  # fmt: skip


_KPIS_IN_QUARTER = """
    SELECT b.bucket AS quarter, b.position, k.*
    FROM kpi_inputs k JOIN scope_buckets b
      ON k.period_start >= b.start_day AND k.period_end <= b.end_day
"""


def _returns_sql(key: RoiGrouping) -> str:
    """ROI per quarter and `key` (a column of kpi_inputs: project or team)."""
    return f"""
        WITH kpis AS ({_KPIS_IN_QUARTER}),
        value AS (
            SELECT quarter, {key} AS key, currency, sum(value) AS value
            FROM kpis WHERE category = 'value' AND {key} IS NOT NULL GROUP BY ALL
        ),
        counts AS (
            SELECT quarter, {key} AS key,
                   sum(value) FILTER (WHERE metric = 'predictions') AS predictions,
                   sum(value) FILTER (WHERE metric = 'training_runs') AS training_runs
            FROM kpis WHERE category = 'count' AND {key} IS NOT NULL GROUP BY ALL
        ),
        keys AS (
            SELECT quarter, key, currency FROM roi_costs WHERE key <> $unassigned
            UNION SELECT quarter, key, currency FROM roi_shared
            UNION SELECT quarter, key, currency FROM value
        ),
        costs AS (
            SELECT k.quarter, k.key, k.currency,
                   coalesce(c.direct_cost, 0) AS direct_cost,
                   coalesce(s.shared_cost, 0) AS shared_cost
            FROM keys k
            LEFT JOIN roi_costs c USING (quarter, key, currency)
            LEFT JOIN (SELECT quarter, key, currency, sum(shared_cost) AS shared_cost
                       FROM roi_shared GROUP BY ALL) s USING (quarter, key, currency)
        )
        SELECT c.quarter, c.key AS "{key}", c.currency, c.direct_cost, c.shared_cost,
               c.direct_cost + c.shared_cost AS cost,
               coalesce(v.value, 0) AS value,
               coalesce(v.value, 0) - (c.direct_cost + c.shared_cost) AS net_value,
               100 * (coalesce(v.value, 0) - (c.direct_cost + c.shared_cost))
                   / nullif(c.direct_cost + c.shared_cost, 0) AS roi_pct,
               n.predictions,
               (c.direct_cost + c.shared_cost) * 1000 / nullif(n.predictions, 0)
                   AS cost_per_1k_predictions,
               n.training_runs,
               (c.direct_cost + c.shared_cost) / nullif(n.training_runs, 0)
                   AS cost_per_training_run
        FROM costs c
        JOIN scope_buckets b ON b.bucket = c.quarter
        LEFT JOIN value v USING (quarter, key, currency)
        LEFT JOIN counts n USING (quarter, key)
        ORDER BY b.position, c.currency, cost DESC, c.key
"""


_PAYBACK_SQL = """
    WITH upto AS (
        SELECT b.bucket AS quarter, b.position, k.*
        FROM kpi_inputs k JOIN scope_buckets b ON k.period_end <= b.end_day
        WHERE k.category IN ('engineering_cost', 'realised_savings') AND k.project IS NOT NULL
    ),
    totals AS (
        SELECT quarter, position, project, currency,
               sum(value) FILTER (WHERE category = 'engineering_cost') AS engineering_cost,
               coalesce(sum(value) FILTER (WHERE category = 'realised_savings'), 0)
                   AS realised_savings,
               date_diff('day', min(period_start) FILTER (WHERE category = 'realised_savings'),
                         max(period_end) FILTER (WHERE category = 'realised_savings'))
                   AS savings_days
        FROM upto GROUP BY ALL
    ),
    rates AS (
        SELECT *, realised_savings / nullif(savings_days, 0) * 365.25 / 12 AS monthly_savings
        FROM totals WHERE engineering_cost > 0
    )
    SELECT quarter, project, currency, engineering_cost, realised_savings, savings_days,
           monthly_savings,
           engineering_cost / nullif(monthly_savings, 0) AS payback_months,
           100 * monthly_savings * 12 / engineering_cost AS annual_return_pct,
           $hurdle AS hurdle_rate_pct,
           coalesce(100 * monthly_savings * 12 / engineering_cost >= $hurdle, false)
               AS meets_hurdle,
           realised_savings >= engineering_cost AS paid_back
    FROM rates
    ORDER BY position, project
"""


def _notes(conn: duckdb.DuckDBPyConnection, by: str, unassigned: str) -> list[str]:
    """What the figures leave out: cost without a project, KPI inputs that do not fit."""
    notes = []
    for quarter, currency, cost in conn.execute(
        "SELECT quarter, currency, direct_cost FROM roi_costs WHERE key = ? ORDER BY quarter",
        [unassigned],
    ).fetchall():
        label = "no project tag" if by == "project" else "no team"
        notes.append(f"{quarter}: {cost:,.2f} {currency} of cost has {label}, so no ROI")
    for quarter, count, example in conn.execute(
        """
        SELECT b.bucket, count(*), min(k.kpi_id)
        FROM kpi_inputs k JOIN scope_buckets b
          ON k.period_start < b.end_day AND k.period_end > b.start_day
         AND NOT (k.period_start >= b.start_day AND k.period_end <= b.end_day)
        WHERE k.category IN ('value', 'count')
        GROUP BY b.bucket, b.position ORDER BY b.position
        """
    ).fetchall():
        notes.append(
            f"{quarter}: {count} KPI input(s) span beyond the quarter and are not counted "
            f"(e.g. {example})"
        )
    return notes
