"""How pages get their figures: the warehouse named by the environment, read briefly, cached.

Results are cached per (warehouse file, last ingest, question), so a new ingest shows at
once and repeated views cost nothing. While an ingest holds the file, the opener waits
(see `finops.warehouse.connection`) and the page shows a spinner, never a lock error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import streamlit as st

from finops.analytics.chargeback import chargeback, parse_dimensions
from finops.config import Config, load_config
from finops.periods import Period, parse_period
from finops.warehouse import Warehouse


@st.cache_resource
def settings() -> Config:
    config_dir = os.environ.get("FINOPS_CONFIG")
    return load_config(Path(config_dir) if config_dir else None)


def warehouse() -> Warehouse:
    return Warehouse.from_config(settings())


def last_ingest(wh: Warehouse) -> str:
    """A marker that changes whenever the warehouse changes (cache key)."""
    if not wh.path.exists():
        return "none"
    return str(wh.path.stat().st_mtime_ns)


@st.cache_data(show_spinner=False)
def billing_months(db: str, marker: str) -> list[str]:
    table = Warehouse(Path(db)).query(
        "SELECT DISTINCT strftime(\"BillingPeriodStart\", '%Y-%m') AS m FROM cost_resolved ORDER BY m DESC"
    )
    return table.column("m").to_pylist()


@st.cache_data(show_spinner=False)
def spend_by(db: str, marker: str, period_text: str, by: str, cost: str) -> pa.Table:
    config = settings()
    period = to_period(period_text)
    dims = parse_dimensions(by, config.allocation, config.teams)
    with Warehouse(Path(db)).reader() as conn:
        return chargeback(
            conn,
            period,
            dims,
            cost="billed" if cost == "billed" else "effective",
            unallocated_label=config.allocation.unallocated_label,
        )


def to_period(text: str) -> Period:
    config = settings()
    return parse_period(
        text,
        fiscal_year_start_month=config.fiscal_year_start_month,
        fiscal_year_label=config.fiscal_year_label,
    )
