"""offhours: dev/staging GPU clusters busy only in working time -> a stop/start schedule.

From the lookback's GPU-hours (the hourly rollups, each priced at its instance's cost), a
cluster's weekly pattern is read in the team's time zone: a (weekday, hour) cell is busy
when at least `busy_cell_share` of its GPU-hours were not idle. The recommended schedule
runs the cluster from the first to the last busy hour on the weekdays that have busy
cells, and stops it otherwise, on holidays too (the configured holiday calendar).
Savings: what the GPU-hours outside that schedule cost in the lookback, as a month's
worth. A cluster whose GPUs were busy in more than `max_offwindow_busy_share` of its
off-schedule GPU-hours gets no schedule: something runs at night; nor does one any of
whose instances carries a `protect_tags` tag (default `finops:protect: "true"`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import Field

from finops.analytics.gpu import NO_CLUSTER, UNMATCHED, gpu_hours_sql
from finops.policies.calendar import WEEKDAY_NAMES
from finops.policies.facts import Window, as_decimal, cluster_targets, majority_tags
from finops.policies.model import Decision, Finding, Policy, Subject
from finops.policies.registry import Context, KindParams, register


class OffhoursParams(KindParams):
    lookback_days: Annotated[int, Field(ge=7, le=90)] = 28
    environments: tuple[str, ...] = ("dev", "staging")
    """Values of the `env` tag this policy looks at."""
    time_zone: str | None = None
    """The team's clock (default: finops.yaml's `time_zone`)."""
    busy_cell_share: Annotated[float, Field(gt=0, le=1)] = 0.1
    max_offwindow_busy_share: Annotated[float, Field(ge=0, le=1)] = 0.05
    min_monthly_savings: Annotated[Decimal, Field(ge=0)] = Decimal(50)
    min_gpu_hours: Annotated[float, Field(ge=0)] = 24
    """GPU-hours of metrics needed in the lookback before a pattern is read."""
    protect_tags: dict[str, str] = {"finops:protect": "true"}
    """Opt-out: a cluster any of whose instances carries one of these tags gets no schedule."""


@dataclass(frozen=True)
class Schedule:
    """Run on `days` from `start` to `stop` (local time); stopped otherwise and on holidays."""

    days: tuple[int, ...]
    start: time
    stop: time
    time_zone: str

    def describe(self) -> str:
        days = ",".join(WEEKDAY_NAMES[d] for d in self.days)
        return f"run {days} {self.start:%H:%M}-{self.stop:%H:%M} {self.time_zone}, stop otherwise"

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Schedule:
        """The schedule a recommendation's evidence holds (see `as_json`)."""
        return cls(
            days=tuple(WEEKDAY_NAMES.index(str(d)) for d in data["days"]),  # type: ignore[union-attr]
            start=time.fromisoformat(str(data["start"])),
            stop=time.fromisoformat(str(data["stop"])),
            time_zone=str(data["time_zone"]),
        )

    def desired_state(self, now: datetime, holidays: set[date]) -> tuple[str, str]:
        """`running` or `stopped` at `now`, and why: the state to converge to, whenever the
        check runs (as AWS Instance Scheduler does), not only at the exact minute."""
        local = now.astimezone(ZoneInfo(self.time_zone))
        if local.date() in holidays:
            return "stopped", f"{local:%Y-%m-%d} is a holiday"
        if local.weekday() not in self.days:
            return "stopped", f"{WEEKDAY_NAMES[local.weekday()]} is outside the schedule"
        if not self.start <= local.time() < self.stop:
            return (
                "stopped",
                f"{local:%H:%M} {self.time_zone} is outside {self.start:%H:%M}-{self.stop:%H:%M}",
            )
        return "running", f"{local:%a %H:%M} {self.time_zone} is inside the schedule"

    def as_json(self) -> dict[str, object]:
        return {
            "days": [WEEKDAY_NAMES[d] for d in self.days],
            "start": f"{self.start:%H:%M}",
            "stop": f"{self.stop:%H:%M}",
            "time_zone": self.time_zone,
        }


def schedule_from_pattern(busy_cells: set[tuple[int, int]], time_zone: str) -> Schedule | None:
    """The schedule covering every busy (weekday, hour) cell; None when nothing was busy."""
    if not busy_cells:
        return None
    days = tuple(sorted({day for day, _ in busy_cells}))
    first = min(hour for _, hour in busy_cells)
    last = max(hour for _, hour in busy_cells)
    stop = time(last + 1) if last < 23 else time(23, 59)
    return Schedule(days, time(first), stop, time_zone)


@register("offhours", OffhoursParams, actions=("stop", "scale-to-zero"))
def evaluate(ctx: Context, policy: Policy, params: OffhoursParams) -> list[Decision]:
    """Dev/staging GPU clusters idle outside working time: a stop/start schedule."""
    window = Window.ending(ctx.now, params.lookback_days)
    zone = params.time_zone or ctx.calendar.time_zone
    holidays = ctx.calendar.holidays_between(window.start.date(), window.end.date())
    hours, hour_params = gpu_hours_sql(window.period, ctx.attribution)
    # Per cluster and local (weekday, hour) cell: GPU-hours, busy GPU-hours and their cost;
    # holidays apart, since a schedule stops on them whatever the weekday.
    cells = ctx.conn.sql(
        f"""
        WITH gpu_hours AS ({hours}),
        local AS (
            SELECT cluster, resource_id, timezone(?, hour) AS local_at, gpu_hours, idle, cost
            FROM gpu_hours WHERE cluster NOT IN ('{NO_CLUSTER}', '{UNMATCHED}')
        )
        SELECT cluster, isodow(local_at) - 1 AS weekday, hour(local_at) AS hour,
               list_contains(?, CAST(local_at AS DATE)) AS holiday,
               sum(gpu_hours) AS gpu_hours,
               coalesce(sum(gpu_hours) FILTER (WHERE NOT idle), 0) AS busy_gpu_hours,
               coalesce(sum(cost), 0) AS cost,
               list(DISTINCT resource_id) AS resource_ids
        FROM local GROUP BY ALL
        """,
        params=[*hour_params, zone, holidays],
    ).fetchall()
    per_cluster: dict[str, list[tuple]] = defaultdict(list)
    for row in cells:
        per_cluster[row[0]].append(row[1:])
    tags = _cluster_tags(ctx, window, list(per_cluster))
    decisions: list[Decision] = []
    for cluster, rows in sorted(per_cluster.items()):
        decisions.append(_decide(ctx, policy, params, window, zone, cluster, rows, tags))
    return decisions


def _cluster_tags(ctx: Context, window: Window, clusters: list[str]) -> dict[str, dict]:
    keys = ctx.config.gpu.cluster_tag_keys
    lookup = ", ".join("ts.tags[?]" for _ in keys) or "NULL"
    rows = ctx.conn.sql(
        f"""
        SELECT coalesce({lookup}) AS cluster, list(ts.tags), any_value("ProviderName"),
               any_value(coalesce("SubAccountId", "BillingAccountId")), any_value("RegionId")
        FROM cost_resolved c JOIN tag_sets ts ON ts.tag_set_id = c."x_TagSetId"
        WHERE c."ChargePeriodStart" >= ? AND c."ChargePeriodStart" < ?
          AND list_contains(?, coalesce({lookup}))
        GROUP BY 1
        """,
        params=[*keys, window.start, window.end, clusters, *keys],
    ).fetchall()
    return {
        name: {"tags": majority_tags(maps), "maps": maps, "provider": p, "account": a, "region": r}
        for name, maps, p, a, r in rows
    }


def _decide(
    ctx: Context,
    policy: Policy,
    params: OffhoursParams,
    window: Window,
    zone: str,
    cluster: str,
    rows: list[tuple],
    tags: dict[str, dict],
) -> Decision:
    info = tags.get(cluster, {"tags": {}, "provider": None, "account": None, "region": None})
    env = info["tags"].get("env")
    if env not in params.environments:
        return Decision.keep(
            f"{cluster}: env {env or '(none)'} is not {'/'.join(params.environments)}"
        )
    protected = next(
        (
            f"{key}={value}"
            for tag_map in info.get("maps", [])
            for key, value in (tag_map or {}).items()
            if params.protect_tags.get(key, "").lower() == str(value).lower()
        ),
        None,
    )
    if protected:
        return Decision.keep(f"{cluster}: tag {protected} is set")
    total = sum(r[3] for r in rows)
    if total < params.min_gpu_hours:
        return Decision.keep(f"{cluster}: only {total:.0f} GPU-hours of metrics")
    busy = {
        (r[0], r[1]) for r in rows if not r[2] and r[3] and r[4] / r[3] >= params.busy_cell_share
    }
    schedule = schedule_from_pattern(busy, zone)
    if schedule is None:
        return Decision.keep(f"{cluster}: never busy in {window.days} days (an idle-cluster case)")
    outside = [
        r
        for r in rows
        if r[2]
        or r[0] not in schedule.days
        or not schedule.start.hour <= r[1] < _stop_hour(schedule)
    ]
    off_hours = sum(r[3] for r in outside)
    off_busy = sum(r[4] for r in outside)
    saved = sum((as_decimal(r[5]) for r in outside), Decimal(0))
    if off_hours and off_busy / off_hours > params.max_offwindow_busy_share:
        return Decision.keep(
            f"{cluster}: busy in {off_busy / off_hours:.0%} of its GPU-hours outside "
            f"{schedule.describe()}"
        )
    monthly = window.monthly(saved)
    if monthly < params.min_monthly_savings:
        return Decision.keep(
            f"{cluster}: {monthly:,.2f} a month outside working time, under the minimum"
        )
    ids = sorted({rid for r in rows for rid in r[6] if rid})
    reason = (
        f"{cluster} ({env}): {off_hours:,.0f} of {total:,.0f} GPU-hours in {window.days} days "
        f"fell outside {schedule.describe()} and were idle; a schedule would have saved "
        f"{saved:,.2f}"
    )
    return Decision.recommend(
        Finding(
            resource_id=cluster,
            resource_name=cluster,
            reason=reason,
            monthly_savings=monthly,
            confidence=round(min(1.0, total / (window.days * 24)) * 0.5 + 0.5, 2),
            risk="low",
            evidence={
                "window": window.as_json(),
                "schedule": schedule.as_json(),
                "gpu_hours": round(total, 2),
                "off_schedule_gpu_hours": round(off_hours, 2),
                "off_schedule_busy_gpu_hours": round(off_busy, 2),
                "saved_in_window": str(saved),
                "holidays": [
                    d.isoformat()
                    for d in ctx.calendar.holidays_between(window.start.date(), window.end.date())
                ],
            },
            action=policy.action,
            subject=Subject(
                provider=info["provider"],
                account=info["account"],
                region=info["region"],
                cluster=cluster,
                resource_ids=tuple(ids),
                environment=env,
                team=ctx.team(info["tags"]),
                tags=info["tags"],
            ),
            targets=cluster_targets(ctx, cluster, ids, policy.action),
            billed_resource_ids=tuple(ids),
        )
    )


def _stop_hour(schedule: Schedule) -> int:
    return 24 if schedule.stop == time(23, 59) else schedule.stop.hour
