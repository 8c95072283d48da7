"""DCGM history read from a real Prometheus (Debian's 2.42), backfilled with promtool."""

from __future__ import annotations

import json
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from finops.collectors.dcgm import METRICS
from finops.collectors.prometheus import parse_since, read_prometheus, since_last
from finops.errors import ConfigError, IngestError
from finops.warehouse import GpuIngestResult, Warehouse
from tests.prometheus_server import free_port, prometheus_serving

# Three hours, one sample a minute, starting on the hour two days ago: inside Prometheus's
# retention, and old enough that the backfilled blocks do not overlap its head.
START = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
MINUTES = 180
LAST = START + timedelta(minutes=MINUTES - 1)

H100, A100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"
NODE_A = {"Hostname": "gpu-node-a", "instance": "10.0.0.1:9400", "modelName": H100}
# A newer exporter (lower-case hostname) scraped with honor_labels: false, so its pod labels
# arrive as exported_* and pod/namespace/container name the exporter's own pod.
NODE_B = {
    "hostname": "gpu-node-b",
    "instance": "10.0.0.2:9400",
    "modelName": A100,
    "namespace": "gpu-operator",
    "pod": "nvidia-dcgm-exporter-7x2kq",
    "container": "nvidia-dcgm-exporter",
    "exported_namespace": "search",
    "exported_container": "ranker",
}
# An exporter run with --no-hostname: the host comes from the instance label.
NODE_C = {"instance": "10.0.0.3:9400", "modelName": A100}

Reading = float | str | Callable[[int], float | str]
"""A series' value: constant, or a function of the minute since START."""

GPUS: list[tuple[dict[str, str], dict[str, Reading]]] = [
    (
        {**NODE_A, "gpu": "0", "UUID": "GPU-a0", "namespace": "ml-train", "pod": "train-0"},
        {
            # GPU_UTIL says 97 % (a kernel is resident); the engine is busy a quarter of the time.
            "DCGM_FI_DEV_GPU_UTIL": 97,
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE": 0.25,
            "DCGM_FI_DEV_FB_USED": 60000,
            "DCGM_FI_DEV_FB_FREE": 21000,
            "DCGM_FI_DEV_FB_RESERVED": 500,
            "DCGM_FI_DEV_POWER_USAGE": 500,
        },
    ),
    (
        {**NODE_A, "gpu": "1", "UUID": "GPU-a1"},
        {
            "DCGM_FI_DEV_GPU_UTIL": 1,
            "DCGM_FI_DEV_FB_USED": 0,
            "DCGM_FI_DEV_FB_FREE": 81000,
            "DCGM_FI_DEV_FB_RESERVED": 500,
            "DCGM_FI_DEV_POWER_USAGE": 70,
        },
    ),
    (
        {**NODE_B, "gpu": "0", "UUID": "GPU-b0", "exported_pod": "rank-0"},
        {"DCGM_FI_DEV_GPU_UTIL": lambda minute: (20, 60, 100)[minute // 60]},
    ),
    (
        {**NODE_B, "gpu": "1", "UUID": "GPU-b1", "exported_pod": "rank-1"},
        {"DCGM_FI_DEV_GPU_UTIL": lambda minute: "NaN" if minute == 90 else 50},
    ),
    ({**NODE_C, "gpu": "0", "UUID": "GPU-c0"}, {"DCGM_FI_DEV_GPU_UTIL": 10}),
    ({**NODE_C, "gpu": "1", "UUID": "GPU-c1"}, {"DCGM_FI_DEV_GPU_UTIL": 3}),
]
ROWS = len(GPUS) * MINUTES  # 1080


def openmetrics_history() -> str:
    """GPUS as OpenMetrics text with timestamps, each metric family's samples together."""
    lines = []
    for metric in dict.fromkeys(m for _, readings in GPUS for m in readings):
        lines.append(f"# TYPE {metric} gauge")
        for labels, readings in GPUS:
            if metric not in readings:
                continue
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            reading = readings[metric]
            for minute in range(MINUTES):
                value = reading(minute) if callable(reading) else reading
                at = int((START + timedelta(minutes=minute)).timestamp())
                lines.append(f"{metric}{{{text}}} {value} {at}")
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus_serving(openmetrics_history(), tmp_path_factory.mktemp("prometheus")) as url:
        yield url


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "wh.duckdb")


def ingest(
    warehouse: Warehouse,
    url: str,
    start: datetime = START,
    end: datetime = LAST,
    **options: object,
) -> GpuIngestResult:
    """Fifty-minute chunks, so the three hours cross chunk boundaries at :50, :40 and :30."""
    settings: dict = {"step_s": 60, "chunk": timedelta(minutes=50), **options}
    return warehouse.ingest_gpu(
        lambda: read_prometheus(url, start=start, end=end, **settings),
        source="prometheus",
        collector="prometheus",
        uri=url,
    )


def scalar(warehouse: Warehouse, sql: str) -> object:
    """The single value `sql` returns."""
    return warehouse.query(sql).column(0)[0].as_py()


def test_every_gpu_has_one_reading_a_minute_across_chunk_boundaries(
    prometheus: str, warehouse: Warehouse
) -> None:
    result = ingest(warehouse, prometheus)

    assert (result.rows, result.nodes, result.gpus, result.hours) == (ROWS, 3, 6, 9)
    assert (result.window_start, result.window_end) == (START, LAST)
    per_gpu = warehouse.query(
        "SELECT gpu_uuid, count(*) AS n, count(DISTINCT ts) AS instants FROM gpu_samples "
        "GROUP BY gpu_uuid ORDER BY gpu_uuid"
    ).to_pylist()
    assert per_gpu == [
        {"gpu_uuid": uuid, "n": MINUTES, "instants": MINUTES}
        for uuid in ("GPU-a0", "GPU-a1", "GPU-b0", "GPU-b1", "GPU-c0", "GPU-c1")
    ]


def test_hourly_means_prefer_gr_engine_active_and_flag_idle_gpus(
    prometheus: str, warehouse: Warehouse
) -> None:
    ingest(warehouse, prometheus)

    hourly = warehouse.query(
        """
        SELECT node, gpu_index, list(mean_util_pct ORDER BY hour) AS means,
               list(idle ORDER BY hour) AS idle
        FROM gpu_hourly GROUP BY ALL ORDER BY node, gpu_index
        """
    ).to_pylist()
    # 25 % from GR_ENGINE_ACTIVE 0.25, not GPU_UTIL's 97; GPU-b1's NaN minute is left out of
    # its hour's mean but still counted as a sample.
    assert hourly == [
        {"node": "10.0.0.3", "gpu_index": 0, "means": [10.0] * 3, "idle": [False] * 3},
        {"node": "10.0.0.3", "gpu_index": 1, "means": [3.0] * 3, "idle": [True] * 3},
        {"node": "gpu-node-a", "gpu_index": 0, "means": [25.0] * 3, "idle": [False] * 3},
        {"node": "gpu-node-a", "gpu_index": 1, "means": [1.0] * 3, "idle": [True] * 3},
        {"node": "gpu-node-b", "gpu_index": 0, "means": [20.0, 60.0, 100.0], "idle": [False] * 3},
        {"node": "gpu-node-b", "gpu_index": 1, "means": [50.0] * 3, "idle": [False] * 3},
    ]
    assert scalar(warehouse, "SELECT list(DISTINCT samples) FROM gpu_hourly") == [60]


def test_labels_memory_power_and_nan_are_mapped_as_dcgm_does(
    prometheus: str, warehouse: Warehouse
) -> None:
    result = ingest(warehouse, prometheus)

    assert result.notes == (
        "NaN or infinite values stored as nulls: 1 sample(s)",
        "no Hostname/hostname label: host taken from the instance label: 360 sample(s)",
    )
    first = warehouse.query(
        """
        SELECT node, gpu_index, gpu_uuid, model, namespace, pod, container, gpu_util_pct,
               gr_engine_active, mem_used_mib, mem_total_mib, power_w
        FROM gpu_samples WHERE ts = ? ORDER BY gpu_uuid
        """,
        [START],
    ).to_pylist()
    assert [tuple(row.values()) for row in first] == [
        ("gpu-node-a", 0, "GPU-a0", H100, "ml-train", "train-0", None, 97.0, 0.25, 60000.0, 81500.0, 500.0),
        ("gpu-node-a", 1, "GPU-a1", H100, None, None, None, 1.0, None, 0.0, 81500.0, 70.0),
        ("gpu-node-b", 0, "GPU-b0", A100, "search", "rank-0", "ranker", 20.0, None, None, None, None),
        ("gpu-node-b", 1, "GPU-b1", A100, "search", "rank-1", "ranker", 50.0, None, None, None, None),
        ("10.0.0.3", 0, "GPU-c0", A100, None, None, None, 10.0, None, None, None, None),
        ("10.0.0.3", 1, "GPU-c1", A100, None, None, None, 3.0, None, None, None, None),
    ]  # fmt: skip
    nan_minute = warehouse.query(
        "SELECT gpu_util_pct FROM gpu_samples WHERE gpu_uuid = 'GPU-b1' AND ts = ?",
        [START + timedelta(minutes=90)],
    )
    assert nan_minute.to_pylist() == [{"gpu_util_pct": None}]


def test_a_selector_narrows_the_query_to_one_node(prometheus: str, warehouse: Warehouse) -> None:
    result = ingest(warehouse, prometheus, selector='{Hostname="gpu-node-a"}')

    assert (result.rows, result.nodes, result.gpus) == (2 * MINUTES, 1, 2)
    assert (
        scalar(warehouse, "SELECT string_agg(DISTINCT node, ',') FROM gpu_samples") == "gpu-node-a"
    )


def test_ingesting_the_same_window_again_replaces_it(prometheus: str, warehouse: Warehouse) -> None:
    ingest(warehouse, prometheus)
    again = ingest(warehouse, prometheus)

    assert (again.rows, again.replaced_rows) == (ROWS, ROWS)
    assert scalar(warehouse, "SELECT count(*) FROM gpu_samples") == ROWS
    assert scalar(warehouse, "SELECT sum(samples) FROM gpu_hourly") == ROWS


def test_an_incremental_run_starts_one_step_after_the_last_stored_sample(
    prometheus: str, warehouse: Warehouse
) -> None:
    ingest(warehouse, prometheus, end=START + timedelta(minutes=119))
    last_stored = scalar(warehouse, "SELECT max(ts) FROM gpu_samples WHERE source = 'prometheus'")
    assert isinstance(last_stored, datetime)

    resume = since_last(last_stored, timedelta(days=30), LAST, step_s=60)
    later = ingest(warehouse, prometheus, start=resume)

    assert resume == START + timedelta(minutes=120)
    assert (later.rows, later.replaced_rows, later.window_start) == (6 * 60, 0, resume)
    assert scalar(warehouse, "SELECT count(DISTINCT (gpu_uuid, ts)) FROM gpu_samples") == ROWS


def test_more_steps_than_prometheus_allows_per_query_are_split(
    prometheus: str, warehouse: Warehouse
) -> None:
    # 100 minutes every half second is 12,001 instants: over the 11,000 one query may hold.
    result = ingest(
        warehouse,
        prometheus,
        end=START + timedelta(minutes=100),
        step_s=0.5,
        chunk=timedelta(hours=6),
        selector='{UUID="GPU-a0"}',
    )

    assert result.rows == 12_001
    assert scalar(warehouse, "SELECT count(DISTINCT ts) FROM gpu_samples") == 12_001


def test_a_bad_selector_reports_prometheus_error(prometheus: str, warehouse: Warehouse) -> None:
    with pytest.raises(IngestError) as failure:
        ingest(warehouse, prometheus, selector='{Hostname=~"("}')

    message = str(failure.value)
    assert message.startswith(f"{prometheus}: Prometheus refused 'DCGM_FI_DEV_GPU_UTIL{{")
    assert "HTTP 400 (bad_data: " in message
    assert "error parsing regexp: missing closing )" in message
    assert warehouse.runs().column("status").to_pylist() == ["failed"]


def test_a_closed_port_fails_clearly_after_three_tries(warehouse: Warehouse) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(IngestError, match=r"did not answer .* after 3 tries: .*Connection refused"):
        ingest(warehouse, url)


def query_range_answer(labels: dict[str, str]) -> bytes:
    """A successful query_range answer: one series with one point, at START."""
    result = [{"metric": labels, "values": [[START.timestamp(), "50"]]}]
    return json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": result}}
    ).encode()


class _Canned(BaseHTTPRequestHandler):
    """Gives every request the same answer (so each of the metric queries gets the same
    series), and counts them."""

    answer: tuple[int, bytes] = (200, b"")
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        status, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "body", "message", "requests"),
    [
        (
            # What Prometheus answers when a query hits --query.timeout.
            503,
            b'{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}',
            "did not answer 'DCGM_FI_DEV_GPU_UTIL' after 3 tries: "
            "HTTP 503 (timeout: query timed out in expression evaluation)",
            3,
        ),
        (
            200,
            b"<html>Sign in to continue</html>",
            "cannot read the answers as Prometheus query_range JSON",
            len(METRICS),
        ),
        (
            200,
            query_range_answer({"__name__": "DCGM_FI_DEV_GPU_UTIL", "Hostname": "n1"}),
            f"{len(METRICS)} sample(s) carry neither a gpu nor a UUID label",
            len(METRICS),
        ),
        (
            200,
            query_range_answer({"__name__": "DCGM_FI_DEV_GPU_UTIL", "gpu": "0"}),
            f"{len(METRICS)} sample(s) have neither a Hostname/hostname nor an instance label",
            len(METRICS),
        ),
    ],
)
def test_answers_that_cannot_be_stored_are_refused_clearly(
    warehouse: Warehouse, status: int, body: bytes, message: str, requests: int
) -> None:
    _Canned.answer, _Canned.requests = (status, body), 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(IngestError, match=re.escape(message)):
            ingest(warehouse, f"http://127.0.0.1:{server.server_port}", end=START)
    finally:
        server.shutdown()

    assert _Canned.requests == requests


def test_a_window_without_series_is_refused(prometheus: str, warehouse: Warehouse) -> None:
    before = START - timedelta(days=1)
    expected = f"no DCGM series between {before.isoformat()} and "
    with pytest.raises(IngestError, match=re.escape(expected)):
        ingest(warehouse, prometheus, start=before, end=before + timedelta(hours=1))


def test_temporary_files_are_removed_after_success_and_failure(
    prometheus: str, warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    ingest(warehouse, prometheus)
    with pytest.raises(IngestError):
        ingest(warehouse, prometheus, selector='{Hostname=~"("}')

    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90))],
)
def test_parse_since(text: str, expected: timedelta) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize("text", ["30", "0d", "-1d", "1.5h", "2w", "d", ""])
def test_parse_since_refuses_other_text(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a duration"):
        parse_since(text)


def test_a_first_incremental_run_goes_back_the_default_span() -> None:
    now = datetime(2026, 7, 3, 22, 10, tzinfo=UTC)
    assert since_last(None, timedelta(days=30), now) == datetime(2026, 6, 3, 22, 10, tzinfo=UTC)
