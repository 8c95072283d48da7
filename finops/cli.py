"""The `finops` command: parse, call the library, print (table | csv | json).

This is one of the two places (with the scheduler) that wires a collector to the
warehouse. Every command takes `--db PATH` and `--config DIR`; errors we raise on purpose
print as one clear message and exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from finops.errors import FinopsError

if TYPE_CHECKING:
    import pyarrow as pa

    from finops.config import Config, SourceManifest
    from finops.periods import Period
    from finops.warehouse import (
        CostDelivery,
        EventIngestResult,
        GpuDelivery,
        GpuIngestResult,
        IngestResult,
        InventoryResult,
        ResourceSnapshot,
        Warehouse,
    )

    # What running a source gives: a cost ingest, a GPU ingest, an inventory refresh, or
    # nothing (a Prometheus source with nothing new since its last run).
    SourceResult = IngestResult | GpuIngestResult | InventoryResult | EventIngestResult | None

# Heavy modules (DuckDB, Arrow, pydantic) are imported inside the commands that use them,
# so `finops --help` is quick and `finops agent gpu` runs on a GPU host's minimal install.

app = typer.Typer(
    help="FinOps cost analytics and right-sizing for ML/GPU platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
ingest_app = typer.Typer(
    help="Load billing and usage data into the warehouse.", no_args_is_help=True
)
export_app = typer.Typer(help="Write warehouse data out in standard formats.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
agent_app = typer.Typer(
    help="Agents that run on hosts and write spool files.", no_args_is_help=True
)
app.add_typer(export_app, name="export")
app.add_typer(agent_app, name="agent")

console = Console()
errors = Console(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help="Warehouse file (default: $FINOPS_DB, finops.yaml, .finops/warehouse.duckdb)."
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Folder holding finops.yaml (default: $FINOPS_CONFIG, then .)."),
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="How to print the result.")
]
PeriodOption = Annotated[
    str,
    typer.Option(
        "--period",
        "-p",
        help="A month (2026-05), a fiscal quarter (2026-Q2) or days (2026-05-01..2026-06-30).",
    ),
]


@dataclass(frozen=True)
class Context:
    config: Config
    warehouse: Warehouse

    def period(self, text: str) -> Period:
        from finops.periods import parse_period

        return parse_period(
            text,
            fiscal_year_start_month=self.config.fiscal_year_start_month,
            fiscal_year_label=self.config.fiscal_year_label,
        )


def _context(db: Path | None, config_dir: Path | None) -> Context:
    from finops.config import load_config
    from finops.warehouse import Warehouse

    config = load_config(config_dir)
    return Context(config, Warehouse.from_config(config, db))


# --- printing ----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value == value.quantize(Decimal("0.01")) else str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def emit(
    table: pa.Table, fmt: OutputFormat, *, title: str | None = None, footer: list[str] | None = None
) -> None:
    """Print an Arrow table as a rich table, CSV or JSON records."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if fmt is OutputFormat.csv:
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink)
        sys.stdout.write(sink.getvalue().to_pybytes().decode())
        return
    if fmt is OutputFormat.json:
        records = [{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()]
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
        return
    view = Table(title=title, show_footer=footer is not None)
    for index, name in enumerate(table.column_names):
        numeric = (
            pa.types.is_decimal(table.schema.field(name).type)
            or pa.types.is_floating(table.schema.field(name).type)
            or pa.types.is_integer(table.schema.field(name).type)
        )
        view.add_column(
            name, footer=(footer[index] if footer else ""), justify="right" if numeric else "left"
        )
    for row in table.to_pylist():
        view.add_row(*(_cell(v) for v in row.values()))
    console.print(view)


def _print_ingest(result: IngestResult) -> None:
    months = [f"{p:%Y-%m}" for p in result.periods]
    span = months[0] if len(months) == 1 else f"{months[0]}..{months[-1]} ({len(months)} months)"
    console.print(
        f"[bold]{result.source}[/]: {result.status}, {result.rows:,} rows for {span}, "
        f"billed {result.billed_cost:,.2f}, effective {result.effective_cost:,.2f} "
        f"(replaced {result.replaced_rows:,} rows in {result.seconds:.2f} s)",
        soft_wrap=True,
    )
    for note in result.notes:
        console.print(f"  normalised: {escape(note)}", soft_wrap=True)
    for overlap in result.overlaps:
        console.print(
            f"  [yellow]overlap[/]: billing account {overlap.billing_account_id} "
            f"{overlap.billing_period_start:%Y-%m} is billed by {', '.join(overlap.sources)}; "
            f"counting {overlap.winner} ({overlap.reason})",
            soft_wrap=True,
        )


def _print_gpu_ingest(result: GpuIngestResult) -> None:
    console.print(
        f"[bold]{result.source}[/]: {result.status}, {result.rows:,} samples from {result.gpus} GPU(s) "
        f"on {result.nodes} node(s), {result.window_start:%Y-%m-%d %H:%M}..{result.window_end:%Y-%m-%d %H:%M} UTC; "
        f"replaced {result.replaced_rows:,} samples, rolled up {result.hours:,} node-hours "
        f"in {result.seconds:.2f} s",
        soft_wrap=True,
    )
    for note in result.notes:
        console.print(f"  normalised: {escape(note)}", soft_wrap=True)


# --- commands ----------------------------------------------------------------------------


@ingest_app.command("focus")
def ingest_focus(
    location: Annotated[
        str, typer.Argument(help="A FOCUS file, folder, glob or s3://bucket/prefix.")
    ],
    source: Annotated[
        str | None, typer.Option(help="Source name (default: derived from the location).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Accept a delivery covering fewer days than the data it replaces.")
    ] = False,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Ingest FOCUS 1.0-1.3 files (CSV, CSV.gz, Parquet), replacing their billing periods."""
    from finops.collectors.focus import default_source

    name = source or default_source(location)
    _ingest(db, config, name=name, kind="focus", uri=location, force=force)


@ingest_app.command("dcgm")
def ingest_dcgm(
    url: Annotated[str, typer.Argument(help="A DCGM exporter's /metrics URL.")],
    source: Annotated[str, typer.Option(help="Source name.")] = "dcgm",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Scrape a DCGM exporter once and store one reading per GPU."""
    _ingest(db, config, name=source, kind="dcgm", uri=url)


@ingest_app.command("openmetrics")
def ingest_openmetrics(
    location: Annotated[
        str, typer.Argument(help="OpenMetrics file(s) of DCGM series with timestamps.")
    ],
    source: Annotated[str, typer.Option(help="Source name.")] = "openmetrics",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Ingest DCGM history from OpenMetrics text (as promtool's backfill reads it)."""
    _ingest(db, config, name=source, kind="openmetrics", uri=location)


@ingest_app.command("nvidia-smi")
def ingest_nvidia_smi(
    location: Annotated[
        str, typer.Argument(help="nvidia-smi --query-gpu CSV log(s): file, folder, glob or s3://.")
    ],
    time_zone: Annotated[str, typer.Option(help="IANA time zone of the hosts' clocks.")] = "UTC",
    host: Annotated[
        str | None, typer.Option(help="Host name for every file (default: from each file).")
    ] = None,
    source: Annotated[str, typer.Option(help="Source name.")] = "nvidia-smi",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Ingest nvidia-smi CSV logs (units, [N/A], local-time timestamps handled)."""
    _ingest(
        db, config, name=source, kind="nvidia-smi", uri=location, time_zone=time_zone, host=host
    )


@ingest_app.command("prometheus")
def ingest_prometheus(
    url: Annotated[
        str, typer.Argument(help="Base URL of a Prometheus that scrapes dcgm-exporter.")
    ],
    since: Annotated[
        str,
        typer.Option(
            help="First run goes back this far (30d, 12h, 90m); later runs continue after the last stored sample."
        ),
    ] = "30d",
    step: Annotated[float, typer.Option(help="Seconds between readings.")] = 60,
    selector: Annotated[
        str, typer.Option(help='Label matcher added to each metric, e.g. {cluster="train-a"}.')
    ] = "",
    source: Annotated[
        str, typer.Option(help="Source name (one per selector: runs resume per source).")
    ] = "prometheus",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Ingest DCGM history from Prometheus (query_range), continuing where the last run stopped."""
    _ingest(
        db,
        config,
        name=source,
        kind="prometheus",
        uri=url,
        since=since,
        step_s=step,
        selector=selector,
    )


@ingest_app.command("gpu-spool")
def ingest_gpu_spool(
    location: Annotated[str, typer.Argument(help="Spool files written by `finops agent gpu`.")],
    source: Annotated[str, typer.Option(help="Source name.")] = "gpu-spool",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Ingest the GPU agent's spool files (JSON lines or Parquet; .tmp files are skipped)."""
    _ingest(db, config, name=source, kind="gpu-spool", uri=location)


@ingest_app.command("billing-inventory")
def ingest_billing_inventory(
    days: Annotated[int, typer.Option(help="Look back this many days of billing.")] = 30,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Derive the resource inventory from billing (for estates without cloud API access)."""
    _ingest(db, config, name="billing", kind="billing-inventory", days=days)


def _refresh_billing_inventory(ctx: Context, days: int, source: str = "billing") -> InventoryResult:
    from finops.collectors.billing_inventory import inventory_from_billing

    def read() -> ResourceSnapshot:
        with ctx.warehouse.reader() as conn:
            ((latest,),) = conn.execute(
                'SELECT max("ChargePeriodEnd") FROM cost_resolved'
            ).fetchall()
            until = latest or datetime.now(UTC)
            return inventory_from_billing(
                conn,
                cluster_tag_keys=ctx.config.gpu.cluster_tag_keys,
                since=until - timedelta(days=days),
                until=until,
            )

    return ctx.warehouse.refresh_inventory(
        read, source=source, collector="billing-inventory", uri="cost_resolved"
    )


@ingest_app.command("aws-cur")
def ingest_aws_cur(
    location: Annotated[
        str, typer.Argument(help="s3://bucket/prefix (or a local copy) of CUR 2.0 or legacy CUR.")
    ],
    export_name: Annotated[
        str | None,
        typer.Option("--export-name", help="The export to read if the prefix holds several."),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Source name (default: the export name, else aws-cur).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Accept a delivery covering fewer days than the data it replaces.")
    ] = False,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Ingest AWS Cost and Usage Reports (CUR 2.0 or legacy; Parquet or CSV.gz) by manifest."""
    from finops.collectors.aws_cur import default_source

    name = source or default_source(location, export_name)
    _ingest(
        db, config, name=name, kind="aws-cur", uri=location, export_name=export_name, force=force
    )


@ingest_app.command("gcp-billing")
def ingest_gcp_billing(
    location: Annotated[
        str | None, typer.Argument(help="Exported files: a Parquet/NDJSON file, folder or glob.")
    ] = None,
    table: Annotated[
        str | None, typer.Option(help="The billing export table, PROJECT.DATASET.TABLE.")
    ] = None,
    month: Annotated[
        list[str] | None,
        typer.Option(help="Invoice month YYYYMM to read (repeatable; default: all in the table)."),
    ] = None,
    source: Annotated[str, typer.Option(help="Source name.")] = "gcp-billing",
    force: Annotated[
        bool, typer.Option(help="Accept a delivery covering fewer days than the data it replaces.")
    ] = False,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Ingest Google Cloud Billing's export (BigQuery table or files), replacing its invoice months."""
    if (location is None) == (table is None):
        raise FinopsError("give either PATH or --table PROJECT.DATASET.TABLE")
    _ingest(
        db,
        config,
        name=source,
        kind="gcp-billing",
        uri=location,
        table=table,
        months=tuple(month or ()),
        force=force,
    )


@ingest_app.command("aws-ce")
def ingest_aws_ce(
    start: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: the 1st of two months ago).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Day after the last, YYYY-MM-DD (default: today).")
    ] = None,
    tag_key: Annotated[
        str | None, typer.Option(help="Tag to group by (default: allocation.tag_key).")
    ] = None,
    source: Annotated[str, typer.Option(help="Source name.")] = "aws-ce",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Ingest daily costs by tag and service from AWS Cost Explorer (for accounts without a CUR)."""
    try:
        first = date.fromisoformat(start) if start else None
        last = date.fromisoformat(end) if end else None
    except ValueError as exc:
        raise FinopsError(f"--start/--end: {exc} (use YYYY-MM-DD)") from None
    _ingest(db, config, name=source, kind="aws-ce", start=first, end=last, tag_key=tag_key)


@ingest_app.command("aws-inventory")
def ingest_aws_inventory(
    region: Annotated[
        list[str] | None,
        typer.Option(
            "--region", help="Region to read; repeat for several (default: the AWS profile's)."
        ),
    ] = None,
    cluster_tag: Annotated[
        str, typer.Option(help="Tag naming the cluster of resources outside EKS and Auto Scaling.")
    ] = "cluster",
    source: Annotated[str, typer.Option(help="Source name.")] = "aws-inventory",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Refresh the resource inventory from the EC2, Auto Scaling, EKS and SageMaker APIs."""
    _ingest(
        db,
        config,
        name=source,
        kind="aws-inventory",
        regions=tuple(region or ()),
        cluster_tag=cluster_tag,
    )


@agent_app.command("gpu")
def agent_gpu(
    out: Annotated[str, typer.Option("--out", help="Spool folder or s3://bucket/prefix.")],
    interval: Annotated[str, typer.Option(help="Time between readings: 15s, 1m, 500ms.")] = "15s",
    rotate_minutes: Annotated[float, typer.Option(help="Start a new spool file this often.")] = 15,
    count: Annotated[
        int | None, typer.Option(help="Stop after this many readings (default: run until stopped).")
    ] = None,
    node: Annotated[
        str | None, typer.Option(help="Host name to record (default: this host's).")
    ] = None,
) -> None:
    """Sample this host's GPUs through NVML into spool files; never opens the warehouse."""
    from finops.collectors.nvml import parse_interval, run_agent

    rounds = run_agent(
        out, parse_interval(interval), rotate_minutes=rotate_minutes, max_samples=count, node=node
    )
    console.print(f"wrote {rounds} reading(s) of every GPU to {out}")


@app.command()
def collect(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run just this source (repeatable).")
    ] = None,
    collectors_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of source manifests (default: collectors/ beside finops.yaml)."),
    ] = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Run every source declared in collectors/*.yaml; report rows, totals, time and status."""
    import time

    import pyarrow as pa

    from finops.config import load_sources

    ctx = _context(db, config)
    sources = [s for s in load_sources(ctx.config, collectors_dir) if s.enabled]
    if only:
        unknown = sorted(set(only) - {s.name for s in sources})
        if unknown:
            raise FinopsError(
                f"--only {', '.join(unknown)}: no such enabled source in the manifests"
            )
        sources = [s for s in sources if s.name in only]
    report = []
    for source in sources:
        started = time.perf_counter()
        try:
            rows, billed = _rows_and_billed(collect_source(ctx, source))
            status, error = "success", None
        except FinopsError as exc:
            rows, billed, status, error = None, None, "failed", str(exc).splitlines()[0]
        report.append(
            {
                "source": source.name,
                "kind": source.kind,
                "status": status,
                "rows": rows,
                "billed_cost": billed,
                "seconds": round(time.perf_counter() - started, 2),
                "error": error,
            }
        )
    emit(pa.Table.from_pylist(report), fmt, title="Collected")
    if any(r["status"] == "failed" for r in report):
        raise typer.Exit(1)


def collect_source(ctx: Context, source: SourceManifest) -> SourceResult:
    """Run a declared source as `finops collect` and the scheduler do: with its AWS
    profile, its relative path taken from the folder holding finops.yaml."""
    with _aws_profile(source.aws_profile):
        return _run_source(ctx, _resolved(ctx, source))


def _resolved(ctx: Context, source: SourceManifest) -> SourceManifest:
    """A manifest's relative path is relative to the folder holding finops.yaml."""
    location = source.uri
    if not location or "://" in location or Path(location).is_absolute():
        return source
    return source.model_copy(update={"uri": str(ctx.config.base_dir / location)})


def _rows_and_billed(result: SourceResult) -> tuple[int, Decimal | None]:
    from finops.warehouse import EventIngestResult, GpuIngestResult, IngestResult

    if result is None:
        return 0, None
    if isinstance(result, EventIngestResult):
        return sum(result.stored.values()), None
    if isinstance(result, IngestResult):
        return result.rows, result.billed_cost
    if isinstance(result, GpuIngestResult):
        return result.rows, None
    return result.resources, None


@contextmanager
def _aws_profile(profile: str | None) -> Iterator[None]:
    """Use a named AWS profile for one source only (boto3 reads AWS_PROFILE)."""
    if profile is None:
        yield
        return
    previous = os.environ.get("AWS_PROFILE")
    os.environ["AWS_PROFILE"] = profile
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_PROFILE", None)
        else:
            os.environ["AWS_PROFILE"] = previous


def _source(**fields: Any) -> SourceManifest:
    """A source given on the command line, validated as a manifest entry would be."""
    from pydantic import ValidationError

    from finops.config import SourceManifest, describe_validation_error

    try:
        return SourceManifest(**fields)
    except ValidationError as exc:
        raise FinopsError(describe_validation_error(exc, Path("command line"))) from None


def _run_source(ctx: Context, source: SourceManifest) -> SourceResult:
    """Run one source through its collector into the warehouse: the one place that wires
    each kind of source, for `finops ingest ...` and `finops collect` alike."""
    wh, name, kind, location = ctx.warehouse, source.name, source.kind, source.uri or ""
    if kind in ("focus", "aws-cur", "gcp-billing", "aws-ce"):
        read, uri = _cost_reader(ctx, source)
        return wh.ingest_cost(read, source=name, collector=kind, uri=uri, force=source.force)
    if kind == "billing-inventory":
        return _refresh_billing_inventory(ctx, source.days, name)
    if kind == "events":
        return _ingest_events(ctx, location, None, name)
    if kind == "aws-inventory":
        from finops.collectors.aws_inventory import read_aws_inventory

        regions = list(source.regions) or None
        return wh.refresh_inventory(
            lambda: read_aws_inventory(
                regions=regions, cluster_tag=source.cluster_tag, now=datetime.now(UTC)
            ),
            source=name,
            collector=kind,
            uri=f"aws:{','.join(regions)}" if regions else "aws",
        )
    gpu_read = _gpu_reader(ctx, source)
    if gpu_read is None:
        return None
    return wh.ingest_gpu(gpu_read, source=name, collector=kind, uri=location)


def _cost_reader(ctx: Context, source: SourceManifest) -> tuple[Callable[[], CostDelivery], str]:
    location = source.uri or ""
    if source.kind == "focus":
        from finops.collectors.focus import read_focus

        return partial(read_focus, location), location
    if source.kind == "aws-cur":
        from finops.collectors.aws_cur import read_cur

        return partial(read_cur, location, export_name=source.export_name), location
    if source.kind == "gcp-billing":
        from finops.collectors import gcp_billing

        if (source.table is None) == (not location):
            raise FinopsError(f"source {source.name!r}: give either a path or a table, not both")
        if source.table:
            months = list(source.months) or None
            return partial(
                gcp_billing.read_gcp_export_table, source.table, months=months
            ), source.table
        return partial(gcp_billing.read_gcp_export_files, location), location
    from finops.collectors.aws_ce import read_cost_explorer
    from finops.periods import add_months

    today = datetime.now(UTC).date()
    first = source.start or add_months(today.replace(day=1), -2)
    last = source.end or today
    key = source.tag_key or ctx.config.allocation.tag_key
    return partial(
        read_cost_explorer, start=first, end=last, tag_key=key
    ), f"aws-ce:{first}..{last}"


def _gpu_reader(ctx: Context, source: SourceManifest) -> Callable[[], GpuDelivery] | None:
    location = source.uri or ""
    if source.kind == "dcgm":
        from finops.collectors.dcgm import scrape_dcgm

        return partial(scrape_dcgm, location)
    if source.kind == "openmetrics":
        from finops.collectors.dcgm import read_openmetrics

        return partial(read_openmetrics, location)
    if source.kind == "nvidia-smi":
        from finops.collectors.nvidia_smi import read_nvidia_smi

        zone = source.time_zone or "UTC"
        return partial(read_nvidia_smi, location, time_zone=zone, host=source.host)
    if source.kind == "gpu-spool":
        from finops.collectors.gpu_spool import read_gpu_spool

        return partial(read_gpu_spool, location)
    from finops.collectors.prometheus import parse_since, read_prometheus, since_last

    default_since = parse_since(source.since)
    last = None
    if ctx.warehouse.path.exists():
        last = (
            ctx.warehouse.query(
                "SELECT max(ts) AS last FROM gpu_samples WHERE source = ?", [source.name]
            )
            .column("last")[0]
            .as_py()
        )
    now = datetime.now(UTC)
    start = since_last(last, default_since, now, step_s=source.step_s)
    if start > now:
        return None
    return partial(
        read_prometheus,
        location,
        start=start,
        end=now,
        step_s=source.step_s,
        selector=source.selector,
    )


def _print_result(name: str, result: SourceResult) -> None:
    from finops.warehouse import EventIngestResult, GpuIngestResult, IngestResult

    if result is None:
        console.print(f"[bold]{name}[/]: nothing new since the last run")
    elif isinstance(result, EventIngestResult):
        stored = ", ".join(
            f"{result.stored[k]:,} {k} ({result.new[k]:,} new)" for k in sorted(result.stored)
        )
        console.print(f"[bold]{name}[/]: {stored or 'no events'} in {result.seconds:.2f} s")
        for note in result.notes:
            console.print(f"  note: {escape(note)}", soft_wrap=True)
    elif isinstance(result, IngestResult):
        _print_ingest(result)
    elif isinstance(result, GpuIngestResult):
        _print_gpu_ingest(result)
    else:
        console.print(f"[bold]{name}[/]: {result.resources:,} resources ({result.new:,} new)")
        for note in result.notes:
            console.print(f"  note: {escape(note)}", soft_wrap=True)


def _ingest(db: Path | None, config: Path | None, **fields: Any) -> None:
    """`finops ingest KIND ...`: run the source the options describe and print the outcome."""
    ctx = _context(db, config)
    source = _source(**fields)
    _print_result(source.name, _run_source(ctx, source))


@app.command()
def runs(
    limit: Annotated[int, typer.Option(help="How many runs to show.")] = 20,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Ingest history, newest first: source, status, rows, totals, errors."""
    table = _context(db, config).warehouse.runs(limit)
    if fmt is OutputFormat.table:
        table = table.select(
            ["started_at", "source", "status", "rows", "billed_cost", "periods", "seconds", "error"]
        )
    emit(table, fmt, title="Ingest runs")


@app.command("chargeback")
def chargeback_command(
    period: PeriodOption,
    by: Annotated[
        str,
        typer.Option(
            help="Group by, comma-separated: team, tag:KEY, account, provider, service, "
            "service-category, region, resource, charge-category, pricing-category, month, ..."
        ),
    ] = "team",
    cost: Annotated[
        str | None,
        typer.Option(
            help="Cost basis: billed (invoice) or effective (amortised); default from finops.yaml."
        ),
    ] = None,
    allocate: Annotated[
        bool | None,
        typer.Option(
            "--allocate/--no-allocate",
            help="Apply finops.yaml's shared-cost rules (default: on for --by team, "
            "cost-centre or business-unit).",
        ),
    ] = None,
    grain: Annotated[
        str, typer.Option(help="With allocation: one row set per month, quarter or period.")
    ] = "period",
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Spend per team (or any dimension) for a period, with an explicit (unallocated) row."""
    from finops.analytics.chargeback import CostBasis, chargeback, parse_dimensions, period_total

    ctx = _context(db, config)
    basis: CostBasis = ctx.config.allocation.cost_basis
    if cost is not None:
        if cost not in ("billed", "effective"):
            raise FinopsError(f"--cost {cost!r}: use billed or effective")
        basis = "billed" if cost == "billed" else "effective"
    chosen = ctx.period(period)
    if allocate is not False and by in ("team", "cost-centre", "business-unit"):
        _allocated_chargeback(ctx, chosen, by, grain, basis, fmt)
        return
    if allocate:
        raise FinopsError(f"--allocate groups by team, cost-centre or business-unit, not {by!r}")
    dims = parse_dimensions(by, ctx.config.allocation, ctx.config.teams)
    with ctx.warehouse.reader() as conn:
        table = chargeback(
            conn,
            chosen,
            dims,
            cost=basis,
            unallocated_label=ctx.config.allocation.unallocated_label,
        )
        totals = period_total(conn, chosen, basis)
    table = table.drop_columns(["exact_cost"])
    footer = None
    if fmt is OutputFormat.table and len(totals) == 1:
        (total,) = totals.values()
        footer = [
            "Total",
            *[""] * (len(dims) - 1),
            "",
            f"{total:,.2f}",
            "100.00",
            f"{sum(table['rows'].to_pylist()):,}",
        ]
    emit(table, fmt, title=f"Charge-back {chosen.label} ({basis} cost)", footer=footer)


prices_app = typer.Typer(help="Hourly prices used to price savings.", no_args_is_help=True)
app.add_typer(prices_app, name="prices")


@prices_app.command("refresh")
def prices_refresh(
    days: Annotated[int, typer.Option(help="Billing days to derive observed prices from.")] = 30,
    aws_spot_region: Annotated[
        list[str] | None,
        typer.Option(
            "--aws-spot-region",
            help="Also fetch EC2 spot prices for the instance types billed there.",
        ),
    ] = None,
    aws_price_list_region: Annotated[
        list[str] | None,
        typer.Option(
            "--aws-price-list-region",
            help="Also fetch public on-demand prices (AWS Price List API) for the types billed there.",
        ),
    ] = None,
    gcp_catalog_region: Annotated[
        list[str] | None,
        typer.Option(
            "--gcp-catalog-region",
            help="Also fetch Google Cloud list, spot and committed prices of GPU and machine "
            "types there (Cloud Billing Catalog API).",
        ),
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Store prices per instance type, region and purchase option (billing, EC2 spot, Price
    List, Google Cloud's Catalog)."""
    from finops.collectors.prices import aws_ondemand_prices, aws_spot_prices

    ctx = _context(db, config)
    _refresh_observed_prices(ctx, days)
    with ctx.warehouse.reader() as conn:
        types = conn.execute(
            """SELECT DISTINCT "x_InstanceType" FROM cost_resolved
               WHERE "ProviderName" = 'AWS' AND "x_InstanceType" IS NOT NULL
                 AND "x_InstanceType" NOT LIKE 'ml.%'"""
        ).fetchall()
    if aws_spot_region:
        spot = aws_spot_prices(
            regions=aws_spot_region, instance_types=[t for (t,) in types], now=datetime.now(UTC)
        )
        console.print(f"[bold]aws-spot[/]: {ctx.warehouse.store_prices(spot):,} spot prices")
    if aws_price_list_region:
        listed = aws_ondemand_prices(
            regions=aws_price_list_region,
            instance_types=[t for (t,) in types],
            as_of=datetime.now(UTC).date(),
        )
        stored_list = ctx.warehouse.store_prices(listed)
        console.print(f"[bold]aws-price-list[/]: {stored_list:,} on-demand prices")
    if gcp_catalog_region:
        from finops.collectors.gcp_prices import gcp_catalog_prices

        catalog = gcp_catalog_prices(regions=gcp_catalog_region, as_of=datetime.now(UTC).date())
        stored_catalog = ctx.warehouse.store_prices(catalog)
        console.print(f"[bold]gcp-catalog[/]: {stored_catalog:,} machine and GPU type prices")


def _refresh_observed_prices(ctx: Context, days: int) -> None:
    """Store the hourly prices billing shows for the last `days` of billed usage."""
    from finops.collectors.prices import observed_prices

    with ctx.warehouse.reader() as conn:
        ((until,),) = conn.execute('SELECT max("ChargePeriodEnd") FROM cost_resolved').fetchall()
        until = until or datetime.now(UTC)
        observed = observed_prices(
            conn, since=until - timedelta(days=days), until=until, as_of=until.date()
        )
    stored = ctx.warehouse.store_prices(observed)
    console.print(f"[bold]billing[/]: {stored:,} observed prices as of {observed.as_of}")


@app.command("gpu")
def gpu_command(
    period: PeriodOption,
    by: Annotated[
        str, typer.Option(help="Group by: cluster, team, node, model, day, hour (comma-separated).")
    ] = "cluster",
    unmatched: Annotated[
        bool, typer.Option(help="Also list billed GPU instances that sent no samples.")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """GPU-hours, utilisation, idle GPU-hours and idle cost per cluster or team."""
    from finops.analytics.gpu import GpuAttribution, gpu_hours, gpu_usage, unmatched_gpu_instances

    ctx = _context(db, config)
    chosen = ctx.period(period)
    attribution = GpuAttribution.from_config(ctx.config)
    with ctx.warehouse.reader() as conn:
        hours = gpu_hours(conn, chosen, attribution)  # joined once for both tables
        table = gpu_usage(conn, chosen, by, attribution, hours)
        silent = unmatched_gpu_instances(conn, chosen, attribution, hours) if unmatched else None
    threshold = ctx.config.gpu.idle_threshold_pct
    emit(table, fmt, title=f"GPU fleet {chosen.label} (idle: utilisation under {threshold:g}%)")
    if silent is not None:
        emit(silent, fmt, title="Billed GPU instances that sent no samples")


# --- policies and recommendations -------------------------------------------------------

policies_app = typer.Typer(help="The policy pack: check and list policies.", no_args_is_help=True)
app.add_typer(policies_app, name="policies")
recommendations_app = typer.Typer(
    help="Recommendations the policies found, and their state.", no_args_is_help=True
)
app.add_typer(recommendations_app, name="recommendations")

ActorOption = Annotated[
    str | None, typer.Option("--by", help="Who makes the change (default: $USER).")
]
NowOption = Annotated[
    datetime | None,
    typer.Option(help="Evaluate as of this time (UTC, ISO 8601); default: now.", hidden=True),
]


def _actor(by: str | None) -> str:
    return by or os.environ.get("USER") or "cli"


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _policy_paths(ctx: Context, paths: list[Path] | None) -> list[Path]:
    from finops.policies.engine import policy_folder

    return paths or [policy_folder(ctx.config)]


@policies_app.command("validate")
def policies_validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Policy files or folders (default: the pack).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check every policy file: errors name the file, line and key; exit status 2 if any."""
    from finops.policies import validate_policies

    ctx = _context(None, config)
    loaded, problems = validate_policies(_policy_paths(ctx, paths))
    for problem in problems:
        errors.print(f"[red]{escape(str(problem))}[/]", highlight=False, soft_wrap=True)
    if problems:
        raise SystemExit(2)
    console.print(f"{len(loaded)} policies valid")


@policies_app.command("list")
def policies_list(
    fmt: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
) -> None:
    """Every policy of the pack: kind, action, mode, schedule, owner and where it is written."""
    import pyarrow as pa

    from finops.policies import load_policies

    ctx = _context(None, config)
    rows = [
        {
            "name": p.policy.name,
            "kind": p.policy.kind,
            "action": p.policy.action,
            "mode": p.policy.mode,
            "enabled": p.policy.enabled,
            "schedule": p.policy.schedule,
            "owner": p.policy.owner,
            "file": f"{p.path.name}:{p.line}",
        }
        for p in load_policies(_policy_paths(ctx, None))
    ]
    emit(pa.Table.from_pylist(rows), fmt, title="Policies")


@app.command("recommend")
def recommend_command(
    policy: Annotated[str | None, typer.Option(help="Run only this policy.")] = None,
    fmt: FormatOption = OutputFormat.table,
    now: NowOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Run the policy engine and print what changed: new, updated, re-opened, resolved."""
    import pyarrow as pa

    from finops.policies import engine

    ctx = _context(db, config)
    evaluations, changes = engine.run(ctx.warehouse, ctx.config, _now(now), policy=policy)
    table = pa.Table.from_pylist(
        [
            {
                "event": c.event,
                "policy": c.policy,
                "id": c.rec_id,
                "resource": c.resource_id,
                "monthly_savings": c.monthly_savings,
                "before": c.previous_savings,
                "reason": c.reason,
            }
            for c in changes
        ],
        schema=pa.schema(
            [
                ("event", pa.string()),
                ("policy", pa.string()),
                ("id", pa.string()),
                ("resource", pa.string()),
                ("monthly_savings", pa.decimal128(38, 10)),
                ("before", pa.decimal128(38, 10)),
                ("reason", pa.string()),
            ]
        ),
    )
    if fmt is not OutputFormat.table:
        emit(table, fmt)
        return
    shown = table.filter(pa.compute.not_equal(table["event"], "unchanged"))
    emit(shown, fmt, title=f"Recommendations: {shown.num_rows} changed")
    for evaluation in evaluations:
        console.print(
            f"[bold]{evaluation.policy.policy.name}[/] ({evaluation.policy.policy.kind}): "
            f"{len(evaluation.findings)} found, {len(evaluation.passed_over)} passed over",
            soft_wrap=True,
        )


@recommendations_app.command("list")
def recommendations_list(
    state: Annotated[
        str | None, typer.Option(help="Only these states, comma-separated (open, accepted, ...).")
    ] = None,
    policy: Annotated[str | None, typer.Option(help="Only this policy's.")] = None,
    team: Annotated[str | None, typer.Option(help="Only these teams', comma-separated.")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Include those the policies no longer find.")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Recommendations, largest monthly savings first."""
    from finops.policies.store import list_recommendations, savings_totals

    ctx = _context(db, config)
    states = tuple(s.strip() for s in state.split(",")) if state else ()
    teams = tuple(t.strip() for t in team.split(",")) if team else None
    with ctx.warehouse.reader() as conn:
        table = list_recommendations(
            conn, states=states, policy=policy, teams=teams, active_only=not all_
        )
        totals = savings_totals(conn, teams=teams)
    if fmt is OutputFormat.table:
        table = table.select(
            [
                "rec_id",
                "policy",
                "resource_name",
                "team",
                "state",
                "monthly_savings",
                "confidence",
                "risk",
                "reason",
            ]
        )
    emit(table, fmt, title="Recommendations")
    if fmt is OutputFormat.table:
        emit(totals, fmt, title="Monthly savings by state (each resource counted once)")


@recommendations_app.command("show")
def recommendations_show(
    rec_id: Annotated[str, typer.Argument(help="The recommendation's id.")],
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """One recommendation: its figures, evidence and history."""
    from finops.policies.store import history, list_recommendations

    ctx = _context(db, config)
    with ctx.warehouse.reader() as conn:
        rows = [
            r
            for r in list_recommendations(conn, active_only=False).to_pylist()
            if r["rec_id"] == rec_id
        ]
        if not rows:
            raise FinopsError(f"no recommendation {rec_id}")
        past = history(conn, rec_id)
    record = rows[0]
    for key, value in record.items():
        if key == "evidence":
            value = json.dumps(json.loads(value), indent=2)
        console.print(f"[bold]{key}[/]: {escape(_cell(value))}", soft_wrap=True)
    emit(past, OutputFormat.table, title="History")


def _change(
    ids: list[str], to_state: str, by: str | None, db: Path | None, config: Path | None, **kw: Any
) -> None:
    from finops.policies.store import change_state

    ctx = _context(db, config)
    for rid in ids:
        row = change_state(
            ctx.warehouse, rid, to_state, actor=_actor(by), now=datetime.now(UTC), **kw
        )
        console.print(
            f"{rid}: {row['state']} ({escape(row['resource_name'] or row['resource_id'])})"
        )


@recommendations_app.command("accept")
def recommendations_accept(
    ids: Annotated[list[str], typer.Argument(help="Recommendation ids.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    by: ActorOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Accept recommendations: `finops apply --apply` may then act on them."""
    _change(ids, "accepted", by, db, config, reason=reason)


@recommendations_app.command("snooze")
def recommendations_snooze(
    ids: Annotated[list[str], typer.Argument(help="Recommendation ids.")],
    until: Annotated[datetime, typer.Option(help="Until when (date or time, UTC).")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    by: ActorOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Snooze recommendations until a date: nothing acts on them meanwhile."""
    _change(ids, "snoozed", by, db, config, reason=reason, until=_now(until))


@recommendations_app.command("dismiss")
def recommendations_dismiss(
    ids: Annotated[list[str], typer.Argument(help="Recommendation ids.")],
    reason: Annotated[str, typer.Option(help="Why: required, kept in the history.")],
    by: ActorOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Dismiss recommendations; they re-open only if their savings grow past the factor."""
    _change(ids, "dismissed", by, db, config, reason=reason)


@recommendations_app.command("savings")
def recommendations_savings(
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Estimated savings by state, and realised savings of applied recommendations."""
    from finops.policies.store import realised_savings, savings_totals

    ctx = _context(db, config)
    with ctx.warehouse.reader() as conn:
        totals = savings_totals(conn)
        realised = realised_savings(conn, datetime.now(UTC))
    emit(totals, fmt, title="Estimated monthly savings (each resource counted once)")
    emit(realised, fmt, title="Realised savings of applied recommendations (monthly)")


# --- scheduler ---------------------------------------------------------------------------

scheduler_app = typer.Typer(
    help="The daemon that runs collectors, policies and actions on their schedules.",
    no_args_is_help=True,
)
app.add_typer(scheduler_app, name="scheduler")


@scheduler_app.command("list")
def scheduler_list(
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Every job the configuration declares, with its next run and its last one."""
    import pyarrow as pa

    from finops.scheduler import build_jobs, last_runs

    ctx = _context(db, config)
    now = datetime.now(UTC)
    last = last_runs(ctx.warehouse)
    rows = [
        {
            "job": spec.job_id,
            "schedule": f"{spec.cron} ({spec.time_zone})",
            "next_run": spec.next_window(now),
            "last_window": last.get(spec.job_id, (None, None))[0],
            "last_status": last.get(spec.job_id, (None, None))[1],
            "what": spec.description,
        }
        for spec in build_jobs(ctx.config, ctx.warehouse)
    ]
    emit(pa.Table.from_pylist(rows), fmt, title="Scheduler jobs")


@scheduler_app.command("run")
def scheduler_run(
    once: Annotated[
        str | None, typer.Option("--once", help="Run this one job now, then exit.")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Run the daemon (until SIGTERM), or one job now with --once JOB."""
    import logging

    from finops.scheduler import build_jobs, run_job, serve

    ctx = _context(db, config)
    jobs = build_jobs(ctx.config, ctx.warehouse)
    if once is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        console.print(f"scheduler: {len(jobs)} jobs on {ctx.warehouse.path}; SIGTERM stops it")
        serve(ctx.warehouse, jobs)
        return
    chosen = [spec for spec in jobs if spec.job_id == once]
    if not chosen:
        raise FinopsError(f"no job {once!r}: `finops scheduler list` shows them")
    status = run_job(ctx.warehouse, chosen[0], datetime.now(UTC), trigger="manual")
    console.print(f"{once}: {status}")
    if status == "failed":
        raise typer.Exit(1)


@export_app.command("focus")
def export_focus_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .parquet or .csv.")],
    period: Annotated[
        str | None, typer.Option("--period", "-p", help="Only this period (default: everything).")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Write a FOCUS 1.2 dataset (FOCUS names and types, Tags as JSON) of the warehouse."""
    from finops.warehouse.export import export_focus

    ctx = _context(db, config)
    chosen = ctx.period(period) if period else None
    with ctx.warehouse.reader() as conn:
        rows = export_focus(conn, out, chosen)
    console.print(f"wrote {rows:,} rows to {out}")


@app.command()
def demo(
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed gives the same organisation.")
    ] = 7,
    months: Annotated[int, typer.Option(min=1, max=36, help="How many months of history.")] = 8,
    end_month: Annotated[
        str | None,
        typer.Option(help="Last month to generate, YYYY-MM (default: last complete month)."),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo's source files are written.")
    ] = Path(".finops/demo"),
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Generate the demo organisation's billing and GPU metrics, ingest them, print a summary."""
    from finops import demo as demo_data
    from finops.analytics.chargeback import chargeback, parse_dimensions
    from finops.analytics.gpu import GpuAttribution, gpu_usage
    from finops.collectors.dcgm import read_openmetrics
    from finops.collectors.nvidia_smi import read_nvidia_smi
    from finops.demo_delivery import generate_delivery
    from finops.periods import add_months, parse_period

    ctx = _context(db, config)
    last = parse_period(end_month).start if end_month else None
    files = demo_data.generate(data_dir, seed=seed, months=months, end_month=last)
    console.print(
        f"generated {files.rows:,} rows for {files.months[0]:%Y-%m}..{files.months[-1]:%Y-%m} in {data_dir}"
    )
    # Through the real collectors, as the demo's collectors/demo.yaml declares them.
    aws_cur = _source(name="aws-cur", kind="aws-cur", uri=str(files.aws_dir))
    gcp_billing = _source(name="gcp-billing", kind="gcp-billing", uri=str(files.gcp_dir))
    for source in (aws_cur, gcp_billing):
        _print_result(source.name, _run_source(ctx, source))
    # AWS re-delivers the restated month: its new manifest replaces the month's current one.
    demo_data.deliver_restatement(files)
    _print_result(aws_cur.name, _run_source(ctx, aws_cur))
    _print_result("billing", _refresh_billing_inventory(ctx, days=31 * months))
    metrics = str(files.gpu_openmetrics_dir)
    _print_gpu_ingest(
        ctx.warehouse.ingest_gpu(
            lambda: read_openmetrics(metrics), source="dcgm", collector="openmetrics", uri=metrics
        )
    )
    logs = str(files.nvidia_smi_dir)
    _print_gpu_ingest(
        ctx.warehouse.ingest_gpu(
            lambda: read_nvidia_smi(logs, time_zone=files.nvidia_smi_time_zone),
            source="nvidia-smi",
            collector="nvidia-smi",
            uri=logs,
        )
    )
    delivery = generate_delivery(data_dir / "delivery", months=files.months, seed=seed)
    _print_result("events", _ingest_events(ctx, str(delivery.root), None, "events"))
    _refresh_observed_prices(ctx, days=30)
    quarter = _last_full_quarter(ctx, files.months[-1])
    # The demo's clock: the day after its last month, so its windows hold data whatever today is.
    now = datetime.combine(add_months(files.months[-1], 1), datetime.min.time(), UTC)
    _demo_insights(ctx, quarter, now)
    dims = parse_dimensions("team", ctx.config.allocation, ctx.config.teams)
    with ctx.warehouse.reader() as conn:
        table = chargeback(
            conn,
            quarter,
            dims,
            cost=ctx.config.allocation.cost_basis,
            unallocated_label=ctx.config.allocation.unallocated_label,
        )
    emit(
        table.drop_columns(["exact_cost"]),
        OutputFormat.table,
        title=f"Spend by team, {quarter.label} ({ctx.config.allocation.cost_basis} cost)",
    )
    last_month = ctx.period(f"{files.months[-1]:%Y-%m}")
    attribution = GpuAttribution.from_config(ctx.config)
    with ctx.warehouse.reader() as conn:
        fleet = gpu_usage(conn, last_month, "cluster", attribution)
    emit(fleet, OutputFormat.table, title=f"GPU fleet by cluster, {last_month.label}")
    console.print(f"warehouse: {ctx.warehouse.path}; next: `finops app` to explore it")


def _demo_insights(ctx: Context, quarter: Period, now: datetime) -> None:
    """What the scheduler would have found on the demo: anomalies and recommendations."""
    from finops.analytics.anomalies import detect_anomalies
    from finops.analytics.chargeback import Allocation
    from finops.policies import engine
    from finops.policies.store import list_recommendations

    last_day = quarter.end - timedelta(days=1)
    with ctx.warehouse.reader() as conn:
        found = detect_anomalies(
            conn, quarter.start, last_day, Allocation.from_config(ctx.config), min_increase=1000.0
        )
    stored = ctx.warehouse.store_anomalies(
        found, first_day=quarter.start, last_day=last_day, now=now
    )
    console.print(f"[bold]anomalies[/]: {stored} in {quarter.label}")
    evaluations, _ = engine.run(ctx.warehouse, ctx.config, now)
    found_count = sum(len(e.findings) for e in evaluations)
    console.print(
        f"[bold]policies[/]: {found_count} recommendations from {len(evaluations)} policies"
    )
    with ctx.warehouse.reader() as conn:
        top = list_recommendations(conn).slice(0, 8)
    emit(
        top.select(["rec_id", "policy", "resource_name", "team", "monthly_savings", "risk"]),
        OutputFormat.table,
        title="Top recommendations (monthly savings)",
    )


def _last_full_quarter(ctx: Context, last_month: date) -> Period:
    """The newest fiscal quarter whose every month is in the data."""
    from finops.periods import add_months, quarter_containing

    fiscal = {
        "fiscal_year_start_month": ctx.config.fiscal_year_start_month,
        "fiscal_year_label": ctx.config.fiscal_year_label,
    }
    quarter = quarter_containing(last_month, **fiscal)
    if quarter.end == add_months(last_month, 1):
        return quarter
    return quarter_containing(add_months(quarter.start, -1), **fiscal)


@app.command("app")
def app_command(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    headless: Annotated[bool, typer.Option(help="Do not open a browser.")] = True,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the Streamlit app on http://localhost:PORT."""
    ctx = _context(db, config)
    from finops.app import ENTRY_POINT

    env = {**os.environ, "FINOPS_DB": str(ctx.warehouse.path.resolve())}
    if ctx.config.source_file:
        env["FINOPS_CONFIG"] = str(ctx.config.source_file.parent)
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ENTRY_POINT),
        "--server.port",
        str(port),
        "--server.headless",
        str(headless).lower(),
        "--browser.gatherUsageStats",
        "false",
    ]
    console.print(f"serving the app on http://localhost:{port} (Ctrl+C stops it)")
    sys.stdout.flush()
    # Become the Streamlit server, so signals (Ctrl+C, a service manager's SIGTERM) reach it.
    os.execve(sys.executable, command, env)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new deployment.")],
    force: Annotated[bool, typer.Option(help="Overwrite files that already exist.")] = False,
) -> None:
    """Scaffold a deployment: finops.yaml, collectors/, policies/ and reports/ from the defaults."""
    from finops.defaults import init_deployment

    written = init_deployment(directory, force=force)
    for path in written:
        console.print(f"wrote {path}")
    console.print(
        f"edit {directory / 'finops.yaml'} (teams, tag keys, currency), then `finops ingest ...`"
    )


@app.command()
def status(
    db: DbOption = None, config: ConfigOption = None, fmt: FormatOption = OutputFormat.table
) -> None:
    """What the warehouse holds: rows and totals per source and billing month, and overlaps."""
    ctx = _context(db, config)
    with ctx.warehouse.reader() as conn:
        held = conn.sql(
            """
            SELECT "x_Source" AS source, strftime("BillingPeriodStart", '%Y-%m') AS month,
                   count(*) AS rows, sum("BilledCost") AS billed_cost, sum("EffectiveCost") AS effective_cost
            FROM cost GROUP BY ALL ORDER BY source, month
            """
        ).to_arrow_table()
        overlaps = conn.sql(
            "SELECT billing_account_id, billing_period_start, sources, winner, reason FROM source_overlaps"
        ).to_arrow_table()
    emit(held, fmt, title=f"Warehouse {ctx.warehouse.path}")
    if overlaps.num_rows:
        emit(overlaps, fmt, title="Overlapping sources (double counting avoided)")


# --- delivery and quality events, and the scorecard ---------------------------------------

event_app = typer.Typer(
    help="Record one delivery or quality event (from a CI/CD pipeline or by hand).",
    no_args_is_help=True,
)
app.add_typer(event_app, name="event")

SpoolOption = Annotated[
    Path | None,
    typer.Option(
        help="Append the checked event to DIR/events-YYYY-MM-DD.jsonl instead of opening the "
        "warehouse (for hosts without it); `finops ingest events DIR` loads them later."
    ),
]


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _record_event(
    kind: str, values: dict[str, Any], spool: Path | None, db: Path | None, config: Path | None
) -> None:
    """Check one event like a file's, then store it (or spool it) and say what happened."""
    from finops.collectors.events import Fiscal, event_from_options, spool_line

    ctx = _context(db, config)
    fiscal = Fiscal(ctx.config.fiscal_year_start_month, ctx.config.fiscal_year_label)
    delivery = event_from_options(kind, values, time_zone=ctx.config.time_zone, fiscal=fiscal)
    ((name, table),) = delivery.tables.items()
    event_id = table.column(0)[0].as_py()
    if spool is not None:
        spool.mkdir(parents=True, exist_ok=True)
        target = spool / f"events-{datetime.now(UTC):%Y-%m-%d}.jsonl"
        # One write of one line in append mode, so concurrent jobs never interleave a line.
        with target.open("a", encoding="utf-8") as handle:
            handle.write(spool_line(delivery))
        console.print(f"spooled {name} {escape(str(event_id))} to {target}")
        return
    result = ctx.warehouse.ingest_events(
        lambda: delivery, source="events", collector="event-command", uri=f"finops event {name}"
    )
    state = "new" if result.new.get(name) else "updated"
    console.print(f"stored {name} {escape(str(event_id))} ({state})")


@event_app.command("deploy")
def event_deploy(
    deploy_id: Annotated[str, typer.Option("--id", help="The deployment's id, e.g. the CI run.")],
    service: Annotated[str, typer.Option(help="The service or model deployed.")],
    env: Annotated[str, typer.Option("--env", help="Environment, e.g. prod.")],
    result: Annotated[str, typer.Option(help="success, failure or cancelled.")],
    sha: Annotated[
        list[str] | None, typer.Option("--sha", help="A commit it ships (repeat for several).")
    ] = None,
    team: Annotated[str | None, typer.Option(help="Owning team.")] = None,
    started_at: Annotated[str | None, typer.Option(help="ISO 8601 time.")] = None,
    finished_at: Annotated[str | None, typer.Option(help="ISO 8601 time (default: now).")] = None,
    spool: SpoolOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """A deployment: `finops event deploy --id 981 --service ranker --sha abc --env prod --result success`."""
    values = {
        "deploy_id": deploy_id,
        "service": service,
        "team": team,
        "environment": env,
        "result": result,
        "started_at": started_at,
        "finished_at": finished_at or _now_text(),
        "commit_shas": sha or [],
    }
    _record_event("deploy", values, spool, db, config)


@event_app.command("change")
def event_change(
    sha: Annotated[str, typer.Option(help="The commit.")],
    committed_at: Annotated[str, typer.Option(help="ISO 8601 time of the commit.")],
    service: Annotated[str | None, typer.Option(help="The service it changes.")] = None,
    team: Annotated[str | None, typer.Option(help="Owning team.")] = None,
    spool: SpoolOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """A commit and its time: lead time for changes runs from it to its production deploy."""
    values = {"sha": sha, "committed_at": committed_at, "service": service, "team": team}
    _record_event("change", values, spool, db, config)


@event_app.command("incident")
def event_incident(
    incident_id: Annotated[str, typer.Option("--id", help="The incident's id.")],
    service: Annotated[str, typer.Option(help="The service affected.")],
    created_at: Annotated[str | None, typer.Option(help="ISO 8601 (default: now).")] = None,
    resolved_at: Annotated[str | None, typer.Option(help="ISO 8601, once resolved.")] = None,
    caused_by_deploy: Annotated[str | None, typer.Option(help="The deploy that caused it.")] = None,
    caused_by_sha: Annotated[str | None, typer.Option(help="The commit that caused it.")] = None,
    severity: Annotated[str | None, typer.Option(help="e.g. SEV2.")] = None,
    team: Annotated[str | None, typer.Option(help="Owning team.")] = None,
    spool: SpoolOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """An incident; send it again with --resolved-at when it is over."""
    values = {
        "incident_id": incident_id,
        "service": service,
        "team": team,
        "severity": severity,
        "created_at": created_at or _now_text(),
        "resolved_at": resolved_at,
        "caused_by_deploy": caused_by_deploy,
        "caused_by_sha": caused_by_sha,
    }
    _record_event("incident", values, spool, db, config)


@event_app.command("evaluation")
def event_evaluation(
    model: Annotated[str, typer.Option(help="The model.")],
    version: Annotated[str, typer.Option(help="Its version.")],
    dataset: Annotated[str, typer.Option(help="The evaluation dataset.")],
    precision: Annotated[float | None, typer.Option(help="0-1.")] = None,
    recall: Annotated[float | None, typer.Option(help="0-1.")] = None,
    calibration_error: Annotated[float | None, typer.Option(help="0-1, e.g. ECE.")] = None,
    metric: Annotated[
        list[str] | None, typer.Option(help="A custom metric NAME=VALUE (repeat for several).")
    ] = None,
    evaluated_at: Annotated[str | None, typer.Option(help="ISO 8601 (default: now).")] = None,
    team: Annotated[str | None, typer.Option(help="Owning team.")] = None,
    spool: SpoolOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """A model version's scores on a dataset."""
    metrics: dict[str, Any] = {}
    for item in metric or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise FinopsError(f"--metric {item!r}: write NAME=VALUE, e.g. auc=0.93")
        try:
            metrics[name.strip()] = float(value)
        except ValueError:
            raise FinopsError(f"--metric {item!r}: {value.strip()!r} is not a number") from None
    values = {
        "model": model,
        "version": version,
        "dataset": dataset,
        "team": team,
        "precision": precision,
        "recall": recall,
        "calibration_error": calibration_error,
        "metrics": metrics or None,
        "evaluated_at": evaluated_at or _now_text(),
    }
    _record_event("evaluation", values, spool, db, config)


@event_app.command("page")
def event_page(
    page_id: Annotated[str, typer.Option("--id", help="The page's id.")],
    service: Annotated[str, typer.Option(help="The service that paged.")],
    paged_at: Annotated[str | None, typer.Option(help="ISO 8601 (default: now).")] = None,
    acknowledged_at: Annotated[str | None, typer.Option(help="ISO 8601.")] = None,
    resolved_at: Annotated[str | None, typer.Option(help="ISO 8601.")] = None,
    incident: Annotated[str | None, typer.Option(help="The incident it belongs to.")] = None,
    team: Annotated[str | None, typer.Option(help="The team paged.")] = None,
    spool: SpoolOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """An on-call page."""
    values = {
        "page_id": page_id,
        "service": service,
        "team": team,
        "paged_at": paged_at or _now_text(),
        "acknowledged_at": acknowledged_at,
        "resolved_at": resolved_at,
        "incident_id": incident,
    }
    _record_event("page", values, spool, db, config)


@event_app.command("adoption")
def event_adoption(
    project: Annotated[str, typer.Option(help="The project.")],
    stage: Annotated[str, typer.Option(help="The framework stage gate it passed.")],
    passed_at: Annotated[str | None, typer.Option(help="ISO 8601 (default: now).")] = None,
    team: Annotated[str | None, typer.Option(help="Owning team.")] = None,
    spool: SpoolOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """A project passing a framework stage gate."""
    values = {
        "project": project,
        "team": team,
        "stage": stage,
        "passed_at": passed_at or _now_text(),
    }
    _record_event("adoption", values, spool, db, config)


@event_app.command("kpi")
def event_kpi(
    period: PeriodOption,
    metric: Annotated[str, typer.Option(help="e.g. revenue_lift, predictions.")],
    value: Annotated[str, typer.Option(help="The figure (money in --currency, or a count).")],
    currency: Annotated[str | None, typer.Option(help="ISO 4217, for money.")] = None,
    category: Annotated[
        str | None,
        typer.Option(
            help="value, engineering_cost, realised_savings or count (known metrics: implied)."
        ),
    ] = None,
    project: Annotated[str | None, typer.Option(help="The model or project.")] = None,
    team: Annotated[str | None, typer.Option(help="The team.")] = None,
    note: Annotated[str | None, typer.Option(help="Where the figure comes from.")] = None,
    spool: SpoolOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """A business KPI input for a period (value, engineering cost, realised savings, count)."""
    values = {
        "period": period,
        "team": team,
        "project": project,
        "metric": metric,
        "category": category,
        "value": value,
        "currency": currency,
        "note": note,
    }
    _record_event("kpi", values, spool, db, config)


@ingest_app.command("events")
def ingest_events(
    location: Annotated[
        str, typer.Argument(help="CSV / JSON-lines event files: a file, folder, glob or s3://.")
    ],
    kind: Annotated[
        str | None,
        typer.Option(help="The events every file holds (default: from file names or records)."),
    ] = None,
    source: Annotated[str, typer.Option(help="Source name.")] = "events",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Load delivery and quality events (deploys, changes, incidents, ...), upserted by id."""
    _print_result(source, _ingest_events(_context(db, config), location, kind, source))


def _ingest_events(ctx: Context, location: str, kind: str | None, source: str) -> EventIngestResult:
    from finops.collectors.events import Fiscal, read_events

    fiscal = Fiscal(ctx.config.fiscal_year_start_month, ctx.config.fiscal_year_label)
    return ctx.warehouse.ingest_events(
        lambda: read_events(location, kind=kind, time_zone=ctx.config.time_zone, fiscal=fiscal),
        source=source,
        collector="events",
        uri=location,
    )


def _quarters(ctx: Context, period: str) -> list[Period]:
    from finops.analytics.scope import quarters

    return quarters(
        ctx.period(period),
        fiscal_year_start_month=ctx.config.fiscal_year_start_month,
        fiscal_year_label=ctx.config.fiscal_year_label,
    )


@app.command("dora")
def dora_command(
    period: PeriodOption,
    by: Annotated[str, typer.Option(help="team, service or organisation.")] = "team",
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """DORA's four keys per quarter and team, with performance bands (scorecard.dora_bands)."""
    from finops.analytics.dora import DeliveryScope, dora, load_bands

    if by not in ("team", "service", "organisation"):
        raise FinopsError(f"--by {by!r}: use team, service or organisation")
    ctx = _context(db, config)
    report = ctx.config.scorecard.dora_bands
    with ctx.warehouse.reader() as conn:
        table = dora(
            conn,
            _quarters(ctx, period),
            load_bands(report),
            by=by,  # type: ignore[arg-type]
            scope=DeliveryScope.from_config(ctx.config),
            team=team,
        )
    emit(table, fmt, title=f"DORA four keys, {period} (bands: State of DevOps {report})")


@app.command("roi")
def roi_command(
    period: PeriodOption,
    by: Annotated[str, typer.Option(help="project (the project tag) or team.")] = "project",
    payback: Annotated[
        bool, typer.Option(help="Show optimisation projects' payback vs the hurdle rate instead.")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Cost vs value per project (or team) and quarter, unit costs; or optimisation payback."""
    from finops.analytics.chargeback import Allocation
    from finops.analytics.roi import roi

    if by not in ("project", "team"):
        raise FinopsError(f"--by {by!r}: use project or team")
    ctx = _context(db, config)
    scorecard = ctx.config.scorecard
    with ctx.warehouse.reader() as conn:
        report = roi(
            conn,
            _quarters(ctx, period),
            allocation=ctx.config.allocation,
            teams=ctx.config.teams,
            by=by,  # type: ignore[arg-type]
            project_tag_key=scorecard.project_tag_key,
            cost_basis=ctx.config.allocation.cost_basis,
            hurdle_rate=scorecard.hurdle_rate,
            sharing=Allocation.from_config(ctx.config),
        )
    if payback:
        hurdle = f"{scorecard.hurdle_rate:.0%}"
        emit(report.payback, fmt, title=f"Optimisation payback, {period} (hurdle {hurdle} a year)")
        return
    basis = ctx.config.allocation.cost_basis
    emit(report.returns, fmt, title=f"ROI by {by}, {period} ({basis} cost)")
    if fmt is OutputFormat.table:
        for note in report.notes:
            console.print(f"note: {escape(note)}", soft_wrap=True)


@app.command("quality")
def quality_command(
    period: PeriodOption,
    show: Annotated[
        str, typer.Option(help="latest (scores per model), regressions, or trend (every version).")
    ] = "latest",
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Each model's latest scores as of the period's end, its regressions, or every version's."""
    from finops.analytics.quality import model_quality

    if show not in ("latest", "regressions", "trend"):
        raise FinopsError(f"--show {show!r}: use latest, regressions or trend")
    ctx = _context(db, config)
    chosen = ctx.period(period)
    with ctx.warehouse.reader() as conn:
        report = model_quality(conn, chosen, tolerance=ctx.config.scorecard.regression_tolerance)
    if show == "latest":
        emit(report.latest, fmt, title=f"Model quality as of the end of {chosen.label}")
    elif show == "regressions":
        emit(report.regressions, fmt, title=f"Regressions between versions in {chosen.label}")
    else:
        emit(report.trend, fmt, title=f"Scores per version, {chosen.label}")


@app.command("process-health")
def process_health_command(
    period: PeriodOption,
    show: Annotated[
        str, typer.Option(help="oncall (pages and MTTR per team) or adoption.")
    ] = "oncall",
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """On-call load and MTTR per team, or framework adoption, per quarter."""
    from finops.analytics.process import adoption, oncall_load
    from finops.analytics.scope import TeamMapping

    if show not in ("oncall", "adoption"):
        raise FinopsError(f"--show {show!r}: use oncall or adoption")
    ctx = _context(db, config)
    buckets = _quarters(ctx, period)
    stage = ctx.config.scorecard.adopted_stage
    with ctx.warehouse.reader() as conn:
        if show == "oncall":
            table = oncall_load(conn, buckets, TeamMapping.from_config(ctx.config))
            title = f"On-call load and MTTR, {period}"
        else:
            table = adoption(conn, buckets, adopted_stage=stage)
            title = f"Framework adoption (passed {stage!r}), {period}"
    emit(table, fmt, title=title)


# --- analytics: allocation, scorecard, forecast, anomalies, budgets, invoices, FX ----------


def _basis(ctx: Context, cost: str | None) -> Any:
    if cost is None:
        return ctx.config.allocation.cost_basis
    if cost not in ("billed", "effective"):
        raise FinopsError(f"--cost {cost!r}: use billed or effective")
    return cost


CostOption = Annotated[
    str | None,
    typer.Option(
        help="Cost basis: billed (invoice) or effective (amortised); default from finops.yaml."
    ),
]


def _allocated_chargeback(
    ctx: Context, chosen: Period, by: str, grain: str, basis: Any, fmt: OutputFormat
) -> None:
    from finops.analytics.chargeback import Allocation, allocate, allocation_coverage

    if grain not in ("month", "quarter", "period"):
        raise FinopsError(f"--grain {grain!r}: use month, quarter or period")
    allocation = Allocation.from_config(ctx.config)
    with ctx.warehouse.reader() as conn:
        table = allocate(conn, chosen, allocation, by=by, grain=grain, cost=basis)  # type: ignore[arg-type]
        coverage = allocation_coverage(conn, chosen, allocation, grain=grain, cost=basis)  # type: ignore[arg-type]
    footer = None
    if fmt is OutputFormat.table and grain == "period" and table.num_rows:
        (bucket,) = coverage.to_pylist()
        footer = [
            "Total",
            "",
            "",
            f"{bucket['direct']:,.2f}",
            f"{bucket['shared'] + bucket['idle']:,.2f}",
            f"{bucket['bill']:,.2f}",
            "100.00",
        ]
    emit(
        table.drop_columns(["exact_cost"]),
        fmt,
        title=f"Charge-back {chosen.label} ({basis} cost) by {by}, shared cost allocated, "
        f"in {allocation.reporting_currency}",
        footer=footer,
    )
    if fmt is OutputFormat.table:
        emit(
            coverage.select(
                ["period", "bill", "direct", "shared", "idle", "unallocated", "coverage_pct"]
            ),
            fmt,
            title="Allocation coverage (share of the bill attributed directly)",
        )


@app.command("scorecard")
def scorecard_command(
    period: PeriodOption,
    team: Annotated[str | None, typer.Option(help="One team's cost KPIs.")] = None,
    cost: CostOption = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """FinOps KPIs for a period against finops.yaml's kpi_targets (green / amber / red)."""
    from finops.analytics.chargeback import Allocation
    from finops.analytics.kpis import finops_kpis

    ctx = _context(db, config)
    chosen = ctx.period(period)
    with ctx.warehouse.reader() as conn:
        table = finops_kpis(
            conn,
            chosen,
            Allocation.from_config(ctx.config),
            ctx.config.kpi_targets,
            team=team,
            cost=_basis(ctx, cost),
        )
    emit(table, fmt, title=f"FinOps scorecard {chosen.label}" + (f", {team}" if team else ""))


@app.command("forecast")
def forecast_command(
    period: PeriodOption,
    as_of: Annotated[
        str | None, typer.Option(help="Forecast as of this day, YYYY-MM-DD (default: today, UTC).")
    ] = None,
    cost: CostOption = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Spend per team to the end of a month or quarter, with an 80% interval, and the
    variance of the forecast made at the period's start."""
    from finops.analytics.chargeback import Allocation, allocation_history
    from finops.analytics.forecast import forecast, forecast_variance

    ctx = _context(db, config)
    chosen = ctx.period(period)
    now = _as_of(as_of)
    allocation = Allocation.from_config(ctx.config)
    basis = _basis(ctx, cost)
    with ctx.warehouse.reader() as conn:
        # Both read monthly totals of the allocated bill: allocate every month once.
        lines = allocation_history(conn, allocation, cost=basis)
        table = forecast(conn, chosen, allocation, now=now, cost=basis, lines=lines)
        variance = forecast_variance(conn, chosen, allocation, cost=basis, lines=lines)
    emit(table, fmt, title=f"Forecast {chosen.label} as of {now:%Y-%m-%d} (80% interval)")
    if fmt is OutputFormat.table:
        emit(variance, fmt, title=f"{chosen.label}: forecast made at its start vs actual")


def _as_of(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise FinopsError(f"--as-of {text!r}: use a date, YYYY-MM-DD") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


anomalies_app = typer.Typer(
    help="Daily spend far above its last stable week, per team and service.",
    no_args_is_help=True,
)
app.add_typer(anomalies_app, name="anomalies")


@anomalies_app.command("detect")
def anomalies_detect(
    period: PeriodOption,
    threshold: Annotated[float, typer.Option(help="Standard deviations above the baseline.")] = 3.0,
    min_increase: Annotated[
        float, typer.Option(help="Ignore rises smaller than this (reporting currency).")
    ] = 0.0,
    cost: CostOption = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Check every day of the period and store what is found (open until acknowledged)."""
    from finops.analytics.anomalies import detect_anomalies
    from finops.analytics.chargeback import Allocation

    ctx = _context(db, config)
    chosen = ctx.period(period)
    last = min(chosen.end, datetime.now(UTC).date() + timedelta(days=1)) - timedelta(days=1)
    with ctx.warehouse.reader() as conn:
        found = detect_anomalies(
            conn,
            chosen.start,
            last,
            Allocation.from_config(ctx.config),
            threshold=threshold,
            min_increase=min_increase,
            cost=_basis(ctx, cost),
        )
    stored = ctx.warehouse.store_anomalies(
        found, first_day=chosen.start, last_day=last, now=datetime.now(UTC)
    )
    shown = found.drop_columns(["drivers"]) if fmt is OutputFormat.table else found
    emit(shown, fmt, title=f"Anomalies {chosen.start}..{last}: {stored} stored")


@anomalies_app.command("list")
def anomalies_list(
    state: Annotated[str, typer.Option(help="open, acknowledged or all.")] = "open",
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Stored anomalies, newest first, with what drove them."""
    from finops.analytics.anomalies import list_anomalies

    if state not in ("open", "acknowledged", "all"):
        raise FinopsError(f"--state {state!r}: use open, acknowledged or all")
    ctx = _context(db, config)
    with ctx.warehouse.reader() as conn:
        table = list_anomalies(conn, state)
    emit(table, fmt, title=f"Anomalies ({state})")


@anomalies_app.command("ack")
def anomalies_ack(
    anomaly_id: Annotated[str, typer.Argument(help="The id (or its first 6+ characters).")],
    by: Annotated[str, typer.Option(help="Who acknowledges it.")],
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Acknowledge an anomaly: it leaves the open list."""
    ctx = _context(db, config)
    ctx.warehouse.acknowledge_anomaly(anomaly_id, by=by, now=datetime.now(UTC))
    console.print(f"acknowledged {escape(anomaly_id)} by {escape(by)}")


@app.command("budgets")
def budgets_command(
    period: PeriodOption,
    as_of: Annotated[
        str | None, typer.Option(help="As of this day, YYYY-MM-DD (default: today, UTC).")
    ] = None,
    cost: CostOption = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Budgets against actual and forecast spend; exits 1 when a forecast overruns one."""
    from finops.analytics.budgets import budget_status
    from finops.analytics.chargeback import Allocation

    ctx = _context(db, config)
    chosen = ctx.period(period)
    with ctx.warehouse.reader() as conn:
        table = budget_status(
            conn,
            chosen,
            Allocation.from_config(ctx.config),
            ctx.config.budgets,
            now=_as_of(as_of),
            cost=_basis(ctx, cost),
        )
    emit(table, fmt, title=f"Budgets {chosen.label}")
    if table.num_rows and {"over", "overrun"} & set(table["status"].to_pylist()):
        raise typer.Exit(1)


@app.command("invoices")
def invoices_command(
    period: PeriodOption,
    invoiced: Annotated[
        Path | None,
        typer.Option(help="CSV of the invoices' own totals (columns InvoiceId, amount)."),
    ] = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Billed totals per invoice and month, each month estimated or final (and why)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from finops.analytics.invoices import invoice_tieout

    ctx = _context(db, config)
    expected = None
    if invoiced is not None:
        read = pacsv.read_csv(
            invoiced,
            convert_options=pacsv.ConvertOptions(
                column_types={"InvoiceId": pa.string(), "amount": pa.decimal128(38, 10)}
            ),
        )
        if not {"InvoiceId", "amount"} <= set(read.column_names):
            raise FinopsError(f"{invoiced}: needs the columns InvoiceId and amount")
        expected = pa.table({"invoice_id": read["InvoiceId"], "amount": read["amount"]})
    chosen = ctx.period(period)
    with ctx.warehouse.reader() as conn:
        table = invoice_tieout(conn, chosen, now=datetime.now(UTC), expected=expected)
    emit(table.drop_columns(["exact_billed"]), fmt, title=f"Invoices {chosen.label}")


fx_app = typer.Typer(help="Exchange rates into the reporting currency.", no_args_is_help=True)
app.add_typer(fx_app, name="fx")


@fx_app.command("load")
def fx_load(db: DbOption = None, config: ConfigOption = None) -> None:
    """Store finops.yaml's fx.rates and fx.rates_file in the warehouse (replacing them)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    ctx = _context(db, config)
    fx = ctx.config.fx
    inline = pa.table(
        {
            "from_currency": pa.array([r.from_currency for r in fx.rates], pa.string()),
            "to_currency": pa.array([r.to_currency for r in fx.rates], pa.string()),
            "rate_date": pa.array([r.date for r in fx.rates], pa.date32()),
            "rate": pa.array([r.rate for r in fx.rates], pa.decimal128(38, 10)),
        }
    )
    stored = ctx.warehouse.store_fx_rates("finops.yaml", inline)
    console.print(f"finops.yaml: {stored} rate(s)")
    if fx.rates_file is not None:
        path = fx.rates_file if fx.rates_file.is_absolute() else ctx.config.base_dir / fx.rates_file
        try:
            read = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={"date": pa.date32(), "rate": pa.decimal128(38, 10)}
                ),
            )
        except (OSError, pa.ArrowInvalid) as exc:
            raise FinopsError(f"{path} (fx.rates_file): {exc}") from None
        if not {"from", "to", "date", "rate"} <= set(read.column_names):
            raise FinopsError(f"{path} (fx.rates_file): needs the columns from, to, date, rate")
        table = pa.table(
            {
                "from_currency": read["from"],
                "to_currency": read["to"],
                "rate_date": read["date"],
                "rate": read["rate"],
            }
        )
        console.print(f"{path}: {ctx.warehouse.store_fx_rates(str(path), table)} rate(s)")


# --- actions: apply, warned stops, restores and the audit log ------------------------------

actions_app = typer.Typer(
    help="Warned stops, snoozes and off-hours restores.", no_args_is_help=True
)
audit_app = typer.Typer(
    help="The audit log of every action taken or considered.", no_args_is_help=True
)
app.add_typer(actions_app, name="actions")
app.add_typer(audit_app, name="audit")

ApplyOption = Annotated[
    bool,
    typer.Option(
        "--apply/--dry-run",
        help="Act (--apply), or only show what would happen (--dry-run, the default).",
    ),
]


def _actions(ctx: Context, trigger: str) -> Any:
    """The action runner as the person at this terminal (FINOPS_ACTOR, else the login name)."""
    import getpass

    from finops.actions.runner import Actions

    actor = os.environ.get("FINOPS_ACTOR") or getpass.getuser()
    return Actions(ctx.warehouse, ctx.config, actor=actor, trigger=trigger)


def _duration(text: str) -> timedelta | None:
    """`30m`, `8h` or `2d` as a span; None for anything else."""
    import re

    if match := re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", text):
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return timedelta(**{unit: int(match.group(1))})
    return None


def _moment(text: str, ctx: Context) -> datetime:
    """A date/time, in finops.yaml's time zone unless it names its own."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FinopsError(
            f"{text!r} is not a time: use 8h, 30m, 2d or a date/time like 2026-06-02T09:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ctx.config.tz)


def _print_run(report: Any, fmt: OutputFormat, title: str) -> None:
    import pyarrow as pa

    rows = [
        {
            "recommendation": o.rec_id,
            "policy": o.policy,
            "resource_type": o.target.resource_type if o.target else None,
            "resource": o.target.resource_id if o.target else None,
            "region": (o.target.zone or o.target.region) if o.target else None,
            "action": o.action,
            "result": o.result,
            "reason": o.reason,
        }
        for o in report.outcomes
    ]
    names = [
        "recommendation",
        "policy",
        "resource_type",
        "resource",
        "region",
        "action",
        "result",
        "reason",
    ]
    table = pa.Table.from_pylist(rows, schema=pa.schema([(n, pa.string()) for n in names]))
    emit(table, fmt, title=title)
    if fmt is OutputFormat.table:
        mode = f"[yellow]{escape(report.why_dry)}[/]" if report.dry_run else "[green]applied[/]"
        counts: dict[str, int] = {}
        for outcome in report.outcomes:
            counts[outcome.result] = counts.get(outcome.result, 0) + 1
        summary = ", ".join(f"{n} {r}" for r, n in counts.items()) or "nothing to act on"
        console.print(f"{mode}: {summary}", soft_wrap=True)
        if report.refused:
            console.print(f"[red]refused[/]: {escape(report.refused)}", soft_wrap=True)


@app.command("apply")
def apply_command(
    policy: Annotated[str | None, typer.Option(help="Only this policy's recommendations.")] = None,
    act: ApplyOption = False,
    db: DbOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Act on accepted recommendations and on policies in `mode: auto` (a dry run unless --apply).

    Every target is checked first: policy exclusions, the protection tag, a re-check of
    its newest GPU samples, its live state, and the blast-radius caps. The kill switch
    (actions.enabled: false, or FINOPS_ACTIONS=off) turns --apply into a dry run.
    """
    from finops.scheduler import policy_guards

    ctx = _context(db, config)
    runner = _actions(ctx, "finops apply")
    guards = policy_guards(ctx.warehouse, ctx.config, runner.actor)
    report = runner.apply(
        datetime.now(UTC),
        dry_run=not act,
        policy=policy,
        exclusions=guards.exclusions,
        on_applied=guards.on_applied,
    )
    _print_run(report, fmt, "What would happen" if report.dry_run else "What happened")
    if report.failed:
        raise typer.Exit(1)


@actions_app.command("warn")
def actions_warn(
    policy: Annotated[str | None, typer.Option(help="Only this policy's recommendations.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Post warnings (actions.webhook_url) and schedule stops actions.warn_lead_time from now."""
    ctx = _context(db, config)
    from finops.actions.warn_then_act import schedule_stops

    report = schedule_stops(_actions(ctx, "finops actions warn"), datetime.now(UTC), policy=policy)
    for stop in report.scheduled:
        console.print(
            f"warned: {stop.action_id} will {stop.action} {escape(stop.subject)} at "
            f"{stop.act_at.astimezone(ctx.config.tz):%Y-%m-%d %H:%M %Z}",
            soft_wrap=True,
        )
    for rec_id, why in report.refused:
        errors.print(f"[yellow]not scheduled[/]: {rec_id}: {escape(why)}", soft_wrap=True)
    if not report.scheduled and not report.refused:
        console.print("nothing new to warn about")


@actions_app.command("run-due")
def actions_run_due(
    act: ApplyOption = False,
    db: DbOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Act on warned stops whose time has come (unless snoozed or no longer actionable)."""
    ctx = _context(db, config)
    from finops.actions.warn_then_act import act_on_due
    from finops.scheduler import policy_guards

    runner = _actions(ctx, "finops actions run-due")
    guards = policy_guards(ctx.warehouse, ctx.config, runner.actor)
    report, closed = act_on_due(
        runner,
        datetime.now(UTC),
        dry_run=not act,
        exclusions=guards.exclusions,
        on_applied=guards.on_applied,
    )
    _print_run(report, fmt, "Due stops")
    for stop in closed:
        console.print(
            f"{stop.action_id}: {stop.state}, {escape(stop.outcome or '')}", soft_wrap=True
        )
    if report.failed:
        raise typer.Exit(1)


@actions_app.command("pending")
def actions_pending(
    db: DbOption = None, config: ConfigOption = None, fmt: FormatOption = OutputFormat.table
) -> None:
    """Warned stops waiting for their time, and snoozes still in force."""
    import pyarrow as pa

    ctx = _context(db, config)
    from finops.actions.warn_then_act import pending

    stops = pending(_actions(ctx, "finops actions pending"), datetime.now(UTC))
    rows = [
        {
            "id": s.action_id,
            "recommendation": s.rec_id,
            "policy": s.policy,
            "action": s.action,
            "subject": s.subject,
            "owner": s.owner,
            "act_at": s.act_at,
            "state": s.state,
            "snoozed_until": s.snoozed_until,
        }
        for s in stops
    ]
    schema = pa.schema(
        [
            *[
                (n, pa.string())
                for n in ("id", "recommendation", "policy", "action", "subject", "owner")
            ],
            ("act_at", pa.timestamp("us", tz="UTC")),
            ("state", pa.string()),
            ("snoozed_until", pa.timestamp("us", tz="UTC")),
        ]
    )
    emit(pa.Table.from_pylist(rows, schema=schema), fmt, title="Pending stops")


@actions_app.command("snooze")
def actions_snooze(
    ident: Annotated[str, typer.Argument(help="A scheduled action id, or a recommendation id.")],
    until: Annotated[str, typer.Option(help="8h, 30m, 2d from now, or a date/time.")],
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Cancel a warned stop until a time."""
    ctx = _context(db, config)
    from finops.actions.warn_then_act import snooze

    now = datetime.now(UTC)
    span = _duration(until)
    moment = now + span if span else _moment(until, ctx)
    for stop in snooze(_actions(ctx, "finops actions snooze"), ident, moment, now):
        console.print(
            f"snoozed {stop.action_id} ({escape(stop.subject)}) until "
            f"{stop.snoozed_until.astimezone(ctx.config.tz):%Y-%m-%d %H:%M %Z}",
            soft_wrap=True,
        )


@actions_app.command("restore")
def actions_restore(
    policy: Annotated[str, typer.Option(help="The policy whose stops to give back.")],
    act: ApplyOption = False,
    db: DbOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Start what a policy's runs stopped, with the capacity each had (nothing else)."""
    ctx = _context(db, config)
    report = _actions(ctx, "finops actions restore").restore(
        datetime.now(UTC), policy=policy, dry_run=not act
    )
    _print_run(report, fmt, f"Restore of {policy}")
    if report.failed:
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify(db: DbOption = None, config: ConfigOption = None) -> None:
    """Check the audit log's hash chain and mirror; list intents that never got an outcome."""
    ctx = _context(db, config)
    from finops.actions.audit import AuditLog

    result = AuditLog.from_config(ctx.config, ctx.warehouse).verify()
    for problem in result.problems:
        console.print(f"[red]tampered[/]: {escape(problem)}", soft_wrap=True)
    for intent in result.open_intents:
        console.print(
            f"[yellow]no outcome[/]: entry {intent['seq']} ({intent['action']} "
            f"{escape(str(intent['resource_id']))}, {_cell(intent['occurred_at'])} UTC): "
            "the cloud call may or may not have happened; check the resource",
            soft_wrap=True,
        )
    verdict = "intact" if result.intact else "NOT intact"
    console.print(
        f"audit log {verdict}: {result.entries} entries, {len(result.problems)} problem(s), "
        f"{len(result.open_intents)} intent(s) without an outcome"
    )
    if not result.intact:
        raise typer.Exit(1)


@audit_app.command("list")
def audit_list(
    since: Annotated[
        str | None, typer.Option(help="From this time on: 7d, 8h back, or a date/time.")
    ] = None,
    resource: Annotated[str | None, typer.Option(help="Only this resource id.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Audit entries, oldest first."""
    ctx = _context(db, config)
    from finops.actions.audit import AuditLog

    start = None
    if since is not None:
        span = _duration(since)
        start = datetime.now(UTC) - span if span else _moment(since, ctx)
    table = AuditLog.from_config(ctx.config, ctx.warehouse).find(since=start, resource_id=resource)
    if fmt is OutputFormat.table:
        table = table.drop_columns(["before_state", "after_state"])
    emit(table, fmt, title="Audit log")


@app.command("report")
def report_command(
    period: PeriodOption,
    team: Annotated[
        str | None, typer.Option(help="Only this team's figures (a team of finops.yaml).")
    ] = None,
    formats: Annotated[
        str, typer.Option("--format", "-f", help="Comma-separated: html, pdf, xlsx.")
    ] = "html,pdf,xlsx",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for the files (default: reports/out/)."),
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Build the review report for a period (HTML, PDF, XLSX) from the templates in reports/."""
    from finops.reports import build_report

    ctx = _context(db, config)
    folder = out or ctx.config.base_dir / "reports" / "out"
    written = build_report(
        ctx.warehouse,
        ctx.config,
        ctx.period(period),
        team,
        formats.split(","),
        folder,
        datetime.now(UTC),
    )
    for path in written:
        console.print(f"wrote {path}")


def main() -> None:
    try:
        app()
    except FinopsError as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
