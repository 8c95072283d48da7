"""DORA's four keys per quarter and team (or service), with their performance bands.

Definitions (all durations between UTC instants, so a DST change adds or loses no hour):

- A *production deployment* is a deployment with result `success` to one of
  `scorecard.production_environments`; failed or cancelled runs never reached production.
- **Deployment frequency**: production deployments finished in the quarter, and per week
  (deployments x 7 / days in the quarter), which is what the bands compare.
- **Lead time for changes**: for each commit (`changes`) the hours from `committed_at` to
  the first production deployment whose `commit_shas` hold it; the median over commits
  whose first production deployment finished in the quarter. Deployed commits that were
  never reported as changes have no commit time and are not counted.
- **Change failure rate**: production deployments of the quarter linked to at least one
  incident, over production deployments of the quarter (%). An incident links to the
  deployment it names (`caused_by_deploy`), else to the first production deployment of
  the commit it names (`caused_by_sha`), else (it names neither) to the last production
  deployment of its service finished at or before it began. An incident that names a
  deployment or commit finops does not know as deployed to production, or whose service
  had no deployment before it, is *unlinked* and counted as such, never guessed.
- **Failed deployment recovery time**: median hours from `created_at` to `resolved_at` of
  incidents linked to a deployment, in the quarter the incident began; ones still open
  are counted as `unrecovered`.

Bands come from `dora_bands.yaml` (the 2021, 2023 and 2024 report tables); each metric
gets its own band, and `band` is the lowest of them: a team is elite only on every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from typing import Literal

import duckdb
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field

from finops.analytics.scope import TeamMapping, buckets_table, registered, team_sql
from finops.config import Config
from finops.errors import ConfigError
from finops.periods import Period

Grouping = Literal["team", "service", "organisation"]
BAND_ORDER: tuple[str, ...] = ("elite", "high", "medium", "low")
METRICS: tuple[str, ...] = (
    "deployment_frequency",
    "lead_time_hours",
    "change_failure_rate_pct",
    "recovery_hours",
)
_MEASURED_BY = {
    "deployment_frequency": "deploys_per_week",
    "lead_time_hours": "lead_time_hours",
    "change_failure_rate_pct": "change_failure_rate_pct",
    "recovery_hours": "recovery_hours",
}


class _Limit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reported: str
    min_per_week: float | None = Field(default=None, ge=0)
    max: float | None = Field(default=None, ge=0)


class _BandsOfMetric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    elite: _Limit
    high: _Limit
    medium: _Limit
    low: _Limit


class BandTable(BaseModel):
    """One report's bands: for each metric, each band's limit and the report's wording."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    deployment_frequency: _BandsOfMetric
    lead_time_hours: _BandsOfMetric
    change_failure_rate_pct: _BandsOfMetric
    recovery_hours: _BandsOfMetric

    def band(self, metric: str, value: float | None) -> str | None:
        """The first band, elite down, whose limit `value` meets; None without a value."""
        if value is None:
            return None
        limits: _BandsOfMetric = getattr(self, metric)
        for name in BAND_ORDER[:-1]:
            limit: _Limit = getattr(limits, name)
            if limit.min_per_week is not None and value >= limit.min_per_week:
                return name
            if limit.max is not None and value <= limit.max:
                return name
        return "low"


def load_bands(report: str) -> BandTable:
    """The bands of one State of DevOps report year, from the packaged dora_bands.yaml."""
    text = (files("finops.analytics") / "dora_bands.yaml").read_text(encoding="utf-8")
    tables = yaml.safe_load(text)
    if report not in tables:
        raise ConfigError(
            f"scorecard.dora_bands: no bands for {report!r}; known: {', '.join(tables)}"
        )
    return BandTable.model_validate(tables[report])


@dataclass(frozen=True)
class DeliveryScope:
    """Which deployments count as production, and how events find their team."""

    production_environments: tuple[str, ...] = ("prod", "production")
    teams: TeamMapping = field(default_factory=TeamMapping)

    @classmethod
    def from_config(cls, config: Config) -> DeliveryScope:
        return cls(config.scorecard.production_environments, TeamMapping.from_config(config))


def dora(
    conn: duckdb.DuckDBPyConnection,
    buckets: list[Period],
    bands: BandTable,
    *,
    by: Grouping = "team",
    scope: DeliveryScope = DeliveryScope(),
    team: str | None = None,
) -> pa.Table:
    """The four keys per bucket (quarter) and group, with their bands.

    A group appears in every bucket from the first one in which it has a production
    deployment or an unlinked incident (a linked one counts under its deployment's), so
    a quarter without deployments shows 0 (band low) and no lead time or failure rate
    rather than disappearing.
    """
    deploy_joins, deploy_team = team_sql("d")
    incident_joins, incident_team = team_sql("i")

    def key(alias: str) -> str:
        return {"team": f"{alias}.team", "service": f"{alias}.service"}.get(by, "'all'")

    team_filter = "AND team = $team" if team is not None else ""
    sql = f"""
        WITH deploys AS (
            SELECT * FROM (
                SELECT d.deploy_id, d.service, {deploy_team} AS team, d.finished_at,
                       d.commit_shas
                FROM deployments d {deploy_joins}
                WHERE d.result = 'success' AND list_contains($environments, lower(d.environment))
            ) WHERE true {team_filter}
        ),
        incident_rows AS (
            SELECT * FROM (
                SELECT i.incident_id, i.service, {incident_team} AS team, i.created_at,
                       i.resolved_at, i.caused_by_deploy, i.caused_by_sha
                FROM incidents i {incident_joins}
            ) WHERE true {team_filter}
        ),
        shipped AS (
            SELECT sha, arg_min(deploy_id, finished_at) AS deploy_id,
                   min(finished_at) AS deployed_at
            FROM (SELECT deploy_id, finished_at, unnest(commit_shas) AS sha FROM deploys)
            GROUP BY sha
        ),
        lead_times AS (
            SELECT s.deploy_id, (epoch(s.deployed_at) - epoch(c.committed_at)) / 3600 AS hours
            FROM shipped s JOIN changes c USING (sha)
        ),
        previous_deploy AS (
            SELECT i.incident_id, last.deploy_id
            FROM incident_rows i
            ASOF LEFT JOIN deploys last
                ON i.service = last.service AND i.created_at >= last.finished_at
        ),
        linked AS (
            SELECT i.*,
                   CASE WHEN i.caused_by_deploy IS NOT NULL THEN named.deploy_id
                        WHEN i.caused_by_sha IS NOT NULL THEN s.deploy_id
                        ELSE p.deploy_id END AS deploy_id
            FROM incident_rows i
            LEFT JOIN deploys named ON named.deploy_id = i.caused_by_deploy
            LEFT JOIN shipped s ON s.sha = i.caused_by_sha
            LEFT JOIN previous_deploy p USING (incident_id)
        ),
        groups AS (
            SELECT {key("e")} AS key, min(e.seen_at) AS first_at FROM (
                SELECT service, team, finished_at AS seen_at FROM deploys
                UNION ALL SELECT service, team, created_at FROM linked WHERE deploy_id IS NULL
            ) e GROUP BY ALL
        ),
        grid AS (
            SELECT b.*, g.key FROM scope_buckets b JOIN groups g ON g.first_at < b.end_ts
        ),
        in_bucket AS (
            SELECT b.bucket, d.*, {key("d")} AS key FROM deploys d
            JOIN scope_buckets b ON d.finished_at >= b.start_ts AND d.finished_at < b.end_ts
        ),
        deployed AS (
            SELECT bucket, key, count(*) AS deployments,
                   count(*) FILTER (WHERE deploy_id IN (SELECT deploy_id FROM linked))
                       AS failed_deployments
            FROM in_bucket GROUP BY ALL
        ),
        lead AS (
            SELECT bucket, key, median(hours) AS lead_time_hours, count(*) AS changes
            FROM lead_times JOIN in_bucket USING (deploy_id) GROUP BY ALL
        ),
        failures AS (
            SELECT b.bucket, {key("d")} AS key,
                   median((epoch(l.resolved_at) - epoch(l.created_at)) / 3600)
                       FILTER (WHERE l.resolved_at IS NOT NULL) AS recovery_hours,
                   count(l.resolved_at) AS recoveries,
                   count(*) FILTER (WHERE l.resolved_at IS NULL) AS unrecovered
            FROM linked l JOIN deploys d USING (deploy_id)
            JOIN scope_buckets b ON l.created_at >= b.start_ts AND l.created_at < b.end_ts
            GROUP BY ALL
        ),
        unlinked AS (
            SELECT b.bucket, {key("l")} AS key,
                   count(*) AS unlinked_incidents
            FROM linked l
            JOIN scope_buckets b ON l.created_at >= b.start_ts AND l.created_at < b.end_ts
            WHERE l.deploy_id IS NULL GROUP BY ALL
        )
        SELECT g.bucket AS quarter, g.key AS "{by}",
               coalesce(deployed.deployments, 0) AS deployments,
               coalesce(deployed.deployments, 0) * 7.0 / g.days AS deploys_per_week,
               lead.lead_time_hours, coalesce(lead.changes, 0) AS changes,
               coalesce(deployed.failed_deployments, 0) AS failed_deployments,
               100.0 * deployed.failed_deployments / nullif(deployed.deployments, 0)
                   AS change_failure_rate_pct,
               failures.recovery_hours, coalesce(failures.recoveries, 0) AS recoveries,
               coalesce(failures.unrecovered, 0) AS unrecovered,
               coalesce(unlinked.unlinked_incidents, 0) AS unlinked_incidents
        FROM grid g
        LEFT JOIN deployed USING (bucket, key)
        LEFT JOIN lead USING (bucket, key)
        LEFT JOIN failures USING (bucket, key)
        LEFT JOIN unlinked USING (bucket, key)
        ORDER BY g.position, g.key
    """
    params: dict[str, object] = {"environments": [e.lower() for e in scope.production_environments]}
    if team is not None:
        params["team"] = team
    tables = {"scope_buckets": buckets_table(buckets), **scope.teams.tables()}
    with registered(conn, tables):
        table = conn.sql(sql, params=params).to_arrow_table()
    return _with_bands(table, bands)


def _with_bands(table: pa.Table, bands: BandTable) -> pa.Table:
    """Add each metric's band and the overall (lowest) band; a handful of rows."""
    per_metric = {
        metric: [bands.band(metric, value) for value in table[_MEASURED_BY[metric]].to_pylist()]
        for metric in METRICS
    }
    overall = [
        max((b for b in row if b is not None), key=BAND_ORDER.index, default=None)
        for row in zip(*per_metric.values(), strict=True)
    ]
    for metric in METRICS:
        table = table.append_column(f"{metric}_band", pa.array(per_metric[metric], pa.string()))
    return table.append_column("band", pa.array(overall, pa.string()))
