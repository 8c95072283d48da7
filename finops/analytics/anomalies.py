"""Spend anomalies: a team's daily spend on a service far above its last stable week.

Daily spend is the Usage charges (credits, tax and fees arrive monthly and would look like
spikes) per UTC day of ChargePeriodStart, per team (the allocation tag, else
`(unallocated)`) and service; a day without spend after the series' first counts as zero. For each day, the
baseline is the steadiest of the four weeks before it (the full 7-day window with the
smallest standard deviation; the most recent on a tie), so last week's spike does not hide
today's. A day is an anomaly when its spend is more than `threshold` (3) standard deviations
above the baseline mean and at least `min_increase` above it. The deviation is floored at
1% of the baseline mean (and a cent), so a perfectly flat series alerts on a real jump,
not on rounding. Drivers: the resources whose spend moved most against their own mean
over the same baseline week.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pyarrow as pa

from finops.analytics.chargeback import COST_COLUMN, Allocation, CostBasis, _team_sql

WEEKS = 4
"""How many weeks back a baseline may come from."""
DRIVERS = 5


def detect_anomalies(
    conn: duckdb.DuckDBPyConnection,
    first_day: date,
    last_day: date,
    allocation: Allocation,
    *,
    threshold: float = 3.0,
    min_increase: float = 0.0,
    cost: CostBasis = "effective",
) -> pa.Table:
    """Anomalies among the days [first_day, last_day], in the columns the warehouse stores."""
    team_sql, team_params = _team_sql(allocation.settings, allocation.teams)
    lookback = first_day - timedelta(days=7 * WEEKS)
    windows = ", ".join(
        f"avg(cost) OVER w{k} AS mean{k}, stddev_samp(cost) OVER w{k} AS std{k}, "
        f"count(*) OVER w{k} AS days{k}"
        for k in range(1, WEEKS + 1)
    )
    window_defs = ", ".join(
        f"w{k} AS (PARTITION BY team, service, currency ORDER BY day "
        f"ROWS BETWEEN {7 * k} PRECEDING AND {7 * k - 6} PRECEDING)"
        for k in range(1, WEEKS + 1)
    )
    # The steadiest full week: the smallest deviation, then the most recent.
    candidates = ", ".join(
        f"CASE WHEN days{k} = 7 THEN {{'std': std{k}, 'week': {k}, 'mean': mean{k}}} END"
        for k in range(1, WEEKS + 1)
    )
    sql = f"""
        WITH per_tag_set AS (
            SELECT CAST("ChargePeriodStart" AS DATE) AS day, "x_TagSetId" AS tag_set_id,
                   coalesce("ServiceName", '(none)') AS service, "BillingCurrency" AS currency,
                   sum("{COST_COLUMN[cost]}") AS cost
            FROM cost_resolved
            WHERE "ChargeCategory" = 'Usage' AND "ChargePeriodStart" >= ? AND "ChargePeriodStart" < ?
            GROUP BY ALL
        ),
        daily AS (
            SELECT day, coalesce({team_sql}, ?) AS team, service, currency, sum(cost) AS cost
            FROM per_tag_set LEFT JOIN tag_sets USING (tag_set_id)
            GROUP BY ALL
        ),
        grid AS (
            SELECT k.team, k.service, k.currency, CAST(d.day AS DATE) AS day
            FROM (SELECT team, service, currency, min(day) AS first_day FROM daily GROUP BY ALL) k
            CROSS JOIN (SELECT unnest(generate_series(CAST(? AS DATE), CAST(? AS DATE), INTERVAL 1 DAY)) AS day) d
            -- Days before a series' first spend are not zeros: its history starts there.
            WHERE CAST(d.day AS DATE) >= k.first_day
        ),
        dense AS (
            SELECT g.*, coalesce(d.cost, 0) AS cost
            FROM grid g LEFT JOIN daily d USING (team, service, currency, day)
        ),
        windowed AS (
            SELECT *, {windows} FROM dense WINDOW {window_defs}
        ),
        baselined AS (
            SELECT team, service, currency, day, cost AS actual,
                   list_sort(list_filter([{candidates}], lambda c: c IS NOT NULL),
                             'ASC')[1] AS best
            FROM windowed WHERE day >= ?
        ),
        scored AS (
            SELECT team, service, currency, day, actual,
                   best.mean AS baseline_mean, best.std AS baseline_std,
                   day - INTERVAL (7 * best.week) DAY AS baseline_start,
                   (actual - best.mean)
                       / greatest(best.std, 0.01 * abs(best.mean), 0.01) AS z
            FROM baselined WHERE best IS NOT NULL
        )
        SELECT day, team, service, currency, actual,
               CAST(baseline_mean AS DECIMAL(38,10)) AS baseline_mean,
               CAST(coalesce(baseline_std, 0) AS DECIMAL(38,10)) AS baseline_std,
               CAST(baseline_start AS DATE) AS baseline_start, round(z, 2) AS z
        FROM scored
        WHERE z > ? AND actual - baseline_mean >= ?
        ORDER BY day, z DESC, team, service
    """
    found = conn.sql(
        sql,
        params=[
            lookback,
            last_day + timedelta(days=1),
            *team_params,
            allocation.settings.unallocated_label,
            lookback,
            last_day,
            first_day,
            threshold,
            min_increase,
        ],
    ).to_arrow_table()
    return _with_drivers(conn, found, allocation, cost)


def _with_drivers(
    conn: duckdb.DuckDBPyConnection, found: pa.Table, allocation: Allocation, cost: CostBasis
) -> pa.Table:
    """Add `drivers`: per anomaly, the resources whose spend moved most against their own
    mean over the baseline week, as JSON [{resource, actual, baseline, change}]."""
    if found.num_rows == 0:
        return found.append_column("drivers", pa.array([], pa.string()))
    team_sql, team_params = _team_sql(allocation.settings, allocation.teams)
    conn.register("found_anomalies", found)
    try:
        return conn.sql(
            f"""
            WITH labels AS (
                SELECT tag_set_id, coalesce({team_sql}, ?) AS team FROM tag_sets
            ),
            resources AS (
                SELECT a.day AS anomaly_day, a.team, a.service, a.currency,
                       coalesce(c."ResourceId", '(no resource)') AS resource,
                       sum(c."{COST_COLUMN[cost]}") FILTER (WHERE CAST(c."ChargePeriodStart" AS DATE) = a.day)
                           AS on_day,
                       sum(c."{COST_COLUMN[cost]}") FILTER (WHERE CAST(c."ChargePeriodStart" AS DATE) < a.baseline_start + 7)
                           / 7 AS baseline
                FROM found_anomalies a
                JOIN cost_resolved c
                  ON c."ChargeCategory" = 'Usage'
                 AND coalesce(c."ServiceName", '(none)') = a.service AND c."BillingCurrency" = a.currency
                 AND c."ChargePeriodStart" >= a.baseline_start AND CAST(c."ChargePeriodStart" AS DATE) <= a.day
                LEFT JOIN labels l ON l.tag_set_id = c."x_TagSetId"
                WHERE coalesce(l.team, ?) = a.team
                GROUP BY ALL
            ),
            ranked AS (
                SELECT *, coalesce(on_day, 0) - coalesce(baseline, 0) AS change,
                       row_number() OVER (PARTITION BY anomaly_day, team, service, currency
                                          ORDER BY coalesce(on_day, 0) - coalesce(baseline, 0) DESC, resource) AS rank
                FROM resources
            ),
            drivers AS (
                SELECT anomaly_day, team, service, currency,
                       to_json(list({{'resource': resource, 'actual': round(coalesce(on_day, 0), 2),
                                     'baseline': round(coalesce(baseline, 0), 2),
                                     'change': round(change, 2)}} ORDER BY rank)) AS drivers
                FROM ranked WHERE rank <= ? AND change > 0
                GROUP BY ALL
            )
            SELECT a.*, CAST(coalesce(d.drivers, '[]') AS VARCHAR) AS drivers
            FROM found_anomalies a
            LEFT JOIN drivers d ON d.anomaly_day = a.day AND d.team = a.team
             AND d.service = a.service AND d.currency = a.currency
            ORDER BY a.day, a.z DESC, a.team, a.service
            """,
            params=[
                *team_params,
                allocation.settings.unallocated_label,
                allocation.settings.unallocated_label,
                DRIVERS,
            ],
        ).to_arrow_table()
    finally:
        conn.unregister("found_anomalies")


def list_anomalies(conn: duckdb.DuckDBPyConnection, state: str = "open") -> pa.Table:
    """Stored anomalies, newest day first; state: open, acknowledged or all."""
    return conn.sql(
        """
        SELECT anomaly_id, day, team, service, currency, round(actual, 2) AS actual,
               round(baseline_mean, 2) AS baseline, round(baseline_std, 2) AS std, z,
               state, acknowledged_by, acknowledged_at, detected_at, drivers
        FROM anomalies WHERE ? = 'all' OR state = ?
        ORDER BY day DESC, z DESC, team, service
        """,
        params=[state, state],
    ).to_arrow_table()
