"""The GPU host agent against a stand-in for NVML: what it reads, and how it spools it.

Only NVML is faked (`FakeNvml` answers pynvml's calls for a fixed set of GPUs); files,
signals, S3 (moto) and the real pynvml's failure on this GPU-less machine are real.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

import finops.collectors.nvml as agent
from finops.collectors.nvml import (
    NvmlUnavailableError,
    Spool,
    parse_interval,
    read_gpus,
    run_agent,
)
from finops.errors import ConfigError
from finops.warehouse.schema import GPU_SAMPLE_COLUMNS

MIB = 1024 * 1024
T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


# --- the NVML boundary --------------------------------------------------------------------


# pynvml's own class names, so the agent's `nvml.NVMLError_NotSupported` finds them.
class NVMLError(Exception):
    text = "Unknown Error"

    def __str__(self) -> str:
        return self.text


class NVMLError_NotSupported(NVMLError):
    text = "Not Supported"


class NVMLError_NotFound(NVMLError):
    text = "Not Found"


class NVMLError_DriverNotLoaded(NVMLError):
    text = "Driver Not Loaded"


class NVMLError_GpuIsLost(NVMLError):
    text = "GPU is lost"


@dataclass
class FakeGpu:
    name: str
    uuid: str
    util_pct: int | None
    """None: NVML answers NotSupported (as for a MIG instance, or a GPU in MIG mode)."""
    mem_used: int
    mem_total: int
    power_mw: int | None
    mig_slots: list[FakeGpu | None] | None = None
    """None: the GPU cannot do MIG; []: MIG off; else the MIG slots (None = unused slot)."""


@dataclass
class FakeNvml:
    """The pynvml calls the agent makes, answering for `gpus`."""

    gpus: list[FakeGpu]
    init_error: NVMLError | None = None
    open_inits: int = 0
    calls: list[str] = field(default_factory=list)

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NotFound = NVMLError_NotFound
    NVML_DEVICE_MIG_ENABLE = 1

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.init_error
        self.open_inits += 1

    def nvmlShutdown(self) -> None:
        self.open_inits -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return gpu.name

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return gpu.uuid

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
        if gpu.util_pct is None:
            raise NVMLError_NotSupported
        return SimpleNamespace(gpu=gpu.util_pct, memory=0)

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(
            used=gpu.mem_used, total=gpu.mem_total, free=gpu.mem_total - gpu.mem_used
        )

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        if gpu.power_mw is None:
            raise NVMLError_NotSupported
        return gpu.power_mw

    def nvmlDeviceGetMigMode(self, gpu: FakeGpu) -> list[int]:
        if gpu.mig_slots is None:
            raise NVMLError_NotSupported
        mode = 1 if gpu.mig_slots else 0
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, gpu: FakeGpu) -> int:
        return len(gpu.mig_slots or [])

    def nvmlDeviceGetMigDeviceHandleByIndex(self, gpu: FakeGpu, slot: int) -> FakeGpu:
        instance = (gpu.mig_slots or [])[slot]
        if instance is None:
            raise NVMLError_NotFound
        return instance


def two_h200s() -> list[FakeGpu]:
    """GPU 0 busy at 37%, 40960 MiB used, 312.5 W; GPU 1 idle, 1.5 MiB used, 75.25 W."""
    total = 143771 * MIB
    return [
        FakeGpu("NVIDIA H200", "GPU-aaaa", 37, 40960 * MIB, total, 312_500, mig_slots=[]),
        FakeGpu("NVIDIA H200", "GPU-bbbb", 0, 3 * MIB // 2, total, 75_250, mig_slots=[]),
    ]


def reading(**values: object) -> dict[str, object]:
    """A reading with every sample field, None unless given."""
    return {**dict.fromkeys(GPU_SAMPLE_COLUMNS), **values}


class FakeClock:
    """time.time and time.sleep for the agent: sleeping moves the clock, nothing waits."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- reading the GPUs -----------------------------------------------------------------------


def test_each_gpu_gives_one_reading_in_sample_columns() -> None:
    nvml = FakeNvml(two_h200s())

    readings = read_gpus(nvml, now=T0 + timedelta(milliseconds=250), node="gpu-host-1")

    common = {
        "ts": "2026-05-01T10:00:00.250Z",
        "node": "gpu-host-1",
        "model": "NVIDIA H200",
        "mem_total_mib": 143771.0,
    }
    assert readings == [
        reading(
            **common,
            gpu_index=0,
            gpu_uuid="GPU-aaaa",
            gpu_util_pct=37,
            mem_used_mib=40960.0,
            power_w=312.5,
        ),
        reading(
            **common,
            gpu_index=1,
            gpu_uuid="GPU-bbbb",
            gpu_util_pct=0,
            mem_used_mib=1.5,
            power_w=75.25,
        ),
    ]
    assert all(list(r) == list(GPU_SAMPLE_COLUMNS) for r in readings)
    assert nvml.open_inits == 0  # every nvmlInit was matched by an nvmlShutdown


def test_sample_fields_match_the_warehouse_columns() -> None:
    assert list(agent.SAMPLE_FIELDS) == list(GPU_SAMPLE_COLUMNS)


def test_unsupported_power_reads_as_null() -> None:
    gpu = FakeGpu("Tesla T4", "GPU-cccc", 12, 512 * MIB, 15360 * MIB, power_mw=None)

    [only] = read_gpus(FakeNvml([gpu]), now=T0, node="n")

    assert only["power_w"] is None
    assert (only["gpu_util_pct"], only["mem_used_mib"], only["mig_profile"]) == (12, 512.0, None)


def test_mig_instances_read_with_profile_and_null_utilisation() -> None:
    small = FakeGpu("NVIDIA H200 MIG 1g.18gb", "MIG-1111", None, 100 * MIB, 16384 * MIB, None)
    large = FakeGpu("NVIDIA H200 MIG 3g.71gb", "MIG-3333", None, 2048 * MIB, 71424 * MIB, None)
    parent = FakeGpu(
        "NVIDIA H200",
        "GPU-dddd",
        None,
        2148 * MIB,
        143771 * MIB,
        98_000,
        mig_slots=[small, None, large],  # slot 1 unused
    )

    readings = read_gpus(FakeNvml([parent]), now=T0, node="n")

    summary = [
        (r["gpu_index"], r["gpu_uuid"], r["model"], r["mig_profile"], r["gpu_util_pct"])
        for r in readings
    ]
    assert summary == [
        (0, "GPU-dddd", "NVIDIA H200", None, None),
        (0, "MIG-1111", "NVIDIA H200", "1g.18gb", None),
        (0, "MIG-3333", "NVIDIA H200", "3g.71gb", None),
    ]
    assert [r["mem_total_mib"] for r in readings] == [143771.0, 16384.0, 71424.0]
    assert [r["power_w"] for r in readings] == [98.0, None, None]


def test_no_driver_is_one_clear_line() -> None:
    nvml = FakeNvml(two_h200s(), init_error=NVMLError_DriverNotLoaded())

    with pytest.raises(NvmlUnavailableError) as raised:
        read_gpus(nvml, now=T0)

    assert str(raised.value) == (
        "no NVIDIA driver found on this host (NVML: Driver Not Loaded); "
        "the GPU agent needs an NVIDIA GPU and driver"
    )


def test_no_gpu_is_one_clear_line(tmp_path: Path) -> None:
    nvml = FakeNvml([])

    with pytest.raises(
        NvmlUnavailableError, match=r"^no NVIDIA GPU found on this host \(NVML sees 0 devices\)"
    ):
        run_agent(str(tmp_path / "spool"), 15, nvml=nvml)
    assert nvml.open_inits == 0
    assert not (tmp_path / "spool").exists()  # nothing is created on a host without GPUs


def test_missing_nvidia_ml_py_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail

    with pytest.raises(NvmlUnavailableError, match=r"^nvidia-ml-py is not installed"):
        read_gpus(now=T0)


@pytest.mark.skipif(
    Path("/dev/nvidiactl").exists(), reason="this host has an NVIDIA driver: NVML would start"
)
def test_real_pynvml_without_a_driver_raises_the_one_line_error() -> None:
    pytest.importorskip("pynvml")

    with pytest.raises(NvmlUnavailableError) as raised:
        read_gpus(now=T0)

    message = str(raised.value)
    assert message.startswith("no NVIDIA driver found on this host (NVML: ")
    assert "\n" not in message


# --- the interval ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("1m", 60.0), ("500ms", 0.5), ("2", 2.0), ("1.5h", 5400.0), (" 30S ", 30.0)],
)
def test_interval_forms(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["0s", "-5s", "fast", "", "15 minutes", "1m30s"])
def test_bad_interval_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="expected a positive duration such as 15s, 1m or 500ms"):
        parse_interval(text)


# --- spooling -------------------------------------------------------------------------------


def test_files_rotate_every_15_minutes_of_samples(tmp_path: Path) -> None:
    clock = FakeClock(T0)

    written = run_agent(
        str(tmp_path),
        60,
        max_samples=40,  # 10:00 to 10:39, one a minute
        nvml=FakeNvml(two_h200s()),
        node="gpu-host-1",
        clock=clock.time,
        sleep=clock.sleep,
    )

    assert written == 40
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == [
        "gpu-gpu-host-1-20260501T100000Z.jsonl",
        "gpu-gpu-host-1-20260501T101500Z.jsonl",
        "gpu-gpu-host-1-20260501T103000Z.jsonl",
    ]
    # Two GPUs a sample: 15, 15 and 10 samples.
    assert [len(lines(f)) for f in files] == [30, 30, 20]
    second = lines(files[1])
    assert (second[0]["ts"], second[-1]["ts"]) == (
        "2026-05-01T10:15:00.000Z",
        "2026-05-01T10:29:00.000Z",
    )
    assert [r["gpu_uuid"] for r in second[:2]] == ["GPU-aaaa", "GPU-bbbb"]


def test_a_file_is_only_tmp_until_rotated(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    seen: list[tuple[list[str], list[int]]] = []

    def sleep_and_look(seconds: float) -> None:
        names = sorted(p.name for p in tmp_path.iterdir())
        seen.append((names, [len((tmp_path / n).read_text().splitlines()) for n in names]))
        clock.sleep(seconds)

    run_agent(
        str(tmp_path),
        300,
        max_samples=5,  # 10:00, 10:05, 10:10 | 10:15, 10:20
        nvml=FakeNvml(two_h200s()),
        node="h1",
        clock=clock.time,
        sleep=sleep_and_look,
    )

    first, second = "gpu-h1-20260501T100000Z", "gpu-h1-20260501T101500Z"
    assert seen == [
        ([f"{first}.jsonl.tmp"], [2]),  # each sample is on disk at once, still as .tmp
        ([f"{first}.jsonl.tmp"], [4]),
        ([f"{first}.jsonl.tmp"], [6]),
        ([f"{first}.jsonl", f"{second}.jsonl.tmp"], [6, 2]),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{first}.jsonl", f"{second}.jsonl"]


def test_sigterm_publishes_the_open_file(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    handler_before = signal.getsignal(signal.SIGTERM)
    sleeps = 0

    def sleep_then_terminate(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        clock.sleep(seconds)

    written = run_agent(
        str(tmp_path),
        15,
        nvml=FakeNvml(two_h200s()),
        node="h1",
        clock=clock.time,
        sleep=sleep_then_terminate,
    )

    assert written == 3
    [published] = tmp_path.iterdir()
    assert published.name == "gpu-h1-20260501T100000Z.jsonl"
    assert len(lines(published)) == 6
    assert signal.getsignal(signal.SIGTERM) == handler_before


def test_a_gpu_lost_mid_run_publishes_what_was_read_and_stops(tmp_path: Path) -> None:
    clock = FakeClock(T0)

    class LosingNvml(FakeNvml):
        def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
            self.calls.append(gpu.uuid)
            if len(self.calls) > 4:  # two whole samples of two GPUs, then GPU 0 is lost
                raise NVMLError_GpuIsLost
            return super().nvmlDeviceGetUtilizationRates(gpu)

    nvml = LosingNvml(two_h200s())
    with pytest.raises(
        NvmlUnavailableError,
        match=r"^NVML failed reading GPU 0 \(GPU is lost\); check the GPUs with nvidia-smi$",
    ):
        run_agent(str(tmp_path), 15, nvml=nvml, node="h1", clock=clock.time, sleep=clock.sleep)

    [published] = tmp_path.iterdir()
    assert (published.name, len(lines(published))) == ("gpu-h1-20260501T100000Z.jsonl", 4)
    assert nvml.open_inits == 0


def test_a_killed_agents_tmp_file_is_completed_at_next_start(tmp_path: Path) -> None:
    whole = json.dumps(reading(ts="2026-05-01T09:00:00.000Z", node="h1", gpu_index=0)) + "\n"
    (tmp_path / "gpu-h1-20260501T090000Z.jsonl.tmp").write_text(whole * 2 + '{"ts":"2026-05')
    others = tmp_path / "gpu-h1-b-20260501T090000Z.jsonl.tmp"  # another host's: not ours
    others.write_text(whole)

    Spool(str(tmp_path), host="h1").close()

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gpu-h1-20260501T090000Z.jsonl",
        "gpu-h1-b-20260501T090000Z.jsonl.tmp",
    ]
    assert (tmp_path / "gpu-h1-20260501T090000Z.jsonl").read_text() == whole * 2


def test_files_opened_in_the_same_second_do_not_overwrite(tmp_path: Path) -> None:
    one = [reading(ts="2026-05-01T10:00:00.000Z", node="h1")]
    with Spool(str(tmp_path), host="h1") as spool:
        spool.write(one, T0)
    with Spool(str(tmp_path), host="h1") as spool:
        spool.write(one, T0)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gpu-h1-20260501T100000Z-1.jsonl",
        "gpu-h1-20260501T100000Z.jsonl",
    ]


@mock_aws
def test_s3_output_uploads_rotated_files_and_removes_local_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="telemetry")
    clock = FakeClock(T0)
    staging = tmp_path / "staging"

    run_agent(
        "s3://telemetry/gpu/spool",
        60,
        max_samples=20,  # 10:00-10:14 and 10:15-10:19
        nvml=FakeNvml(two_h200s()),
        node="h1",
        staging_dir=staging,
        clock=clock.time,
        sleep=clock.sleep,
    )

    objects = s3.list_objects_v2(Bucket="telemetry")["Contents"]
    assert [o["Key"] for o in objects] == [
        "gpu/spool/gpu-h1-20260501T100000Z.jsonl",
        "gpu/spool/gpu-h1-20260501T101500Z.jsonl",
    ]
    bodies = [s3.get_object(Bucket="telemetry", Key=o["Key"])["Body"].read() for o in objects]
    assert [len(b.splitlines()) for b in bodies] == [30, 10]
    assert list(staging.iterdir()) == []


@mock_aws
def test_failed_upload_is_kept_and_retried_at_the_next_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    staging = tmp_path / "staging"
    one = [reading(ts="2026-05-01T10:00:00.000Z", node="h1")]
    spool = Spool("s3://telemetry", host="h1", staging_dir=staging)
    spool.write(one, T0)

    with caplog.at_level(logging.WARNING, logger="finops.collectors.nvml"):
        spool.write(one, T0 + timedelta(minutes=15))  # rotates; the bucket does not exist yet

    assert "upload to s3://telemetry/gpu-h1-20260501T100000Z.jsonl failed" in caplog.text
    assert sorted(p.name for p in staging.iterdir()) == [
        "gpu-h1-20260501T100000Z.jsonl",
        "gpu-h1-20260501T101500Z.jsonl.tmp",
    ]

    s3.create_bucket(Bucket="telemetry")
    spool.close()

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="telemetry")["Contents"]]
    assert keys == ["gpu-h1-20260501T100000Z.jsonl", "gpu-h1-20260501T101500Z.jsonl"]
    assert list(staging.iterdir()) == []


# --- a light import for GPU hosts -----------------------------------------------------------


def test_agent_module_imports_only_stdlib_and_finops_errors_at_top() -> None:
    tree = ast.parse(Path(agent.__file__).read_text())
    top_level = [
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [None])
    ]
    ours = {name for name in top_level if name.split(".")[0] not in sys.stdlib_module_names}
    assert ours == {"finops.errors"}


def test_agent_import_loads_no_duckdb_pyarrow_or_pandas() -> None:
    """Needs `finops/__init__.py` to import its exports lazily, as well as the rule above."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import finops.collectors.nvml, sys; "
            "heavy = [m for m in ('duckdb', 'pyarrow', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
