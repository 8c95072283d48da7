"""Benchmark: the demo organisation's quarterly report in HTML, PDF and XLSX (DESIGN.md budget).

Each step runs in its own process. Printed figures:
- baseline: the analytics calls the report makes (allocation by quarter and by month,
  coverage, forecast variance, KPIs, services, GPU usage, ROI, DORA, anomalies), bare;
- report: `build_report` writing all three formats (budget: under 30 s), and its ratio to
  the baseline (the part that holds on a noisy machine).

The demo (6 months ending 2026-09, with its delivery events, anomalies and
recommendations; the report on 2026-Q3) is generated once into the workdir and reused. Usage: python benchmarks/report.py [--workdir benchmarks/out/report]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from harness import run_step

REPO = Path(__file__).resolve().parents[1]

STEP = {
    "baseline": """
        import time
        from datetime import UTC, datetime
        from pathlib import Path
        from finops.analytics.anomalies import list_anomalies
        from finops.analytics.chargeback import (
            Allocation, allocate, allocation_coverage, chargeback, parse_dimensions)
        from finops.analytics.dora import DeliveryScope, dora, load_bands
        from finops.analytics.forecast import forecast_variance
        from finops.analytics.gpu import GpuAttribution, gpu_usage
        from finops.analytics.kpis import finops_kpis
        from finops.analytics.roi import roi
        from finops.config import load_config
        from finops.periods import parse_period
        from finops.warehouse import Warehouse
        config = load_config(Path(CONFIG))
        allocation = Allocation.from_config(config)
        attribution = GpuAttribution.from_config(config)
        quarter, both = parse_period("2026-Q3"), parse_period("2026-04-01..2026-09-30")
        started = time.perf_counter()
        with Warehouse(Path(DB)).reader() as conn:
            allocate(conn, both, allocation, grain="month", cost="effective")
            allocate(conn, quarter, allocation, cost="effective")
            allocation_coverage(conn, quarter, allocation, cost="effective")
            forecast_variance(conn, quarter, allocation, cost="effective")
            finops_kpis(conn, quarter, allocation, config.kpi_targets, cost="effective")
            chargeback(conn, quarter, parse_dimensions("service", config.allocation, config.teams),
                       cost="effective")
            gpu_usage(conn, quarter, "cluster", attribution)
            gpu_usage(conn, quarter, "day", attribution)
            roi(conn, [quarter], allocation=config.allocation, teams=config.teams,
                cost_basis="effective", sharing=allocation)
            bands = load_bands(config.scorecard.dora_bands)
            dora(conn, [quarter], bands, scope=DeliveryScope.from_config(config))
            list_anomalies(conn, "all")
        result = {"seconds": time.perf_counter() - started}
    """,
    "report": """
        import time
        from datetime import UTC, datetime
        from pathlib import Path
        from finops.config import load_config
        from finops.reports import build_report
        from finops.warehouse import Warehouse
        config = load_config(Path(CONFIG))
        started = time.perf_counter()
        written = build_report(
            Warehouse(Path(DB)), config, "2026-Q3", None, ["html", "pdf", "xlsx"], Path(OUT),
            datetime(2026, 10, 1, 6, 0, tzinfo=UTC),
        )
        result = {
            "seconds": time.perf_counter() - started,
            "files": {p.name: p.stat().st_size for p in written},
        }
    """,
}


def make_demo(workdir: Path) -> Path:
    """Generate and ingest the demo once (a minute or two): billing, GPU metrics, delivery
    events, anomalies and recommendations, so every section has figures."""
    db = workdir / "warehouse.duckdb"
    if not db.exists():
        subprocess.run(
            [sys.executable, "-c", "from finops.cli import main; main()", "demo",
             "--months", "6", "--end-month", "2026-09", "--data-dir", str(workdir / "demo"),
             "--db", str(db), "--config", str(REPO)],
            check=True,
            env={**os.environ, "COLUMNS": "120"},
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/report"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    db = str(make_demo(args.workdir).resolve())
    config, out = str(REPO), str((args.workdir / "reports").resolve())

    base = run_step(STEP["baseline"], DB=db, CONFIG=config)
    report = run_step(STEP["report"], DB=db, CONFIG=config, OUT=out)
    ratio = report["seconds"] / base["seconds"]
    ok = report["seconds"] < 30
    print(f"baseline  the analytics it calls {base['seconds']:7.2f} s")
    print(
        f"report    html + pdf + xlsx      {report['seconds']:7.2f} s   (budget < 30 s)  "
        f"{'OK' if ok else 'OVER'}   peak RSS {report['peak_rss_mb']:6.0f} MB"
    )
    print(f"ratio     report / baseline      {ratio:7.1f}")
    for name, size in report["files"].items():
        print(f"          {name:<28} {size / 1024:8.0f} KiB")


if __name__ == "__main__":
    main()
