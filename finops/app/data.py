"""How pages get their figures: the configured warehouse, read briefly, results cached.

Results are cached per (warehouse file, its last change, question), so a new ingest shows
at once and repeated views cost nothing. While an ingest holds the file, the opener waits
(see `finops.warehouse.connection`) behind the page's spinner, never showing a lock error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import streamlit as st

from finops.analytics.chargeback import billing_months, chargeback, parse_dimensions
from finops.config import Config, load_config
from finops.periods import Period, parse_period
from finops.warehouse import Warehouse


@st.cache_resource
def settings() -> Config:
    config_dir = os.environ.get("FINOPS_CONFIG")
    return load_config(Path(config_dir) if config_dir else None)


def warehouse() -> Warehouse:
    return Warehouse.from_config(settings())


def last_change(wh: Warehouse) -> str:
    """A marker that changes whenever the warehouse file does (part of every cache key)."""
    return str(wh.path.stat().st_mtime_ns) if wh.path.exists() else "none"


@st.cache_data(show_spinner=False)
def months(db: str, marker: str) -> list[str]:
    with Warehouse.from_config(settings(), Path(db)).reader() as conn:
        return billing_months(conn)


@st.cache_data(show_spinner=False)
def spend_by(db: str, marker: str, period_text: str, by: str, cost: str) -> pa.Table:
    config = settings()
    dims = parse_dimensions(by, config.allocation, config.teams)
    with Warehouse.from_config(config, Path(db)).reader() as conn:
        return chargeback(
            conn,
            to_period(period_text),
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
