"""The nvidia-smi collector: real log quirks in, exact GPU samples and hourly rollups out."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from finops.collectors.nvidia_smi import default_source, read_nvidia_smi
from finops.errors import IngestError
from finops.warehouse import GpuIngestResult, Warehouse

H100_HEADER = (
    "timestamp, name, uuid, pci.bus_id, utilization.gpu [%], utilization.memory [%], "
    "memory.total [MiB], memory.used [MiB], power.draw [W]"
)
# GPU 0 has the larger uuid: the index must come from the order in the log, not from sorting.
UUID_0 = "GPU-f1e2d3c4-5b6a-7980-1a2b-3c4d5e6f7a80"
UUID_1 = "GPU-07a8b9c0-d1e2-f3a4-b5c6-d7e8f9a0b1c2"


def h100_line(time: str, gpu: int, util: str, mem_used: str, power: str) -> str:
    """One line of `--format=csv` output (units in the values) for GPU 0 or 1 of an H100 node."""
    uuid, bus_id = [(UUID_0, "00000000:18:00.0"), (UUID_1, "00000000:2A:00.0")][gpu]
    return (
        f"2026/07/03 {time}, NVIDIA H100 80GB HBM3, {uuid}, {bus_id}, {util}, 0 %, "
        f"81559 MiB, {mem_used}, {power}"
    )


H100_LOG = [
    H100_HEADER,
    h100_line("22:59:58.109", 0, "77 %", "71234 MiB", "512.25 W"),
    h100_line("22:59:58.112", 1, "0 %", "3 MiB", "69.50 W"),
    h100_line("22:59:59.109", 0, "79 %", "71300 MiB", "520.75 W"),
    h100_line("22:59:59.113", 1, "2 %", "3 MiB", "70.50 W"),
    h100_line("23:00:00.110", 0, "55 %", "71302 MiB", "498.00 W"),
    h100_line("23:00:00.114", 1, "9 %", "515 MiB", "88.00 W"),
]


def write_log(path: Path, lines: list[str], *, end: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + end
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def ingest(
    warehouse: Warehouse, path: Path | str, time_zone: str = "UTC", host: str | None = None
) -> GpuIngestResult:
    return warehouse.ingest_gpu(
        lambda: read_nvidia_smi(str(path), time_zone=time_zone, host=host),
        source="nvidia-smi",
        collector="nvidia-smi",
        uri=str(path),
    )


def samples(warehouse: Warehouse) -> list[dict]:
    return warehouse.query(
        "SELECT ts, node, gpu_index, gpu_uuid, model, gpu_util_pct, mem_used_mib, "
        "mem_total_mib, power_w FROM gpu_samples ORDER BY ts, node, gpu_index"
    ).to_pylist()


def hourly(warehouse: Warehouse) -> list[dict]:
    return warehouse.query(
        "SELECT hour, node, gpu_index, samples, mean_util_pct, idle, mean_mem_used_mib, "
        "mean_power_w FROM gpu_hourly ORDER BY hour, node, gpu_index"
    ).to_pylist()


def utc(month: int, day: int, hour: int, minute: int, second: int, ms: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, ms * 1000, tzinfo=UTC)


def test_h100_log_with_units_is_stored_in_utc_and_rolled_up_per_hour(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    path = write_log(tmp_path / "gpu-node-7-20260703.csv", H100_LOG)

    result = ingest(warehouse, path)

    assert (result.rows, result.nodes, result.gpus, result.hours) == (6, 1, 2, 2)
    stored = samples(warehouse)
    assert stored[0] == {
        "ts": utc(7, 3, 22, 59, 58, 109),
        "node": "gpu-node-7",
        "gpu_index": 0,
        "gpu_uuid": UUID_0,
        "model": "NVIDIA H100 80GB HBM3",
        "gpu_util_pct": 77.0,
        "mem_used_mib": 71234.0,
        "mem_total_mib": 81559.0,
        "power_w": 512.25,
    }
    assert [(r["gpu_uuid"], r["gpu_index"]) for r in stored[:2]] == [(UUID_0, 0), (UUID_1, 1)]
    assert [r["gpu_util_pct"] for r in stored] == [77.0, 0.0, 79.0, 2.0, 55.0, 9.0]
    assert hourly(warehouse) == [
        # 22:00: GPU 0 busy (77, 79), GPU 1 idle (0, 2: mean 1 % < 5 %).
        {
            "hour": utc(7, 3, 22, 0, 0),
            "node": "gpu-node-7",
            "gpu_index": 0,
            "samples": 2,
            "mean_util_pct": 78.0,
            "idle": False,
            "mean_mem_used_mib": 71267.0,
            "mean_power_w": 516.5,
        },
        {
            "hour": utc(7, 3, 22, 0, 0),
            "node": "gpu-node-7",
            "gpu_index": 1,
            "samples": 2,
            "mean_util_pct": 1.0,
            "idle": True,
            "mean_mem_used_mib": 3.0,
            "mean_power_w": 70.0,
        },
        {
            "hour": utc(7, 3, 23, 0, 0),
            "node": "gpu-node-7",
            "gpu_index": 0,
            "samples": 1,
            "mean_util_pct": 55.0,
            "idle": False,
            "mean_mem_used_mib": 71302.0,
            "mean_power_w": 498.0,
        },
        {
            "hour": utc(7, 3, 23, 0, 0),
            "node": "gpu-node-7",
            "gpu_index": 1,
            "samples": 1,
            "mean_util_pct": 9.0,
            "idle": False,
            "mean_mem_used_mib": 515.0,
            "mean_power_w": 88.0,
        },
    ]
    assert set(result.notes) >= {
        "timestamps read as local time in UTC and converted to UTC",
        "node from the file name in 1 file(s), e.g. 'gpu-node-7-20260703.csv' -> 'gpu-node-7'",
        "gpu_index from the order in which each GPU first appears in its file: 1 file(s)",
        "field(s) ignored: utilization.memory [%]",
        "units stripped from 24 value(s)",  # 6 lines x util, memory.total, memory.used, power
    }


def test_nounits_log_reads_bare_values(tmp_path: Path, warehouse: Warehouse) -> None:
    path = write_log(
        tmp_path / "gpu-node-8.log",
        [
            "timestamp, index, name, utilization.gpu [%], memory.used [MiB], memory.total [MiB], "
            "power.draw [W]",
            "2026/07/03 10:00:01.250, 0, NVIDIA A100-SXM4-80GB, 100, 80100, 81920, 398.50",
            "2026/07/03 10:00:02.250, 0, NVIDIA A100-SXM4-80GB, 98, 80100, 81920, 401.50",
        ],
    )

    result = ingest(warehouse, path)

    assert [
        (r["ts"], r["node"], r["gpu_index"], r["gpu_util_pct"], r["mem_used_mib"], r["power_w"])
        for r in samples(warehouse)
    ] == [
        (utc(7, 3, 10, 0, 1, 250), "gpu-node-8", 0, 100.0, 80100.0, 398.5),
        (utc(7, 3, 10, 0, 2, 250), "gpu-node-8", 0, 98.0, 80100.0, 401.5),
    ]
    assert hourly(warehouse)[0]["mean_util_pct"] == 99.0
    assert "gpu_index from the index field: 1 file(s)" in result.notes
    assert not any(note.startswith("units stripped") for note in result.notes)


def test_crlf_line_ends_byte_order_mark_and_loose_spacing_are_accepted(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    path = tmp_path / "gpu-node-7.csv"
    path.write_bytes(
        b"\xef\xbb\xbftimestamp,index ,  utilization.gpu [%]\r\n"
        b"2026/07/03 10:00:00.000,0,  12 %\r\n"
    )

    ingest(warehouse, path)

    assert [(r["ts"], r["gpu_index"], r["gpu_util_pct"]) for r in samples(warehouse)] == [
        (utc(7, 3, 10, 0, 0), 0, 12.0)
    ]


def test_memory_in_gib_and_power_in_mw_are_converted(tmp_path: Path, warehouse: Warehouse) -> None:
    path = write_log(
        tmp_path / "gpu-node-9.csv",
        [
            "timestamp, index, memory.used [GiB], memory.total [GiB], power.draw [mW]",
            "2026/07/03 10:00:00.000, 0, 79.5 GiB, 80 GiB, 350250 mW",
        ],
    )

    result = ingest(warehouse, path)

    stored = samples(warehouse)[0]
    assert (stored["mem_used_mib"], stored["mem_total_mib"], stored["power_w"]) == (
        81408.0,  # 79.5 x 1024
        81920.0,
        350.25,
    )
    assert stored["gpu_util_pct"] is None  # no utilization.gpu field at all
    assert set(result.notes) >= {
        "memory.used converted from GiB to MiB",
        "memory.total converted from GiB to MiB",
        "power.draw converted from mW to W",
    }


@pytest.mark.parametrize(("host", "node"), [(None, "dgx-a-01"), ("rack3-node1", "rack3-node1")])
def test_fields_in_any_order_with_extras_and_a_hostname_field(
    tmp_path: Path, warehouse: Warehouse, host: str | None, node: str
) -> None:
    path = write_log(
        tmp_path / "collected-20260703.csv",
        [
            "hostname, index, power.draw [W], temperature.gpu, utilization.gpu [%], timestamp, "
            "memory.used [MiB], name, clocks.sm [MHz]",
            "dgx-a-01, 1, 301.50 W, 61, 93 %, 2026/07/03 08:15:00.001, 40000 MiB, "
            "NVIDIA A100-SXM4-80GB, 1410 MHz",
            "dgx-a-01, 0, 88.25 W, 35, 4 %, 2026/07/03 08:15:00.004, 1200 MiB, "
            "NVIDIA A100-SXM4-80GB, 210 MHz",
        ],
    )

    result = ingest(warehouse, path, host=host)

    assert [
        (r["ts"], r["node"], r["gpu_index"], r["gpu_util_pct"], r["mem_used_mib"], r["power_w"])
        for r in samples(warehouse)
    ] == [
        (utc(7, 3, 8, 15, 0, 1), node, 1, 93.0, 40000.0, 301.5),
        (utc(7, 3, 8, 15, 0, 4), node, 0, 4.0, 1200.0, 88.25),
    ]
    assert "field(s) ignored: clocks.sm [MHz], temperature.gpu" in result.notes


def test_mig_log_with_placeholders_stores_nulls(tmp_path: Path, warehouse: Warehouse) -> None:
    path = write_log(
        tmp_path / "mig-node-1.csv",
        [
            "timestamp, index, name, utilization.gpu [%], memory.used [MiB], power.draw [W]",
            "2026/07/03 12:00:00.500, 0, NVIDIA H100 80GB HBM3, [N/A], 20480 MiB, 250.00 W",
            "2026/07/03 12:00:01.500, 0, NVIDIA H100 80GB HBM3, [N/A], 20480 MiB, [Not Supported]",
            "2026/07/03 12:00:02.500, 0, NVIDIA H100 80GB HBM3, N/A, 20482 MiB, [Unknown Error]",
        ],
    )

    result = ingest(warehouse, path)

    assert [(r["gpu_util_pct"], r["power_w"]) for r in samples(warehouse)] == [
        (None, 250.0),
        (None, None),
        (None, None),
    ]
    [hour] = hourly(warehouse)
    assert (hour["samples"], hour["mean_util_pct"], hour["idle"]) == (3, None, None)
    assert hour["mean_mem_used_mib"] == (20480 + 20480 + 20482) / 3
    assert set(result.notes) >= {
        "utilization.gpu: 3 placeholder value(s) such as [N/A] read as null",
        "power.draw: 2 placeholder value(s) such as [N/A] read as null",
    }


def test_header_repeated_mid_file_is_skipped(tmp_path: Path, warehouse: Warehouse) -> None:
    # nvidia-smi -l was restarted and appended to the same log, header and all.
    path = write_log(
        tmp_path / "gpu-node-7.csv", [*H100_LOG[:3], "", *H100_LOG[:1], *H100_LOG[3:5]]
    )

    result = ingest(warehouse, path)

    assert result.rows == 4
    assert [(r["gpu_index"], r["gpu_util_pct"]) for r in samples(warehouse)] == [
        (0, 77.0),
        (1, 0.0),
        (0, 79.0),
        (1, 2.0),
    ]
    assert "repeated header line(s) skipped: 1" in result.notes


def test_berlin_local_time_across_the_spring_dst_change(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    # 2026-03-29: Berlin jumps from 02:00 CET (UTC+1) to 03:00 CEST (UTC+2); 4 s pass.
    path = write_log(
        tmp_path / "gpu-node-7.csv",
        [
            "timestamp, index, utilization.gpu [%]",
            "2026/03/29 01:59:58.000, 0, 10 %",
            "2026/03/29 03:00:02.000, 0, 30 %",
        ],
    )

    result = ingest(warehouse, path, time_zone="Europe/Berlin")

    assert [r["ts"] for r in samples(warehouse)] == [utc(3, 29, 0, 59, 58), utc(3, 29, 1, 0, 2)]
    assert [(h["hour"], h["samples"], h["mean_util_pct"]) for h in hourly(warehouse)] == [
        (utc(3, 29, 0, 0, 0), 1, 10.0),
        (utc(3, 29, 1, 0, 0), 1, 30.0),
    ]
    assert "timestamps read as local time in Europe/Berlin and converted to UTC" in result.notes


def test_berlin_hour_repeated_at_dst_end_is_read_in_log_order(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    # 2026-10-25: Berlin's 02:00-03:00 happens twice, first in CEST (UTC+2), then in CET (UTC+1).
    path = write_log(
        tmp_path / "gpu-node-7.csv",
        [
            "timestamp, index, utilization.gpu [%]",
            "2026/10/25 02:30:00.000, 0, 10 %",
            "2026/10/25 02:59:30.000, 0, 20 %",
            "2026/10/25 02:00:30.000, 0, 30 %",
            "2026/10/25 02:30:00.000, 0, 40 %",
            "2026/10/25 03:00:30.000, 0, 50 %",
        ],
    )

    ingest(warehouse, path, time_zone="Europe/Berlin")

    assert [(r["ts"], r["gpu_util_pct"]) for r in samples(warehouse)] == [
        (utc(10, 25, 0, 30, 0), 10.0),
        (utc(10, 25, 0, 59, 30), 20.0),
        (utc(10, 25, 1, 0, 30), 30.0),
        (utc(10, 25, 1, 30, 0), 40.0),
        (utc(10, 25, 2, 0, 30), 50.0),
    ]


def test_without_ids_the_index_is_the_position_among_lines_with_one_timestamp(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    path = write_log(
        tmp_path / "gpu-node-7.csv",
        [
            "timestamp, utilization.gpu [%]",
            "2026/07/03 10:00:00.000, 50 %",
            "2026/07/03 10:00:00.000, 60 %",
            "2026/07/03 10:00:01.000, 70 %",
            "2026/07/03 10:00:01.000, 80 %",
        ],
    )

    ingest(warehouse, path)

    assert [(r["gpu_index"], r["gpu_util_pct"]) for r in samples(warehouse)] == [
        (0, 50.0),
        (1, 60.0),
        (0, 70.0),
        (1, 80.0),
    ]
    assert [(h["gpu_index"], h["mean_util_pct"]) for h in hourly(warehouse)] == [
        (0, 60.0),
        (1, 70.0),
    ]


def test_last_line_still_being_written_is_skipped(tmp_path: Path, warehouse: Warehouse) -> None:
    path = write_log(tmp_path / "gpu-node-7.csv", [*H100_LOG[:3], "2026/07/03 22:59:59.1"], end="")

    result = ingest(warehouse, path)

    assert result.rows == 2
    assert f"{path}: last line has no line break (still being written?): skipped" in result.notes


@pytest.mark.parametrize(
    ("file_name", "node"),
    [
        ("gpu-node-7.csv", "gpu-node-7"),
        ("gpu-node-7-20260703.csv", "gpu-node-7"),
        ("gpu-node-7_2026-07-03T22-10-46.csv.gz", "gpu-node-7"),
        ("gpu-node-7.20260703.txt", "gpu-node-7"),
        ("gpu-node-7.log", "gpu-node-7"),
    ],
)
def test_node_is_the_file_name_without_suffix_and_date(
    tmp_path: Path, warehouse: Warehouse, file_name: str, node: str
) -> None:
    ingest(warehouse, write_log(tmp_path / file_name, H100_LOG[:2]))

    assert [r["node"] for r in samples(warehouse)] == [node]


def test_folder_of_logs_is_one_node_per_file(tmp_path: Path, warehouse: Warehouse) -> None:
    write_log(tmp_path / "logs" / "gpu-node-7.csv", H100_LOG[:3])
    write_log(tmp_path / "logs" / "old" / "gpu-node-8.csv.gz", H100_LOG[:2])

    result = ingest(warehouse, tmp_path / "logs")

    assert (result.rows, result.nodes) == (3, 2)
    assert [(r["node"], r["gpu_index"]) for r in samples(warehouse)] == [
        ("gpu-node-7", 0),
        ("gpu-node-8", 0),
        ("gpu-node-7", 1),
    ]


@mock_aws
def test_logs_on_s3_are_named_by_their_keys(
    tmp_path: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="gpu-logs")
    good = write_log(tmp_path / "good.csv", H100_LOG[:3])
    s3.upload_file(str(good), "gpu-logs", "nvidia-smi/gpu-node-7-20260703.csv")

    result = ingest(warehouse, "s3://gpu-logs/nvidia-smi/")

    assert result.rows == 2
    assert {r["node"] for r in samples(warehouse)} == {"gpu-node-7"}

    bad = write_log(tmp_path / "bad.csv", [*H100_LOG[:2], H100_LOG[2].replace("0 %", "x %", 1)])
    s3.upload_file(str(bad), "gpu-logs", "nvidia-smi/gpu-node-8-20260703.csv")
    with pytest.raises(
        IngestError,
        match=r"s3://gpu-logs/nvidia-smi/gpu-node-8-20260703.csv, line 3, "
        r"column utilization.gpu \[%\]: 'x %' is not a number in %",
    ):
        ingest(warehouse, "s3://gpu-logs/nvidia-smi/")


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (
            h100_line("23:00:00.110", 0, "abc %", "71302 MiB", "498.00 W"),
            "line 3, column utilization.gpu [%]: 'abc %' is not a number in %",
        ),
        (
            h100_line("23:00:00.110", 0, "120 %", "71302 MiB", "498.00 W"),
            "line 3, column utilization.gpu [%]: '120 %' is not a percentage between 0 and 100",
        ),
        (
            h100_line("23:00:00.110", 0, "55 %", "70 GiB", "498.00 W"),
            "line 3, column memory.used [MiB]: '70 GiB' is not a number in MiB",
        ),
        (
            h100_line("23:00:00.110", 0, "55 %", "71302 MiB", "498.00 W").replace(
                "2026/07/03 23:00:00.110", "2026-07-03T23:00:00"
            ),
            "line 3, column timestamp: '2026-07-03T23:00:00' is not a date/time",
        ),
        (
            "2026/07/03 23:00:00.110, NVIDIA H100 80GB HBM3, 55 %",
            "line 3: has 3 fields, but the header has 9",
        ),
    ],
)
def test_bad_value_names_file_line_and_column_and_changes_nothing(
    tmp_path: Path, warehouse: Warehouse, bad_line: str, message: str
) -> None:
    ingest(warehouse, write_log(tmp_path / "good" / "gpu-node-7.csv", H100_LOG))
    before = samples(warehouse)
    bad = write_log(tmp_path / "bad" / "gpu-node-7.csv", [*H100_LOG[:2], bad_line])

    with pytest.raises(IngestError, match="nothing was ingested") as raised:
        ingest(warehouse, bad)

    assert f"{bad}, {message}" in str(raised.value)
    assert samples(warehouse) == before
    latest = warehouse.runs().to_pylist()[0]
    assert (latest["status"], latest["source"]) == ("failed", "nvidia-smi")


def test_repeated_header_with_other_fields_is_refused(tmp_path: Path, warehouse: Warehouse) -> None:
    other_header = "timestamp, index, utilization.gpu [%]"
    path = write_log(tmp_path / "gpu-node-7.csv", [*H100_LOG[:3], other_header])

    with pytest.raises(IngestError, match=r"line 4: a header unlike line 1's"):
        ingest(warehouse, path)


def test_log_without_header_is_refused(tmp_path: Path, warehouse: Warehouse) -> None:
    path = write_log(tmp_path / "gpu-node-7.csv", H100_LOG[1:])  # --format=csv,noheader

    with pytest.raises(
        IngestError,
        match=r"line 1: '2026/07/03 22:59:58.109, NVIDIA .* is not an nvidia-smi CSV header",
    ):
        ingest(warehouse, path)
    assert samples(warehouse) == []


def test_header_without_timestamp_and_unknown_units_are_refused(tmp_path: Path) -> None:
    no_time = write_log(tmp_path / "a.csv", ["index, utilization.gpu [%]", "0, 5 %"])
    with pytest.raises(IngestError, match="no timestamp field"):
        read_nvidia_smi(str(no_time))

    odd_unit = write_log(
        tmp_path / "b.csv", ["timestamp, memory.used [TB]", "2026/07/03 10:00:00, 1"]
    )
    with pytest.raises(
        IngestError, match=r"b.csv, line 1, column memory.used \[TB\]: unit 'TB' is not one of MiB"
    ):
        read_nvidia_smi(str(odd_unit))


def test_unknown_time_zone_is_refused(tmp_path: Path) -> None:
    path = write_log(tmp_path / "gpu-node-7.csv", H100_LOG)

    with pytest.raises(IngestError, match="unknown time zone 'Europe/Berlln'"):
        read_nvidia_smi(str(path), time_zone="Europe/Berlln")


def test_default_source_is_nvidia_smi() -> None:
    assert default_source("s3://bucket/gpu-logs/2026-07/gpu-node-7.csv") == "nvidia-smi"
