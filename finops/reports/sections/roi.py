"""ROI per model or project (cost with its share of shared costs against the value its
KPI inputs claim) and optimisation projects' payback against the hurdle rate.

A team report shows the team's own ROI row (by team) and leaves the per-project payback
to the organisation's report: projects are not a team's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from finops.analytics.chargeback import Allocation
from finops.analytics.roi import roi
from finops.reports.model import NoData, ReportScope
from finops.reports.sections.common import for_team
from finops.reports.workbook import Column, ReportWorkbook


@dataclass(frozen=True)
class Return:
    name: str
    currency: str
    direct_cost: Decimal
    shared_cost: Decimal
    cost: Decimal
    value: Decimal
    net_value: Decimal
    roi_pct: Decimal | None
    cost_per_1k_predictions: Decimal | None
    cost_per_training_run: Decimal | None


@dataclass(frozen=True)
class Payback:
    project: str
    currency: str
    engineering_cost: Decimal
    realised_savings: Decimal
    monthly_savings: Decimal | None
    payback_months: Decimal | None
    annual_return_pct: Decimal | None
    hurdle_rate_pct: float
    meets_hurdle: bool
    paid_back: bool


@dataclass(frozen=True)
class Roi:
    by: str
    hurdle_rate_pct: float
    returns: tuple[Return, ...]
    payback: tuple[Payback, ...] | NoData
    notes: tuple[str, ...]


def collect(scope: ReportScope) -> Roi | NoData:
    scorecard = scope.config.scorecard
    by = "team" if scope.team else "project"
    report = roi(
        scope.conn,
        [scope.period],
        allocation=scope.config.allocation,
        teams=scope.config.teams,
        by=by,
        project_tag_key=scorecard.project_tag_key,
        cost_basis=scope.config.allocation.cost_basis,
        hurdle_rate=scorecard.hurdle_rate,
        sharing=Allocation.from_config(scope.config),
    )
    rows = for_team(report.returns, scope.team).to_pylist()
    with_value = [r for r in rows if r["value"]]
    if not with_value:
        whose = f"team {scope.team}" if scope.team else "any model or project"
        return NoData(
            f"No ROI for {scope.period.label}: no business value is recorded for {whose}. "
            "Load KPI inputs (category value) with `finops event kpi` or `finops ingest events`."
        )
    fields = [f for f in Return.__dataclass_fields__ if f != "name"]
    returns = tuple(Return(name=r[by], **{f: r[f] for f in fields}) for r in rows)
    if scope.team is not None:
        payback: tuple[Payback, ...] | NoData = NoData(
            "Optimisation projects' payback is reported per project in the organisation's report."
        )
    else:
        paid = tuple(
            Payback(**{f: r[f] for f in Payback.__dataclass_fields__})
            for r in report.payback.to_pylist()
        )
        payback = paid or NoData(
            "No optimisation projects: record their engineering cost and realised savings as "
            "KPI inputs."
        )
    return Roi(by, scorecard.hurdle_rate * 100, returns, payback, report.notes)


RETURN_COLUMNS = (
    Column("name", "Project"),
    Column("direct_cost", "Direct cost", "money"),
    Column("shared_cost", "Shared cost", "money"),
    Column("cost", "Cost", "money"),
    Column("value", "Value", "money"),
    Column("net_value", "Net value", "money"),
    Column("roi_pct", "ROI", "pct"),
    Column("cost_per_1k_predictions", "Cost per 1k predictions", "money"),
    Column("cost_per_training_run", "Cost per training run", "money"),
)
PAYBACK_COLUMNS = (
    Column("project", "Project"),
    Column("engineering_cost", "Engineering cost", "money"),
    Column("realised_savings", "Realised savings", "money"),
    Column("monthly_savings", "Monthly savings", "money"),
    Column("payback_months", "Payback (months)", "number"),
    Column("annual_return_pct", "Annual return", "pct"),
    Column("hurdle_rate_pct", "Hurdle rate", "pct"),
    Column("meets_hurdle", "Meets hurdle"),
    Column("paid_back", "Paid back"),
)


def write_sheet(workbook: ReportWorkbook, data: Roi) -> None:
    workbook.table(workbook.sheet("ROI"), RETURN_COLUMNS, data.returns)
    if isinstance(data.payback, NoData):
        workbook.no_data("Payback", data.payback.reason)
    else:
        workbook.table(workbook.sheet("Payback"), PAYBACK_COLUMNS, data.payback)
