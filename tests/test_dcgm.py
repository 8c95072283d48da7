"""DCGM exporter scrapes over real HTTP on loopback, and OpenMetrics history files."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from finops.collectors.dcgm import read_openmetrics, scrape_dcgm
from finops.errors import IngestError
from finops.warehouse import Warehouse

# Shaped like dcgm-exporter 3.x output on a 2-GPU H100 node: HELP/TYPE lines, the
# driver-version label, empty k8s labels on an idle GPU, the profiling fields.
EXPOSITION = """\
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-0a1b",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15",container="trainer",namespace="ml-platform",pod="train-7f9c"} 97
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-2c3d",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15",container="",namespace="",pod=""} 0
# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-0a1b",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 1523
DCGM_FI_DEV_FB_FREE{gpu="1",UUID="GPU-2c3d",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 81000
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-0a1b",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 79000
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-2c3d",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 2
# HELP DCGM_FI_DEV_FB_RESERVED Framebuffer memory reserved (in MiB).
# TYPE DCGM_FI_DEV_FB_RESERVED gauge
DCGM_FI_DEV_FB_RESERVED{gpu="0",UUID="GPU-0a1b",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 478
DCGM_FI_DEV_FB_RESERVED{gpu="1",UUID="GPU-2c3d",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 479
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-0a1b",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 612.337
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-2c3d",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 71.5
# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-0a1b",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 61
# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.
# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-0a1b",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 0.412
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="1",UUID="GPU-2c3d",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 0.000
# HELP DCGM_FI_PROF_PIPE_TENSOR_ACTIVE Ratio of cycles the tensor (HMMA) pipe is active.
# TYPE DCGM_FI_PROF_PIPE_TENSOR_ACTIVE gauge
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{gpu="0",UUID="GPU-0a1b",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"} 0.256
"""

# A newer exporter (hostname in lower case), a MIG instance, a NaN power reading.
EXPOSITION_NEW = """\
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-9e8f",modelName="NVIDIA A100-SXM4-80GB",hostname="gpu-node-2",GPU_I_PROFILE="3g.40gb",GPU_I_ID="1",pod_namespace="search",pod_name="rank-1",instance_id="i-0f00",cluster="serve-b"} 12
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-9e8f",modelName="NVIDIA A100-SXM4-80GB",hostname="gpu-node-2",GPU_I_PROFILE="3g.40gb",GPU_I_ID="1"} NaN
"""

NOW = datetime(2026, 7, 3, 22, 10, 0, tzinfo=UTC)


class _Exporter(BaseHTTPRequestHandler):
    payloads: ClassVar[dict[str, tuple[int, str]]] = {}

    def do_GET(self) -> None:
        status, body = self.payloads.get(self.path, (404, "not found"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    _Exporter.payloads = {
        "/metrics": (200, EXPOSITION),
        "/new": (200, EXPOSITION_NEW),
        "/truncated": (200, EXPOSITION[:400]),
        "/broken": (500, "oops"),
        "/nolabel": (200, 'DCGM_FI_DEV_GPU_UTIL{Hostname="x"} 5\n'),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def samples(warehouse: Warehouse) -> list[dict]:
    return warehouse.query(
        "SELECT * EXCLUDE (ingest_id) FROM gpu_samples ORDER BY node, gpu_index"
    ).to_pylist()


def test_scrape_of_two_gpus_keeps_utilisation_memory_power_and_pod(
    exporter: str, tmp_path: Path
) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    url = f"{exporter}/metrics"
    result = warehouse.ingest_gpu(
        lambda: scrape_dcgm(url, now=NOW), source="dcgm", collector="dcgm", uri=url
    )

    assert (result.rows, result.gpus, result.nodes) == (2, 2, 1)
    busy, idle = samples(warehouse)
    assert busy["ts"] == NOW
    assert (busy["node"], busy["gpu_index"], busy["gpu_uuid"]) == ("gpu-node-1", 0, "GPU-0a1b")
    assert busy["model"] == "NVIDIA H100 80GB HBM3"
    assert (busy["gpu_util_pct"], busy["gr_engine_active"], busy["tensor_active"]) == (
        97.0,
        0.412,
        0.256,
    )
    assert busy["sm_active"] is None
    assert (busy["mem_used_mib"], busy["mem_total_mib"], busy["power_w"]) == (
        79000.0,
        81001.0,
        612.337,
    )
    assert (busy["namespace"], busy["pod"], busy["container"]) == (
        "ml-platform",
        "train-7f9c",
        "trainer",
    )
    assert (idle["gpu_util_pct"], idle["namespace"], idle["mem_total_mib"]) == (0.0, None, 81481.0)
    hourly = warehouse.query(
        "SELECT gpu_index, mean_util_pct, idle FROM gpu_hourly ORDER BY gpu_index"
    ).to_pylist()
    # Utilisation prefers GR_ENGINE_ACTIVE x 100 over GPU_UTIL: 41.2, not 97.
    assert hourly == [
        {"gpu_index": 0, "mean_util_pct": pytest.approx(41.2), "idle": False},
        {"gpu_index": 1, "mean_util_pct": 0.0, "idle": True},
    ]


def test_newer_hostname_label_mig_profile_and_nan(exporter: str, tmp_path: Path) -> None:
    delivery = scrape_dcgm(f"{exporter}/new", now=NOW)
    assert delivery.notes == ["NaN or infinite values stored as nulls: 1 sample(s)"]
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    warehouse.ingest_gpu(lambda: delivery, source="dcgm", collector="dcgm", uri="new")
    (row,) = samples(warehouse)
    assert (row["node"], row["mig_profile"], row["gpu_util_pct"], row["power_w"]) == (
        "gpu-node-2",
        "3g.40gb",
        12.0,
        None,
    )
    assert (row["resource_id"], row["cluster"]) == ("i-0f00", "serve-b")
    assert (row["namespace"], row["pod"]) == ("search", "rank-1")


def test_a_later_scrape_adds_and_rescraping_the_same_instant_replaces(
    exporter: str, tmp_path: Path
) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    url = f"{exporter}/metrics"
    for at in (NOW, NOW.replace(minute=11), NOW.replace(minute=11)):
        warehouse.ingest_gpu(
            lambda at=at: scrape_dcgm(url, now=at), source="dcgm", collector="dcgm", uri=url
        )
    assert warehouse.query("SELECT count(*) AS n FROM gpu_samples").column("n")[0].as_py() == 4


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/truncated", "not valid Prometheus exposition text"),
        ("/broken", "cannot scrape after 3 tries: HTTP 500"),
        ("/missing", "the exporter answered HTTP 404"),
        ("/nolabel", "neither a gpu nor a UUID label"),
    ],
)
def test_bad_payloads_are_refused_clearly(
    exporter: str, path: str, message: str, tmp_path: Path
) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    url = f"{exporter}{path}"
    with pytest.raises(IngestError, match=message):
        warehouse.ingest_gpu(
            lambda: scrape_dcgm(url, now=NOW), source="dcgm", collector="dcgm", uri=url
        )
    assert warehouse.runs().column("status").to_pylist() == ["failed"]


def test_scrape_without_host_label_uses_the_target_host(exporter: str) -> None:
    _Exporter.payloads["/hostless"] = (200, 'DCGM_FI_DEV_GPU_UTIL{gpu="0"} 50\n')
    delivery = scrape_dcgm(f"{exporter}/hostless", now=NOW)
    assert delivery.notes == [
        "no Hostname/hostname label: host taken from the scrape target (127.0.0.1): 1 sample(s)"
    ]


def test_openmetrics_history_file(tmp_path: Path) -> None:
    start = int(datetime(2026, 7, 1, 9, tzinfo=UTC).timestamp())
    lines = ["# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
    # 09:00-09:59 at 30 %, 10:00-10:59 at 2 % (idle), one sample a minute.
    lines += [
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="GPU-1",Hostname="n1"}} {30 if m < 60 else 2} {start + 60 * m}'
        for m in range(120)
    ]
    lines += ["# EOF", ""]
    path = tmp_path / "history.om"
    path.write_text("\n".join(lines))
    warehouse = Warehouse(tmp_path / "wh.duckdb")

    result = warehouse.ingest_gpu(
        lambda: read_openmetrics(str(path)), source="om", collector="openmetrics", uri=str(path)
    )

    assert (result.rows, result.hours) == (120, 2)
    hourly = warehouse.query(
        "SELECT strftime(hour, '%H') AS h, samples, mean_util_pct, idle FROM gpu_hourly ORDER BY hour"
    )
    assert hourly.to_pylist() == [
        {"h": "09", "samples": 60, "mean_util_pct": 30.0, "idle": False},
        {"h": "10", "samples": 60, "mean_util_pct": 2.0, "idle": True},
    ]
    run = warehouse.runs().to_pylist()[0]
    assert (run["collector"], run["status"], run["rows"]) == ("openmetrics", "success", 120)


TRICKY_OPENMETRICS = r"""# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",Hostname="n1",pod="a \"quoted\" pod",namespace=""} 97 1780000000
DCGM_FI_DEV_GPU_UTIL{Hostname="n1",UUID="GPU-2",gpu="1"} NaN 1780000000
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-1",Hostname="n1"} +Inf 1780000000.5
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-2",Hostname="n1"} 1.5e2 1780000000
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1",Hostname="n1"} 61 1780000000
# EOF
"""


def test_fast_openmetrics_reader_agrees_with_the_library_parser(tmp_path: Path) -> None:
    from finops.collectors.dcgm import LABELS, _parse

    path = tmp_path / "tricky.om"
    path.write_text(TRICKY_OPENMETRICS)
    delivery = read_openmetrics(str(path))

    fast = sorted(
        (tuple(row.values()) for row in delivery.tables["dcgm_samples"].to_pylist()), key=repr
    )
    library = sorted(
        (
            (ts, field, value if value == value and abs(value) != float("inf") else None, *labels)
            for ts, field, value, *labels in _parse(TRICKY_OPENMETRICS, "t", openmetrics=True)
        ),
        key=repr,
    )
    assert fast == library
    assert len(fast) == 4
    assert delivery.tables["dcgm_samples"].column_names == ["ts", "field", "value", *LABELS]
    assert delivery.notes == ["NaN or infinite values stored as nulls: 2 sample(s)"]
    pods = delivery.tables["dcgm_samples"].column("pod").to_pylist()
    assert 'a "quoted" pod' in pods


def test_truncated_openmetrics_file_is_refused_with_the_parsers_reason(tmp_path: Path) -> None:
    path = tmp_path / "cut.om"
    path.write_text(TRICKY_OPENMETRICS.replace("# EOF\n", ""))
    with pytest.raises(IngestError, match=r"cut.om: not valid OpenMetrics text"):
        read_openmetrics(str(path))
