"""Quarterly review reports: the figures each format shows are the analytics' figures.

A small warehouse (the hand-written FOCUS rows of conftest, plus March and a few
recommendations) gives figures computed by hand here; the demo organisation's quarter
(slow) checks the three formats at scale, the PDF's pages and the time budget.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import openpyxl
import pypdf
import pytest

from finops.collectors.focus import read_focus
from finops.config import Config, Holidays, load_config
from finops.periods import parse_period
from finops.reports import assemble, build_report, first_working_day_of_quarter, quarter_to_report
from finops.reports.inputs import config_hash, policy_pack_revision
from finops.reports.model import NoData
from finops.warehouse import Warehouse
from tests.conftest import JUNE_ROWS, MAY_ROWS, DemoRun, row, write_csv

GENERATED = datetime(2026, 7, 1, 6, 30, tzinfo=UTC)
CONFIG_YAML = """\
organisation: Example Co
currency: USD
allocation:
  tag_key: team
  tag_aliases: [Team, owner]
  cost_basis: effective
teams:
  - {name: vision, cost_centre: CC-1, business_unit: Research}
  - {name: ml-platform, cost_centre: CC-2, business_unit: Platform}
  - {name: search, cost_centre: CC-3, business_unit: Consumer}
"""
MARCH_ROWS = [
    row("03-10", "100.00", tags={"team": "vision"}),
    row("03-11", "20.00", tags={"team": "search"}),
]
"""2026-Q1: 120.00 (vision 100.00, search 20.00)."""

# 2026-Q2 effective cost (MAY_ROWS + JUNE_ROWS), by hand:
#   vision 90.05 + 50.25 + 200.00 = 340.30; ml-platform (owner ml_platform) 25.00;
#   (unallocated) -5.35 + 10.01 = 4.66; search 0.99; the bill 370.95.
Q2_BY_TEAM = {
    "vision": Decimal("340.30"),
    "ml-platform": Decimal("25.00"),
    "(unallocated)": Decimal("4.66"),
    "search": Decimal("0.99"),
}
Q2_BILL = Decimal("370.95")

RECOMMENDATIONS = [
    # rec_id, team, owner, kind, resource, monthly savings, state, first seen
    ("r1", "vision", "alice", "idle-cluster", "train-a", "1200.50", "open", "2026-05-10"),
    ("r2", "ml-platform", "bob", "rightsize-gpu", "infer-b", "800.25", "accepted", "2026-06-01"),
    ("r3", "vision", "alice", "spot-shift", "batch-c", "300.00", "applied", "2026-04-15"),
    ("r4", "search", "carol", "untagged-spend", "bucket-d", "50.00", "dismissed", "2026-02-01"),
    ("r5", "vision", "alice", "offhours", "dev-e", "99.99", "open", "2026-07-02"),
    ("r6", "ml-platform", "bob", "idle-cluster", "train-f", "10.00", "snoozed", "2026-05-20"),
]


def insert_recommendations(warehouse: Warehouse, recs: list[tuple], evidence: str = "") -> None:
    """Recommendations as the policy engine stores them; `evidence` lengthens each reason."""
    with warehouse.writer() as conn:
        for rec_id, team, owner, kind, resource, savings, state, seen in recs:
            conn.execute(
                """
                INSERT INTO recommendations (rec_id, policy, kind, resource_id, resource_name,
                    team, owner, action, mode, monthly_savings, currency, confidence, risk,
                    reason, evidence, state, active, first_seen_at, last_evaluated_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, 'stop', 'dry-run', ?, 'USD', 0.9, 'low', ?, '{}', ?,
                        TRUE, ?, ?, ?)
                """,
                [
                    rec_id,
                    f"{kind}-default",
                    kind,
                    f"i-{resource}",
                    resource,
                    team,
                    owner,
                    Decimal(savings),
                    f"{resource} found by {kind}{evidence}",
                    state,
                    datetime.fromisoformat(seen).replace(tzinfo=UTC),
                    GENERATED,
                    GENERATED,
                ],
            )


ANOMALIES = [
    # team, service, day, spend, usual spend, z
    ("vision", "Amazon Elastic Compute Cloud", "2026-06-01", "200.00", "50.25", 4.2),
    ("search", "Amazon Elastic Compute Cloud", "2026-06-15", "0.99", "0.10", 3.1),
    ("vision", "Amazon Elastic Compute Cloud", "2026-03-10", "100.00", "20.00", 3.5),
]


def insert_anomalies(warehouse: Warehouse) -> None:
    with warehouse.writer() as conn:
        for team, service, day, spend, usual, z in ANOMALIES:
            conn.execute(
                """
                INSERT INTO anomalies VALUES (?, ?, ?, ?, ?, 'USD', ?, ?, 1, ?, ?, '[]', 'open',
                                              NULL, NULL)
                """,
                [
                    f"{team}-{day}",
                    GENERATED,
                    date.fromisoformat(day),
                    team,
                    service,
                    Decimal(spend),
                    Decimal(usual),
                    date.fromisoformat(day),
                    z,
                ],
            )


def delivery_events() -> list[dict]:
    """2026-Q2: vision deploys to production every week (13 in 91 days: 1.00 a week) and
    once to staging; its model earns 1,000.00; an optimisation project costs 6,000.00 and
    saves 3,000.00 over the quarter."""
    deploys = [
        {
            "kind": "deploy",
            "deploy_id": f"v{week}",
            "service": "detector",
            "team": "vision",
            "environment": "prod",
            "result": "success",
            "finished_at": f"{date(2026, 4, 6).toordinal() + 7 * week}",
        }
        for week in range(13)
    ]
    for d in deploys:
        d["finished_at"] = date.fromordinal(int(d["finished_at"])).isoformat() + "T12:00:00Z"
    staging = {**deploys[0], "deploy_id": "s1", "environment": "staging"}
    kpis = [
        {"kind": "kpi", "period": "2026-Q2", "team": "vision", "project": "detector",
         "metric": "revenue_lift", "value": 1000, "currency": "USD"},
        {"kind": "kpi", "period": "2026-Q2", "project": "idle-shutdown",
         "metric": "engineering_cost", "value": 6000, "currency": "USD"},
        {"kind": "kpi", "period": "2026-Q2", "project": "idle-shutdown",
         "metric": "realised_savings", "value": 3000, "currency": "USD"},
    ]  # fmt: skip
    return [*deploys, staging, *kpis]


def insert_events(warehouse: Warehouse, folder: Path) -> None:
    import json

    from finops.collectors.events import read_events

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in delivery_events()))
    warehouse.ingest_events(
        lambda: read_events(str(path)), source="events", collector="events", uri=str(path)
    )


def make_deployment(root: Path) -> tuple[Warehouse, Config]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "finops.yaml").write_text(CONFIG_YAML)
    config = load_config(root)
    warehouse = Warehouse(root / "warehouse.duckdb", lock_timeout_s=20)
    bill = write_csv(root / "bills" / "bill.csv", [*MARCH_ROWS, *MAY_ROWS, *JUNE_ROWS])
    warehouse.ingest_cost(
        lambda: read_focus(str(bill)), source="aws", collector="focus", uri=str(bill)
    )
    return warehouse, config


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Warehouse, Config]:
    warehouse, config = make_deployment(tmp_path_factory.mktemp("deployment"))
    insert_recommendations(warehouse, RECOMMENDATIONS)
    insert_anomalies(warehouse)
    insert_events(warehouse, config.base_dir / "events")
    return warehouse, config


@pytest.fixture(scope="module")
def q2(deployment: tuple[Warehouse, Config], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole organisation's 2026-Q2 report, HTML and XLSX."""
    warehouse, config = deployment
    out = tmp_path_factory.mktemp("q2")
    build_report(warehouse, config, "2026-Q2", None, ["html", "xlsx"], out, GENERATED)
    return out


@pytest.fixture(scope="module")
def q2_vision(
    deployment: tuple[Warehouse, Config], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    warehouse, config = deployment
    out = tmp_path_factory.mktemp("q2-vision")
    build_report(warehouse, config, "2026-Q2", "vision", ["html", "xlsx"], out, GENERATED)
    return out


class _Page(HTMLParser):
    """Text, tables (lists of rows of cell texts) and images of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    @property
    def rows(self) -> list[list[str]]:
        return [row for table in self.tables for row in table]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse_html(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def table_rows(page: _Page, first_heading: str) -> list[list[str]]:
    """Rows of the first table whose header row starts with `first_heading` (header excluded)."""
    table = next(t for t in page.tables if t and t[0] and t[0][0] == first_heading)
    return table[1:]


def sheet_records(path: Path, sheet: str) -> list[dict]:
    values = list(openpyxl.load_workbook(path)[sheet].iter_rows(values_only=True))
    header = values[0]
    return [dict(zip(header, r, strict=True)) for r in values[1:]]


def workbook_strings(path: Path) -> str:
    book = openpyxl.load_workbook(path)
    return "\n".join(
        str(value)
        for sheet in book.worksheets
        for line in sheet.iter_rows(values_only=True)
        for value in line
        if value is not None
    )


# --- charge-back ---------------------------------------------------------------------------


def test_chargeback_table_shows_each_team_to_the_cent_and_the_bill(q2: Path) -> None:
    page = parse_html(q2 / "finops-2026-Q2.html")
    rows = table_rows(page, "Team")
    shown = {r[0]: r[5] for r in rows}
    assert shown == {
        "vision": "340.30",
        "ml-platform": "25.00",
        "(unallocated)": "4.66",
        "search": "0.99",
        "Total": "370.95",
    }
    assert [r[0] for r in rows] == ["vision", "ml-platform", "(unallocated)", "search", "Total"]
    assert rows[0][1:3] == ["CC-1", "Research"]
    assert rows[0][3:] == ["340.30", "0.00", "340.30", "91.74%"]  # direct, shared (no rules)


def test_chargeback_sheet_holds_the_figures_as_numbers_with_currency_formats(q2: Path) -> None:
    path = q2 / "finops-2026-Q2.xlsx"
    records = sheet_records(path, "Charge-back")
    assert {r["Team"]: r["Cost"] for r in records} == {
        **{team: float(cost) for team, cost in Q2_BY_TEAM.items()},
        "Total": float(Q2_BILL),
    }
    assert records[0]["Share"] == pytest.approx(91.74)
    sheet = openpyxl.load_workbook(path)["Charge-back"]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:H5"  # the four teams; the total row stays out
    assert sheet["G2"].number_format == '#,##0.00 "USD"'
    assert sheet["H2"].number_format == '0.00"%"'
    assert len(sheet._charts) == 1


def test_chargeback_figures_are_the_analytics_figures(
    deployment: tuple[Warehouse, Config], q2: Path
) -> None:
    from finops.analytics.chargeback import Allocation, allocate

    warehouse, config = deployment
    with warehouse.reader() as conn:
        computed = allocate(
            conn, parse_period("2026-Q2"), Allocation.from_config(config), cost="effective"
        )
    assert dict(zip(computed["team"].to_pylist(), computed["cost"].to_pylist(), strict=True)) == (
        Q2_BY_TEAM
    )
    records = sheet_records(q2 / "finops-2026-Q2.xlsx", "Charge-back")
    assert [r["Team"] for r in records[:-1]] == computed["team"].to_pylist()


def test_tag_coverage_is_the_share_of_the_bill_attributed_directly(q2: Path) -> None:
    # Direct: 370.95 - 4.66 = 366.29, 98.74%; untagged (no team key at all) 4.66, 1.26%.
    page = parse_html(q2 / "finops-2026-Q2.html")
    text = " ".join("".join(page.text).split())
    assert "98.74%" in text
    assert "366.29 of 370.95 USD attributed by tag or account" in text
    assert "4.66 USD without a team tag" in text
    (coverage,) = sheet_records(q2 / "finops-2026-Q2.xlsx", "Tag coverage")
    assert (coverage["Attributed directly"], coverage["Bill"], coverage["Coverage"]) == (
        366.29,
        370.95,
        98.74,
    )
    assert (coverage["Without a team tag"], coverage["Untagged"]) == (4.66, 1.26)


# --- executive summary and recommendations -------------------------------------------------


def test_summary_compares_spend_with_the_previous_quarter(q2: Path) -> None:
    # Q2 370.95 against Q1 120.00: +250.95, +209.1%.
    (spend,) = sheet_records(q2 / "finops-2026-Q2.xlsx", "Summary")[:1]
    assert spend == {
        "Currency": "USD",
        "Spend 2026-Q2": 370.95,
        "Spend 2026-Q1": 120.0,
        "Change": 250.95,
        "Change %": 209.1,
    }
    text = " ".join("".join(parse_html(q2 / "finops-2026-Q2.html").text).split())
    assert "370.95 USD" in text
    assert "2026-Q1: 120.00 USD (+209.1%)" in text


def test_savings_found_and_accepted_count_recommendations_first_made_in_the_quarter(
    q2: Path,
) -> None:
    # First made in Q2: r1 1200.50, r2 800.25 (accepted), r3 300.00 (applied), r6 10.00.
    text = " ".join("".join(parse_html(q2 / "finops-2026-Q2.html").text).split())
    assert "2,310.75 / 1,100.25 USD" in text
    assert "4 recommendation(s) first made in 2026-Q2, 2 accepted or applied" in text
    # r3 is applied but has no applied_at, so nothing can be measured after it yet.
    assert "No savings realised yet: no applied recommendation has a day of spend after it" in text


def test_top_three_actions_are_the_largest_open_or_accepted_recommendations(
    deployment: tuple[Warehouse, Config],
) -> None:
    warehouse, config = deployment
    report = assemble(warehouse, config, parse_period("2026-Q2"), None, GENERATED)
    top = report.section("summary").top_actions
    assert [(r.rec_id, r.monthly_savings) for r in top] == [
        ("r1", Decimal("1200.50")),
        ("r2", Decimal("800.25")),
        ("r5", Decimal("99.99")),
    ]


def test_recommendations_list_every_state_but_dismissed_with_owner(q2: Path) -> None:
    records = sheet_records(q2 / "finops-2026-Q2.xlsx", "Recommendations")
    assert [(r["Id"], r["State"], r["Owner"], r["Monthly savings"]) for r in records] == [
        ("r1", "open", "alice", 1200.5),
        ("r2", "accepted", "bob", 800.25),
        ("r3", "applied", "alice", 300.0),
        ("r5", "open", "alice", 99.99),
        ("r6", "snoozed", "bob", 10.0),
    ]


def test_forecast_made_at_the_quarters_start_against_what_came(q2: Path) -> None:
    # From March alone (120.00) the forecast repeats it: 360.00; actual 370.95, +3.04%.
    text = " ".join("".join(parse_html(q2 / "finops-2026-Q2.html").text).split())
    assert "Forecast at the start of 2026-Q2 360.00 USD actual 370.95 (+3.0%)" in text


def test_kpis_against_their_targets(q2: Path) -> None:
    kpis = {r["KPI"]: r for r in sheet_records(q2 / "finops-2026-Q2.xlsx", "FinOps KPIs")}
    assert (kpis["Allocation coverage"]["Value"], kpis["Allocation coverage"]["Status"]) == (
        98.74,
        "green",
    )
    assert kpis["Untagged"]["Value"] == 1.26
    assert kpis["Forecast variance"]["Value"] == 3.04
    assert kpis["Idle GPU cost"]["Status"] == "n/a"  # no GPU metrics


def test_anomalies_of_the_quarter_only(q2: Path, q2_vision: Path) -> None:
    records = sheet_records(q2 / "finops-2026-Q2.xlsx", "Anomalies")
    assert [(r["Team"], r["Spend"], r["Usual"]) for r in records] == [
        ("vision", 200.0, 50.25),
        ("search", 0.99, 0.10),
    ]  # the largest rise first; March's is another quarter's
    mine = sheet_records(q2_vision / "finops-2026-Q2-vision.xlsx", "Anomalies")
    assert [r["Team"] for r in mine] == ["vision"]


def test_dora_counts_production_deployments_per_week(q2: Path, q2_vision: Path) -> None:
    (vision,) = sheet_records(q2 / "finops-2026-Q2.xlsx", "DORA")
    assert (vision["Team"], vision["Deployments"], vision["Per week"]) == ("vision", 13, 1.0)
    trend = sheet_records(q2 / "finops-2026-Q2.xlsx", "DORA trend")
    assert [(t["Quarter"], t["Deployments"]) for t in trend] == [("2026-Q2", 13)]
    (mine,) = sheet_records(q2_vision / "finops-2026-Q2-vision.xlsx", "DORA trend")
    assert (mine["Team"], mine["Deployments"]) == ("vision", 13)


def test_roi_and_payback_against_the_hurdle_rate(q2: Path, q2_vision: Path) -> None:
    returns = {r["Project"]: r for r in sheet_records(q2 / "finops-2026-Q2.xlsx", "ROI")}
    assert returns["detector"]["Value"] == 1000.0
    (project,) = sheet_records(q2 / "finops-2026-Q2.xlsx", "Payback")
    # 3,000.00 saved over the quarter's 91 days: 1,003.43 a month, 6,000.00 back in 5.98
    # months, 200.7% a year against the 15% hurdle.
    assert (project["Project"], project["Engineering cost"], project["Realised savings"]) == (
        "idle-shutdown",
        6000.0,
        3000.0,
    )
    assert project["Monthly savings"] == pytest.approx(1003.43, abs=0.01)
    assert project["Payback (months)"] == pytest.approx(5.98, abs=0.01)
    assert project["Annual return"] == pytest.approx(200.69, abs=0.01)
    assert project["Meets hurdle"] == "True"
    (team,) = sheet_records(q2_vision / "finops-2026-Q2-vision.xlsx", "ROI")
    assert (team["Project"], team["Cost"], team["Value"]) == ("vision", 340.30, 1000.0)


# --- team reports ------------------------------------------------------------------------


OTHERS = ("ml-platform", "ml_platform", "search", "bob", "carol")
"""What vision's report must not name: the other teams (as tagged too) and their owners."""


def mentions(text: str, name: str) -> bool:
    """`name` as a word of its own (so "search" is not found in "Research")."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def test_team_report_holds_only_its_own_rows(q2_vision: Path) -> None:
    page = parse_html(q2_vision / "finops-2026-Q2-vision.html")
    text = "".join(page.text)
    assert mentions(text, "vision")
    strings = workbook_strings(q2_vision / "finops-2026-Q2-vision.xlsx")
    for other in OTHERS:
        assert not mentions(text, other), other
        assert not mentions(strings, other), other
    # The unallocated label is named in the method, but no row of spend carries it.
    assert not any(r and r[0] == "(unallocated)" for r in page.rows)
    records = sheet_records(q2_vision / "finops-2026-Q2-vision.xlsx", "Charge-back")
    assert [(r["Team"], r["Cost"]) for r in records] == [("vision", 340.30), ("Total", 340.30)]
    recs = sheet_records(q2_vision / "finops-2026-Q2-vision.xlsx", "Recommendations")
    assert [r["Id"] for r in recs] == ["r1", "r3", "r5"]


def test_team_summary_compares_the_teams_own_spend(q2_vision: Path) -> None:
    # vision: Q2 340.30 against Q1 100.00; first made in Q2: r1 1200.50, r3 300.00 (applied).
    (spend,) = sheet_records(q2_vision / "finops-2026-Q2-vision.xlsx", "Summary")[:1]
    assert (spend["Spend 2026-Q2"], spend["Spend 2026-Q1"], spend["Change %"]) == (
        340.30,
        100.0,
        240.3,
    )
    text = " ".join("".join(parse_html(q2_vision / "finops-2026-Q2-vision.html").text).split())
    assert "1,500.50 / 300.00 USD" in text


def test_an_unknown_team_is_refused_naming_the_teams(
    deployment: tuple[Warehouse, Config], tmp_path: Path
) -> None:
    from finops.errors import ConfigError

    warehouse, config = deployment
    with pytest.raises(ConfigError, match=r"--team 'vison'.*vision, ml-platform, search"):
        build_report(warehouse, config, "2026-Q2", "vison", ["html"], tmp_path, GENERATED)
    assert not list(tmp_path.iterdir())


# --- no data -----------------------------------------------------------------------------


def test_sections_without_data_show_a_no_data_panel_with_the_reason(q2: Path) -> None:
    html = (q2 / "finops-2026-Q2.html").read_text()
    page = parse_html(q2 / "finops-2026-Q2.html")
    text = " ".join("".join(page.text).split())
    assert "No data. No GPU metrics in 2026-Q2: ingest the GPUs' DCGM" in text

    assert "No data. No shared-cost rules in finops.yaml (allocation.shared)" in text
    assert html.count('class="no-data"') == 2  # GPU; shared-cost rules
    book = openpyxl.load_workbook(q2 / "finops-2026-Q2.xlsx")
    assert book["GPU fleet"]["B2"].value is None
    assert book["GPU fleet"]["A2"].value.startswith("No data: No GPU metrics in 2026-Q2")


def test_a_period_without_bills_gives_panels_not_a_crash(
    deployment: tuple[Warehouse, Config], tmp_path: Path
) -> None:
    warehouse, config = deployment
    report = assemble(warehouse, config, parse_period("2025-Q3"), None, GENERATED)
    empty = {r.section.key: r.data for r in report.sections if not r.has_data}
    assert set(empty) == {
        "summary",
        "chargeback",
        "gpu",
        "roi",
        "dora",
        "kpis",
        "anomalies",
    }
    assert empty["chargeback"] == NoData(
        "No billing data for 2025-Q3: the warehouse holds 2026-03..2026-06. Ingest the "
        "period's bills with `finops collect` or `finops ingest focus|aws-cur|gcp-billing ...`."
    )
    written = build_report(
        warehouse, config, "2025-Q3", None, ["html", "xlsx"], tmp_path, GENERATED
    )
    assert [p.name for p in written] == ["finops-2025-Q3.html", "finops-2025-Q3.xlsx"]


def test_a_warehouse_without_recommendations_or_anomalies_says_how_to_get_them(
    tmp_path: Path,
) -> None:
    warehouse, config = make_deployment(tmp_path)
    report = assemble(warehouse, config, parse_period("2026-Q2"), None, GENERATED)
    assert report.section("recommendations") == NoData(
        "No recommendations: run the policy engine (`finops recommend`) to evaluate the "
        "policy pack."
    )
    assert report.section("anomalies") == NoData(
        "No anomaly detection has run on this warehouse: `finops anomalies detect` looks for them."
    )
    assert report.section("summary").top_actions == ()


def test_a_deployments_own_templates_replace_the_defaults(tmp_path: Path) -> None:
    warehouse, config = make_deployment(tmp_path)
    own = tmp_path / "reports" / "templates"
    shutil.copytree(Path(__file__).resolve().parents[1] / "reports" / "templates", own)
    partial = own / "sections" / "chargeback.html"
    partial.write_text("<p>Reviewed by Finance.</p>\n" + partial.read_text())
    (html,) = build_report(warehouse, config, "2026-Q2", None, ["html"], tmp_path, GENERATED)
    assert "Reviewed by Finance." in html.read_text()


# --- images, reproducibility, inputs -----------------------------------------------------


def test_every_image_is_embedded_svg(q2: Path) -> None:
    images = parse_html(q2 / "finops-2026-Q2.html").images
    assert len(images) == 2  # spend by month; charge-back by team and month
    for src in images:
        assert src.startswith("data:image/svg+xml;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"<svg")


def test_same_inputs_give_the_same_files(
    deployment: tuple[Warehouse, Config], q2: Path, tmp_path: Path
) -> None:
    warehouse, config = deployment
    again = build_report(warehouse, config, "2026-Q2", None, ["html", "xlsx"], tmp_path, GENERATED)
    for path in again:
        assert path.read_bytes() == (q2 / path.name).read_bytes(), path.name
    later = datetime(2026, 7, 2, 9, 15, tzinfo=UTC)
    (html,) = build_report(warehouse, config, "2026-Q2", None, ["html"], tmp_path / "later", later)
    first = (q2 / "finops-2026-Q2.html").read_text()
    assert html.read_text() != first
    unstamped = html.read_text().replace("2026-07-02 09:15 UTC", "2026-07-01 06:30 UTC")
    assert unstamped.replace(later.isoformat(), GENERATED.isoformat()) == first


def test_report_records_the_last_ingest_of_each_source(tmp_path: Path) -> None:
    warehouse, config = make_deployment(tmp_path)
    extra = write_csv(tmp_path / "gcp.csv", [row("06-02", "5.00", tags={"team": "vision"})])
    warehouse.ingest_cost(lambda: read_focus(str(extra)), source="gcp", collector="focus", uri="g")
    warehouse.ingest_cost(lambda: read_focus(str(extra)), source="gcp", collector="focus", uri="g")
    runs = warehouse.query(
        "SELECT source, run_id, finished_at, status FROM ingest_runs ORDER BY finished_at"
    ).to_pylist()
    report = assemble(warehouse, config, parse_period("2026-Q2"), None, GENERATED)
    recorded = {s.source: s for s in report.inputs.sources}
    assert set(recorded) == {"aws", "gcp"}
    last_gcp_success = [r for r in runs if r["source"] == "gcp" and r["status"] == "success"][-1]
    assert recorded["gcp"].run_id == last_gcp_success["run_id"]
    assert recorded["gcp"].last_ingest_at == last_gcp_success["finished_at"]
    assert recorded["gcp"].latest_status == runs[-1]["status"]  # the repeat: 'unchanged'
    assert recorded["aws"].rows == len(MARCH_ROWS) + len(MAY_ROWS) + len(JUNE_ROWS)


def test_config_hash_follows_the_settings_not_the_files_layout(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    (tmp_path / "a" / "finops.yaml").write_text(CONFIG_YAML)
    (tmp_path / "b" / "finops.yaml").write_text("# reviewed\n" + CONFIG_YAML.replace(": ", ":  "))
    (tmp_path / "c" / "finops.yaml").write_text(CONFIG_YAML.replace("effective", "billed"))
    hashes = [config_hash(load_config(tmp_path / name)) for name in "abc"]
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_policy_pack_revision_is_the_git_commit_else_a_content_hash(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "idle.yaml").write_text("policies: []\n")
    unversioned = policy_pack_revision(policies)
    assert unversioned.kind == "content-hash"
    assert unversioned == policy_pack_revision(policies)
    (policies / "idle.yaml").write_text("policies: [{name: idle}]\n")
    assert policy_pack_revision(policies).value != unversioned.value

    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "policies")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "p")
    committed = policy_pack_revision(policies)
    assert (committed.kind, committed.value, committed.modified) == (
        "git",
        _git(tmp_path, "rev-parse", "HEAD"),
        False,
    )
    (policies / "idle.yaml").write_text("policies: []\n")
    assert policy_pack_revision(policies).modified
    assert str(policy_pack_revision(policies)).endswith("(with uncommitted changes)")
    assert policy_pack_revision(tmp_path / "missing").kind == "none"


def test_method_appendix_names_the_inputs(q2: Path) -> None:
    book = openpyxl.load_workbook(q2 / "finops-2026-Q2.xlsx")
    settings = {r[0]: r[1] for r in book["Method"].iter_rows(min_row=2, values_only=True)}
    assert settings["Cost basis"].startswith("EffectiveCost")
    assert settings["Allocation tag keys"] == "team, Team, owner"
    assert len(settings["Configuration hash (sha256)"]) == 64
    assert settings["Policy pack"].startswith("no policy pack at")
    sources = sheet_records(q2 / "finops-2026-Q2.xlsx", "Data sources")
    assert [(s["Source"], s["Collector"], s["Rows"]) for s in sources] == [
        ("aws", "focus", 9),
        ("events", "events", 17),  # 14 deploys, 3 KPI inputs
    ]


# --- when the report is due --------------------------------------------------------------


ENGLAND = Holidays(country="GB", subdivision="ENG")


def test_first_working_day_skips_the_weekend_and_the_bank_holiday() -> None:
    # 1 January 2028 is a Saturday; New Year's Day is observed on Monday 3 January.
    quarter = parse_period("2028-Q1")
    assert first_working_day_of_quarter(quarter, ENGLAND) == date(2028, 1, 4)
    assert first_working_day_of_quarter(quarter, Holidays()) == date(2028, 1, 3)


def test_fiscal_quarters_and_the_organisations_own_days_off() -> None:
    # A fiscal year starting in April: 1 April 2029 is Easter Sunday, 2 April Easter Monday.
    q1 = parse_period("2029-Q1", fiscal_year_start_month=4)
    assert q1.start == date(2029, 4, 1)
    assert first_working_day_of_quarter(q1, ENGLAND) == date(2029, 4, 3)
    closed = Holidays(country="GB", subdivision="ENG", dates=(date(2029, 4, 3),))
    assert first_working_day_of_quarter(q1, closed) == date(2029, 4, 4)


def test_the_quarter_just_ended_is_due_on_the_first_working_day_only() -> None:
    config = Config(holidays=ENGLAND)
    assert quarter_to_report(date(2028, 1, 3), config) is None  # observed holiday
    due = quarter_to_report(date(2028, 1, 4), config)
    assert due is not None
    assert (due.label, due.start, due.end) == ("2027-Q4", date(2027, 10, 1), date(2028, 1, 1))
    assert quarter_to_report(date(2028, 1, 5), config) is None
    april = Config(holidays=ENGLAND, fiscal_year_start_month=4)
    assert quarter_to_report(date(2029, 4, 3), april).label == "2028-Q4"


def test_an_unknown_holiday_country_is_a_config_error() -> None:
    from finops.errors import ConfigError

    with pytest.raises(ConfigError, match=r"holidays\.country 'XX'"):
        first_working_day_of_quarter(parse_period("2028-Q1"), Holidays(country="XX"))


# --- PDF ---------------------------------------------------------------------------------


def test_weasyprint_and_pango_render_a_page() -> None:
    import weasyprint

    pdf = weasyprint.HTML(string="<p>Pango lays this out</p>").write_pdf()
    assert pdf.startswith(b"%PDF-")
    assert "Pango lays this out" in pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


@pytest.fixture(scope="module")
def q2_pdf(deployment: tuple[Warehouse, Config], tmp_path_factory: pytest.TempPathFactory) -> Path:
    warehouse, config = deployment
    out = tmp_path_factory.mktemp("q2-pdf")
    (path,) = build_report(warehouse, config, "2026-Q2", None, ["pdf"], out, GENERATED)
    return path


@pytest.mark.slow
def test_pdf_holds_the_chargeback_figures_page_numbers_and_header(q2_pdf: Path) -> None:
    reader = pypdf.PdfReader(q2_pdf)
    pages = [p.extract_text() for p in reader.pages]
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in text
        assert "Quarterly review 2026-Q2" in text
        assert "Generated 2026-07-01 06:30 UTC" in text
    (chargeback_page,) = [t for t in pages if t.startswith("Charge-back per team")]
    for team, cost in Q2_BY_TEAM.items():
        assert f"{team} " in chargeback_page
        assert f"{cost:,.2f}" in chargeback_page
    assert "Total 370.95" in chargeback_page
    # Sections with figures start a page; a section without (GPU fleet: no metrics) follows
    # on the page before.
    starts = [t.splitlines()[0] for t in pages]
    for title in (
        "Charge-back per team",
        "Recommendations",
        "ROI and payback",
        "DORA four keys",
        "FinOps KPIs",
        "Anomalies",
        "Appendix: method and inputs",
    ):
        assert title in starts
    assert "GPU fleet" not in starts


@pytest.mark.slow
def test_pdf_tables_repeat_their_header_and_never_split_a_row(tmp_path: Path) -> None:
    warehouse, config = make_deployment(tmp_path / "long")
    many = [
        (
            f"r{i:02d}",
            "vision",
            "alice",
            "idle-cluster",
            f"node-{i:02d}",
            f"{100 + i}.00",
            "open",
            "2026-05-01",
        )
        for i in range(20)
    ]
    detail = ": p95 GPU utilisation under 5% for 14 days while billed every hour" * 4
    insert_recommendations(warehouse, many, evidence=detail)
    (path,) = build_report(warehouse, config, "2026-Q2", None, ["pdf"], tmp_path, GENERATED)
    pages = [p.extract_text() for p in pypdf.PdfReader(path).pages]
    first = next(i for i, t in enumerate(pages) if t.startswith("Recommendations"))
    listing = [t for t in pages[first:] if "node-" in t]
    assert len(listing) >= 2, "the list should span pages"
    header = "Resource and reason Team Owner State Monthly savings Confidence Risk"
    for text in listing:
        assert header in text
    for i in range(20):  # each row (resource and its reason) whole on one page
        assert sum(f"node-{i:02d} found by idle-cluster" in t for t in listing) == 1


# --- the command -------------------------------------------------------------------------


@pytest.mark.slow
def test_report_command_writes_the_files_named_by_period_and_team(
    deployment: tuple[Warehouse, Config], tmp_path: Path
) -> None:
    warehouse, config = deployment
    command = [
        str(Path(sys.executable).with_name("finops")),
        "report",
        "--period",
        "2026-Q2",
        "--team",
        "vision",
        "--format",
        "xlsx,html",
        "--out",
        str(tmp_path / "out"),
        "--db",
        str(warehouse.path),
        "--config",
        str(config.base_dir),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "finops-2026-Q2-vision.html",
        "finops-2026-Q2-vision.xlsx",
    ]
    refused = subprocess.run(
        [*command[:7], "pdf,docx", *command[8:]], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert "--format 'pdf,docx': use one or more of html, pdf, xlsx" in refused.stderr


# --- the demo organisation's quarter -----------------------------------------------------


@pytest.fixture(scope="module")
def demo_deployment(demo_run: DemoRun) -> tuple[Warehouse, Config]:
    """The session's `finops demo` run (2026-Q3, policies and events included)."""
    config = load_config(demo_run.folder)
    return Warehouse.from_config(config), config


@pytest.mark.slow
def test_demo_quarter_in_three_formats_shows_the_analytics_figures(
    demo_deployment: tuple[Warehouse, Config], tmp_path: Path
) -> None:
    from finops.analytics.chargeback import Allocation, allocate, period_total

    warehouse, config = demo_deployment
    quarter = parse_period("2026-Q3")
    basis = config.allocation.cost_basis
    with warehouse.reader() as conn:
        expected = allocate(conn, quarter, Allocation.from_config(config), cost=basis).to_pylist()
        (bill,) = period_total(conn, quarter, basis).values()
    written = build_report(
        warehouse, config, quarter, None, ["html", "pdf", "xlsx"], tmp_path, GENERATED
    )
    html, pdf, xlsx = written

    pages = [p.extract_text() for p in pypdf.PdfReader(pdf).pages]
    assert len(pages) >= 6  # cover and summary, charge-back, GPU, recommendations, appendix
    assert all(f"of {len(pages)}" in t for t in pages)
    text = "\n".join(pages)
    for r in expected:
        assert f"{r['team']} " in text
        assert f"{r['cost']:,.2f}" in text, r
    total = bill.quantize(Decimal("0.01"))
    assert f"Total {total:,.2f}" in text

    records = sheet_records(xlsx, "Charge-back")
    assert [(r["Team"], Decimal(repr(r["Cost"]))) for r in records] == [
        *((r["team"], r["cost"]) for r in expected),
        ("Total", total),
    ]
    page = parse_html(html)
    assert len(page.images) == 4  # spend by month, by team and month, GPU by cluster and day
    assert all(src.startswith("data:image/svg+xml;base64,") for src in page.images)


@pytest.mark.slow
def test_demo_team_report_holds_no_other_team(
    demo_deployment: tuple[Warehouse, Config], tmp_path: Path
) -> None:
    warehouse, config = demo_deployment
    html, pdf, xlsx = build_report(
        warehouse, config, "2026-Q3", "ml-platform", ["html", "pdf", "xlsx"], tmp_path, GENERATED
    )
    others = [t.name for t in config.teams if t.name != "ml-platform"]
    page = parse_html(html)
    pdf_lines = [line for p in pypdf.PdfReader(pdf).pages for line in p.extract_text().splitlines()]
    cells = workbook_strings(xlsx).splitlines()
    for other in others:
        assert not any(other in r for r in page.rows), other
        row = re.compile(rf"{re.escape(other)} (CC-|[\d,.]+ )")  # a team's row of figures
        assert not any(row.match(line) for line in pdf_lines), other
        assert other not in cells, other
    # Team names that are not also ordinary words of the report appear nowhere at all.
    text = "".join(page.text) + "\n".join(pdf_lines) + "\n".join(cells)
    for other in (o for o in others if o != "recommendations"):
        assert not mentions(text, other), other
    # The method names the unallocated label as a setting; no row of spend carries it.
    assert not any(r and r[0] == "(unallocated)" for r in page.rows)
    assert not any(line.startswith("(unallocated) ") for line in pdf_lines)
    assert {r["Team"] for r in sheet_records(xlsx, "Charge-back by month")} == {"ml-platform"}
    assert [r["Team"] for r in sheet_records(xlsx, "Charge-back")] == ["ml-platform", "Total"]
