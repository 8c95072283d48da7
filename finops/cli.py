"""The `finops` command: parse, call the library, print (table | csv | json).

This is one of the two places (with the scheduler) that wires a collector to the
warehouse. Every command takes `--db PATH` and `--config DIR`; errors we raise on purpose
print as one clear message and exit with status 2.
"""

from __future__ import annotations

import json
import os
import shutil
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
        GpuDelivery,
        GpuIngestResult,
        IngestResult,
        InventoryResult,
        ResourceSnapshot,
        Warehouse,
    )

    # What running a source gives: a cost ingest, a GPU ingest, an inventory refresh, or
    # nothing (a Prometheus source with nothing new since its last run).
    SourceResult = IngestResult | GpuIngestResult | InventoryResult | None

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
            with _aws_profile(source.aws_profile):
                rows, billed = _rows_and_billed(_run_source(ctx, _resolved(ctx, source)))
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


def _resolved(ctx: Context, source: SourceManifest) -> SourceManifest:
    """A manifest's relative path is relative to the folder holding finops.yaml."""
    location = source.uri
    if not location or "://" in location or Path(location).is_absolute():
        return source
    return source.model_copy(update={"uri": str(ctx.config.base_dir / location)})


def _rows_and_billed(result: SourceResult) -> tuple[int, Decimal | None]:
    from finops.warehouse import GpuIngestResult, IngestResult

    if result is None:
        return 0, None
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
    from finops.warehouse import GpuIngestResult, IngestResult

    if result is None:
        console.print(f"[bold]{name}[/]: nothing new since the last run")
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
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Store prices per instance type, region and purchase option (billing, EC2 spot, Price List)."""
    from finops.collectors.prices import aws_ondemand_prices, aws_spot_prices, observed_prices

    ctx = _context(db, config)
    with ctx.warehouse.reader() as conn:
        ((until,),) = conn.execute('SELECT max("ChargePeriodEnd") FROM cost_resolved').fetchall()
        until = until or datetime.now(UTC)
        observed = observed_prices(
            conn, since=until - timedelta(days=days), until=until, as_of=until.date()
        )
        types = conn.execute(
            """SELECT DISTINCT "x_InstanceType" FROM cost_resolved
               WHERE "ProviderName" = 'AWS' AND "x_InstanceType" IS NOT NULL
                 AND "x_InstanceType" NOT LIKE 'ml.%'"""
        ).fetchall()
    stored = ctx.warehouse.store_prices(observed)
    console.print(f"[bold]billing[/]: {stored:,} observed prices as of {observed.as_of}")
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
    from finops.analytics.gpu import GpuAttribution, gpu_usage, unmatched_gpu_instances

    ctx = _context(db, config)
    chosen = ctx.period(period)
    attribution = GpuAttribution.from_config(ctx.config)
    with ctx.warehouse.reader() as conn:
        table = gpu_usage(conn, chosen, by, attribution)
        silent = unmatched_gpu_instances(conn, chosen, attribution) if unmatched else None
    threshold = ctx.config.gpu.idle_threshold_pct
    emit(table, fmt, title=f"GPU fleet {chosen.label} (idle: utilisation under {threshold:g}%)")
    if silent is not None:
        emit(silent, fmt, title="Billed GPU instances that sent no samples")


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
    from finops.collectors import focus
    from finops.collectors.dcgm import read_openmetrics
    from finops.collectors.nvidia_smi import read_nvidia_smi
    from finops.periods import parse_period

    ctx = _context(db, config)
    last = parse_period(end_month).start if end_month else None
    files = demo_data.generate(data_dir, seed=seed, months=months, end_month=last)
    console.print(
        f"generated {files.rows:,} rows for {files.months[0]:%Y-%m}..{files.months[-1]:%Y-%m} in {data_dir}"
    )
    for path in (files.aws_dir, files.gcp_dir, files.restated_dir):
        location = str(path)
        source = focus.default_source(str(files.aws_dir if path == files.restated_dir else path))
        _print_ingest(
            ctx.warehouse.ingest_cost(
                lambda location=location: focus.read_focus(location),
                source=source,
                collector="focus",
                uri=location,
            )
        )
    # As a provider's re-delivery does, the restated month now replaces the original files,
    # so the folder the manifests point at holds the latest delivery of every month.
    month_dir = files.aws_dir / files.restated_dir.name
    shutil.rmtree(month_dir)
    shutil.copytree(files.restated_dir, month_dir)
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
    quarter = _last_full_quarter(ctx, files.months[-1])
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
