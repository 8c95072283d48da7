"""The demo organisation as the app tests see it: the session's `finops demo` run (three
months of billing, GPU metrics, delivery events and the policy engine's recommendations)
with access rules for a lead, finance and an admin (see `app_demo` in conftest.py)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from streamlit.testing.v1 import AppTest

from finops.app import ENTRY_POINT
from finops.app import PAGES as APP_PAGES
from tests.conftest import DemoRun

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


def build(demo_run: DemoRun, root: Path) -> AppDemo:
    """The session's demo run (billing, GPU metrics, delivery events, recommendations as of
    NOW) seen through a config with OIDC access rules."""
    assert demo_run.months == MONTHS
    return AppDemo(demo_run.warehouse.path, write_config(root / "config", OIDC_ACCESS))


PAGES: tuple[str, ...] = tuple(spec.module for spec in APP_PAGES)
"""Every page's module, as `AppTest.switch_page` names it."""
MONTH = "2026-09"


def open_app(email: str, page: str = "overview", **filters: str) -> AppTest:
    app = AppTest.from_file(str(ENTRY_POINT), default_timeout=120)
    app.user = {"is_logged_in": True, "email": email}
    for key, value in {"period": MONTH, **filters}.items():
        app.query_params[key] = value
    app.run()
    if page != "overview":
        app.switch_page(f"{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app
