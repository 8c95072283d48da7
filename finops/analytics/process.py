"""Process health: on-call load and time to restore per team, and framework adoption.

- **On-call load**: pages per team in the quarter (and per week), the median minutes to
  acknowledge them, and how many were never acknowledged.
- **MTTR** (mean time to restore): the mean hours from `created_at` to `resolved_at` of
  every incident that began in the quarter and is resolved, whatever caused it (the DORA
  recovery time counts deployment failures only); open ones are counted.
- **Framework adoption**: of the projects known by the quarter's end (any stage gate
  passed), the share that passed the adopted stage (`scorecard.adopted_stage`) by then.
"""

from __future__ import annotations

from typing import Literal

import duckdb
import pyarrow as pa

from finops.analytics.scope import TeamMapping, buckets_table, registered, team_sql
from finops.periods import Period


def oncall_load(
    conn: duckdb.DuckDBPyConnection, buckets: list[Period], teams: TeamMapping
) -> pa.Table:
    """Pages and MTTR per quarter and team (teams with a page or an incident by then)."""
    page_joins, page_team = team_sql("p")
    incident_joins, incident_team = team_sql("i")
    sql = f"""
        WITH pages AS (
            SELECT p.paged_at, p.acknowledged_at, {page_team} AS team
            FROM oncall_pages p {page_joins}
        ),
        incident_rows AS (
            SELECT i.created_at, i.resolved_at, {incident_team} AS team
            FROM incidents i {incident_joins}
        ),
        teams AS (
            SELECT team, min(seen_at) AS first_at FROM (
                SELECT team, paged_at AS seen_at FROM pages
                UNION ALL SELECT team, created_at FROM incident_rows
            ) GROUP BY team
        ),
        grid AS (SELECT b.*, t.team FROM scope_buckets b JOIN teams t ON t.first_at < b.end_ts),
        paged AS (
            SELECT b.bucket, p.team, count(*) AS pages,
                   median((epoch(p.acknowledged_at) - epoch(p.paged_at)) / 60)
                       AS median_minutes_to_acknowledge,
                   count(*) FILTER (WHERE p.acknowledged_at IS NULL) AS unacknowledged
            FROM pages p
            JOIN scope_buckets b ON p.paged_at >= b.start_ts AND p.paged_at < b.end_ts
            GROUP BY ALL
        ),
        restored AS (
            SELECT b.bucket, i.team, count(*) AS incidents,
                   avg((epoch(i.resolved_at) - epoch(i.created_at)) / 3600) AS mttr_hours,
                   count(*) FILTER (WHERE i.resolved_at IS NULL) AS open_incidents
            FROM incident_rows i
            JOIN scope_buckets b ON i.created_at >= b.start_ts AND i.created_at < b.end_ts
            GROUP BY ALL
        )
        SELECT g.bucket AS quarter, g.team, coalesce(paged.pages, 0) AS pages,
               coalesce(paged.pages, 0) * 7.0 / g.days AS pages_per_week,
               paged.median_minutes_to_acknowledge,
               coalesce(paged.unacknowledged, 0) AS unacknowledged,
               coalesce(restored.incidents, 0) AS incidents, restored.mttr_hours,
               coalesce(restored.open_incidents, 0) AS open_incidents
        FROM grid g
        LEFT JOIN paged USING (bucket, team)
        LEFT JOIN restored USING (bucket, team)
        ORDER BY g.position, g.team
    """
    with registered(conn, {"scope_buckets": buckets_table(buckets), **teams.tables()}):
        return conn.sql(sql).to_arrow_table()


def adoption(
    conn: duckdb.DuckDBPyConnection,
    buckets: list[Period],
    *,
    adopted_stage: str,
    by: Literal["team", "organisation"] = "organisation",
) -> pa.Table:
    """Per quarter (and team): projects known, adopted by the quarter's end, and the rate.

    A project's team is the team named by its latest adoption event.
    """
    key = "p.team" if by == "team" else "'all'"
    sql = f"""
        WITH projects AS (
            SELECT project, coalesce(arg_max(team, passed_at), '(no team)') AS team,
                   min(passed_at) AS first_at,
                   min(passed_at) FILTER (WHERE stage = $stage) AS adopted_at
            FROM adoption_events GROUP BY project
        )
        SELECT b.bucket AS quarter, {key} AS "{by}",
               count(*) AS projects,
               count(*) FILTER (WHERE p.adopted_at < b.end_ts) AS adopted,
               100.0 * count(*) FILTER (WHERE p.adopted_at < b.end_ts) / count(*)
                   AS adoption_rate_pct,
               count(*) FILTER (WHERE p.adopted_at >= b.start_ts AND p.adopted_at < b.end_ts)
                   AS adopted_in_quarter
        FROM scope_buckets b JOIN projects p ON p.first_at < b.end_ts
        GROUP BY b.bucket, b.position, {key}
        ORDER BY b.position, 2
    """
    with registered(conn, {"scope_buckets": buckets_table(buckets)}):
        return conn.sql(sql, params={"stage": adopted_stage}).to_arrow_table()
