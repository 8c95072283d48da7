"""The demo organisation as the app tests see it: three months of billing, GPU metrics,
delivery events and the policy engine's recommendations, with access rules for a lead,
finance and an admin. Built once per test session (see `app_demo` in conftest.py)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from finops import demo as demo_data
from finops.collectors import focus
from finops.collectors.dcgm import read_openmetrics
from finops.collectors.events import read_events
from finops.config import load_config
from finops.demo_delivery import generate_delivery
from finops.periods import parse_period
from finops.policies import engine
from finops.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
MONTHS = ("2026-07", "2026-08", "2026-09")
NOW = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
"""The demo's "today": the day after its last month."""
LEAD = "lead@example.com"
LEAD_TEAM = "vision"
FINANCE = "finance@example.com"
ADMIN = "admin@example.com"


@dataclass(frozen=True)
class AppDemo:
    db: Path
    config_dir: Path
    """A finops.yaml (the repository's, with an access section for OIDC users)."""


def write_config(folder: Path, access: dict) -> Path:
    """The repository's finops.yaml with `access` added, and its policy pack, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = yaml.safe_load((REPO / "finops.yaml").read_text())
    settings["access"] = access
    (folder / "finops.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    if not (folder / "policies").exists():
        shutil.copytree(REPO / "policies", folder / "policies")
    return folder


OIDC_ACCESS = {
    "mode": "oidc",
    "users": {
        LEAD: {"role": "lead", "teams": [LEAD_TEAM]},
        FINANCE: {"role": "finance"},
        ADMIN: {"role": "admin"},
    },
}


def build(root: Path) -> AppDemo:
    files = demo_data.generate(
        root / "data", seed=7, months=len(MONTHS), end_month=parse_period(MONTHS[-1]).start
    )
    wh = Warehouse(root / "warehouse.duckdb")
    for path in (files.aws_dir, files.gcp_dir):
        wh.ingest_cost(
            lambda path=path: focus.read_focus(str(path)),
            source=path.name,
            collector="focus",
            uri=str(path),
        )
    metrics = str(files.gpu_openmetrics_dir)
    wh.ingest_gpu(
        lambda: read_openmetrics(metrics), source="dcgm", collector="openmetrics", uri=metrics
    )
    events = root / "events"
    generate_delivery(events, months=tuple(files.months), seed=7)
    wh.ingest_events(
        lambda: read_events(str(events)), source="events", collector="events", uri=str(events)
    )
    config_dir = write_config(root / "config", OIDC_ACCESS)
    engine.run(wh, load_config(config_dir), NOW)
    return AppDemo(wh.path, config_dir)
