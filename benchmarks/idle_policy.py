"""Benchmark: the idle-cluster policy over 1,000 GPUs x 30 days of 1-minute samples (43.2 M).

DESIGN.md's budget: under 10 s. The fleet is 125 nodes of 8 GPUs in 16 clusters; four
clusters (`IDLE_CLUSTERS`) idle all month (GPU_UTIL 0-3%), the rest busy (20-100%). The
samples carry their cluster and instance id, written as the GPU agent's Parquet spool (one
file a day); the nodes' bill is a FOCUS Parquet with a row per instance and day, tagged
with the cluster. Both go in through the warehouse's own ingest paths (once: a later run
reuses the warehouse). Then, each in its own process so its time and peak RSS are its own:
- baseline: DuckDB's bare `SELECT cluster, quantile_cont(gpu_util_pct, 0.95) FROM
  gpu_samples GROUP BY cluster` on the same file, under the same memory limit;
- policy: `finops.policies.engine.evaluate` of one idle-cluster policy over the 30 days,
  which must find exactly the idle clusters.

Usage: python benchmarks/idle_policy.py [--gpus 1000] [--days 30] [--workdir benchmarks/out]
       [--prepare-only]   (generate and ingest, time nothing: the ingest takes minutes)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import run_step

GPUS_PER_NODE = 8
CLUSTERS = 16
IDLE_CLUSTERS = (3, 7, 11, 14)

STEP = {
    "generate": """
        import time
        from datetime import UTC, datetime, timedelta
        from decimal import Decimal
        from pathlib import Path
        import numpy as np, pyarrow as pa, pyarrow.parquet as pq
        started = time.perf_counter()
        rng = np.random.default_rng(7)
        nodes = GPUS // GPUS_PER_NODE
        node_cluster = np.arange(nodes) % CLUSTERS
        idle_node = np.isin(node_cluster, IDLE_CLUSTERS)
        names = np.char.add("node-", np.char.zfill(np.arange(nodes).astype(str), 3))
        rids = np.char.add("i-", names)
        cluster_names = np.char.add("cluster-", np.char.zfill(node_cluster.astype(str), 2))
        start = datetime(2026, 6, 1, tzinfo=UTC)
        base = int(start.timestamp())
        out = Path(SPOOL); out.mkdir(parents=True, exist_ok=True)
        for day in range(DAYS):
            minutes = np.arange(1440, dtype=np.int64)
            ts = np.repeat(base + day * 86400 + minutes * 60, GPUS)
            gpu = np.tile(np.arange(GPUS), 1440)
            node = gpu // GPUS_PER_NODE
            idle = idle_node[node]
            util = np.where(idle, rng.uniform(0, 3, gpu.size), rng.uniform(20, 100, gpu.size))
            table = pa.table({
                "ts": pa.array(ts * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                "node": pa.array(names[node]),
                "gpu_index": pa.array((gpu % GPUS_PER_NODE).astype(np.int32)),
                "gpu_uuid": pa.array(np.char.add("GPU-", gpu.astype(str))),
                "model": pa.array(np.full(gpu.size, "NVIDIA A100-SXM4-40GB")),
                "resource_id": pa.array(rids[node]),
                "cluster": pa.array(cluster_names[node]),
                "gpu_util_pct": pa.array(util.round(1)),
                "mem_used_mib": pa.array(np.where(idle, 3.0, 30000.0)),
                "mem_total_mib": pa.array(np.full(gpu.size, 40960.0)),
                "power_w": pa.array(np.where(idle, 60.0, 350.0)),
            })
            pq.write_table(table, out / f"gpu-day-{day:02d}.parquet", row_group_size=1_000_000)
        # The bill: one usage row per instance and day, 24 h of p4d.24xlarge at 32.00/h.
        rows = []
        for day in range(DAYS):
            first = start + timedelta(days=day)
            month = datetime(first.year, first.month, 1, tzinfo=UTC)
            next_month = datetime(first.year + first.month // 12, first.month % 12 + 1, 1, tzinfo=UTC)
            for n in range(nodes):
                rows.append({
                    "BillingAccountId": "012345678901", "BillingAccountName": "Bench",
                    "BillingCurrency": "USD", "BillingPeriodStart": month,
                    "BillingPeriodEnd": next_month, "ChargeCategory": "Usage",
                    "ChargePeriodStart": first, "ChargePeriodEnd": first + timedelta(days=1),
                    "BilledCost": Decimal("768"), "EffectiveCost": Decimal("768"),
                    "ListCost": Decimal("768"), "ContractedCost": Decimal("768"),
                    "ServiceName": "Amazon Elastic Compute Cloud", "ServiceCategory": "Compute",
                    "ProviderName": "AWS", "PublisherName": "AWS", "InvoiceIssuerName": "AWS",
                    "ChargeFrequency": "Usage-Based", "SubAccountId": "012345678901",
                    "ResourceId": str(rids[n]), "RegionId": "us-east-1",
                    "x_InstanceType": "p4d.24xlarge", "PricingCategory": "Standard",
                    "PricingQuantity": "24", "PricingUnit": "Hours",
                    "Tags": [("cluster", str(cluster_names[n])), ("team", "research"), ("env", "dev")],
                })
        money = pa.decimal128(38, 10)
        schema = pa.schema([
            (name, money if name.endswith("Cost") else
             pa.timestamp("us", tz="UTC") if name.endswith(("PeriodStart", "PeriodEnd")) else
             pa.map_(pa.string(), pa.string()) if name == "Tags" else pa.string())
            for name in rows[0]
        ])
        pq.write_table(pa.Table.from_pylist(rows, schema), BILL)
        result = {"seconds": time.perf_counter() - started, "rows": GPUS * 1440 * DAYS,
                  "bill_rows": len(rows)}
    """,
    "ingest": """
        import time
        from pathlib import Path
        from finops.collectors.focus import read_focus
        from finops.collectors.gpu_spool import read_gpu_spool
        from finops.warehouse import Warehouse
        warehouse = Warehouse(Path(DB))
        started = time.perf_counter()
        warehouse.ingest_cost(lambda: read_focus(BILL), source="bench", collector="focus", uri=BILL)
        outcome = warehouse.ingest_gpu(
            lambda: read_gpu_spool(SPOOL), source="gpu-spool", collector="gpu-spool", uri=SPOOL
        )
        result = {"seconds": time.perf_counter() - started, "rows": outcome.rows}
    """,
    "baseline": """
        import time, duckdb
        conn = duckdb.connect(DB, read_only=True)
        conn.execute("SET memory_limit = '1GB'")  # the warehouse's default limit
        started = time.perf_counter()
        rows = conn.execute(
            "SELECT cluster, quantile_cont(gpu_util_pct, 0.95) FROM gpu_samples GROUP BY cluster"
        ).fetchall()
        result = {"seconds": time.perf_counter() - started, "clusters": len(rows)}
    """,
    "policy": """
        import time
        from datetime import UTC, datetime, timedelta
        from pathlib import Path
        from finops.config import Config
        from finops.policies.engine import evaluate
        from finops.policies.loader import read_policy_file
        from finops.warehouse import Warehouse
        (loaded,), problems = read_policy_file(Path(POLICY))
        assert not problems, problems
        now = datetime(2026, 6, 1, tzinfo=UTC) + timedelta(days=DAYS, hours=6)
        started = time.perf_counter()
        (evaluation,) = evaluate(Warehouse(Path(DB)), Config(), [loaded], now)
        seconds = time.perf_counter() - started
        result = {
            "seconds": seconds,
            "found": sorted(f.resource_id for f in evaluation.findings),
            "passed_over": len(evaluation.passed_over),
        }
    """,
}

POLICY = """\
policies:
  - name: idle-gpu-clusters
    kind: idle-cluster
    params: {{lookback_days: {days}, statistic: p95, min_coverage_pct: 80}}
    action: stop
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    size = f"{args.gpus}x{args.days}"
    spool, bill = workdir / f"idle-spool-{size}", workdir / f"idle-bill-{size}.parquet"
    db, policy = workdir / f"idle-{size}.duckdb", workdir / f"idle-policy-{args.days}.yaml"
    common = {"GPUS": args.gpus, "DAYS": args.days, "SPOOL": str(spool), "BILL": str(bill)}
    common |= {"GPUS_PER_NODE": GPUS_PER_NODE, "CLUSTERS": CLUSTERS}
    if not bill.exists():
        made = run_step(STEP["generate"], IDLE_CLUSTERS=list(IDLE_CLUSTERS), **common)
        print(
            f"generate   {made['rows']:>12,} samples, {made['bill_rows']:,} bill rows   "
            f"{made['seconds']:7.2f} s"
        )
    if not db.exists():
        loaded = run_step(STEP["ingest"], DB=str(db), **common)
        print(f"ingest     {loaded['rows']:>12,} samples and the bill   {loaded['seconds']:7.2f} s")
    if args.prepare_only:
        return
    policy.write_text(POLICY.format(days=args.days), encoding="utf-8")
    base = run_step(STEP["baseline"], DB=str(db))
    result = run_step(STEP["policy"], DB=str(db), POLICY=str(policy), DAYS=args.days)
    nodes = args.gpus // GPUS_PER_NODE
    expected = sorted(
        f"cluster-{c:02d}" for c in IDLE_CLUSTERS if any(n % CLUSTERS == c for n in range(nodes))
    )
    print(
        f"baseline   DuckDB p95 by cluster       {base['seconds']:7.2f} s   "
        f"peak RSS {base['peak_rss_mb']:6.0f} MB"
    )
    print(
        f"policy     idle-cluster evaluate       {result['seconds']:7.2f} s   "
        f"peak RSS {result['peak_rss_mb']:6.0f} MB   (budget 10 s)"
    )
    print(f"ratio      policy / baseline           {result['seconds'] / base['seconds']:7.2f}")
    verdict = "as generated" if result["found"] == expected else f"EXPECTED {expected}"
    print(f"found      {', '.join(result['found']) or 'nothing'}   ({verdict})")
    if result["found"] != expected:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
