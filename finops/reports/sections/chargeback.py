"""Charge-back per team: the period's spend by team with its cost centre, by month, by
service, and how much of the bill carries a team tag (tag coverage)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import altair as alt

from finops.analytics.chargeback import chargeback, parse_dimensions, period_total
from finops.reports.model import NoData, ReportScope, to_cent
from finops.reports.sections.common import for_team, no_billing
from finops.reports.workbook import Column, ReportWorkbook

TOP_SERVICES = 10


@dataclass(frozen=True)
class TeamCharge:
    team: str
    cost_centre: str | None
    business_unit: str | None
    currency: str
    cost: Decimal
    """Rounded to the cent by the analytics, as every format shows it."""
    share: Decimal
    """Percent of the period's bill in this currency."""
    rows: int


@dataclass(frozen=True)
class MonthCharge:
    month: str
    team: str
    currency: str
    cost: Decimal


@dataclass(frozen=True)
class ServiceCharge:
    service: str
    currency: str
    cost: Decimal
    share: Decimal
    """Percent of the spend shown (the bill, or the team's spend)."""


@dataclass(frozen=True)
class Total:
    currency: str
    cost: Decimal
    """The bill (or the team's spend), exact."""


@dataclass(frozen=True)
class TagCoverage:
    """Share of spend whose allocation tag names a team."""

    currency: str
    allocated: Decimal
    total: Decimal

    @property
    def coverage_pct(self) -> Decimal:
        if not self.total:
            return Decimal(0)
        return to_cent(100 * self.allocated / self.total)


@dataclass(frozen=True)
class Chargeback:
    cost_basis: str
    allocation_rule: str
    teams: tuple[TeamCharge, ...]
    totals: tuple[Total, ...]
    months: tuple[MonthCharge, ...]
    services: tuple[ServiceCharge, ...]
    coverage: tuple[TagCoverage, ...] | NoData
    shared_costs: NoData
    """Shared-cost allocation arrives with the allocation rules of finops.analytics.chargeback."""


def collect(scope: ReportScope) -> Chargeback | NoData:
    allocation = scope.config.allocation

    def run(by: str) -> list[dict]:
        dims = parse_dimensions(by, allocation, scope.config.teams)
        table = chargeback(
            scope.conn,
            scope.period,
            dims,
            cost=allocation.cost_basis,
            unallocated_label=allocation.unallocated_label,
        )
        return for_team(table, scope.team).to_pylist()

    by_team = run("team")
    if not by_team:
        return no_billing(scope)
    teams = {t.name: t for t in scope.config.teams}
    charges = tuple(
        TeamCharge(
            team=row["team"],
            cost_centre=teams[row["team"]].cost_centre if row["team"] in teams else None,
            business_unit=teams[row["team"]].business_unit if row["team"] in teams else None,
            currency=row["currency"],
            cost=row["cost"],
            share=row["share"],
            rows=row["rows"],
        )
        for row in by_team
    )
    if scope.team is None:
        bill = period_total(scope.conn, scope.period, allocation.cost_basis)
        totals = tuple(Total(currency, cost) for currency, cost in sorted(bill.items()))
        unallocated = {
            r["currency"]: r["exact_cost"]
            for r in by_team
            if r["team"] == allocation.unallocated_label
        }
        coverage: tuple[TagCoverage, ...] | NoData = tuple(
            TagCoverage(t.currency, t.cost - unallocated.get(t.currency, Decimal(0)), t.cost)
            for t in totals
        )
    else:
        totals = tuple(Total(r["currency"], r["exact_cost"]) for r in by_team)
        coverage = NoData(
            "Tag coverage is an organisation-wide figure: untagged spend belongs to no team."
        )
    months = tuple(
        MonthCharge(r["month"], r["team"], r["currency"], r["cost"])
        for r in sorted(run("team,month"), key=lambda r: (r["month"], r["team"]))
    )
    spent = {t.currency: t.cost for t in totals}
    services = tuple(
        ServiceCharge(
            r["service"],
            r["currency"],
            r["cost"],
            to_cent(100 * r["exact_cost"] / spent[r["currency"]])
            if spent[r["currency"]]
            else Decimal(0),
        )
        for r in _by_service(run("team,service") if scope.team else run("service"))
    )
    return Chargeback(
        cost_basis=allocation.cost_basis,
        allocation_rule=_allocation_rule(scope),
        teams=charges,
        totals=totals,
        months=months,
        services=services,
        coverage=coverage,
        shared_costs=NoData(
            "Shared costs are not split yet: each team is charged its directly tagged spend"
            + (
                f", and untagged spend stays in {allocation.unallocated_label}."
                if scope.team is None
                else "."
            )
        ),
    )


def _by_service(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["currency"], -r["exact_cost"], r["service"]))[
        :TOP_SERVICES
    ]


def _allocation_rule(scope: ReportScope) -> str:
    allocation = scope.config.allocation
    keys = ", ".join(allocation.tag_keys)
    normalised = (
        " (values normalised: case, spaces, underscores)" if allocation.normalise_values else ""
    )
    return f"Direct attribution by the first tag present of: {keys}{normalised}."


def charts(data: Chargeback) -> dict[str, alt.TopLevelMixin]:
    values = [{"month": m.month, "team": m.team, "cost": float(m.cost)} for m in data.months]
    chart = (
        alt.Chart(alt.Data(values=values), title="Spend by team and month")
        .mark_bar()
        .encode(
            x=alt.X("month:O", title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("sum(cost):Q", title=f"Cost ({data.totals[0].currency})"),
            color=alt.Color("team:N", title="Team", scale=alt.Scale(scheme="tableau10")),
            order=alt.Order("team:N"),
        )
        .properties(width=420, height=220)
    )
    return {"by_month": chart}


TEAM_COLUMNS = (
    Column("team", "Team"),
    Column("cost_centre", "Cost centre"),
    Column("business_unit", "Business unit"),
    Column("currency", "Currency"),
    Column("cost", "Cost", "money"),
    Column("share", "Share", "pct"),
    Column("rows", "Billing rows", "int"),
)


def write_sheet(workbook: ReportWorkbook, data: Chargeback) -> None:
    sheet = workbook.sheet("Charge-back")
    total = data.totals[0] if len(data.totals) == 1 else None
    span = workbook.table(
        sheet,
        TEAM_COLUMNS,
        data.teams,
        total={"team": "Total", "currency": total.currency, "cost": to_cent(total.cost)}
        if total
        else None,
    )
    workbook.bar_chart(
        sheet, span, category="team", values=["cost"], title="Cost by team", anchor="J2"
    )
    months = workbook.sheet("Charge-back by month")
    workbook.table(
        months,
        (
            Column("month", "Month"),
            Column("team", "Team"),
            Column("currency", "Currency"),
            Column("cost", "Cost", "money"),
        ),
        data.months,
    )
    services = workbook.sheet("Top services")
    workbook.table(
        services,
        (
            Column("service", "Service"),
            Column("currency", "Currency"),
            Column("cost", "Cost", "money"),
            Column("share", "Share", "pct"),
        ),
        data.services,
    )
    services.set_column(0, 0, 40)
    if not isinstance(data.coverage, NoData):
        coverage = workbook.sheet("Tag coverage")
        workbook.table(
            coverage,
            (
                Column("currency", "Currency"),
                Column("allocated", "Spend with a team tag", "money"),
                Column("total", "Spend", "money"),
                Column("coverage_pct", "Coverage", "pct"),
            ),
            data.coverage,
        )
