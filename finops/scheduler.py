"""The scheduler: APScheduler jobs built from configuration at each start.

Jobs come from what the deployment declares: each collector manifest with a `schedule`,
each enabled policy's evaluation `schedule`, and the action jobs (off-hours schedules,
due warn-then-act stops) and quarterly report where those parts are configured. Every
job is a cron expression in an IANA time zone.

Each run is recorded in `job_runs` with the window it ran for (`scheduled_for`). At start,
a job whose latest window since its last recorded run passed while the daemon was down
runs once, for that window: made up, never skipped, never repeated. While running,
APScheduler coalesces missed fires and runs one instance of a job at a time. A lock file
beside the warehouse keeps a second daemon on the same warehouse from starting, so no
action is ever taken twice. SIGTERM stops the daemon after the job in progress finishes;
its record says so.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from finops.config import Config
from finops.cron import cron_trigger
from finops.errors import ConfigError, FinopsError
from finops.warehouse import Warehouse
from finops.warehouse.runs import transaction

log = logging.getLogger("finops.scheduler")

MISFIRE_GRACE_S = 15 * 60
"""A fire delayed by up to this much (a busy machine) still runs; longer, it is coalesced."""


@dataclass(frozen=True)
class JobSpec:
    """One job: what it runs, when, and a line for `finops scheduler list`."""

    job_id: str
    description: str
    cron: str
    time_zone: str
    run: Callable[[datetime], str]
    """Called with the window's time; returns a one-line summary for the record."""

    @property
    def trigger(self) -> CronTrigger:
        try:
            return cron_trigger(self.cron, self.time_zone)
        except (ValueError, LookupError) as exc:
            raise ConfigError(f"job {self.job_id}: schedule {self.cron!r}: {exc}") from None

    def latest_window(self, now: datetime) -> datetime | None:
        """The newest fire time at or before `now` (within a year), or None."""
        trigger = self.trigger
        for lookback in (
            timedelta(hours=1),
            timedelta(days=1),
            timedelta(days=32),
            timedelta(days=366),
        ):
            fire = trigger.get_next_fire_time(None, now - lookback)
            latest = None
            while fire is not None and fire <= now:
                latest = fire
                fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
            if latest is not None:
                return latest
        return None

    def next_window(self, now: datetime) -> datetime | None:
        return self.trigger.get_next_fire_time(None, now)


def last_runs(warehouse: Warehouse) -> dict[str, tuple[datetime, str]]:
    """Each job's newest recorded window and the status of that run."""
    if not warehouse.path.exists():
        return {}
    rows = warehouse.query(
        "SELECT job_id, max(scheduled_for) AS window, arg_max(status, scheduled_for) AS status "
        "FROM job_runs GROUP BY job_id"
    ).to_pylist()
    return {r["job_id"]: (r["window"], r["status"]) for r in rows}


def missed_window(spec: JobSpec, last: datetime | None, now: datetime) -> datetime | None:
    """The window to make up at start: the newest one after the last recorded run.

    A job that never ran has nothing to make up: it waits for its next window.
    """
    if last is None:
        return None
    latest = spec.latest_window(now)
    return latest if latest is not None and latest > last else None


def run_job(
    warehouse: Warehouse,
    spec: JobSpec,
    scheduled_for: datetime,
    *,
    trigger: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> str:
    """Run one job for one window, recording its start and outcome in `job_runs`.

    A window already recorded as succeeded is not run again. Returns the status.
    """
    with warehouse.writer() as conn, transaction(conn, refused=f"job {spec.job_id}"):
        done = conn.sql(
            "SELECT status FROM job_runs WHERE job_id = ? AND scheduled_for = ?",
            params=[spec.job_id, scheduled_for],
        ).fetchall()
        if done and done[0][0] == "succeeded":
            return "skipped"
        conn.execute(
            "DELETE FROM job_runs WHERE job_id = ? AND scheduled_for = ?",
            [spec.job_id, scheduled_for],
        )
        conn.execute(
            "INSERT INTO job_runs VALUES (?, ?, ?, NULL, 'running', ?, NULL, NULL)",
            [spec.job_id, scheduled_for, clock(), trigger],
        )
    status, detail, error = "succeeded", None, None
    try:
        detail = spec.run(scheduled_for)
    except FinopsError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # a job's failure is recorded, never takes the daemon down
        log.exception("job %s failed", spec.job_id)
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    with warehouse.writer() as conn, transaction(conn, refused=f"job {spec.job_id}"):
        conn.execute(
            "UPDATE job_runs SET finished_at = ?, status = ?, detail = ?, error = ? "
            "WHERE job_id = ? AND scheduled_for = ?",
            [clock(), status, detail, error, spec.job_id, scheduled_for],
        )
    return status


def make_up_missed(
    warehouse: Warehouse, jobs: list[JobSpec], now: datetime
) -> list[tuple[str, datetime, str]]:
    """At start: run once each job whose window passed while the daemon was down.

    Runs a killed daemon left `running` are marked `abandoned` first: the lock says no
    other daemon holds them."""
    if warehouse.path.exists():
        with warehouse.writer() as conn, transaction(conn, refused="the scheduler's start"):
            conn.execute(
                "UPDATE job_runs SET status = 'abandoned', finished_at = ? WHERE status = 'running'",
                [now],
            )
    last = last_runs(warehouse)
    made_up = []
    for spec in jobs:
        window = missed_window(spec, last.get(spec.job_id, (None, ""))[0], now)
        if window is not None:
            made_up.append(
                (spec.job_id, window, run_job(warehouse, spec, window, trigger="made-up"))
            )
    return made_up


@contextmanager
def daemon_lock(warehouse: Warehouse) -> Iterator[Path]:
    """Hold the warehouse's scheduler lock, or refuse: two daemons must never both act."""
    path = warehouse.path.with_name(warehouse.path.name + ".scheduler.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FinopsError(
                f"another scheduler ({holder}) already runs on {warehouse.path}; "
                "stop it first (one daemon per warehouse)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield path
    finally:
        handle.close()


def serve(warehouse: Warehouse, jobs: list[JobSpec]) -> None:
    """Run the daemon until SIGTERM or SIGINT: make up missed windows, then keep time."""
    with daemon_lock(warehouse):
        for job_id, window, status in make_up_missed(warehouse, jobs, datetime.now(UTC)):
            log.info("made up %s for %s: %s", job_id, window.isoformat(), status)
        scheduler = BlockingScheduler(timezone=UTC)
        for spec in jobs:
            scheduler.add_job(
                _fire,
                spec.trigger,
                args=[warehouse, spec],
                id=spec.job_id,
                name=spec.description,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=MISFIRE_GRACE_S,
            )

        def stop(signum: int, _frame: object) -> None:
            log.info("signal %s: stopping after the job in progress", signum)
            scheduler.shutdown(wait=True)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        scheduler.start()


def _fire(warehouse: Warehouse, spec: JobSpec) -> None:
    now = datetime.now(UTC)
    window = spec.latest_window(now) or now
    status = run_job(warehouse, spec, window, trigger="schedule")
    log.info("%s for %s: %s", spec.job_id, window.isoformat(), status)


def build_jobs(config: Config, warehouse: Warehouse) -> list[JobSpec]:
    """Every job this deployment's configuration declares."""
    from finops.cli import Context as Run
    from finops.cli import collect_source
    from finops.config import load_sources
    from finops.policies import engine, load_policies

    jobs: list[JobSpec] = []
    run_context = Run(config, warehouse)
    for source in load_sources(config):
        if source.schedule and source.enabled:

            def collect(_window: datetime, source=source) -> str:
                result = collect_source(run_context, source)
                return "nothing new" if result is None else f"{type(result).__name__}"

            jobs.append(
                JobSpec(
                    f"collect:{source.name}",
                    f"refresh {source.kind} source {source.name}",
                    source.schedule,
                    config.time_zone,
                    collect,
                )
            )
    for loaded in load_policies([engine.policy_folder(config)]):
        policy = loaded.policy
        if not policy.enabled:
            continue

        def evaluate(window: datetime, name: str = policy.name) -> str:
            _, changes = engine.run(warehouse, config, window, policy=name, actor="scheduler")
            counts: dict[str, int] = {}
            for change in changes:
                counts[change.event] = counts.get(change.event, 0) + 1
            return ", ".join(f"{n} {event}" for event, n in sorted(counts.items())) or "none"

        jobs.append(
            JobSpec(
                f"policy:{policy.name}",
                f"evaluate {policy.kind} policy {policy.name}",
                policy.schedule,
                policy.time_zone or config.time_zone,
                evaluate,
            )
        )
    jobs.extend(_action_jobs(config, warehouse))
    jobs.append(_report_job(config, warehouse))
    return jobs


REPORT_CHECK = "0 7 * * *"
"""The quarterly report job looks each morning whether today is a quarter's first
working day (by the holiday calendar), and builds last quarter's report if so."""


def _report_job(config: Config, warehouse: Warehouse) -> JobSpec:
    from finops.reports import build_report
    from finops.reports.schedule import quarter_to_report

    def report(window: datetime) -> str:
        today = window.astimezone(config.tz).date()
        period = quarter_to_report(today, config)
        if period is None:
            return f"{today} is not the first working day of a quarter"
        written = build_report(
            warehouse,
            config,
            period,
            None,
            ("html", "pdf", "xlsx"),
            config.base_dir / "reports" / "out",
            window,
        )
        return f"{period.label}: " + ", ".join(path.name for path in written)

    return JobSpec(
        "report:quarterly",
        "build last quarter's review report on a quarter's first working day",
        REPORT_CHECK,
        config.time_zone,
        report,
    )


ACTION_CADENCE: dict[str, str] = {
    "actions:warn": "*/15 * * * *",
    "actions:run-due": "*/5 * * * *",
    "actions:offhours": "*/10 * * * *",
}
"""How often the action jobs look: each compares what should be with what is, so a run
that comes late (or after a restart) still converges."""


def _action_jobs(config: Config, warehouse: Warehouse) -> list[JobSpec]:
    """Warn-then-act for one-off stops (idle clusters), and off-hours schedules."""
    from finops.actions.runner import Actions
    from finops.actions.warn_then_act import act_on_due, schedule_stops

    def runner(trigger: str) -> Actions:
        return Actions(warehouse, config, actor="scheduler", trigger=trigger)

    def warn(window: datetime) -> str:
        report = schedule_stops(runner("scheduler: warn"), window, kinds=ONE_OFF_KINDS)
        return f"{len(report.scheduled)} warned, {len(report.refused)} not scheduled"

    def run_due(window: datetime) -> str:
        guards = policy_guards(warehouse, config, "scheduler")
        report, closed = act_on_due(
            runner("scheduler: due stops"),
            window,
            exclusions=guards.exclusions,
            on_applied=guards.on_applied,
        )
        return f"{len(report.outcomes)} outcomes, {len(closed)} stops closed"

    def offhours(window: datetime) -> str:
        return converge_offhours(runner("scheduler: off-hours"), config, window)

    described = {
        "actions:warn": (warn, "warn before stopping accepted and auto idle-cluster stops"),
        "actions:run-due": (run_due, "stop what was warned about, unless snoozed"),
        "actions:offhours": (offhours, "converge clusters to their off-hours schedules"),
    }
    return [
        JobSpec(job_id, what, ACTION_CADENCE[job_id], config.time_zone, run)
        for job_id, (run, what) in described.items()
    ]


ONE_OFF_KINDS = ("idle-cluster",)
"""Kinds whose stop is done once (warned first); off-hours stops recur on a schedule."""


def converge_offhours(actions: Any, config: Config, now: datetime) -> str:
    """Stop each accepted (or auto) off-hours cluster outside its schedule and start what
    finops stopped inside it; a cluster already where it should be is left alone."""
    from finops.policies.calendar import WorkCalendar
    from finops.policies.kinds.offhours import Schedule

    recs = actions.actionable(now, kinds=("offhours",))
    if not recs:
        return "no off-hours schedule in force"
    ids = [rec.rec_id for rec in recs]
    with actions.warehouse.reader() as conn:
        rows = conn.execute(
            """
            SELECT r.rec_id, json_extract(r.evidence, '$.schedule')::VARCHAR,
                   count(m.memory_id) FILTER (WHERE m.restored_at IS NULL)
            FROM recommendations r LEFT JOIN action_memory m USING (rec_id)
            WHERE list_contains(?, r.rec_id) GROUP BY ALL
            """,
            [ids],
        ).fetchall()
    calendar = WorkCalendar.from_config(config)
    holidays = set(
        calendar.holidays_between(now.date() - timedelta(days=1), now.date() + timedelta(days=1))
    )
    guards = policy_guards(actions.warehouse, config, actions.actor)
    done = []
    for rec_id, schedule_json, held in rows:
        rec = next(r for r in recs if r.rec_id == rec_id)
        desired, why = Schedule.from_json(json.loads(schedule_json)).desired_state(now, holidays)
        if desired == "stopped" and not held:
            report = actions.apply(
                now, dry_run=False, rec_ids=[rec_id], exclusions=guards.exclusions
            )
            done.append(f"{rec.cluster}: stop ({why}): {len(report.outcomes)} outcomes")
        elif desired == "running" and held:
            report = actions.restore(now, policy=rec.policy, rec_ids=[rec_id])
            done.append(f"{rec.cluster}: start ({why}): {len(report.outcomes)} outcomes")
    return "; ".join(done) or "every cluster as its schedule wants"


@dataclass(frozen=True)
class PolicyGuards:
    """What the policy pack tells the action runner: what it excludes, and how to record
    that a recommendation was carried out (the policy engine's state API)."""

    exclusions: frozenset[str]
    on_applied: Callable[[str, datetime], None]


def policy_guards(warehouse: Warehouse, config: Config, actor: str) -> PolicyGuards:
    from finops.policies import engine, load_policies
    from finops.policies.store import change_state

    excluded: set[str] = set()
    folder = engine.policy_folder(config)
    for loaded in load_policies([folder]) if folder.exists() else []:
        exclude = loaded.policy.scope.exclude
        excluded.update(exclude.resources)
        excluded.update(exclude.clusters)

    def applied(rec_id: str, at: datetime) -> None:
        change_state(warehouse, rec_id, "applied", actor=actor, now=at)

    return PolicyGuards(frozenset(excluded), applied)
