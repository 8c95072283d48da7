"""The `finops` command as a user runs it: the real console script in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import JUNE_ROWS, MAY_ROWS, DemoRun, write_csv, write_parquet

REPO = Path(__file__).resolve().parents[1]
FINOPS = Path(sys.executable).with_name("finops")


def finops(
    *args: str, cwd: Path, env: dict | None = None, ok: bool = True
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(FINOPS), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    """A folder with the repository's finops.yaml and a bill for May and June 2026."""
    (tmp_path / "finops.yaml").write_text((REPO / "finops.yaml").read_text())
    write_csv(tmp_path / "bills" / "2026-05" / "may.csv", MAY_ROWS)
    write_parquet(tmp_path / "bills" / "2026-06" / "june.parquet", JUNE_ROWS)
    return tmp_path


def test_help_lists_every_command_with_a_description(tmp_path: Path) -> None:
    out = finops("--help", cwd=tmp_path).stdout
    for command in ("ingest", "runs", "chargeback", "export", "demo", "app", "init", "status"):
        assert f" {command} " in out
    assert "Ingest FOCUS 1.0-1.3 files" in finops("ingest", "--help", cwd=tmp_path).stdout


def test_ingest_then_chargeback_as_csv_and_json(deployment: Path) -> None:
    ingested = finops("ingest", "focus", "bills", cwd=deployment).stdout
    assert "bills: success, 7 rows for 2026-05..2026-06 (2 months), billed 376.00" in ingested
    assert (deployment / ".finops" / "warehouse.duckdb").exists()

    as_csv = finops(
        "chargeback",
        "-p",
        "2026-05",
        "--by",
        "team",
        "--cost",
        "billed",
        "-f",
        "csv",
        cwd=deployment,
    ).stdout
    rows = {r["team"]: Decimal(r["cost"]) for r in csv.DictReader(io.StringIO(as_csv))}
    assert rows == {
        "vision": Decimal("150.35"),
        "ml-platform": Decimal("20"),
        "(unallocated)": Decimal("4.66"),
    }

    as_json = json.loads(
        finops(
            "chargeback",
            "-p",
            "2026-Q2",
            "--by",
            "provider",
            "--cost",
            "effective",
            "-f",
            "json",
            cwd=deployment,
        ).stdout
    )
    assert as_json == [
        {"provider": "AWS", "currency": "USD", "cost": 370.95, "share": 100.0, "rows": 7}
    ]

    table = finops("chargeback", "--period", "2026-05-01..2026-05-31", cwd=deployment).stdout
    assert "Charge-back 2026-05-01..2026-05-31 (effective cost)" in table  # finops.yaml's basis
    assert "Total" in table
    assert "169.96" in table
    billed = finops("chargeback", "-p", "2026-05", "--cost", "billed", cwd=deployment).stdout
    assert "175.01" in billed


def test_db_flag_and_environment_choose_the_warehouse(deployment: Path) -> None:
    finops(
        "ingest",
        "focus",
        "bills/2026-05",
        "--source",
        "aws",
        "--db",
        "other.duckdb",
        cwd=deployment,
    )
    assert (deployment / "other.duckdb").exists()
    runs = json.loads(
        finops("runs", "--format", "json", cwd=deployment, env={"FINOPS_DB": "other.duckdb"}).stdout
    )
    assert [(r["source"], r["status"], r["rows"]) for r in runs] == [("aws", "success", 5)]


def test_bad_input_exits_2_with_a_clear_message_and_records_the_run(deployment: Path) -> None:
    bad = deployment / "bad.csv"
    bad.write_text(
        (deployment / "bills" / "2026-05" / "may.csv").read_text().replace("50.25", "fifty")
    )
    result = finops("ingest", "focus", str(bad), "--source", "aws", cwd=deployment, ok=False)
    assert result.returncode == 2
    assert "bad.csv, row 2, column BilledCost: 'fifty' is not a number" in result.stderr
    assert "Traceback" not in result.stderr
    runs = json.loads(finops("runs", "-f", "json", cwd=deployment).stdout)
    assert runs[0]["status"] == "failed"


def test_bad_period_is_explained(deployment: Path) -> None:
    finops("ingest", "focus", "bills", cwd=deployment)
    result = finops("chargeback", "--period", "last month", cwd=deployment, ok=False)
    assert result.returncode == 2
    assert "period 'last month' not understood" in result.stderr


def test_export_focus_parquet_and_csv_reingest_to_the_same_totals(deployment: Path) -> None:
    finops("ingest", "focus", "bills", cwd=deployment)
    finops("export", "focus", "--out", "out/all.parquet", cwd=deployment)
    finops("export", "focus", "--out", "out/may.csv", "--period", "2026-05", cwd=deployment)

    exported = pq.read_table(deployment / "out" / "all.parquet")
    assert exported.column_names[:3] == ["AvailabilityZone", "BilledCost", "BillingAccountId"]
    assert len([c for c in exported.column_names if not c.startswith("x_")]) == 57
    assert "x_Source" in exported.column_names
    assert "x_IngestId" not in exported.column_names
    assert "ServiceProviderName" not in exported.column_names
    assert sum(exported.column("BilledCost").to_pylist()) == Decimal("376.00")
    tags = [t for t in exported.column("Tags").to_pylist() if t]
    assert json.loads(tags[0]) == {"env": "prod", "team": "vision"}
    with (deployment / "out" / "may.csv").open() as handle:
        may = list(csv.DictReader(handle))
    assert len(may) == 5
    assert may[0]["ChargePeriodStart"] == "2026-05-01T00:00:00Z"
    assert may[0]["BillingAccountId"] == "012345678901"

    finops(
        "ingest",
        "focus",
        "out/all.parquet",
        "--source",
        "re",
        "--db",
        "round-trip.duckdb",
        cwd=deployment,
    )
    again = json.loads(
        finops(
            "chargeback",
            "-p",
            "2026-Q2",
            "--by",
            "team",
            "--cost",
            "billed",
            "-f",
            "json",
            "--db",
            "round-trip.duckdb",
            cwd=deployment,
        ).stdout
    )
    assert {r["team"]: r["cost"] for r in again} == {
        "vision": 350.35,
        "ml-platform": 20.0,
        "(unallocated)": 4.66,
        "search": 0.99,
    }


def test_init_scaffolds_a_deployment_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "acme"
    out = finops("init", str(target), cwd=tmp_path).stdout
    assert "wrote" in out
    for path in (
        "finops.yaml",
        "collectors/README.md",
        "policies/README.md",
        "reports/templates/README.md",
    ):
        assert (target / path).is_file(), path
    bill = write_csv(tmp_path / "may.csv", MAY_ROWS)
    ingested = finops(
        "ingest", "focus", str(bill), "--config", str(target), "--db", "new.duckdb", cwd=tmp_path
    )
    assert "billed 175.01" in ingested.stdout  # the scaffolded finops.yaml is valid as it stands
    again = finops("init", str(target), cwd=tmp_path, ok=False)
    assert again.returncode == 2
    assert "already exist" in again.stderr
    finops("init", str(target), "--force", cwd=tmp_path)


def test_status_shows_rows_per_source_and_month(deployment: Path) -> None:
    finops("ingest", "focus", "bills", cwd=deployment)
    status = json.loads(finops("status", "-f", "json", cwd=deployment).stdout)
    assert [(s["source"], s["month"], s["rows"], s["billed_cost"]) for s in status] == [
        ("bills", "2026-05", 5, 175.01),
        ("bills", "2026-06", 2, 200.99),
    ]


@pytest.mark.slow
def test_demo_ingests_everything_it_generated_with_the_restatement_applied(
    demo_run: DemoRun,
) -> None:
    tmp_path = demo_run.folder
    assert "Spend by team, 2026-Q3" in demo_run.output

    import duckdb

    demo_dir = tmp_path / ".finops" / "demo"
    export = demo_dir / "aws-cur" / "northwind-cur"
    # What the bills say, read from the files: CUR's unblended cost of the data files the
    # current manifests list (the restated month's second delivery among them), and the
    # GCP export's cost plus its credits.
    current = [
        export / listed.split("/northwind-cur/", 1)[1]
        for manifest in sorted(export.glob("metadata/*/*-Manifest.json"))
        for listed in json.loads(manifest.read_text())["dataFiles"]
    ]
    assert len(current) == len(demo_run.months)
    with duckdb.connect() as conn:
        (aws,) = conn.execute(
            "SELECT sum(CAST(line_item_unblended_cost AS DECIMAL(38,10))) FROM read_parquet(?)",
            [[str(p) for p in current]],
        ).fetchone()
        (gcp,) = conn.execute(
            f"""SELECT sum(CAST(cost AS DECIMAL(38,10)))
                       + sum((SELECT coalesce(sum(CAST(c.amount AS DECIMAL(38,10))), 0)
                              FROM unnest(credits) AS t(c)))
                FROM read_parquet('{demo_dir}/gcp-billing-export/*/*.parquet')"""
        ).fetchone()
    with duckdb.connect(str(tmp_path / ".finops" / "warehouse.duckdb"), read_only=True) as conn:
        held = conn.execute(
            'SELECT sum("BilledCost"), list(DISTINCT "x_Source" ORDER BY "x_Source") FROM cost'
        ).fetchone()
    assert held == (aws + gcp, ["aws-cur", "gcp-billing"])

    # Every demo GPU-hour is attributed to a billed instance, a cluster and a team.
    from finops import demo as demo_data
    from finops.analytics.gpu import GpuAttribution, gpu_usage
    from finops.config import load_config
    from finops.periods import parse_period
    from finops.warehouse import Warehouse

    config = load_config(tmp_path)
    attribution = GpuAttribution.from_config(config)
    september = parse_period("2026-09")
    with Warehouse(tmp_path / ".finops" / "warehouse.duckdb").reader() as conn:
        by_cluster = {
            r["cluster"]: r for r in gpu_usage(conn, september, "cluster", attribution).to_pylist()
        }
        by_team = {
            r["team"]: r for r in gpu_usage(conn, september, "team", attribution).to_pylist()
        }
        # An always-on inference cluster reports every hour, so a day's GPU cost is that
        # day's billed usage of its nodes, computed here straight from the cost rows.
        ((day_cost,),) = conn.execute(
            """
            SELECT sum("EffectiveCost") FROM cost_resolved
            WHERE "Tags"['cluster'] = 'recs-serving' AND "ChargeCategory" = 'Usage'
              AND "ChargePeriodStart" = '2026-09-15' AND "x_InstanceType" IS NOT NULL
            """
        ).fetchall()
        day = gpu_usage(conn, parse_period("2026-09-15..2026-09-15"), "cluster", attribution)
    assert "(unmatched)" not in by_cluster
    assert "(unmatched)" not in by_team
    recs_day = {r["cluster"]: r for r in day.to_pylist()}["recs-serving"]
    assert recs_day["cost"] == pytest.approx(float(day_cost), abs=0.01)
    for cluster in demo_data.IDLE_CLUSTERS:
        assert by_cluster[cluster]["idle_pct"] > 40, cluster
    assert by_cluster["recs-serving"]["idle_pct"] < 5


@pytest.mark.slow
def test_app_command_serves_the_packaged_app(deployment: Path) -> None:
    import socket
    import time
    import urllib.request

    finops("ingest", "focus", "bills", cwd=deployment)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(FINOPS), "app", "--port", str(port)],
        cwd=deployment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_stcore/health", timeout=2
                ) as r:
                    assert r.read() == b"ok"
                    break
            except OSError:
                assert time.monotonic() < deadline, "the app did not come up within 60 s"
                assert server.poll() is None, "finops app exited early"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert page.status == 200
            assert b"<title>Streamlit</title>" in page.read()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_collect_runs_every_declared_source_and_reports_each(deployment: Path) -> None:
    (deployment / "collectors").mkdir()
    (deployment / "collectors" / "sources.yaml").write_text(
        "sources:\n"
        "  - {name: may, kind: focus, uri: bills/2026-05}\n"
        "  - {name: june, kind: focus, uri: bills/2026-06}\n"
        "  - {name: broken, kind: focus, uri: bills/2027-01}\n"
        "  - {name: paused, kind: focus, uri: nowhere, enabled: false}\n"
    )
    result = finops("collect", "-f", "json", cwd=deployment, ok=False)
    assert result.returncode == 1  # one source failed
    report = {r["source"]: r for r in json.loads(result.stdout)}
    assert set(report) == {"may", "june", "broken"}
    assert (report["may"]["status"], report["may"]["rows"], report["may"]["billed_cost"]) == (
        "success",
        5,
        175.01,
    )
    assert (report["june"]["status"], report["june"]["billed_cost"]) == ("success", 200.99)
    assert report["broken"]["status"] == "failed"
    assert "no such file or directory" in report["broken"]["error"]

    only = json.loads(finops("collect", "--only", "may", "-f", "json", cwd=deployment).stdout)
    assert [(r["source"], r["status"]) for r in only] == [("may", "success")]
