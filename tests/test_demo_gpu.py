"""The demo organisation's GPU metrics: billed hours only, the join keys to cost, the patterns.

Expectations are computed with DuckDB over the files `generate` wrote: the OpenMetrics lines
taken apart by regular expressions, the billing files read as they are.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pytest

from finops.collectors.aws_cur import read_cur
from finops.collectors.dcgm import read_openmetrics
from finops.collectors.gcp_billing import read_gcp_export_files
from finops.collectors.nvidia_smi import read_nvidia_smi
from finops.demo import DEMO_TEAMS, IDLE_CLUSTERS, IDLE_DAYS, DemoFiles, generate
from finops.warehouse import Warehouse

LAST_MONTH = date(2026, 4, 1)
GPU_INSTANCE = r"^(p4d|p5|g5|a2|a3|g2)[.-]"
"""EC2 and GCE GPU instance types (SageMaker's ml.g5 is a managed service: no exporter)."""
LABELS = ("gpu", "UUID", "modelName", "Hostname", "instance_id", "cluster", "namespace", "pod")
MEMORY_MIB = {"p4d": 40_960, "a2": 40_960, "p5": 81_559, "a3": 81_559, "g5": 23_028, "g2": 23_034}
MODEL = {
    "p4d": "NVIDIA A100-SXM4-40GB",
    "a2": "NVIDIA A100-SXM4-40GB",
    "p5": "NVIDIA H100 80GB HBM3",
    "a3": "NVIDIA H100 80GB HBM3",
    "g5": "NVIDIA A10G",
    "g2": "NVIDIA L4",
}
NVIDIA_SMI_HEADER = (
    "timestamp, name, uuid, pci.bus_id, utilization.gpu [%], utilization.memory [%], "
    "memory.total [MiB], memory.used [MiB], power.draw [W]"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return generate(tmp_path_factory.mktemp("demo"), seed=7, months=2, end_month=LAST_MONTH)


@pytest.fixture(scope="module")
def sql(demo: DemoFiles) -> Iterator[duckdb.DuckDBPyConnection]:
    """`billed`: GPU compute usage rows; `dcgm`: the OpenMetrics samples, their label sets
    taken apart in `series`; `readings`: one row per GPU and hour with every metric, where
    `utilisation` is GR_ENGINE_ACTIVE x 100 where present, else GPU_UTIL."""
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    labels = ", ".join(
        f"""nullif(regexp_extract(labels, '(?:^|,){name}="([^"]*)"', 1), '') AS "{name}" """
        for name in LABELS
    )
    billing = " UNION ALL BY NAME ".join(
        f"({d.select_sql})"
        for d in (read_cur(str(demo.aws_dir)), read_gcp_export_files(str(demo.gcp_dir)))
    )
    conn.execute(f"""
        CREATE TABLE billed AS
            SELECT CASE ProviderName WHEN 'AWS' THEN 'AWS' ELSE 'GCP' END AS provider,
                   ResourceId AS resource_id, ResourceName AS resource_name,
                   Tags['cluster'] AS cluster, x_InstanceType AS instance_type,
                   CAST(ChargePeriodStart AS DATE) AS day, CAST(PricingQuantity AS INTEGER) AS hours
            FROM ({billing})
            WHERE ChargeCategory = 'Usage' AND regexp_matches(x_InstanceType, '{GPU_INSTANCE}');
        CREATE TABLE dcgm AS
            WITH lines AS (
                SELECT line, strpos(line, '{{') AS open, strpos(line, '}} ') AS close
                FROM read_csv('{demo.gpu_openmetrics_dir}/*/*.om', columns = {{'line': 'VARCHAR'}},
                              header = false, delim = '\t', quote = '', escape = '',
                              auto_detect = false)
                WHERE NOT starts_with(line, '#'))
            SELECT substr(line, 1, open - 1) AS metric,
                   substr(line, open + 1, close - open - 1) AS labels,
                   CAST(split_part(substr(line, close + 2), ' ', 1) AS DOUBLE) AS value,
                   to_timestamp(CAST(split_part(substr(line, close + 2), ' ', 2) AS BIGINT)) AS ts
            FROM lines;
        CREATE TABLE series AS SELECT labels, {labels} FROM (SELECT DISTINCT labels FROM dcgm);
        CREATE TABLE readings AS
            SELECT instance_id, gpu, ts, cluster, Hostname AS hostname, UUID AS uuid,
                   modelName AS model, namespace,
                   max(value) FILTER (WHERE metric = 'DCGM_FI_DEV_GPU_UTIL') AS gpu_util,
                   max(value) FILTER (WHERE metric = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE') AS gr_engine,
                   max(value) FILTER (WHERE metric = 'DCGM_FI_DEV_FB_USED') AS fb_used,
                   max(value) FILTER (WHERE metric = 'DCGM_FI_DEV_FB_FREE') AS fb_free,
                   max(value) FILTER (WHERE metric = 'DCGM_FI_DEV_POWER_USAGE') AS power,
                   coalesce(gr_engine * 100, gpu_util) AS utilisation
            FROM dcgm JOIN series USING (labels) GROUP BY ALL;
    """)
    yield conn
    conn.close()


def _idle_days_start(sql: duckdb.DuckDBPyConnection) -> date:
    (last_day,) = sql.execute("SELECT max(day) FROM billed").fetchone()
    return date.fromordinal(last_day.toordinal() - IDLE_DAYS + 1)


def test_demo_files_say_where_the_gpu_metrics_are(demo: DemoFiles) -> None:
    assert demo.gpu_openmetrics_dir == demo.root / "gpu-openmetrics"
    assert demo.nvidia_smi_dir == demo.root / "nvidia-smi"
    assert demo.nvidia_smi_time_zone == "Europe/London"
    assert sorted(p.name for p in demo.gpu_openmetrics_dir.iterdir()) == ["2026-03", "2026-04"]
    text = (demo.gpu_openmetrics_dir / "2026-04" / "nlp-h100.om").read_text()
    assert text.startswith("# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n")
    assert "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge\n" in text
    assert text.endswith("\n# EOF\n")


def test_every_gpu_node_reports_exactly_the_hours_it_is_billed(
    sql: duckdb.DuckDBPyConnection,
) -> None:
    mismatches = sql.execute("""
        WITH clustered AS (SELECT * FROM billed WHERE cluster IS NOT NULL),
        reported AS (
            SELECT instance_id, any_value(cluster) AS cluster, CAST(ts AS DATE) AS day,
                   count(DISTINCT ts) AS hours
            FROM readings GROUP BY instance_id, day)
        SELECT b.resource_id, r.instance_id, b.day, r.day, b.hours, r.hours, b.cluster, r.cluster
        FROM clustered b FULL JOIN reported r ON r.instance_id = b.resource_id AND r.day = b.day
        WHERE b.hours IS DISTINCT FROM r.hours OR b.cluster IS DISTINCT FROM r.cluster
    """).fetchall()
    billed_clusters, reporting_clusters = sql.execute("""
        SELECT (SELECT list(DISTINCT cluster ORDER BY cluster) FROM billed
                WHERE cluster IS NOT NULL),
               (SELECT list(DISTINCT cluster ORDER BY cluster) FROM readings)
    """).fetchone()

    assert mismatches == []
    assert billed_clusters == reporting_clusters
    assert len(reporting_clusters) == 9


def test_labels_name_nodes_and_gpus_as_the_providers_do(sql: duckdb.DuckDBPyConnection) -> None:
    nodes = sql.execute("""
        SELECT DISTINCT b.provider, b.resource_name, b.instance_type, r.hostname, r.uuid, r.model
        FROM readings r JOIN billed b ON b.resource_id = r.instance_id
    """).fetchall()

    assert len(nodes) == len({uuid for *_, uuid, _ in nodes}) > 60
    for provider, name, instance_type, hostname, uuid, model in nodes:
        if provider == "AWS":
            assert re.fullmatch(
                r"ip-10-\d+-\d+-\d+\.(ec2\.internal|us-west-2\.compute\.internal)", hostname
            )
        else:
            assert hostname == name  # a GCE host is named after its instance
        assert re.fullmatch(r"GPU-[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", uuid)
        assert model == MODEL[re.split(r"[.-]", instance_type)[0]]


def test_memory_adds_up_and_only_a100_and_h100_report_gr_engine_active(
    sql: duckdb.DuckDBPyConnection,
) -> None:
    per_family = sql.execute("""
        SELECT regexp_extract(b.instance_type, '^[a-z0-9]+') AS family,
               list(DISTINCT r.fb_used + r.fb_free), count(r.gr_engine), count(*),
               min(r.gpu_util), max(r.gpu_util), min(r.gr_engine), max(r.gr_engine),
               count(*) FILTER (WHERE r.power IS NULL OR r.power <= 0)
        FROM readings r JOIN (SELECT DISTINCT resource_id, instance_type FROM billed) b
          ON b.resource_id = r.instance_id
        GROUP BY 1 ORDER BY 1
    """).fetchall()

    assert {family for family, *_ in per_family} == set(MEMORY_MIB)
    for family, memory, with_gr, count, *ranges, no_power in per_family:
        assert memory == [MEMORY_MIB[family]]
        assert with_gr == (count if family in ("p4d", "p5", "a2", "a3") else 0)
        util_min, util_max, gr_min, gr_max = ranges
        assert 0 <= util_min <= util_max <= 100
        assert gr_min is None or 0 <= gr_min <= gr_max <= 1
        assert no_power == 0


def test_idle_clusters_sit_idle_but_billed_for_their_last_days(
    sql: duckdb.DuckDBPyConnection,
) -> None:
    since = _idle_days_start(sql)
    billed_days = sql.execute(
        "SELECT cluster, count(DISTINCT day) FROM billed WHERE day >= ? GROUP BY 1", [since]
    ).fetchall()
    usage = dict(
        sql.execute(
            """
            SELECT cluster, avg(utilisation) FROM readings
            WHERE CAST(ts AS DATE) >= ? GROUP BY 1
            """,
            [since],
        ).fetchall()
    )
    (max_gr_engine,) = sql.execute(
        "SELECT max(gr_engine) FROM readings WHERE CAST(ts AS DATE) >= ? AND cluster IN ?",
        [since, list(IDLE_CLUSTERS)],
    ).fetchone()

    assert len(IDLE_CLUSTERS) >= 2
    assert {c: n for c, n in billed_days if c in IDLE_CLUSTERS} == dict.fromkeys(
        IDLE_CLUSTERS, IDLE_DAYS
    )
    assert all(usage[c] < 5 for c in IDLE_CLUSTERS)
    assert max_gr_engine < 0.01
    others = {c: u for c, u in usage.items() if c not in IDLE_CLUSTERS}
    assert len(others) >= 4
    assert min(others.values()) > 20


def test_dev_cluster_works_office_hours_and_idles_nights_and_weekends(
    sql: duckdb.DuckDBPyConnection,
) -> None:
    by_time = sql.execute("""
        WITH office AS (
            SELECT timezone('Europe/London', ts) AS clock, utilisation FROM readings
            WHERE cluster = 'ml-dev-usw2')
        SELECT count(*) FILTER (WHERE isodow(clock) >= 6),
               count(*) FILTER (WHERE hour(clock) < 8 OR hour(clock) >= 22),
               avg(utilisation) FILTER (WHERE hour(clock) BETWEEN 10 AND 16),
               avg(utilisation) FILTER (WHERE hour(clock) >= 18)
        FROM office
    """).fetchone()
    weekend_samples, night_samples, office_hours, evening = by_time

    assert (weekend_samples, night_samples) == (0, 0)
    assert office_hours > 25
    assert evening < 2


@pytest.mark.parametrize(
    ("cluster", "users"),
    [
        ("search-serving-use1", "America/New_York"),
        ("recs-serving", "America/Chicago"),
        ("vision-serving", "Europe/Amsterdam"),
    ],
)
def test_inference_load_follows_its_users_day(
    cluster: str, users: str, sql: duckdb.DuckDBPyConnection
) -> None:
    day, night = sql.execute(
        f"""
        WITH local AS (
            SELECT hour(timezone('{users}', ts)) AS hour, utilisation FROM readings
            WHERE cluster = ? AND CAST(ts AS DATE) < ?)
        SELECT avg(utilisation) FILTER (WHERE hour BETWEEN 12 AND 19),
               avg(utilisation) FILTER (WHERE hour BETWEEN 0 AND 6)
        FROM local
        """,
        [cluster, _idle_days_start(sql)],
    ).fetchone()

    assert day > 45
    assert night < 25


def test_training_runs_in_multi_day_bursts_with_idle_gaps(
    sql: duckdb.DuckDBPyConnection,
) -> None:
    days = sql.execute(
        """
        SELECT cluster, count(*) FILTER (WHERE daily > 60), count(*) FILTER (WHERE daily < 5)
        FROM (SELECT cluster, CAST(ts AS DATE) AS day, avg(utilisation) AS daily
              FROM readings WHERE cluster IN ('train-p4d-use1', 'search-train-use1',
                                              'recs-train', 'vision-train', 'nlp-h100')
                AND CAST(ts AS DATE) < ?
              GROUP BY ALL)
        GROUP BY 1 ORDER BY 1
        """,
        [_idle_days_start(sql)],
    ).fetchall()

    busy = {cluster: (busy_days, idle_days) for cluster, busy_days, idle_days in days}
    # Nodes brought up for a run are billed only while it runs: busy whenever they report.
    assert all(
        idle == 0 and busy_days > 0
        for c, (busy_days, idle) in busy.items()
        if c != "train-p4d-use1"
    )
    # The always-on reserved p4d nodes wait, idle and billed, between jobs.
    assert busy["train-p4d-use1"][0] >= 15
    assert busy["train-p4d-use1"][1] >= 2


def test_namespaces_split_shared_and_serving_gpus_by_team(sql: duckdb.DuckDBPyConnection) -> None:
    namespaces = dict(
        sql.execute(
            "SELECT cluster, list(DISTINCT namespace ORDER BY namespace) FROM readings GROUP BY 1"
        ).fetchall()
    )

    teams = {t.name for t in DEMO_TEAMS}
    assert None in namespaces["train-p4d-use1"]  # no job between runs: the GPUs hold no pod
    assert len(set(namespaces["train-p4d-use1"]) & teams) >= 3
    assert namespaces["search-serving-use1"] == ["search-ranking"]
    assert namespaces["recs-serving"] == ["recommendations"]
    assert namespaces["vision-serving"] == ["vision"]
    assert namespaces["nlp-h100"] == namespaces["ml-dev-usw2"] == [None]


def test_nvidia_smi_logs_dev_hosts_outside_the_openmetrics(
    demo: DemoFiles, sql: duckdb.DuckDBPyConnection
) -> None:
    logs = {p.stem: p.read_text().splitlines() for p in sorted(demo.nvidia_smi_dir.iterdir())}
    billed = dict(
        sql.execute(
            """
            SELECT resource_name, sum(hours) FROM billed
            WHERE cluster IS NULL AND resource_name IN ? GROUP BY 1
            """,
            [list(logs)],
        ).fetchall()
    )
    in_openmetrics = sql.execute(
        "SELECT count(*) FROM readings r JOIN billed b ON b.resource_id = r.instance_id "
        "WHERE b.resource_name IN ? OR r.hostname IN ?",
        [list(logs), list(logs)],
    ).fetchone()

    assert len(logs) == 2
    assert set(billed) == set(logs)
    assert in_openmetrics == (0,)
    line = re.compile(
        r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{3}, NVIDIA (L4|A10G), GPU-[0-9a-f-]{36}, "
        r"00000000:00:[0-9A-F]{2}\.0, \d+ %, \d+ %, \d+ MiB, \d+ MiB, \d+\.\d{2} W"
    )
    for host, lines in logs.items():
        data = [x for x in lines if x != NVIDIA_SMI_HEADER]
        gpus = len({x.split(", ")[2] for x in data})
        assert lines[0] == NVIDIA_SMI_HEADER
        assert all(line.fullmatch(x) for x in data)
        assert len(data) == billed[host] * gpus


def test_gpu_files_ingest_through_the_collectors(
    demo: DemoFiles, sql: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # Three clusters of one month: the OpenMetrics parser takes ~0.15 ms a sample line.
    folder = tmp_path / "openmetrics"
    folder.mkdir()
    clusters = ("ml-dev-usw2", "nlp-h100", "vision-serving")
    for cluster in clusters:
        shutil.copy(demo.gpu_openmetrics_dir / "2026-04" / f"{cluster}.om", folder)
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    dcgm = warehouse.ingest_gpu(
        lambda: read_openmetrics(str(folder)),
        source="demo-dcgm",
        collector="openmetrics",
        uri=str(folder),
    )
    smi_dir = str(demo.nvidia_smi_dir)
    smi = warehouse.ingest_gpu(
        lambda: read_nvidia_smi(smi_dir, time_zone=demo.nvidia_smi_time_zone),
        source="demo-nvidia-smi",
        collector="nvidia-smi",
        uri=smi_dir,
    )

    (expected_readings,) = sql.execute(
        "SELECT count(*) FROM readings WHERE cluster IN ? AND ts >= '2026-04-01'",
        [list(clusters)],
    ).fetchone()
    assert (dcgm.status, dcgm.rows) == ("success", expected_readings)
    stored = warehouse.query("""
        SELECT count(*) FILTER (WHERE gr_engine_active IS NOT NULL) AS with_gr_engine,
               count(*) FILTER (WHERE mem_total_mib NOT IN (23028, 23034, 81559)) AS odd_memory,
               list(DISTINCT namespace) FILTER (WHERE namespace IS NOT NULL) AS namespaces
        FROM gpu_samples WHERE source = 'demo-dcgm'
    """).to_pylist()
    (expected_h100,) = sql.execute(
        "SELECT count(*) FROM readings WHERE cluster = 'nlp-h100' AND ts >= '2026-04-01'"
    ).fetchone()
    assert stored == [{"with_gr_engine": expected_h100, "odd_memory": 0, "namespaces": ["vision"]}]
    # The shutdown candidate's hours roll up as idle (under the warehouse's 5%) once it idles.
    idle_share = warehouse.query(
        """
        SELECT hour >= ? AS left_idle, avg(CAST(idle AS INTEGER)) AS idle_share
        FROM gpu_hourly WHERE source = 'demo-dcgm' AND node LIKE 'vision-serve-%'
        GROUP BY 1 ORDER BY 1
        """,
        [_idle_days_start(sql)],
    ).to_pylist()
    assert idle_share[1] == {"left_idle": True, "idle_share": 1.0}
    assert idle_share[0]["idle_share"] < 0.25

    # nvidia-smi logs local time: each weekday's first reading is at 08:0x in London,
    # 07:0x UTC in summer time (from 29 March 2026) and 08:0x before.
    assert smi.status == "success"
    first_hours = warehouse.query("""
        SELECT DISTINCT day >= DATE '2026-03-29' AS summer, hour(first) AS first_utc_hour
        FROM (SELECT CAST(ts AT TIME ZONE 'UTC' AS DATE) AS day,
                     min(ts AT TIME ZONE 'UTC') AS first
              FROM gpu_samples WHERE source = 'demo-nvidia-smi' GROUP BY node, day)
        ORDER BY 1
    """).to_pylist()
    assert first_hours == [
        {"summer": False, "first_utc_hour": 8},
        {"summer": True, "first_utc_hour": 7},
    ]
    hosts = [p.stem for p in demo.nvidia_smi_dir.iterdir()]
    (billed_gpu_hours,) = sql.execute(
        "SELECT sum(hours * CASE WHEN instance_type LIKE 'g2-%' THEN 2 ELSE 1 END) FROM billed "
        "WHERE resource_name IN ?",
        [hosts],
    ).fetchone()
    assert smi.rows == billed_gpu_hours
