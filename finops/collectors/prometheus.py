"""DCGM history from a Prometheus server that already scrapes dcgm-exporter.

`read_prometheus` asks Prometheus's HTTP API (`GET /api/v1/query_range`) for each DCGM metric
dcgm.py keeps, window chunk by window chunk, and maps metrics and labels with dcgm.py's
METRICS, LABELS and PIVOT_SQL: one mapping for every DCGM source.

Memory is bounded by one chunk, not by the window: each answer is streamed (gzip, as sent)
to a temporary file; an in-memory DuckDB reads a chunk's answers with `read_json`, unnests
`data.result` and each series' `values` into dcgm.py's long format, pivots them and writes
one Parquet file per chunk, which the warehouse then reads. Python never holds the points.
(The warehouse stages the whole window in one transaction: split a long backfill into
several ingests to bound that too.)

Instants: Prometheus evaluates each metric at the multiples of `step_s` since the epoch
that fall in [start, end] (both ends included, as in query_range), so repeated and
incremental runs land on the same instants. A chunk holds at most 11,000 instants
(Prometheus refuses more points per series in one query) and consecutive chunks share
none. Each instant carries the latest sample within Prometheus's lookback (5 minutes by
default): a series that ended without a staleness marker (backfilled data, a crashed
Prometheus) goes on for up to 5 minutes after its last sample.

Labels: where Prometheus scraped with `honor_labels: false` (the kube-prometheus default),
dcgm-exporter's pod/namespace/container clash with the target's own and arrive as
`exported_pod`, ...; an `exported_` label is preferred, as it is the exporter's. A series
without Hostname/hostname takes the host of its `instance` label (counted in the notes).

Errors, all IngestError naming the server: an error answer, with Prometheus's errorType and
error; a 5xx answer, refused connection or timeout, after 3 tries with exponential backoff;
a body that is not Prometheus JSON; no series at all in the window. NaN and infinite
values ("NaN", "+Inf") are stored as nulls and counted in the notes.
"""

from __future__ import annotations

import gzip
import http.client
import json
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from finops.collectors.dcgm import LABELS, METRICS, PIVOT_SQL
from finops.errors import ConfigError, IngestError
from finops.warehouse import GpuDelivery

MAX_POINTS_PER_QUERY = 11_000
"""Prometheus refuses a query_range that would return more points per series."""
MAX_ANSWER_BYTES = 1 << 30
"""The largest answer (one metric, one chunk) DuckDB parses; DuckDB's own default is 16 MB."""

_TRIES = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SINCE = re.compile(r"(\d+)([dhm])")
_SINCE_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
# The part of a query_range answer we read; `values` are [time, "value"] pairs.
_ANSWER_COLUMNS = {
    "data": 'STRUCT(result STRUCT(metric MAP(VARCHAR, VARCHAR), "values" VARCHAR[][])[])',
}


def _label_sql(keys: tuple[str, ...]) -> str:
    names = [name for key in keys for name in (f"exported_{key}", key)]
    # An empty label means no label, in Prometheus as in dcgm.py.
    return "coalesce(" + ", ".join(f"nullif(series.metric['{n}'], '')" for n in names) + ")"


# Built from dcgm.py's constants only, never from an answer or an argument.
_FIELD_SQL = (
    "CASE series.metric['__name__'] "
    + " ".join(f"WHEN '{metric}' THEN '{field}'" for metric, field in METRICS.items())
    + " END"
)
_NODE_LABEL_SQL = _label_sql(LABELS["node"])
# One row per series with its labels mapped; `instance` is host:port or [v6 address]:port,
# and its host stands in for a missing Hostname. Mapping labels per series rather than per
# point, and unnesting the points from a table rather than inside the JSON reader's scan,
# halve the time and memory of a 1,000-GPU chunk.
_SERIES_SQL = f"""
    CREATE OR REPLACE TEMP TABLE series AS
    SELECT {_FIELD_SQL} AS field,
           {", ".join(f"{_label_sql(keys)} AS {n}" for n, keys in LABELS.items() if n != "node")},
           coalesce({_NODE_LABEL_SQL}, regexp_replace(nullif(series.metric['instance'], ''),
                                                      '^\\[?(.*?)\\]?:[0-9]+$', '\\1')) AS node,
           {_NODE_LABEL_SQL} IS NULL AS host_from_instance,
           series."values" AS points
    FROM (
        SELECT unnest(data.result) AS series
        FROM read_json(?, columns = ?, format = 'unstructured', maximum_object_size = ?)
    )
"""
# dcgm.py's long format, as PIVOT_SQL reads it.
_LONG_SQL = """
    CREATE OR REPLACE TEMP VIEW dcgm_samples AS
    SELECT TRY_CAST(point[1] AS DOUBLE) AS ts, TRY_CAST(point[2] AS DOUBLE) AS reading,
           CASE WHEN isfinite(reading) THEN reading END AS value, * EXCLUDE (point)
    FROM (SELECT * EXCLUDE (points), unnest(points) AS point FROM series)
"""
_COUNTS_SQL = """
    SELECT count(*) AS samples,
           count(*) FILTER (WHERE NOT isfinite(reading)) AS non_finite,
           count(*) FILTER (WHERE host_from_instance AND node IS NOT NULL) AS host_from_instance,
           count(*) FILTER (WHERE node IS NULL) AS hostless,
           count(*) FILTER (WHERE gpu_index IS NULL AND gpu_uuid IS NULL) AS unplaced
    FROM dcgm_samples
"""


def parse_since(text: str) -> timedelta:
    """`30d`, `12h` or `90m` as a timedelta."""
    match = _SINCE.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise ConfigError(
            f"{text!r} is not a duration: give a positive whole number of days, hours or "
            "minutes, as in 30d, 12h or 90m"
        )
    return timedelta(**{_SINCE_UNITS[match[2]]: int(match[1])})


def since_last(
    warehouse_last_ts: datetime | None,
    default_since: timedelta,
    now: datetime,
    *,
    step_s: float = 60,
) -> datetime:
    """Where an incremental run starts: one step after the last stored sample, else
    `default_since` before `now`."""
    if warehouse_last_ts is None:
        return now - default_since
    return warehouse_last_ts + timedelta(seconds=step_s)


def read_prometheus(
    url: str,
    *,
    start: datetime,
    end: datetime,
    step_s: float = 60,
    chunk: timedelta = timedelta(hours=6),
    selector: str = "",
    timeout_s: float = 30,
) -> GpuDelivery:
    """DCGM readings every `step_s` between `start` and `end` from the Prometheus at `url`.

    `selector` is a label matcher appended to every metric, as in `{cluster="train-a"}`.
    """
    server = url.rstrip("/")
    windows = _windows(start, end, step_s, chunk)  # refuses bad arguments before any I/O
    workdir = Path(tempfile.mkdtemp(prefix="finops-prometheus-"))
    try:
        totals: Counter[str] = Counter()
        parts: list[Path] = []
        # Spill to the work folder, which is removed with everything else, if a chunk is large.
        with duckdb.connect(config={"temp_directory": str(workdir / "spill")}) as conn:
            for number, window in enumerate(windows):
                answers = [
                    _download(
                        server,
                        f"{metric}{selector}",
                        window,
                        workdir / f"{number:05d}-{metric}",
                        timeout_s,
                    )
                    for metric in METRICS
                ]
                part = workdir / f"{number:05d}.parquet"
                counts = _pivot(conn, server, answers, part)
                if counts["samples"]:
                    parts.append(part)
                totals += counts
                for answer in answers:
                    answer.unlink()
        if not parts:
            matching = f" matching {selector}" if selector else ""
            raise IngestError(
                f"{server}: no DCGM series between {start.isoformat()} and {end.isoformat()}"
                f"{matching}; check that Prometheus scrapes dcgm-exporter and keeps that window"
            )
        return GpuDelivery(
            uri=server,
            select_sql=f"SELECT * FROM read_parquet([{', '.join(map(_sql_text, parts))}])",
            notes=_notes(totals),
            cleanup=lambda: shutil.rmtree(workdir, ignore_errors=True),
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _windows(
    start: datetime, end: datetime, step_s: float, chunk: timedelta
) -> list[tuple[int, int, int]]:
    """(first, last, step) in epoch milliseconds for each query: instants on the step grid,
    at most MAX_POINTS_PER_QUERY per query, none in two queries."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ConfigError("start and end need a time zone (use UTC)")
    step_ms = round(step_s * 1000)
    if step_ms <= 0:
        raise ConfigError(f"step {step_s} s: must be at least 1 ms")
    first = -(-_epoch_ms(start) // step_ms)
    last = _epoch_ms(end) // step_ms
    per_query = max(1, min(chunk // timedelta(milliseconds=step_ms), MAX_POINTS_PER_QUERY))
    return [
        (k * step_ms, min(k + per_query - 1, last) * step_ms, step_ms)
        for k in range(first, last + 1, per_query)
    ]


def _epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _seconds(ms: int) -> str:
    """Milliseconds as the decimal seconds Prometheus takes, without float rounding."""
    return f"{ms // 1000}.{ms % 1000:03d}"


class _TransientError(Exception):
    """Worth asking again: a 5xx answer, a refused or dropped connection, a timeout."""


def _download(
    server: str, query: str, window: tuple[int, int, int], stem: Path, timeout_s: float
) -> Path:
    first_ms, last_ms, step_ms = window
    params = urllib.parse.urlencode(
        {
            "query": query,
            "start": _seconds(first_ms),
            "end": _seconds(last_ms),
            "step": _seconds(step_ms),
        }
    )
    try:
        return _download_once(
            server, query, f"{server}/api/v1/query_range?{params}", stem, timeout_s
        )
    except _TransientError as exc:
        raise IngestError(
            f"{server}: Prometheus did not answer {query!r} after {_TRIES} tries: {exc}"
        ) from None


@retry(
    retry=retry_if_exception_type(_TransientError),
    wait=wait_exponential(multiplier=0.2, max=2),
    stop=stop_after_attempt(_TRIES),
    reraise=True,
)
def _download_once(server: str, query: str, request_url: str, stem: Path, timeout_s: float) -> Path:
    request = urllib.request.Request(request_url, headers={"Accept-Encoding": "gzip"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            # The suffix tells read_json whether to decompress.
            gzipped = response.headers.get("Content-Encoding") == "gzip"
            path = stem.with_name(stem.name + (".json.gz" if gzipped else ".json"))
            with path.open("wb") as body:
                shutil.copyfileobj(response, body, 1 << 20)
            return path
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}{_prometheus_error(exc)}"
        if exc.code >= 500:
            raise _TransientError(reason) from exc
        raise IngestError(f"{server}: Prometheus refused {query!r}: {reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        raise _TransientError(str(getattr(exc, "reason", exc)) or type(exc).__name__) from exc


def _prometheus_error(exc: urllib.error.HTTPError) -> str:
    """` (errorType: error)` from Prometheus's error answer, else the start of the body."""
    try:
        body = exc.read()
        if exc.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
    except (OSError, EOFError):
        return ""
    try:
        answer = json.loads(body)
        return f" ({answer['errorType']}: {answer['error']})"
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()[:200]
        return f" ({text})" if text else ""


def _pivot(
    conn: duckdb.DuckDBPyConnection, server: str, answers: list[Path], part: Path
) -> Counter[str]:
    """Unnest one chunk's answers into dcgm.py's long format, check them, and write them
    pivoted to `part` (when there are any)."""
    try:
        conn.execute(_SERIES_SQL, [[str(a) for a in answers], _ANSWER_COLUMNS, MAX_ANSWER_BYTES])
        conn.execute(_LONG_SQL)
        (counts,) = conn.execute(_COUNTS_SQL).fetchall()
    except duckdb.Error as exc:
        raise IngestError(
            f"{server}: cannot read the answers as Prometheus query_range JSON ({exc}); "
            "an answer over 1 GiB needs a shorter chunk"
        ) from None
    samples, non_finite, host_from_instance, hostless, unplaced = counts
    if unplaced:
        raise IngestError(
            f"{server}: {unplaced} sample(s) carry neither a gpu nor a UUID label; "
            "cannot tell which GPU they describe"
        )
    if hostless:
        raise IngestError(
            f"{server}: {hostless} sample(s) have neither a Hostname/hostname nor an instance label"
        )
    if samples:
        conn.sql(PIVOT_SQL).write_parquet(str(part))
    return Counter(samples=samples, non_finite=non_finite, host_from_instance=host_from_instance)


def _notes(totals: Counter[str]) -> list[str]:
    notes = []
    if totals["non_finite"]:
        notes.append(f"NaN or infinite values stored as nulls: {totals['non_finite']} sample(s)")
    if totals["host_from_instance"]:
        notes.append(
            "no Hostname/hostname label: host taken from the instance label: "
            f"{totals['host_from_instance']} sample(s)"
        )
    return notes


def _sql_text(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"
