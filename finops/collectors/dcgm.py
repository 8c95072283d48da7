"""DCGM exporter metrics: a live `/metrics` scrape, or an OpenMetrics file with timestamps.

Both are parsed by prometheus_client's own parsers (the exposition text and the OpenMetrics
one); Python only lays the parsed samples out as long columns, and DuckDB pivots them to
one row per GPU and timestamp.

Metrics kept, and where they land:

| DCGM field | column |
| --- | --- |
| DCGM_FI_DEV_GPU_UTIL (%) | gpu_util_pct |
| DCGM_FI_PROF_GR_ENGINE_ACTIVE, _SM_ACTIVE, _PIPE_TENSOR_ACTIVE (0-1) | gr_engine_active, sm_active, tensor_active |
| DCGM_FI_DEV_FB_USED (MiB) | mem_used_mib |
| DCGM_FI_DEV_FB_USED + _FB_FREE (+ _FB_RESERVED) | mem_total_mib |
| DCGM_FI_DEV_POWER_USAGE (W) | power_w |

Labels: `gpu` -> gpu_index, `UUID` -> gpu_uuid, `modelName` -> model, `Hostname` or (from
May 2026 releases) `hostname` -> node, `GPU_I_PROFILE` -> mig_profile, `namespace`/`pod`/
`container` (older `pod_namespace`/`pod_name`/`container_name`) -> the k8s columns,
`instance_id` -> resource_id (the billed instance: the most direct join to cost) and
`cluster` -> cluster, where the exporter is configured to add them.

Documented handling of bad payloads: text the parser cannot read (truncated, garbage) is
refused with the parser's message; NaN or infinite values become nulls and are counted in
the notes; a sample without a host label takes the scrape target's host (counted); one
without a `gpu` or `UUID` label cannot be placed and is refused. Counters (energy, XID
errors) are not kept, so counter resets do not matter here.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from finops.collectors.locations import LocalFiles, checksum, resolve
from finops.collectors.scan import scratch_database
from finops.errors import IngestError
from finops.warehouse import GpuDelivery

METRICS: dict[str, str] = {
    "DCGM_FI_DEV_GPU_UTIL": "gpu_util_pct",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gr_engine_active",
    "DCGM_FI_PROF_SM_ACTIVE": "sm_active",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "tensor_active",
    "DCGM_FI_DEV_FB_USED": "mem_used_mib",
    "DCGM_FI_DEV_FB_FREE": "fb_free",
    "DCGM_FI_DEV_FB_RESERVED": "fb_reserved",
    "DCGM_FI_DEV_POWER_USAGE": "power_w",
}
LABELS: dict[str, tuple[str, ...]] = {
    "node": ("Hostname", "hostname"),
    "gpu_index": ("gpu",),
    "gpu_uuid": ("UUID",),
    "model": ("modelName",),
    "mig_profile": ("GPU_I_PROFILE",),
    "namespace": ("namespace", "pod_namespace"),
    "pod": ("pod", "pod_name"),
    "container": ("container", "container_name"),
    "resource_id": ("instance_id",),
    "cluster": ("cluster",),
}
PIVOT_SQL = """
    SELECT to_timestamp(ts) AS ts, node, TRY_CAST(gpu_index AS INTEGER) AS gpu_index, gpu_uuid,
           mig_profile,
           -- Descriptive labels may sit on only some series of a GPU: take them from any.
           max(model) AS model, max(namespace) AS namespace, max(pod) AS pod,
           max(container) AS container, max(resource_id) AS resource_id, max(cluster) AS cluster,
           max(value) FILTER (WHERE field = 'gpu_util_pct') AS gpu_util_pct,
           max(value) FILTER (WHERE field = 'gr_engine_active') AS gr_engine_active,
           max(value) FILTER (WHERE field = 'sm_active') AS sm_active,
           max(value) FILTER (WHERE field = 'tensor_active') AS tensor_active,
           max(value) FILTER (WHERE field = 'mem_used_mib') AS mem_used_mib,
           max(value) FILTER (WHERE field = 'mem_used_mib')
             + max(value) FILTER (WHERE field = 'fb_free')
             + coalesce(max(value) FILTER (WHERE field = 'fb_reserved'), 0) AS mem_total_mib,
           max(value) FILTER (WHERE field = 'power_w') AS power_w
    FROM dcgm_samples
    GROUP BY ts, node, gpu_index, gpu_uuid, mig_profile
"""
"""Long DCGM samples -> GPU_SAMPLE_COLUMNS. Reads a relation named `dcgm_samples` with columns
ts (epoch seconds), field (a METRICS value), value, and one per LABELS key."""


def scrape_dcgm(url: str, *, now: datetime | None = None, timeout_s: float = 10.0) -> GpuDelivery:
    """GET a DCGM exporter's /metrics and return one reading per GPU, stamped `now`."""
    text = _fetch(url, timeout_s)
    scraped_at = now or datetime.now(UTC)
    fallback_host = urllib.parse.urlsplit(url).hostname or url
    return _delivery(url, _parse(text, url, openmetrics=False), scraped_at, fallback_host, ())


def read_openmetrics(location: str) -> GpuDelivery:
    """Read DCGM series from OpenMetrics text files whose samples carry timestamps.

    History files are large (a month of a fleet is millions of lines), and the library
    parser reads some 6,000 lines a second, so files are split into samples by DuckDB
    with the same grammar; a file it cannot read is handed to the library parser, whose
    message then says what is wrong. Tests hold the two to the same output.
    """
    local = resolve(location, (".txt", ".om", ".openmetrics", ".prom"))
    with local.removed_on_error():
        with scratch_database() as conn:
            table = _openmetrics_samples(conn, local)
        return _history_delivery(location, table, local.files, checksum(local), local.cleanup)


_SAMPLE_LINE = r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?[ \t]+([^ \t]+)(?:[ \t]+([^ \t]+))?[ \t]*$"
_LABEL_PAIR = r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"'


def _openmetrics_samples(conn: duckdb.DuckDBPyConnection, local: LocalFiles) -> pa.Table:
    paths = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in local.files) + "]"
    conn.execute(
        f"""
        CREATE TEMP TABLE lines AS
        SELECT filename, line FROM read_csv({paths}, columns = {{'line': 'VARCHAR'}}, header = false,
            delim = '\x1f', quote = '', escape = '', auto_detect = false, filename = true)
        """
    )
    bad = conn.execute(
        """
        SELECT filename FROM lines
        WHERE line NOT LIKE '#%' AND trim(line) <> '' AND NOT regexp_matches(line, ?)
        UNION
        SELECT filename FROM lines GROUP BY filename HAVING count(*) FILTER (WHERE line = '# EOF') = 0
        """,
        [_SAMPLE_LINE],
    ).fetchall()
    for (filename,) in bad:
        path = Path(filename)
        _parse(path.read_text(encoding="utf-8"), local.name(path), openmetrics=True)
        raise IngestError(
            f"{local.name(path)}: not valid OpenMetrics text (a line this reader cannot split)"
        )
    fields = " ".join(f"WHEN '{name}' THEN '{field}'" for name, field in METRICS.items())
    # Labels are cut out with string functions, several times faster than a regex per line;
    # lines whose labels hold an escape (a backslash) take the regex, which reads `\"`.
    regex_map = (
        "map(regexp_extract_all(labels, ?, 1), list_transform(regexp_extract_all(labels, ?, 2), "
        r"""lambda v: replace(replace(replace(v, '\"', '"'), '\n', chr(10)), '\\', '\')))"""
    )

    def label(key: str) -> str:
        cut = f"split_part(split_part(',' || labels, ',{key}=\"', 2), '\"', 1)"
        return f"nullif(CASE WHEN escaped THEN regex_map['{key}'] ELSE {cut} END, '')"

    columns = ", ".join(
        f"coalesce({', '.join(label(key) for key in keys)}) AS {name}"
        for name, keys in LABELS.items()
    )
    return conn.sql(
        f"""
        WITH sample_lines AS (
            SELECT line, strpos(line, '{{') AS open,
                   length(line) - strpos(reverse(line), '}}') + 1 AS close
            FROM lines WHERE line NOT LIKE '#%' AND trim(line) <> ''
        ),
        parts AS (
            SELECT CASE WHEN open > 0 THEN left(line, open - 1)
                        ELSE split_part(trim(line), ' ', 1) END AS name,
                   CASE WHEN open > 0 THEN substr(line, open + 1, close - open - 1) ELSE '' END
                       AS labels,
                   list_filter(string_split(trim(CASE WHEN open > 0 THEN substr(line, close + 1)
                       ELSE substr(trim(line), strpos(trim(line), ' ') + 1) END), ' '),
                       lambda x: x <> '') AS rest
            FROM sample_lines
        ),
        labelled AS (
            SELECT CASE name {fields} END AS field,
                   TRY_CAST(rest[2] AS DOUBLE) AS ts, TRY_CAST(rest[1] AS DOUBLE) AS value,
                   labels, contains(labels, '\\') AS escaped,
                   CASE WHEN contains(labels, '\\') THEN {regex_map} END AS regex_map
            FROM parts WHERE name IN ({", ".join(f"'{m}'" for m in METRICS)})
        )
        SELECT ts, field, value, {columns} FROM labelled
        """,
        params=[_LABEL_PAIR, _LABEL_PAIR],
    ).to_arrow_table()


def _history_delivery(
    uri: str,
    samples: pa.Table,
    files: tuple[Path, ...],
    digest: str,
    cleanup: Callable[[], None] | None,
) -> GpuDelivery:
    """The same checks and notes as a scrape, on a table DuckDB already built."""
    if samples.num_rows == 0:
        raise IngestError(f"{uri}: no DCGM GPU metrics found (expected e.g. DCGM_FI_DEV_GPU_UTIL)")
    problems = duckdb.sql(
        """
        SELECT count(*) FILTER (WHERE gpu_index IS NULL AND gpu_uuid IS NULL),
               count(*) FILTER (WHERE ts IS NULL),
               count(*) FILTER (WHERE node IS NULL),
               count(*) FILTER (WHERE NOT isfinite(value))
        FROM samples
        """
    ).fetchall()
    unplaced, untimed, hostless, non_finite = problems[0]
    if unplaced:
        raise IngestError(
            f"{uri}: {unplaced} sample(s) carry neither a gpu nor a UUID label; cannot tell which GPU they describe"
        )
    if untimed:
        raise IngestError(f"{uri}: OpenMetrics samples need timestamps to be stored as history")
    if hostless:
        raise IngestError(f"{uri}: {hostless} sample(s) have no Hostname/hostname label")
    notes = (
        [f"NaN or infinite values stored as nulls: {non_finite} sample(s)"] if non_finite else []
    )
    finite = pc.if_else(pc.is_finite(samples["value"]), samples["value"], None)
    samples = samples.set_column(samples.schema.get_field_index("value"), "value", finite)
    return GpuDelivery(
        uri=uri,
        select_sql=PIVOT_SQL,
        tables={"dcgm_samples": samples},
        files=files,
        checksum=digest,
        notes=notes,
        cleanup=cleanup,
    )


class _TransientHttpError(Exception):
    pass


@retry(
    retry=retry_if_exception_type(_TransientHttpError),
    wait=wait_exponential(multiplier=0.2, max=2),
    stop=stop_after_attempt(3),
    reraise=True,
)
def _fetch_once(url: str, timeout_s: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise _TransientHttpError(f"HTTP {exc.code}") from exc
        raise IngestError(f"{url}: the exporter answered HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise _TransientHttpError(str(getattr(exc, "reason", exc))) from exc


def _fetch(url: str, timeout_s: float) -> str:
    try:
        return _fetch_once(url, timeout_s)
    except _TransientHttpError as exc:
        raise IngestError(f"{url}: cannot scrape after 3 tries: {exc}") from None


def _parse(text: str, where: str, *, openmetrics: bool) -> list[tuple]:
    """Parsed samples as (ts, field, value, label values...) tuples; only DCGM fields we keep."""
    if openmetrics:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
    rows: list[tuple] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                field = METRICS.get(sample.name)
                if field is None:
                    continue
                ts = sample.timestamp
                rows.append(
                    (
                        float(ts) if ts is not None else None,
                        field,
                        sample.value,
                        *(_label(sample.labels, keys) for keys in LABELS.values()),
                    )
                )
    except ValueError as exc:
        raise IngestError(
            f"{where}: not valid {'OpenMetrics' if openmetrics else 'Prometheus exposition'} text: {exc}"
        ) from None
    return rows


def _label(labels: dict[str, str], keys: Iterable[str]) -> str | None:
    for key in keys:
        if labels.get(key):
            return labels[key]
    return None


def _delivery(
    uri: str,
    samples: list[tuple],
    scraped_at: datetime | None,
    fallback_host: str | None,
    files: tuple[Path, ...],
    digest: str | None = None,
    cleanup: Callable[[], None] | None = None,
) -> GpuDelivery:
    if not samples:
        raise IngestError(f"{uri}: no DCGM GPU metrics found (expected e.g. DCGM_FI_DEV_GPU_UTIL)")
    columns = list(zip(*samples, strict=True))
    epoch, field, value = columns[0], columns[1], columns[2]
    labels = dict(zip(LABELS, columns[3:], strict=True))
    notes: list[str] = []
    unplaced = sum(
        1
        for i, u in zip(labels["gpu_index"], labels["gpu_uuid"], strict=True)
        if i is None and u is None
    )
    if unplaced:
        raise IngestError(
            f"{uri}: {unplaced} sample(s) carry neither a gpu nor a UUID label; cannot tell which GPU they describe"
        )
    if scraped_at is None and any(t is None for t in epoch):
        raise IngestError(f"{uri}: OpenMetrics samples need timestamps to be stored as history")
    non_finite = sum(1 for v in value if not math.isfinite(v))
    if non_finite:
        notes.append(f"NaN or infinite values stored as nulls: {non_finite} sample(s)")
    hostless = sum(1 for n in labels["node"] if n is None)
    if hostless:
        if fallback_host is None:
            raise IngestError(f"{uri}: {hostless} sample(s) have no Hostname/hostname label")
        notes.append(
            f"no Hostname/hostname label: host taken from the scrape target ({fallback_host}): {hostless} sample(s)"
        )
    stamp = scraped_at.timestamp() if scraped_at else None
    table = pa.table(
        {
            "ts": pa.array([t if t is not None else stamp for t in epoch], pa.float64()),
            "field": pa.array(field, pa.string()),
            "value": pa.array([v if math.isfinite(v) else None for v in value], pa.float64()),
            **{
                name: pa.array(
                    [v or fallback_host for v in values] if name == "node" else values, pa.string()
                )
                for name, values in labels.items()
            },
        }
    )
    return GpuDelivery(
        uri=uri,
        select_sql=PIVOT_SQL,
        tables={"dcgm_samples": table},
        files=files,
        checksum=digest,
        notes=notes,
        cleanup=cleanup,
    )
