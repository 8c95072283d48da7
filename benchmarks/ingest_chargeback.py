"""Benchmark: ingest a 10 M-row FOCUS Parquet and run a quarter's charge-back (DESIGN.md budgets).

Each step runs in its own process so its peak RSS is its own. Printed figures:
- baseline: DuckDB's own `CREATE TABLE AS SELECT * FROM read_parquet(...)` of the file;
- ingest: `finops` validating, checksumming and ingesting the same file (budget: at most
  2x the baseline, peak RSS under 2 GB);
- charge-back: a fiscal quarter by team with the allocation tag aliases, warm (budget: 1 s);
- allocation: the same quarter with finops.yaml's shared-cost rules applied (budget: 1 s),
  and its ratio to the direct charge-back measured in the same run.

Usage: python benchmarks/ingest_chargeback.py [--rows 10000000] [--workdir benchmarks/out]
       python benchmarks/ingest_chargeback.py --chargeback-only benchmarks/out/ingest-1.duckdb
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import run_step

STEP = {
    "generate": """
        import time, pyarrow.parquet as pq
        from datetime import date
        from finops.demo import focus_table
        started = time.perf_counter()
        table = focus_table(ROWS, seed=11, start=date(2026, 4, 1), months=3)
        pq.write_table(table, PARQUET, row_group_size=1_000_000)
        result = {"seconds": time.perf_counter() - started, "rows": table.num_rows}
    """,
    "baseline": """
        import time, duckdb
        conn = duckdb.connect(DB)
        started = time.perf_counter()
        conn.execute(f"CREATE TABLE cost AS SELECT * FROM read_parquet('{PARQUET}')")
        result = {"seconds": time.perf_counter() - started}
        conn.close()
    """,
    "ingest": """
        import time
        from pathlib import Path
        from finops.collectors.focus import read_focus
        from finops.warehouse import Warehouse
        started = time.perf_counter()
        outcome = Warehouse(Path(DB)).ingest_cost(
            lambda: read_focus(PARQUET), source="bench", collector="focus", uri=PARQUET
        )
        result = {"seconds": time.perf_counter() - started, "rows": outcome.rows, "status": outcome.status}
    """,
    "chargeback": """
        import time
        from pathlib import Path
        from finops.analytics.chargeback import chargeback, parse_dimensions
        from finops.config import load_config
        from finops.periods import parse_period
        from finops.warehouse import Warehouse
        config = load_config(Path(CONFIG))
        dims = parse_dimensions("team", config.allocation, config.teams)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            with Warehouse(Path(DB)).reader() as conn:
                table = chargeback(conn, parse_period("2026-Q2"), dims)
            timings.append(time.perf_counter() - started)
        result = {"cold": timings[0], "seconds": min(timings[1:]), "groups": table.num_rows}
    """,
    "allocation": """
        import time
        from decimal import Decimal
        from pathlib import Path
        from finops.analytics.chargeback import Allocation, allocate, period_total
        from finops.config import load_config
        from finops.periods import parse_period
        from finops.warehouse import Warehouse
        config = load_config(Path(CONFIG))
        allocation = Allocation.from_config(config)
        quarter = parse_period("2026-Q2")
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            with Warehouse(Path(DB)).reader() as conn:
                table = allocate(conn, quarter, allocation, cost="effective")
            timings.append(time.perf_counter() - started)
        with Warehouse(Path(DB)).reader() as conn:
            (bill,) = period_total(conn, quarter, "effective").values()
        exact = sum(table["exact_cost"].to_pylist(), Decimal(0)) == bill
        result = {"cold": timings[0], "seconds": min(timings[1:]), "groups": table.num_rows,
                  "rules": len(allocation.rules), "adds_up": exact}
    """,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument(
        "--chargeback-only",
        type=Path,
        metavar="DB",
        help="Only time the charge-backs on an already ingested warehouse (e.g. ingest-1.duckdb).",
    )
    args = parser.parse_args()
    config = str(Path(__file__).resolve().parents[1])
    if args.chargeback_only:
        _print_chargebacks(str(args.chargeback_only), config)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    parquet = str((args.workdir / f"focus-{args.rows}.parquet").resolve())

    if not Path(parquet).exists():
        made = run_step(STEP["generate"], ROWS=args.rows, PARQUET=parquet)
        print(
            f"generate  {made['rows']:>12,} rows   {made['seconds']:7.2f} s   peak RSS {made['peak_rss_mb']:7.0f} MB"
        )
    size_mb = Path(parquet).stat().st_size / 2**20
    print(f"file      {parquet} ({size_mb:,.0f} MB)")

    results = {}
    for step in ("baseline", "ingest"):
        timings = []
        for attempt in range(2):  # the second run is the warm one (OS file cache)
            db = args.workdir / f"{step}-{attempt}.duckdb"
            for stale in (db, db.with_suffix(".duckdb.wal")):
                stale.unlink(missing_ok=True)
            timings.append(run_step(STEP[step], PARQUET=parquet, DB=str(db)))
        results[step] = timings[-1]
    base, ingest = results["baseline"], results["ingest"]
    ratio = ingest["seconds"] / base["seconds"]
    print(
        f"baseline  CTAS read_parquet      {base['seconds']:7.2f} s   peak RSS {base['peak_rss_mb']:7.0f} MB"
    )
    print(
        f"ingest    finops ingest focus    {ingest['seconds']:7.2f} s   peak RSS {ingest['peak_rss_mb']:7.0f} MB"
    )
    print(
        f"ratio     ingest / baseline      {ratio:7.2f}     (budget <= 2.00)  {'OK' if ratio <= 2 else 'OVER'}"
    )
    rss_ok = ingest["peak_rss_mb"] < 2048
    print(
        f"memory    ingest peak RSS        {ingest['peak_rss_mb']:7.0f} MB  (budget < 2048)  {'OK' if rss_ok else 'OVER'}"
    )
    _print_chargebacks(str(args.workdir / "ingest-1.duckdb"), config)


def _print_chargebacks(db: str, config: str) -> None:
    """Time a quarter's direct charge-back and the one with finops.yaml's shared-cost rules."""
    charge = run_step(STEP["chargeback"], DB=db, CONFIG=config)
    warm_ok = charge["seconds"] < 1
    print(
        f"chargeback quarter by team, warm {charge['seconds']:7.3f} s   (cold {charge['cold']:.3f} s; "
        f"budget < 1 s)  {'OK' if warm_ok else 'OVER'}"
    )
    allocated = run_step(STEP["allocation"], DB=db, CONFIG=config)
    ratio = allocated["seconds"] / charge["seconds"]
    print(
        f"allocation  same, {allocated['rules']} shared-cost rules, warm {allocated['seconds']:7.3f} s   "
        f"(cold {allocated['cold']:.3f} s; {ratio:.2f}x the direct one; budget < 1 s)  "
        f"{'OK' if allocated['seconds'] < 1 else 'OVER'}; adds up to the bill: {allocated['adds_up']}"
    )


if __name__ == "__main__":
    main()
