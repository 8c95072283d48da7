"""Benchmark: ingest a 10 M-row AWS CUR 2.0 Parquet through the aws-cur collector (DESIGN.md budget).

The file is the demo organisation grown to size (`finops.demo.focus_table`, the same FOCUS
Parquet `ingest_chargeback.py` writes, reused when present) written as CUR 2.0 line items
(`finops.demo_exports.aws_cur`), in a local copy of an export's prefix with its manifest.
The FOCUS rows are converted BATCH_ROWS at a time and each batch appended to the CUR file,
so 10 M rows fit in a few GB; a commitment's fee line is then matched with the unused hours
of its own batch only, which changes amounts, not the file's shape. Each step runs in its
own process so its peak RSS is its own. Printed:
- baseline: DuckDB's own `CREATE TABLE AS SELECT * FROM read_parquet(...)` of the file;
- ingest: `finops` reading the manifest, validating, checksumming, mapping CUR to FOCUS
  and ingesting the same file (budget: at most 2x the baseline, peak RSS under 2 GB).

Usage: python benchmarks/ingest_cur.py [--rows 10000000] [--workdir benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import run_step

BATCH_ROWS = 500_000
"""FOCUS rows converted to CUR line items at a time (about 1.5 GB of peak memory)."""

STEP = {
    "focus": """
        import time, pyarrow.parquet as pq
        from datetime import date
        from finops.demo import focus_table
        started = time.perf_counter()
        table = focus_table(ROWS, seed=11, start=date(2026, 4, 1), months=3)
        pq.write_table(table, FOCUS, row_group_size=1_000_000)
        result = {"seconds": time.perf_counter() - started, "rows": table.num_rows}
    """,
    "generate": """
        import time, pyarrow as pa, pyarrow.parquet as pq
        from finops.demo_exports import aws_cur
        started = time.perf_counter()
        rows, writer = 0, None
        for batch in pq.ParquetFile(FOCUS).iter_batches(batch_size=BATCH_ROWS):
            lines = aws_cur(pa.Table.from_batches([batch]))
            if writer is None:
                writer = pq.ParquetWriter(PARQUET, lines.schema)
            writer.write_table(lines.cast(writer.schema))
            rows += lines.num_rows
        writer.close()
        result = {"seconds": time.perf_counter() - started, "rows": rows}
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
        from finops.collectors.aws_cur import read_cur
        from finops.warehouse import Warehouse
        started = time.perf_counter()
        outcome = Warehouse(Path(DB)).ingest_cost(
            lambda: read_cur(PREFIX), source="bench", collector="aws-cur", uri=PREFIX
        )
        result = {"seconds": time.perf_counter() - started, "rows": outcome.rows, "status": outcome.status}
    """,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    prefix = (args.workdir / f"cur-{args.rows}").resolve()
    period = "BILLING_PERIOD=2026-04"
    data = prefix / "bench-cur" / "data" / period / "exec-1"
    data.mkdir(parents=True, exist_ok=True)
    parquet = data / "bench-cur-00001.snappy.parquet"
    manifest = prefix / "bench-cur" / "metadata" / period / "bench-cur-Manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    listed = f"s3://bench/cur/bench-cur/data/{period}/exec-1/{parquet.name}"
    manifest.write_text(json.dumps({"executionId": "exec-1", "dataFiles": [listed]}))

    focus = (args.workdir / f"focus-{args.rows}.parquet").resolve()
    if not focus.exists():
        made = run_step(STEP["focus"], ROWS=args.rows, FOCUS=str(focus))
        print(
            f"focus     {made['rows']:>12,} rows   {made['seconds']:7.2f} s   peak RSS {made['peak_rss_mb']:7.0f} MB"
        )
    if not parquet.exists():
        partial = parquet.with_suffix(".partial")
        made = run_step(
            STEP["generate"], FOCUS=str(focus), PARQUET=str(partial), BATCH_ROWS=BATCH_ROWS
        )
        partial.rename(parquet)
        print(
            f"generate  {made['rows']:>12,} lines  {made['seconds']:7.2f} s   peak RSS {made['peak_rss_mb']:7.0f} MB"
        )
    size_mb = parquet.stat().st_size / 2**20
    print(f"file      {parquet} ({size_mb:,.0f} MB)")

    results = {}
    for step in ("baseline", "ingest"):
        timings = []
        for attempt in range(2):  # the second run is the warm one (OS file cache)
            db = args.workdir / f"cur-{step}-{attempt}.duckdb"
            for stale in (db, db.with_suffix(".duckdb.wal")):
                stale.unlink(missing_ok=True)
            values = {"PARQUET": str(parquet), "PREFIX": str(prefix), "DB": str(db)}
            timings.append(run_step(STEP[step], **values))
        results[step] = timings[-1]

    base, ingest = results["baseline"], results["ingest"]
    ratio = ingest["seconds"] / base["seconds"]
    print(
        f"baseline  CTAS read_parquet      {base['seconds']:7.2f} s   peak RSS {base['peak_rss_mb']:7.0f} MB"
    )
    print(
        f"ingest    finops ingest aws-cur  {ingest['seconds']:7.2f} s   peak RSS {ingest['peak_rss_mb']:7.0f} MB"
        f"   ({ingest['rows']:,} rows, {ingest['status']})"
    )
    print(
        f"ratio     ingest / baseline      {ratio:7.2f}     (budget <= 2.00)  {'OK' if ratio <= 2 else 'OVER'}"
    )
    rss_ok = ingest["peak_rss_mb"] < 2048
    print(
        f"memory    ingest peak RSS        {ingest['peak_rss_mb']:7.0f} MB  (budget < 2048)  {'OK' if rss_ok else 'OVER'}"
    )


if __name__ == "__main__":
    main()
