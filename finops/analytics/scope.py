"""What the scorecard computations share: quarters of a period, and the team of an event.

A scorecard figure is per fiscal quarter: a month or quarter is one bucket, a date range
is cut at quarter boundaries (the first and last pieces clipped to the range). Events
are placed in a bucket by their UTC instant.

An event's team is its own `team` field (a team's alias in finops.yaml maps to its
name), else the team of its service in `scorecard.service_teams`, else `(no team)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta

import duckdb
import pyarrow as pa

from finops.config import Config, Team
from finops.periods import Period, quarter_containing

NO_TEAM = "(no team)"


def quarters(
    period: Period, *, fiscal_year_start_month: int = 1, fiscal_year_label: str = "start"
) -> list[Period]:
    """The buckets a period is reported in: itself (a month or quarter), or its quarters."""
    if period.kind != "range":
        return [period]
    buckets = []
    start = period.start
    while start < period.end:
        quarter = quarter_containing(
            start,
            fiscal_year_start_month=fiscal_year_start_month,
            fiscal_year_label=fiscal_year_label,
        )
        end = min(quarter.end, period.end)
        clipped = start != quarter.start or end != quarter.end
        label = (
            f"{quarter.label} ({start}..{end - timedelta(days=1)})" if clipped else quarter.label
        )
        buckets.append(replace(quarter, label=label, kind="range", start=start, end=end))
        start = end
    return buckets


def buckets_table(buckets: list[Period]) -> pa.Table:
    """The buckets as rows: label, position, UTC start and end instants, days, first and next day."""
    stamp = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "bucket": [b.label for b in buckets],
            "position": list(range(len(buckets))),
            "start_ts": pa.array([b.start_ts for b in buckets], stamp),
            "end_ts": pa.array([b.end_ts for b in buckets], stamp),
            "days": [(b.end - b.start).days for b in buckets],
            "start_day": pa.array([b.start for b in buckets], pa.date32()),
            "end_day": pa.array([b.end for b in buckets], pa.date32()),
        }
    )


@dataclass(frozen=True)
class TeamMapping:
    """How an event's team is found: its alias-mapped `team` field, else its service's."""

    teams: tuple[Team, ...] = ()
    service_teams: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> TeamMapping:
        return cls(config.teams, dict(config.scorecard.service_teams))

    def tables(self) -> dict[str, pa.Table]:
        aliases = {
            alias.strip().lower(): team.name
            for team in self.teams
            for alias in (team.name, *team.aliases)
        }
        return {
            "scope_team_aliases": pa.table(
                {"alias": list(aliases), "team": list(aliases.values())},
                schema=pa.schema([("alias", pa.string()), ("team", pa.string())]),
            ),
            "scope_service_teams": pa.table(
                {"service": list(self.service_teams), "team": list(self.service_teams.values())},
                schema=pa.schema([("service", pa.string()), ("team", pa.string())]),
            ),
        }


def team_sql(alias: str) -> tuple[str, str]:
    """(joins, expression) giving the team of rows of `alias` that have `team` and `service`."""
    joins = (
        f" LEFT JOIN scope_team_aliases ta_{alias} ON ta_{alias}.alias = lower(trim({alias}.team))"
        f" LEFT JOIN scope_service_teams st_{alias} ON st_{alias}.service = {alias}.service"
    )
    expr = (
        f"coalesce(ta_{alias}.team, nullif(trim({alias}.team), ''), st_{alias}.team, '{NO_TEAM}')"
    )
    return joins, expr


@contextmanager
def registered(conn: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]) -> Iterator[None]:
    """Arrow tables visible to the connection's queries for the block's duration."""
    for name, table in tables.items():
        conn.register(name, table)
    try:
        yield
    finally:
        for name in tables:
            conn.unregister(name)
