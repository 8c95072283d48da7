"""Executive summary: spend against the previous period and the forecast, savings found,
accepted and realised, and the top three actions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import altair as alt

from finops.analytics.chargeback import chargeback, parse_dimensions
from finops.periods import Period
from finops.reports.model import NoData, ReportScope, to_cent
from finops.reports.sections import recommendations
from finops.reports.sections.common import for_team, no_billing
from finops.reports.workbook import Column, ReportWorkbook

TOP_ACTIONS = 3


@dataclass(frozen=True)
class SpendChange:
    """Spend in the period and the one before, exact; rounded only where shown."""

    currency: str
    spend: Decimal
    previous_spend: Decimal

    @property
    def change(self) -> Decimal:
        return self.spend - self.previous_spend

    @property
    def change_pct(self) -> Decimal | None:
        if not self.previous_spend:
            return None
        return (100 * self.change / self.previous_spend).quantize(Decimal("0.1"))


@dataclass(frozen=True)
class MonthSpend:
    month: str
    period: str
    currency: str
    cost: Decimal


@dataclass(frozen=True)
class ExecutiveSummary:
    period: str
    previous: str
    spend: tuple[SpendChange, ...]
    months: tuple[MonthSpend, ...]
    forecast: NoData
    """The forecast arrives with finops.analytics.forecast (see `forecast_for`)."""
    savings: tuple[recommendations.SavingsFound, ...]
    realised: NoData
    """Realised savings arrive with the policy engine (finops.policies)."""
    top_actions: tuple[recommendations.Recommendation, ...]


def forecast_for(scope: ReportScope) -> NoData:
    return NoData(
        f"No forecast for {scope.period.label}: this version of finops does not forecast spend yet."
    )


def realised_savings(scope: ReportScope) -> NoData:
    return NoData(
        "Realised savings are not measured yet: they need the policy engine's record of "
        "applied recommendations and the spend after them."
    )


def collect(scope: ReportScope) -> ExecutiveSummary | NoData:
    span = Period(
        f"{scope.previous.label}..{scope.period.label}",
        scope.period.kind,
        scope.previous.start,
        scope.period.end,
    )
    by = "team,month" if scope.team else "month"
    dims = parse_dimensions(by, scope.config.allocation, scope.config.teams)
    table = chargeback(
        scope.conn,
        span,
        dims,
        cost=scope.config.allocation.cost_basis,
        unallocated_label=scope.config.allocation.unallocated_label,
    )
    rows = for_team(table, scope.team).to_pylist()
    this_start = f"{scope.period.start:%Y-%m}"
    months = tuple(
        sorted(
            (
                MonthSpend(
                    month=row["month"],
                    period=scope.period.label
                    if row["month"] >= this_start
                    else scope.previous.label,
                    currency=row["currency"],
                    cost=row["exact_cost"],
                )
                for row in rows
            ),
            key=lambda m: (m.currency, m.month),
        )
    )
    if not any(m.period == scope.period.label for m in months):
        return no_billing(scope)
    currencies = sorted({m.currency for m in months})
    spend = tuple(
        SpendChange(
            currency=currency,
            spend=_total(months, currency, scope.period.label),
            previous_spend=_total(months, currency, scope.previous.label),
        )
        for currency in currencies
    )
    return ExecutiveSummary(
        period=scope.period.label,
        previous=scope.previous.label,
        spend=spend,
        months=months,
        forecast=forecast_for(scope),
        savings=recommendations.savings_found(scope.conn, scope.period, scope.team),
        realised=realised_savings(scope),
        top_actions=recommendations.top_recommendations(
            scope.conn, scope.team, states=recommendations.OPEN_STATES, limit=TOP_ACTIONS
        ),
    )


def _total(months: tuple[MonthSpend, ...], currency: str, period: str) -> Decimal:
    return sum((m.cost for m in months if (m.currency, m.period) == (currency, period)), Decimal(0))


def charts(data: ExecutiveSummary) -> dict[str, alt.TopLevelMixin]:
    values = [
        {"month": m.month, "period": m.period, "cost": float(to_cent(m.cost))} for m in data.months
    ]
    chart = (
        alt.Chart(alt.Data(values=values), title="Spend by month")
        .mark_bar()
        .encode(
            x=alt.X("month:O", title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("cost:Q", title=f"Cost ({data.spend[0].currency})"),
            color=alt.Color(
                "period:N",
                title=None,
                scale=alt.Scale(domain=[data.previous, data.period], range=["#9DB4CF", "#1F3A5F"]),
            ),
        )
        .properties(width=420, height=180)
    )
    return {"spend_by_month": chart}


def write_sheet(workbook: ReportWorkbook, data: ExecutiveSummary) -> None:
    sheet = workbook.sheet("Summary")
    rows = [
        {
            "currency": s.currency,
            "spend": s.spend,
            "previous_spend": s.previous_spend,
            "change": s.change,
            "change_pct": s.change_pct,
        }
        for s in data.spend
    ]
    workbook.table(
        sheet,
        (
            Column("currency", "Currency"),
            Column("spend", f"Spend {data.period}", "money"),
            Column("previous_spend", f"Spend {data.previous}", "money"),
            Column("change", "Change", "money"),
            Column("change_pct", "Change %", "pct"),
        ),
        rows,
    )
    below = len(rows) + 2
    sheet.write_string(below, 0, "Forecast", workbook.format("total"))
    sheet.write_string(below, 1, f"No data: {data.forecast.reason}")
    sheet.write_string(below + 1, 0, "Realised savings", workbook.format("total"))
    sheet.write_string(below + 1, 1, f"No data: {data.realised.reason}")
    savings_row = below + 3
    workbook.table(
        sheet,
        (
            Column("currency", "Currency"),
            Column("found", "Monthly savings found", "money"),
            Column("found_count", "Found", "int"),
            Column("accepted", "Monthly savings accepted", "money"),
            Column("accepted_count", "Accepted", "int"),
        ),
        data.savings,
        first_row=savings_row,
        filters=False,
    )
    actions_row = savings_row + len(data.savings) + 2
    workbook.table(
        sheet,
        (
            Column("resource", "Top action: resource"),
            Column("action", "Action"),
            Column("owner", "Owner"),
            Column("state", "State"),
            Column("monthly_savings", "Monthly savings", "money"),
        ),
        data.top_actions,
        first_row=actions_row,
        filters=False,
    )
