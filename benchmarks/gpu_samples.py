"""Benchmark: ingest 1,000 GPUs x 30 days of 1-minute samples (43.2 M) and roll them up hourly.

The samples are written as the GPU agent's Parquet spool files (one per day, generated with
numpy), then ingested through `finops ingest gpu-spool`'s code path into a fresh
warehouse, which validates them, replaces each node's window and computes the hourly
rollups. Each step runs in its own process, so its peak RSS is its own. The baseline is
DuckDB's own `CREATE TABLE AS SELECT * FROM read_parquet(...)` of the same files.

Usage: python benchmarks/gpu_samples.py [--gpus 1000] [--days 30] [--workdir benchmarks/out]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import run_step

STEP = {
    "generate": """
        import time
        from datetime import UTC, datetime
        from pathlib import Path
        import numpy as np, pyarrow as pa, pyarrow.parquet as pq
        started = time.perf_counter()
        rng = np.random.default_rng(5)
        gpus_per_node = 8
        nodes = GPUS // gpus_per_node
        base = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp())
        busy = rng.random(GPUS) < 0.7  # 30% of GPUs idle all month
        out = Path(SPOOL); out.mkdir(parents=True, exist_ok=True)
        for day in range(DAYS):
            minutes = np.arange(1440, dtype=np.int64)
            ts = np.repeat(base + day * 86400 + minutes * 60, GPUS)
            gpu = np.tile(np.arange(GPUS), 1440)
            util = np.where(busy[gpu], rng.uniform(20, 100, gpu.size), rng.uniform(0, 3, gpu.size))
            table = pa.table({
                "ts": pa.array(ts * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                "node": pa.array(np.char.add("node-", (gpu // gpus_per_node).astype(str))),
                "gpu_index": pa.array((gpu % gpus_per_node).astype(np.int32)),
                "gpu_uuid": pa.array(np.char.add("GPU-", gpu.astype(str))),
                "model": pa.array(np.full(gpu.size, "NVIDIA H100 80GB HBM3")),
                "gpu_util_pct": pa.array(util.round(1)),
                "mem_used_mib": pa.array(np.where(busy[gpu], 60000.0, 3.0)),
                "mem_total_mib": pa.array(np.full(gpu.size, 81559.0)),
                "power_w": pa.array(np.where(busy[gpu], 550.0, 70.0)),
            })
            pq.write_table(table, out / f"gpu-day-{day:02d}.parquet", row_group_size=1_000_000)
        result = {"seconds": time.perf_counter() - started, "rows": GPUS * 1440 * DAYS}
    """,
    "baseline": """
        import time, duckdb
        conn = duckdb.connect(DB)
        started = time.perf_counter()
        conn.execute(f"CREATE TABLE gpu_samples AS SELECT * FROM read_parquet('{SPOOL}/*.parquet')")
        result = {"seconds": time.perf_counter() - started}
    """,
    "ingest": """
        import time
        from pathlib import Path
        from finops.collectors.gpu_spool import read_gpu_spool
        from finops.warehouse import Warehouse
        warehouse = Warehouse(Path(DB))
        started = time.perf_counter()
        outcome = warehouse.ingest_gpu(
            lambda: read_gpu_spool(SPOOL), source="gpu-spool", collector="gpu-spool", uri=SPOOL
        )
        hourly = warehouse.query("SELECT count(*) AS n, count(*) FILTER (WHERE idle) AS idle FROM gpu_hourly")
        result = {
            "seconds": time.perf_counter() - started,
            "rows": outcome.rows,
            "hours": hourly.column("n")[0].as_py(),
            "idle_hours": hourly.column("idle")[0].as_py(),
        }
    """,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    spool = (args.workdir / f"gpu-spool-{args.gpus}x{args.days}").resolve()
    if not spool.exists():
        made = run_step(STEP["generate"], GPUS=args.gpus, DAYS=args.days, SPOOL=str(spool))
        print(f"generate   {made['rows']:>12,} samples   {made['seconds']:7.2f} s")
    results = {}
    for step in ("baseline", "ingest"):
        db = args.workdir / f"gpu-{step}.duckdb"
        for stale in (db, db.with_suffix(".duckdb.wal")):
            stale.unlink(missing_ok=True)
        results[step] = run_step(STEP[step], SPOOL=str(spool), DB=str(db))
    base, ingest = results["baseline"], results["ingest"]
    print(
        f"baseline   CTAS read_parquet       {base['seconds']:7.2f} s   peak RSS {base['peak_rss_mb']:6.0f} MB"
    )
    print(
        f"ingest     finops gpu-spool        {ingest['seconds']:7.2f} s   peak RSS "
        f"{ingest['peak_rss_mb']:6.0f} MB   ({ingest['rows']:,} samples, {ingest['hours']:,} GPU-hours, "
        f"{ingest['idle_hours']:,} idle)"
    )
    print(f"ratio      ingest / baseline       {ingest['seconds'] / base['seconds']:7.2f}")


if __name__ == "__main__":
    main()
