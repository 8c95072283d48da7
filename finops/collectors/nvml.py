"""The GPU host agent: read the local GPUs through NVML and spool the readings as JSON lines.

`finops agent gpu` runs `run_agent`: every interval it reads each GPU, and each MIG
instance where MIG is on, with nvidia-ml-py and appends one JSON object per reading (the
`GPU_SAMPLE_COLUMNS` fields) to `gpu-<host>-<YYYYmmddTHHMMSSZ>.jsonl.tmp`. A file is
published whole: when it is rotated it is fsynced and renamed to `.jsonl` (and, for an
s3:// output, uploaded and then deleted), so `finops ingest gpu-spool` never reads a file
that is still growing. GPU hosts never open the warehouse.

This is what a GPU host imports, so its import path holds to the standard library and
`finops.errors`: pynvml is imported when GPUs are read, boto3 when an upload is due.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from finops.errors import ConfigError, FinopsError

log = logging.getLogger(__name__)

SAMPLE_FIELDS: tuple[str, ...] = (
    "ts",
    "node",
    "gpu_index",
    "gpu_uuid",
    "model",
    "mig_profile",
    "resource_id",
    "cluster",
    "gpu_util_pct",
    "gr_engine_active",
    "sm_active",
    "tensor_active",
    "mem_used_mib",
    "mem_total_mib",
    "power_w",
    "namespace",
    "pod",
    "container",
)
"""The names of `finops.warehouse.schema.GPU_SAMPLE_COLUMNS`, in order. Repeated here because
importing the warehouse would load DuckDB on every GPU host; a test keeps the two equal."""

MIB = 1024 * 1024
_INTERVAL = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class NvmlUnavailableError(FinopsError):
    """NVML cannot read GPUs here: no nvidia-ml-py, no driver, no GPU, or a GPU stopped answering."""


def parse_interval(text: str) -> float:
    """Seconds in an interval written as `15s`, `1m`, `500ms`, `1h` or a bare number of seconds."""
    match = _INTERVAL.fullmatch(text)
    seconds = float(match[1]) * _UNIT_SECONDS[(match[2] or "s").lower()] if match else 0.0
    if seconds <= 0:
        raise ConfigError(
            f"interval {text!r}: expected a positive duration such as 15s, 1m or 500ms"
        )
    return seconds


def read_gpus(nvml: Any = None, *, now: datetime, node: str | None = None) -> list[dict[str, Any]]:
    """One reading per GPU, and per MIG instance where MIG is on, stamped `now`.

    `nvml` is the pynvml module (imported when not given). `node` defaults to this host's
    name. A field the GPU does not support (NVML's NotSupported) is None.
    """
    lib = _start(nvml)
    try:
        return _read_all(lib, now, node or socket.gethostname())
    finally:
        lib.nvmlShutdown()


@dataclass
class _OpenFile:
    handle: BinaryIO
    path: Path
    opened_at: datetime
    size: int = 0


class Spool:
    """The spool files of one host, each published whole once it is rotated.

    Readings go to `gpu-<host>-<opened>.jsonl.tmp`. A file is rotated when it has been open
    `rotate_minutes` or has grown to `rotate_mb`, and when the spool closes: it is fsynced
    and renamed to `.jsonl`. For an `s3://bucket/prefix` output the files are kept in
    `staging_dir` (default `~/.cache/finops/gpu-spool`), uploaded at each rotation to
    `prefix/<file name>` and deleted once uploaded; a failed upload is retried at the next.

    Opening a spool first completes the `.tmp` files a killed agent of this host left (cut
    to their last whole line), so one agent per host and folder is expected.
    """

    def __init__(
        self,
        out: str,
        *,
        host: str | None = None,
        rotate_minutes: float = 15,
        rotate_mb: float = 64,
        staging_dir: str | Path | None = None,
    ) -> None:
        if rotate_minutes <= 0 or rotate_mb <= 0:
            raise ConfigError(
                f"rotation every {rotate_minutes} min or {rotate_mb} MB: both must be positive"
            )
        self.host = re.sub(r"[^A-Za-z0-9._-]", "_", host or socket.gethostname())
        self.rotate_after = timedelta(minutes=rotate_minutes)
        self.rotate_bytes = rotate_mb * MIB
        self.bucket: str | None = None
        self.prefix = ""
        if out.startswith("s3://"):
            self.bucket, _, key = out.removeprefix("s3://").partition("/")
            if not self.bucket:
                raise ConfigError(f"{out}: an S3 output needs a bucket, as in s3://bucket/prefix")
            self.prefix = key if not key or key.endswith("/") else key + "/"
            self.directory = Path(staging_dir) if staging_dir else _default_staging_dir()
        else:
            self.directory = Path(out).expanduser()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{self.directory}: cannot create the spool folder: {exc.strerror}"
            ) from None
        self._own_stem = re.compile(rf"gpu-{re.escape(self.host)}-\d{{8}}T\d{{6}}Z(-\d+)?")
        self._current: _OpenFile | None = None
        self._s3: Any = None
        self._complete_leftovers()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def write(self, readings: list[dict[str, Any]], now: datetime) -> None:
        """Append one round of readings taken at `now`, rotating the file first if it is due."""
        current = self._current
        if current and (
            now - current.opened_at >= self.rotate_after or current.size >= self.rotate_bytes
        ):
            self._finish()
        if not readings:
            return
        current = self._current or self._open(now)
        data = b"".join(
            json.dumps(r, separators=(",", ":"), allow_nan=False).encode() + b"\n" for r in readings
        )
        # One write and a flush per round: a killed agent leaves whole lines in the page
        # cache, and only a power cut can cut the last one (which the next start trims).
        current.handle.write(data)
        current.handle.flush()
        current.size += len(data)

    def close(self) -> None:
        """Publish the open file, and upload whatever is still waiting for S3."""
        self._finish()

    def _files(self, suffix: str) -> list[Path]:
        """This host's files in the local folder that end in `suffix` (not another host's)."""
        return sorted(
            p
            for p in self.directory.glob(f"*{suffix}")
            if self._own_stem.fullmatch(p.name.removesuffix(suffix))
        )

    def _open(self, now: datetime) -> _OpenFile:
        stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        attempt = 0
        while True:
            # Two files opened within one second (a restart, a tiny rotate_mb) get a suffix
            # instead of overwriting each other.
            stem = f"gpu-{self.host}-{stamp}" + (f"-{attempt}" if attempt else "")
            path = self.directory / f"{stem}.jsonl.tmp"
            attempt += 1
            if (self.directory / f"{stem}.jsonl").exists():
                continue
            try:
                self._current = _OpenFile(path.open("xb"), path, now)
            except FileExistsError:
                continue
            return self._current

    def _finish(self) -> None:
        current, self._current = self._current, None
        if current:
            current.handle.flush()
            os.fsync(current.handle.fileno())
            current.handle.close()
            # No fsync of the folder: if a crash undoes the rename, the file is still
            # `.tmp` and the next start completes it.
            os.replace(current.path, current.path.with_suffix(""))
        self._upload_pending()

    def _complete_leftovers(self) -> None:
        for path in self._files(".jsonl.tmp"):
            with path.open("r+b") as handle:
                data = handle.read()
                whole = data.rfind(b"\n") + 1
                if whole < len(data):
                    log.warning(
                        "%s: dropped an unfinished last line (%d bytes) left by a stopped agent",
                        path,
                        len(data) - whole,
                    )
                    handle.truncate(whole)
                os.fsync(handle.fileno())
            if whole:
                os.replace(path, path.with_suffix(""))
            else:
                path.unlink()

    def _upload_pending(self) -> None:
        if self.bucket is None:
            return
        import boto3
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        for path in self._files(".jsonl"):
            key = self.prefix + path.name
            try:
                if self._s3 is None:
                    self._s3 = boto3.client("s3")
                self._s3.upload_file(str(path), self.bucket, key)
            except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
                log.warning(
                    "%s: upload to s3://%s/%s failed, kept to retry at the next rotation: %s",
                    path,
                    self.bucket,
                    key,
                    exc,
                )
                return  # the rest would most likely fail the same way
            path.unlink()


def run_agent(
    out: str,
    interval_s: float,
    *,
    rotate_minutes: float = 15,
    rotate_mb: float = 64,
    max_samples: int | None = None,
    nvml: Any = None,
    node: str | None = None,
    staging_dir: str | Path | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Read every GPU each `interval_s` seconds into spool files at `out` until stopped.

    A sample is one reading of every GPU (and MIG instance) on the host. The loop runs until
    SIGTERM, Ctrl-C or `max_samples` samples, then publishes the open file; it returns how
    many samples it wrote. `out` is a folder or `s3://bucket/prefix` (see `Spool`). A GPU
    that stops answering also publishes the open file, then raises NvmlUnavailableError:
    the host needs attention, and the agent's supervisor can restart it.
    """
    if interval_s <= 0:
        raise ConfigError(f"interval {interval_s} s: must be positive")
    lib = _start(nvml)
    host = node or socket.gethostname()
    samples = 0
    try:
        with (
            _sigterm_as_interrupt(),
            Spool(
                out,
                host=host,
                rotate_minutes=rotate_minutes,
                rotate_mb=rotate_mb,
                staging_dir=staging_dir,
            ) as spool,
        ):
            due = clock()
            while max_samples is None or samples < max_samples:
                if samples:
                    # Sampling late (a slow read, a suspended host) skips ahead instead of
                    # catching up in a burst.
                    due = max(due + interval_s, clock())
                    sleep(max(0.0, due - clock()))
                now = datetime.fromtimestamp(clock(), UTC)
                spool.write(_read_all(lib, now, host), now)
                samples += 1
    except KeyboardInterrupt:
        pass  # a requested stop: leaving the with-block above has published the open file
    finally:
        lib.nvmlShutdown()
    return samples


def _start(nvml: Any) -> Any:
    """NVML initialised, with at least one GPU, or NvmlUnavailableError in one line."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            raise NvmlUnavailableError(
                "nvidia-ml-py is not installed (pip install nvidia-ml-py); "
                "the GPU agent needs it to read the GPUs"
            ) from None
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlUnavailableError(
            f"no NVIDIA driver found on this host (NVML: {exc}); "
            "the GPU agent needs an NVIDIA GPU and driver"
        ) from None
    try:
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as exc:
        nvml.nvmlShutdown()
        raise NvmlUnavailableError(f"NVML cannot count the GPUs on this host ({exc})") from None
    if count == 0:
        nvml.nvmlShutdown()
        raise NvmlUnavailableError(
            "no NVIDIA GPU found on this host (NVML sees 0 devices); the GPU agent needs one"
        )
    return nvml


def _read_all(nvml: Any, now: datetime, node: str) -> list[dict[str, Any]]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ts = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    readings: list[dict[str, Any]] = []
    where = "the GPU count"
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            where = f"GPU {index}"
            gpu = nvml.nvmlDeviceGetHandleByIndex(index)
            model = nvml.nvmlDeviceGetName(gpu)
            readings.append(_reading(nvml, gpu, ts, node, index, model, None))
            for instance in _mig_instances(nvml, gpu):
                # A MIG device is named '<GPU name> MIG <profile>', e.g. 'NVIDIA H200 MIG 1g.18gb'.
                profile = nvml.nvmlDeviceGetName(instance).rpartition("MIG ")[2]
                readings.append(_reading(nvml, instance, ts, node, index, model, profile))
    except nvml.NVMLError as exc:
        raise NvmlUnavailableError(
            f"NVML failed reading {where} ({exc}); check the GPUs with nvidia-smi"
        ) from None
    return readings


def _reading(
    nvml: Any,
    device: Any,
    ts: str,
    node: str,
    index: int,
    model: str,
    mig_profile: str | None,
) -> dict[str, Any]:
    utilisation = _unless_unsupported(nvml, nvml.nvmlDeviceGetUtilizationRates, device)
    memory = _unless_unsupported(nvml, nvml.nvmlDeviceGetMemoryInfo, device)
    power_mw = _unless_unsupported(nvml, nvml.nvmlDeviceGetPowerUsage, device)
    reading: dict[str, Any] = dict.fromkeys(SAMPLE_FIELDS)
    # gr_engine_active, sm_active and tensor_active stay None: NVML's GPM metrics need two
    # samples per device held between rounds, and without them the warehouse falls back to
    # gpu_util_pct.
    reading.update(
        ts=ts,
        node=node,
        gpu_index=index,
        gpu_uuid=nvml.nvmlDeviceGetUUID(device),
        model=model,
        mig_profile=mig_profile,
        gpu_util_pct=None if utilisation is None else utilisation.gpu,
        mem_used_mib=None if memory is None else memory.used / MIB,
        mem_total_mib=None if memory is None else memory.total / MIB,
        power_w=None if power_mw is None else power_mw / 1000,
    )
    return reading


def _unless_unsupported(nvml: Any, call: Callable[[Any], Any], device: Any) -> Any:
    """`call(device)`, or None where the device does not support it."""
    try:
        return call(device)
    except nvml.NVMLError_NotSupported:
        return None


def _mig_instances(nvml: Any, gpu: Any) -> list[Any]:
    """The GPU's MIG devices; none where MIG is off or the GPU cannot do MIG."""
    mode = _unless_unsupported(nvml, nvml.nvmlDeviceGetMigMode, gpu)
    if mode is None or mode[0] != nvml.NVML_DEVICE_MIG_ENABLE:
        return []
    instances = []
    for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(gpu)):
        try:
            instances.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, slot))
        except nvml.NVMLError_NotFound:
            continue  # an unused slot; later slots may still hold instances
    return instances


def _default_staging_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "finops" / "gpu-spool"


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM (systemd, Kubernetes) stop the agent the way Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers; its caller owns them
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
