"""First-render time of every app page, through streamlit.testing (budget: 2 s on the demo,
5 s on a 10 M-row warehouse; DESIGN.md).

    python benchmarks/app_pages.py --db .finops/warehouse.duckdb [--period 2026-09]
    python benchmarks/app_pages.py --db benchmarks/out/ingest-1.duckdb --budget 5

Each page is opened in a fresh AppTest (cold caches) and timed from the run's start to its
end: the figures include the queries, not the browser's drawing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=REPO / ".finops" / "warehouse.duckdb")
    parser.add_argument("--config", type=Path, default=REPO)
    parser.add_argument("--period", default=None, help="default: the newest billing month")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per page")
    args = parser.parse_args()
    if not args.db.exists():
        print(f"{args.db}: no warehouse; run `finops demo` first", file=sys.stderr)
        return 2
    os.environ["FINOPS_DB"] = str(args.db.resolve())
    os.environ["FINOPS_CONFIG"] = str(args.config.resolve())
    from finops.app import ENTRY_POINT, PAGES

    over = 0
    print(f"{'page':<22}{'first render s':>16}{'warm s':>10}  budget {args.budget:g} s")
    for page in (spec.module for spec in PAGES):
        app = AppTest.from_file(str(ENTRY_POINT), default_timeout=600)
        if args.period:
            app.query_params["period"] = args.period
        app.run()  # the overview, to register the pages
        st.cache_data.clear()
        started = time.perf_counter()
        app.switch_page(f"{page}.py").run()
        first = time.perf_counter() - started
        started = time.perf_counter()
        app.run()
        warm = time.perf_counter() - started
        failed = " EXCEPTION" if app.exception else ""
        flag = "" if first <= args.budget else "  over budget"
        over += first > args.budget
        print(f"{page:<22}{first:>16.2f}{warm:>10.2f}{flag}{failed}")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
