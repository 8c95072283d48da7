"""Every page of the app under streamlit.testing, on the demo organisation.

The figures a page shows are the analytics' own figures (computed here by calling them),
the buttons change a recommendation's state through the store, every filter value renders
without an exception (combined pairwise), and a team lead sees only their team's rows on
every page, downloads included. (Every filter value, pairwise: test_app_filters.py.)
"""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from finops.analytics.chargeback import Allocation, allocate, chargeback, parse_dimensions
from finops.analytics.gpu import GpuAttribution, gpu_usage
from finops.app import ENTRY_POINT, data, ui
from finops.config import load_config
from finops.periods import parse_period
from finops.policies import store
from finops.warehouse import Warehouse
from tests.app_demo import ADMIN, FINANCE, LEAD, LEAD_TEAM, MONTH, NOW, PAGES, AppDemo, open_app

pytestmark = pytest.mark.slow


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def money(value: Decimal | float) -> str:
    return f"{value:,.2f} USD"


def test_the_filters_start_from_the_link_and_are_written_back_to_it(demo: AppDemo) -> None:
    app = open_app(FINANCE, provider="AWS", team="vision", environment="prod", cost="billed")
    sidebar = {box.key: box.value for box in app.sidebar.selectbox}
    assert sidebar == {
        "period": MONTH,
        "provider": "AWS",
        "team": "vision",
        "environment": "prod",
        "cost": "billed",
    }
    app.sidebar.selectbox(key="team").set_value("search-ranking").run()
    assert app.query_params["team"] == "search-ranking"
    app.switch_page("gpu_page.py").run()
    assert app.sidebar.selectbox(key="team").value == "search-ranking"  # kept across pages


def test_overview_shows_the_bill_the_previous_month_and_the_forecast(demo: AppDemo) -> None:
    config = load_config(demo.config_dir)
    wh = Warehouse(demo.db)
    dims = parse_dimensions("team", config.allocation, config.teams)
    with wh.reader() as conn:
        september = chargeback(conn, parse_period(MONTH), dims, cost="effective")
        august = chargeback(conn, parse_period("2026-08"), dims, cost="effective")
    app = open_app(FINANCE)
    shown = metrics(app)
    assert shown["Spend, 2026-09"] == money(sum(september["exact_cost"].to_pylist()))
    assert shown["Spend, 2026-08"] == money(sum(august["exact_cost"].to_pylist()))
    variance = data.variance(str(demo.db), data.last_change(wh), MONTH, "effective")
    (total,) = [r for r in variance.to_pylist() if r["team"] == "(total)"]
    assert shown["Forecast made at the start of 2026-09"] == money(total["forecast"])
    # One team: the same figure as the charge-back's row for it.
    app.sidebar.selectbox(key="team").set_value("vision").run()
    (vision,) = [r for r in september.to_pylist() if r["team"] == "vision"]
    assert metrics(app)["Spend, 2026-09"] == money(vision["exact_cost"])


def test_chargeback_shows_the_allocation_by_team_and_cost_centre(demo: AppDemo) -> None:
    config = load_config(demo.config_dir)
    allocation = Allocation.from_config(config)
    with Warehouse(demo.db).reader() as conn:
        by_team = allocate(conn, parse_period(MONTH), allocation, by="team")
        by_centre = allocate(conn, parse_period(MONTH), allocation, by="cost-centre")
    app = open_app(FINANCE, "chargeback_page")
    shown = app.dataframe[0].value
    assert dict(zip(shown["team"], shown["cost"], strict=True)) == {
        r["team"]: float(r["cost"]) for r in by_team.to_pylist()
    }
    app.segmented_control(key="cb_level").set_value("cost_centre").run()
    shown = app.dataframe[0].value
    assert dict(zip(shown["cost_centre"], shown["cost"], strict=True)) == {
        r["cost_centre"]: float(r["cost"]) for r in by_centre.to_pylist()
    }


def test_gpu_fleet_totals_are_the_fleet_join(demo: AppDemo) -> None:
    config = load_config(demo.config_dir)
    with Warehouse(demo.db).reader() as conn:
        fleet = gpu_usage(conn, parse_period(MONTH), "team", GpuAttribution.from_config(config))
    app = open_app(FINANCE, "gpu_page")
    shown = metrics(app)
    assert shown["GPU cost"] == money(sum(fleet["cost"].to_pylist()))
    assert shown["Idle GPU cost"] == money(sum(fleet["idle_cost"].to_pylist()))
    assert (
        shown["Idle GPU-hours"]
        == f"{sum(h or 0 for h in fleet['idle_gpu_hours'].to_pylist()):,.0f}"
    )


def recommendation_states(db: Path) -> dict[str, str]:
    with Warehouse(db).reader() as conn:
        table = store.list_recommendations(conn)
    return dict(zip(table["rec_id"].to_pylist(), table["state"].to_pylist(), strict=True))


def test_buttons_change_a_recommendation_through_the_store(
    app_demo: AppDemo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy of the demo warehouse: these clicks must not change the other tests' figures.
    db = tmp_path / "warehouse.duckdb"
    db.write_bytes(app_demo.db.read_bytes())
    monkeypatch.setenv("FINOPS_DB", str(db))
    monkeypatch.setenv("FINOPS_CONFIG", str(app_demo.config_dir))
    monkeypatch.setattr(data, "clock", lambda: NOW)
    app = open_app(ADMIN, "recommendations_page")
    first, second, third = app.selectbox(key="rec_chosen").options[:3]
    first_id, second_id, third_id = (o.split(" · ")[0] for o in (first, second, third))

    app.selectbox(key="rec_chosen").set_value(first_id).run()
    app.button(key="rec_accept").click().run()
    assert recommendation_states(db)[first_id] == "accepted"
    with Warehouse(db).reader() as conn:
        last = store.history(conn, first_id).to_pylist()[-1]
    assert (last["actor"], last["from_state"], last["to_state"]) == (ADMIN, "open", "accepted")

    app.selectbox(key="rec_chosen").set_value(second_id).run()
    assert app.button(key="rec_dismiss").disabled  # a dismissal needs a reason
    app.text_input(key="rec_reason").input("the cluster is being decommissioned").run()
    app.button(key="rec_dismiss").click().run()
    assert recommendation_states(db)[second_id] == "dismissed"

    app.selectbox(key="rec_chosen").set_value(third_id).run()
    app.date_input(key="rec_until").set_value((NOW + timedelta(days=30)).date()).run()
    app.button(key="rec_snooze").click().run()
    with Warehouse(db).reader() as conn:
        row = [r for r in store.list_recommendations(conn).to_pylist() if r["rec_id"] == third_id]
    assert row[0]["state"] == "snoozed"
    assert row[0]["snoozed_until"].date() == (NOW + timedelta(days=30)).date()
    # What the page shows follows at once (the cache is keyed by the file's last change).
    assert not app.exception
    assert "accepted" in list(app.dataframe[0].value["state"])


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Every file the app offers for download in a run, by name."""
    offered: dict[str, bytes] = {}
    keep = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):  # type: ignore[no-untyped-def]
        if filename and isinstance(path_or_data, bytes):
            offered[filename] = path_or_data
        return keep(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return offered


def test_a_lead_sees_only_their_team_on_every_page_and_in_every_download(
    demo: AppDemo, downloads: dict[str, bytes]
) -> None:
    config = load_config(demo.config_dir)
    others = [t.name for t in config.teams if t.name != LEAD_TEAM]
    app = open_app(LEAD)
    assert app.sidebar.selectbox(key="team").options == [LEAD_TEAM]
    pages = [p for p in PAGES if p != "health_page"]
    for page in pages:
        app.switch_page(f"{page}.py").run()
        assert not app.exception, (page, [e.value for e in app.exception])
        for frame in app.dataframe:
            shown = frame.value
            for column in ("team", "recipient"):
                if column in shown.columns:
                    assert set(shown[column]) <= {LEAD_TEAM}, (page, column, set(shown[column]))
            text = shown.to_csv()
            assert not [t for t in others if t in text], (page, shown.columns.tolist())
    assert downloads, "the pages offer their tables for download"
    for name, content in downloads.items():
        if name.endswith(".csv"):
            assert not [t for t in others if t in content.decode()], name
    # The data health page is organisation-wide: not in a lead's navigation.
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        app.switch_page("health_page.py")


def test_a_lead_may_change_only_their_teams_recommendations(demo: AppDemo) -> None:
    app = open_app(LEAD, "recommendations_page")
    shown = app.dataframe[0].value
    assert set(shown["team"]) == {LEAD_TEAM}
    assert not app.button(key="rec_accept").disabled
    finance = open_app(FINANCE, "recommendations_page")
    assert finance.button(key="rec_accept").disabled  # finance reads, leads and admins act


def test_someone_finops_yaml_does_not_name_sees_nothing(demo: AppDemo) -> None:
    app = open_app("stranger@example.com")
    assert "has no access" in app.warning[0].value
    assert not app.dataframe
    assert not app.metric


def test_a_page_with_no_warehouse_says_which_command_to_run(
    tmp_path: Path, app_demo: AppDemo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINOPS_DB", str(tmp_path / "none.duckdb"))
    monkeypatch.setenv("FINOPS_CONFIG", str(app_demo.config_dir))
    app = AppTest.from_file(str(ENTRY_POINT), default_timeout=60)
    app.user = {"is_logged_in": True, "email": ADMIN}
    app.run()
    for page in PAGES:
        app.switch_page(f"{page}.py").run()
        assert not app.exception
        assert "Run `finops demo`" in app.info[0].value, page


def test_download_is_exactly_the_table_shown(demo: AppDemo, downloads: dict[str, bytes]) -> None:
    app = open_app(FINANCE, "chargeback_page")
    shown = app.dataframe[0].value
    csv = downloads[f"chargeback-team-{MONTH}.csv"].decode().splitlines()
    assert csv[0].replace('"', "").split(",") == list(shown.columns)
    assert len(csv) == len(shown) + 1
    # The workbook is built when clicked, from the same table as the CSV.
    workbook = ui.xlsx_bytes(pa.Table.from_pandas(shown, preserve_index=False))
    sheet = pd.read_excel(io.BytesIO(workbook))
    assert list(sheet.columns) == list(shown.columns)
    assert list(sheet["team"]) == list(shown["team"])
    assert list(sheet["cost"]) == list(shown["cost"])
