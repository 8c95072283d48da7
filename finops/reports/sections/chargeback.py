"""Charge-back per team: the period's spend by team with its cost centre, by month, by
service, and how much of the bill carries a team tag (tag coverage)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import altair as alt

from finops.analytics.chargeback import (
    Allocation,
    allocate,
    allocation_coverage,
    chargeback,
    parse_dimensions,
)
from finops.reports.model import NoData, ReportScope, to_cent
from finops.reports.sections.common import (
    allocated_by_month,
    allocation_lines_of,
    for_team,
    no_billing,
)
from finops.reports.workbook import Column, ReportWorkbook

TOP_SERVICES = 10


@dataclass(frozen=True)
class TeamCharge:
    team: str
    cost_centre: str | None
    business_unit: str | None
    currency: str
    direct_cost: Decimal
    shared_cost: Decimal
    """Shared (and idle) cost the allocation rules gave the team."""
    cost: Decimal
    """Rounded to the cent by the analytics, as every format shows it."""
    share: Decimal
    """Percent of the period's bill."""


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
    """Percent of the spend shown (the bill, or the team's direct spend)."""


@dataclass(frozen=True)
class Total:
    currency: str
    cost: Decimal
    """The bill (or the team's allocated spend), exact."""


@dataclass(frozen=True)
class TagCoverage:
    """How the bill was attributed: directly (tag or account), by the rules, or not at all."""

    currency: str
    direct: Decimal
    bill: Decimal
    untagged: Decimal
    coverage_pct: float
    """Share of the bill attributed directly, as the analytics compute it."""
    allocated_pct: float
    """Direct plus what the shared-cost rules split among teams."""
    untagged_pct: float


@dataclass(frozen=True)
class SharedRule:
    name: str
    split: str
    teams: str


@dataclass(frozen=True)
class Chargeback:
    cost_basis: str
    allocation_rule: str
    teams: tuple[TeamCharge, ...]
    totals: tuple[Total, ...]
    months: tuple[MonthCharge, ...]
    services: tuple[ServiceCharge, ...]
    coverage: tuple[TagCoverage, ...] | NoData
    shared_rules: tuple[SharedRule, ...] | NoData


def collect(scope: ReportScope) -> Chargeback | NoData:
    settings = scope.config.allocation
    allocation = Allocation.from_config(scope.config)
    basis = settings.cost_basis

    lines = allocation_lines_of(scope)
    table = allocate(
        scope.conn, scope.period, allocation, by="team", grain="period", cost=basis, lines=lines
    )
    by_team = for_team(table, scope.team).to_pylist()
    if not by_team:
        return no_billing(scope)
    teams = {t.name: t for t in scope.config.teams}
    charges = tuple(
        TeamCharge(
            team=row["team"],
            cost_centre=teams[row["team"]].cost_centre if row["team"] in teams else None,
            business_unit=teams[row["team"]].business_unit if row["team"] in teams else None,
            currency=row["currency"],
            direct_cost=row["direct_cost"],
            shared_cost=row["shared_cost"],
            cost=row["cost"],
            share=row["share"],
        )
        for row in by_team
    )
    if scope.team is None:
        buckets = allocation_coverage(
            scope.conn, scope.period, allocation, cost=basis, lines=lines
        ).to_pylist()
        totals = tuple(Total(b["currency"], b["bill"]) for b in buckets)
        coverage: tuple[TagCoverage, ...] | NoData = tuple(
            TagCoverage(
                currency=b["currency"],
                direct=b["direct"],
                bill=b["bill"],
                untagged=b["untagged"],
                coverage_pct=b["coverage_pct"],
                allocated_pct=b["allocated_pct"],
                untagged_pct=b["untagged_pct"],
            )
            for b in buckets
        )
    else:
        totals = tuple(Total(r["currency"], r["exact_cost"]) for r in by_team)
        coverage = NoData(
            "Tag coverage is an organisation-wide figure: untagged spend belongs to no team."
        )
    first = f"{scope.period.start:%Y-%m}"
    months = tuple(
        MonthCharge(r["period"], r["team"], r["currency"], r["cost"])
        for r in sorted(
            allocated_by_month(scope).to_pylist(), key=lambda r: (r["period"], r["team"])
        )
        if r["period"] >= first
    )
    return Chargeback(
        cost_basis=basis,
        allocation_rule=_allocation_rule(scope),
        teams=charges,
        totals=totals,
        months=months,
        services=_top_services(scope),
        coverage=coverage,
        shared_rules=_shared_rules(scope),
    )


def _top_services(scope: ReportScope) -> tuple[ServiceCharge, ...]:
    """The largest services by direct cost (before shared costs are split)."""
    settings = scope.config.allocation
    by = "team,service" if scope.team else "service"
    table = chargeback(
        scope.conn,
        scope.period,
        parse_dimensions(by, settings, scope.config.teams),
        cost=settings.cost_basis,
        unallocated_label=settings.unallocated_label,
    )
    rows = for_team(table, scope.team).to_pylist()
    spent: dict[str, Decimal] = {}
    for r in rows:
        spent[r["currency"]] = spent.get(r["currency"], Decimal(0)) + r["exact_cost"]
    top = sorted(rows, key=lambda r: (r["currency"], -r["exact_cost"], r["service"]))
    return tuple(
        ServiceCharge(
            r["service"],
            r["currency"],
            r["cost"],
            to_cent(100 * r["exact_cost"] / spent[r["currency"]])
            if spent[r["currency"]]
            else Decimal(0),
        )
        for r in top[:TOP_SERVICES]
    )


def _shared_rules(scope: ReportScope) -> tuple[SharedRule, ...] | NoData:
    rules = scope.config.allocation.shared
    if not rules:
        return NoData(
            "No shared-cost rules in finops.yaml (allocation.shared): each team is charged its "
            "directly attributed spend"
            + (
                f", and untagged spend stays in {scope.config.allocation.unallocated_label}."
                if scope.team is None
                else "."
            )
        )
    return tuple(
        SharedRule(
            rule.name,
            rule.split,
            ", ".join(f"{t} {p:g}%" for t, p in rule.percentages.items())
            or ", ".join(rule.teams)
            or "every team",
        )
        for rule in rules
    )


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
    Column("direct_cost", "Direct cost", "money"),
    Column("shared_cost", "Shared cost", "money"),
    Column("cost", "Cost", "money"),
    Column("share", "Share", "pct"),
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
    if not isinstance(data.shared_rules, NoData):
        rules = workbook.sheet("Shared-cost rules")
        workbook.table(
            rules,
            (Column("name", "Rule"), Column("split", "Split"), Column("teams", "Shared by")),
            data.shared_rules,
        )
    if not isinstance(data.coverage, NoData):
        coverage = workbook.sheet("Tag coverage")
        workbook.table(
            coverage,
            (
                Column("currency", "Currency"),
                Column("direct", "Attributed directly", "money"),
                Column("untagged", "Without a team tag", "money"),
                Column("bill", "Bill", "money"),
                Column("coverage_pct", "Coverage", "pct"),
                Column("allocated_pct", "Allocated with shared costs", "pct"),
                Column("untagged_pct", "Untagged", "pct"),
            ),
            data.coverage,
        )
