"""GPU spool files into the warehouse: what lands in gpu_samples and gpu_hourly, and what is refused."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from finops.collectors.gpu_spool import default_source, read_gpu_spool
from finops.collectors.nvml import Spool
from finops.errors import IngestError
from finops.warehouse import GpuIngestResult, Warehouse
from finops.warehouse.schema import GPU_SAMPLE_COLUMNS

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)

# (minutes after 10:00, GPU-aaaa util/mem used/power, GPU-bbbb util/mem used/power)
H1_SAMPLES = [
    (0, (30, 1000, 300), (0, 10, 60)),
    (20, (50, 2000, 310), (3, 10, 62)),
    (40, (70, 3000, 320), (9, 10, 64)),
    (60, (80, 4000, 330), (6, 10, 66)),
]
"""Hour 10: GPU-aaaa util 30/50/70 (mean 50, p95 68, max 70); GPU-bbbb 0/3/9 (mean 4: idle).
Hour 11: one sample each, util 80 and 6 (neither idle)."""


def readings(node: str, minutes: int, *gpus: tuple[int, float, float]) -> list[dict]:
    """One sample of `node`'s GPUs, as the agent writes it."""
    ts = (T0 + timedelta(minutes=minutes)).isoformat(timespec="milliseconds")
    return [
        {
            **dict.fromkeys(GPU_SAMPLE_COLUMNS),
            "ts": ts.replace("+00:00", "Z"),
            "node": node,
            "gpu_index": index,
            "gpu_uuid": f"GPU-{'ab'[index] * 4}",
            "model": "NVIDIA H200",
            "gpu_util_pct": util,
            "mem_used_mib": mem_used,
            "mem_total_mib": 143771.0,
            "power_w": power,
        }
        for index, (util, mem_used, power) in enumerate(gpus)
    ]


def spool_h1(folder: Path) -> Path:
    """H1_SAMPLES written by the agent's Spool: 20 minutes apart, so one file per sample."""
    with Spool(str(folder), host="h1") as spool:
        for minutes, *gpus in H1_SAMPLES:
            spool.write(readings("h1", minutes, *gpus), T0 + timedelta(minutes=minutes))
    return folder


def ingest(warehouse: Warehouse, location: Path | str) -> GpuIngestResult:
    return warehouse.ingest_gpu(
        lambda: read_gpu_spool(str(location)),
        source="gpu-spool",
        collector="gpu-spool",
        uri=str(location),
    )


def sample_count(warehouse: Warehouse, node: str | None = None) -> int:
    where = "WHERE node = ?" if node else ""
    table = warehouse.query(
        f"SELECT count(*) AS n FROM gpu_samples {where}", [node] if node else []
    )
    return table.column("n")[0].as_py()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_spooled_samples_land_with_exact_hourly_rollups(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = spool_h1(tmp_path / "spool")
    assert len(list(folder.glob("*.jsonl"))) == 4

    result = ingest(warehouse, folder)

    assert (result.status, result.rows, result.nodes, result.gpus) == ("success", 8, 1, 2)
    assert (result.window_start, result.window_end) == (T0, T0 + timedelta(hours=1))
    assert result.hours == 2
    hourly = warehouse.query(
        """
        SELECT hour, gpu_uuid, gpu_index, model, samples, mean_util_pct, p95_util_pct,
               max_util_pct, idle, mean_mem_used_mib, mem_total_mib, mean_power_w
        FROM gpu_hourly ORDER BY hour, gpu_uuid
        """
    ).to_pylist()
    eleven = T0 + timedelta(hours=1)
    assert hourly == [
        {
            "hour": T0,
            "gpu_uuid": "GPU-aaaa",
            "gpu_index": 0,
            "model": "NVIDIA H200",
            "samples": 3,
            "mean_util_pct": 50.0,
            "p95_util_pct": pytest.approx(68.0),  # 50 + 0.9 * (70 - 50)
            "max_util_pct": 70.0,
            "idle": False,
            "mean_mem_used_mib": 2000.0,
            "mem_total_mib": 143771.0,
            "mean_power_w": 310.0,
        },
        {
            "hour": T0,
            "gpu_uuid": "GPU-bbbb",
            "gpu_index": 1,
            "model": "NVIDIA H200",
            "samples": 3,
            "mean_util_pct": 4.0,
            "p95_util_pct": pytest.approx(8.4),  # 3 + 0.9 * (9 - 3)
            "max_util_pct": 9.0,
            "idle": True,  # 4% < the default 5% threshold
            "mean_mem_used_mib": 10.0,
            "mem_total_mib": 143771.0,
            "mean_power_w": 62.0,
        },
        {
            "hour": eleven,
            "gpu_uuid": "GPU-aaaa",
            "gpu_index": 0,
            "model": "NVIDIA H200",
            "samples": 1,
            "mean_util_pct": 80.0,
            "p95_util_pct": 80.0,
            "max_util_pct": 80.0,
            "idle": False,
            "mean_mem_used_mib": 4000.0,
            "mem_total_mib": 143771.0,
            "mean_power_w": 330.0,
        },
        {
            "hour": eleven,
            "gpu_uuid": "GPU-bbbb",
            "gpu_index": 1,
            "model": "NVIDIA H200",
            "samples": 1,
            "mean_util_pct": 6.0,
            "p95_util_pct": 6.0,
            "max_util_pct": 6.0,
            "idle": False,
            "mean_mem_used_mib": 10.0,
            "mem_total_mib": 143771.0,
            "mean_power_w": 66.0,
        },
    ]
    stored = warehouse.query(
        "SELECT gr_engine_active, mig_profile, pod FROM gpu_samples WHERE ts = ? AND gpu_index = 0",
        [T0],
    ).to_pylist()
    assert stored == [{"gr_engine_active": None, "mig_profile": None, "pod": None}]


def test_reingesting_the_same_files_replaces_rather_than_duplicates(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    folder = spool_h1(tmp_path / "spool")
    ingest(warehouse, folder)

    again = ingest(warehouse, folder)

    assert (again.rows, again.replaced_rows) == (8, 8)
    assert sample_count(warehouse) == 8
    samples = warehouse.query("SELECT sum(samples) AS n FROM gpu_hourly").column("n")[0].as_py()
    assert samples == 8


def test_a_second_hosts_file_keeps_the_first_hosts_samples(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    ingest(warehouse, spool_h1(tmp_path / "h1"))
    with Spool(str(tmp_path / "h2"), host="h2") as spool:
        spool.write(readings("h2", 30, (90, 500, 400)), T0 + timedelta(minutes=30))

    result = ingest(warehouse, tmp_path / "h2")

    assert (result.rows, result.replaced_rows) == (1, 0)
    assert (sample_count(warehouse, "h1"), sample_count(warehouse, "h2")) == (8, 1)
    hours = warehouse.query(
        "SELECT node, count(*) AS n FROM gpu_hourly GROUP BY node ORDER BY node"
    )
    assert hours.to_pylist() == [{"node": "h1", "n": 4}, {"node": "h2", "n": 1}]


def test_bad_line_names_file_line_and_field_and_changes_nothing(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    ingest(warehouse, spool_h1(tmp_path / "spool"))
    good = [json.dumps(r) for r in readings("h1", 0, (30, 1000, 300), (0, 10, 60))]
    bad = {**json.loads(good[0]), "gpu_util_pct": 140}
    write_lines(tmp_path / "restated" / "gpu-h1-x.jsonl", [*good, json.dumps(bad)])

    with pytest.raises(
        IngestError,
        match=r"1 problem\(s\); nothing was ingested\n  \S+/gpu-h1-x\.jsonl, line 3, "
        r"field gpu_util_pct: '140' is outside 0-100$",
    ):
        ingest(warehouse, tmp_path / "restated")

    assert sample_count(warehouse) == 8
    latest = warehouse.runs().to_pylist()[0]
    assert (latest["status"], latest["collector"]) == ("failed", "gpu-spool")


def test_truncated_last_line_is_reported_not_dropped(tmp_path: Path) -> None:
    whole = [json.dumps(r) for r in readings("h1", 0, (30, 1000, 300), (0, 10, 60))]
    path = tmp_path / "gpu-h1-cut.jsonl"
    path.write_text("\n".join(whole) + '\n{"ts":"2026-05-01T10:00:15.000Z","node":"h')

    with pytest.raises(IngestError) as raised:
        read_gpu_spool(str(path))

    assert str(raised.value).endswith(
        'gpu-h1-cut.jsonl, line 3: \'{"ts":"2026-05-01T10:00:15.000Z","node":"h\' is not a '
        "JSON object (the file's last line: was it copied while the agent was still writing it?)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ts": "yesterday"}, "field ts: 'yesterday' is not a timestamp (expected ISO 8601"),
        ({"ts": None}, "field ts: is missing"),
        ({"node": None}, "field node: is missing"),
        ({"gpu_index": 1.5}, "field gpu_index: '1.5' is not a whole number"),
        ({"mem_used_mib": "lots"}, "field mem_used_mib: 'lots' is not a number"),
        ({"mem_used_mib": True}, "field mem_used_mib: 'true' is not a number"),
        ({"sm_active": 1.2}, "field sm_active: '1.2' is outside 0-1"),
        ({"power_w": -3}, "field power_w: '-3' is negative"),
    ],
)
def test_each_bad_value_is_named(tmp_path: Path, change: dict, message: str) -> None:
    line = json.dumps({**readings("h1", 0, (30, 1000, 300))[0], **change})
    path = write_lines(tmp_path / "gpu-h1.jsonl", [line])

    with pytest.raises(IngestError) as raised:
        read_gpu_spool(str(path))

    assert f"gpu-h1.jsonl, line 1, {message}" in str(raised.value)


def test_line_numbers_count_blank_lines_and_problems_come_in_file_order(tmp_path: Path) -> None:
    good = json.dumps(readings("h1", 0, (30, 1000, 300))[0])
    negative = good.replace('"gpu_util_pct": 30', '"gpu_util_pct": -1')
    path = write_lines(tmp_path / "gpu-h1.jsonl", [good, "", "[1, 2]", negative])

    with pytest.raises(IngestError) as raised:
        read_gpu_spool(str(path))

    assert str(raised.value).splitlines()[1:] == [
        f"  {path}, line 3: '[1, 2]' is not a JSON object",
        f"  {path}, line 4, field gpu_util_pct: '-1' is outside 0-100",
    ]


def test_unfinished_tmp_files_are_never_read(tmp_path: Path, warehouse: Warehouse) -> None:
    folder = spool_h1(tmp_path / "spool")
    (folder / "gpu-h1-20260501T110000Z.jsonl.tmp").write_text('{"ts":"2026-05-01T11:1')

    assert ingest(warehouse, folder).rows == 8
    only_tmp = tmp_path / "only-tmp"
    only_tmp.mkdir()
    (only_tmp / "gpu-h1-20260501T110000Z.jsonl.tmp").write_text("{}\n")
    with pytest.raises(
        IngestError, match=r"only-tmp: no \.jsonl/\.jsonl\.gz/\.parquet files found"
    ):
        read_gpu_spool(str(only_tmp))


def test_gzipped_and_parquet_spools_are_read(tmp_path: Path, warehouse: Warehouse) -> None:
    with gzip.open(tmp_path / "gpu-h1.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in readings("h1", 0, (30, 1000, 300)))
    table = pa.table(
        {
            "ts": pa.array([T0, T0 + timedelta(minutes=1)], pa.timestamp("ms", tz="UTC")),
            "node": ["h2", "h2"],
            "gpu_index": pa.array([0, 0], pa.int64()),
            "gpu_util_pct": [12.5, 14.5],
        }
    )
    pq.write_table(table, tmp_path / "gpu-h2.parquet")

    result = ingest(warehouse, tmp_path)

    assert (result.rows, result.nodes) == (3, 2)
    utils = warehouse.query("SELECT node, mean_util_pct FROM gpu_hourly ORDER BY node")
    assert utils.to_pylist() == [
        {"node": "h1", "mean_util_pct": 30.0},
        {"node": "h2", "mean_util_pct": 13.5},
    ]


def test_bad_parquet_row_is_named_by_row(tmp_path: Path) -> None:
    table = pa.table({"ts": [T0, T0], "node": ["h2", "h2"], "tensor_active": [0.5, 1.5]})
    pq.write_table(table, tmp_path / "gpu-h2.parquet")

    with pytest.raises(IngestError, match=r"gpu-h2\.parquet, row 2, field tensor_active: '1\.5'"):
        read_gpu_spool(str(tmp_path))


@mock_aws
def test_reads_the_agents_s3_prefix(
    tmp_path: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="telemetry")
    with Spool("s3://telemetry/gpu", host="h1", staging_dir=tmp_path / "staging") as spool:
        for minutes, *gpus in H1_SAMPLES:
            spool.write(readings("h1", minutes, *gpus), T0 + timedelta(minutes=minutes))

    result = ingest(warehouse, "s3://telemetry/gpu/")

    assert (result.rows, result.gpus) == (8, 2)
    assert default_source("s3://telemetry/gpu/") == "gpu-spool"
