"""The scheduler: jobs from configuration, missed windows made up exactly once, one daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from finops.config import load_config
from finops.cron import cron_trigger
from finops.errors import FinopsError
from finops.scheduler import (
    JobSpec,
    build_jobs,
    daemon_lock,
    last_runs,
    make_up_missed,
    run_job,
)
from finops.warehouse import Warehouse

REPO = Path(__file__).parent.parent
FINOPS = str(Path(sys.executable).parent / "finops")


def _job(calls: list[datetime], cron: str = "0 6 * * *", fail: bool = False) -> JobSpec:
    def run(window: datetime) -> str:
        calls.append(window)
        if fail:
            raise RuntimeError("the source is unreachable")
        return "ok"

    return JobSpec("collect:aws", "refresh aws", cron, "Europe/London", run)


def test_a_missed_window_is_made_up_once_at_start(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    calls: list[datetime] = []
    job = _job(calls)
    first = datetime(2026, 5, 1, 5, tzinfo=UTC)  # 06:00 in London (BST)
    assert run_job(warehouse, job, first, trigger="schedule") == "succeeded"
    # The daemon was down on 2 and 3 May; it starts at 07:30 UTC on the 3rd.
    now = datetime(2026, 5, 3, 7, 30, tzinfo=UTC)
    made_up = make_up_missed(warehouse, [job], now)
    assert made_up == [("collect:aws", datetime(2026, 5, 3, 5, tzinfo=UTC), "succeeded")]
    assert calls == [first, datetime(2026, 5, 3, 5, tzinfo=UTC)]
    # A second start the same morning has nothing to make up: never repeated.
    assert make_up_missed(warehouse, [job], now) == []
    assert len(calls) == 2
    assert last_runs(warehouse)["collect:aws"] == (datetime(2026, 5, 3, 5, tzinfo=UTC), "succeeded")


def test_a_job_that_never_ran_waits_for_its_window(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    calls: list[datetime] = []
    assert make_up_missed(warehouse, [_job(calls)], datetime(2026, 5, 3, tzinfo=UTC)) == []
    assert calls == []


def test_a_window_already_done_is_not_run_again(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    calls: list[datetime] = []
    window = datetime(2026, 5, 1, 5, tzinfo=UTC)
    run_job(warehouse, _job(calls), window, trigger="schedule")
    assert run_job(warehouse, _job(calls), window, trigger="manual") == "skipped"
    assert calls == [window]


def test_a_failing_job_is_recorded_and_the_daemon_goes_on(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    window = datetime(2026, 5, 1, 5, tzinfo=UTC)
    assert run_job(warehouse, _job([], fail=True), window, trigger="schedule") == "failed"
    (record,) = warehouse.query("SELECT status, error, detail FROM job_runs").to_pylist()
    assert record == {
        "status": "failed",
        "error": "RuntimeError: the source is unreachable",
        "detail": None,
    }


def test_a_run_left_running_by_a_killed_daemon_is_marked_abandoned(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    with warehouse.writer() as conn:
        conn.execute(
            "INSERT INTO job_runs VALUES ('policy:idle', ?, ?, NULL, 'running', 'schedule', NULL, NULL)",
            [datetime(2026, 5, 1, 6, tzinfo=UTC), datetime(2026, 5, 1, 6, tzinfo=UTC)],
        )
    make_up_missed(warehouse, [], datetime(2026, 5, 2, tzinfo=UTC))
    (record,) = warehouse.query("SELECT status FROM job_runs").to_pylist()
    assert record["status"] == "abandoned"


def test_two_daemons_on_one_warehouse_are_refused(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    with (
        daemon_lock(warehouse),
        pytest.raises(FinopsError, match="another scheduler"),
        daemon_lock(warehouse),
    ):
        pass
    with daemon_lock(warehouse):  # released with the first
        pass


def test_cron_weekdays_are_cron_weekdays() -> None:
    after = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday
    monday = cron_trigger("0 6 * * 1", "UTC").get_next_fire_time(None, after)
    sunday = cron_trigger("0 6 * * 0", "UTC").get_next_fire_time(None, after)
    weekdays = cron_trigger("0 6 * * 1-5", "UTC").get_next_fire_time(None, after)
    assert (monday.day, sunday.day, weekdays.day) == (7, 6, 1)
    with pytest.raises(ValueError, match="expected 5"):
        cron_trigger("every day", "UTC")


def test_jobs_come_from_the_manifests_and_the_policy_pack(tmp_path: Path) -> None:
    config = load_config(REPO)
    jobs = {spec.job_id: spec for spec in build_jobs(config, Warehouse(tmp_path / "wh.duckdb"))}
    assert jobs["collect:dcgm"].cron == "0 * * * *"
    assert jobs["policy:idle-gpu-clusters"].cron == "0 6 * * *"
    assert jobs["policy:idle-gpu-clusters"].time_zone == config.time_zone
    assert {j for j in jobs if j.startswith("policy:")} == {
        "policy:idle-gpu-clusters",
        "policy:dev-gpu-offhours",
        "policy:rightsize-gpus",
        "policy:spot-shift",
        "policy:commitment-coverage",
        "policy:untagged-spend",
    }


@pytest.mark.slow
def test_the_daemon_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(
        textwrap.dedent(
            """\
            policies:
              - name: idle
                kind: idle-cluster
                schedule: "* * * * *"
            """
        )
    )
    (tmp_path / "finops.yaml").write_text("warehouse: {path: wh.duckdb}\n")
    env = {**os.environ, "FINOPS_CONFIG": str(tmp_path)}
    daemon = subprocess.Popen(
        [FINOPS, "scheduler", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lock = tmp_path / "wh.duckdb.scheduler.lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text().startswith("pid")):
        assert time.monotonic() < deadline, "the daemon did not start"
        time.sleep(0.2)
    second = subprocess.run(
        [FINOPS, "scheduler", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    assert "another scheduler" in second.stderr
    daemon.send_signal(signal.SIGTERM)
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    # The one policy, the three action jobs and the quarterly report.
    assert "5 jobs" in output


@pytest.mark.slow
def test_the_report_job_builds_last_quarter_on_the_first_working_day(tmp_path: Path) -> None:
    (tmp_path / "finops.yaml").write_text(
        "time_zone: Europe/London\nholidays: {dates: [2026-01-01]}\n"
    )
    (tmp_path / "policies").mkdir()
    config = load_config(tmp_path)
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    with warehouse.writer():
        pass  # an empty warehouse: every section says it has no data
    report = {spec.job_id: spec for spec in build_jobs(config, warehouse)}["report:quarterly"]
    # 1 January is a holiday: the first working day of 2026-Q1 is Friday 2 January.
    assert report.run(datetime(2026, 1, 1, 7, tzinfo=UTC)) == (
        "2026-01-01 is not the first working day of a quarter"
    )
    assert report.run(datetime(2026, 1, 2, 7, tzinfo=UTC)) == (
        "2025-Q4: finops-2025-Q4.html, finops-2025-Q4.pdf, finops-2025-Q4.xlsx"
    )
    assert (tmp_path / "reports" / "out" / "finops-2025-Q4.pdf").exists()
