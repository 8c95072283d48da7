"""The Streamlit app under streamlit.testing: the figures shown are the analytics' figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from finops.app import ENTRY_POINT
from finops.collectors.focus import read_focus
from finops.warehouse import Warehouse
from tests.conftest import JUNE_ROWS, MAY_ROWS, write_csv

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "wh.duckdb"
    monkeypatch.setenv("FINOPS_DB", str(db))
    monkeypatch.setenv("FINOPS_CONFIG", str(REPO))
    return db


def run_app() -> AppTest:
    app = AppTest.from_file(str(ENTRY_POINT), default_timeout=30)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_empty_warehouse_says_which_command_to_run(app_env: Path) -> None:
    app = run_app()
    assert "Run `finops demo`" in app.info[0].value


def test_spend_by_team_shows_the_charge_back_figures(app_env: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bill.csv", [*MAY_ROWS, *JUNE_ROWS])
    Warehouse(app_env).ingest_cost(
        lambda: read_focus(str(path)), source="aws", collector="focus", uri="bill"
    )

    app = run_app()

    assert app.selectbox(key="period").options == ["2026-06", "2026-05"]
    assert app.metric[0].value == "200.99 USD"
    app.selectbox(key="period").set_value("2026-05").run()
    assert app.metric[0].value == "169.96 USD"  # effective: the repository's configured basis
    app.radio(key="cost").set_value("billed").run()
    assert app.metric[0].value == "175.01 USD"
    shown = app.dataframe[0].value
    assert dict(zip(shown["team"], shown["cost"], strict=True)) == {
        "vision": 150.35,
        "ml-platform": 20.0,
        "(unallocated)": 4.66,
    }
    app.radio(key="cost").set_value("effective").run()
    assert app.metric[0].value == "169.96 USD"
