"""Executive summary: spend against the previous period and the forecast, savings found,
accepted and realised, and the top three actions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import altair as alt
import pyarrow as pa
import pyarrow.compute as pc

from finops.analytics.chargeback import Allocation
from finops.analytics.forecast import forecast_variance
from finops.policies.store import realised_savings
from finops.reports.model import NoData, ReportScope, to_cent
from finops.reports.sections import recommendations
from finops.reports.sections.common import allocated_by_month, allocation_lines_of, no_billing
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
    forecast: ForecastCheck | NoData
    savings: tuple[recommendations.SavingsFound, ...]
    realised: RealisedSavings | NoData
    top_actions: tuple[recommendations.Recommendation, ...]


@dataclass(frozen=True)
class ForecastCheck:
    """The period's spend as forecast at its start (from the months before) and as it came."""

    forecast: float
    actual: Decimal
    variance_pct: float | None
    method: str


@dataclass(frozen=True)
class RealisedSavings:
    """Applied recommendations: monthly savings estimated, and measured from the spend
    before and after each change."""

    applied: int
    estimated: Decimal
    realised: Decimal


def forecast_for(scope: ReportScope) -> ForecastCheck | NoData:
    rows = forecast_variance(
        scope.conn,
        scope.period,
        Allocation.from_config(scope.config),
        cost=scope.config.allocation.cost_basis,
        lines=allocation_lines_of(scope),
    ).to_pylist()
    wanted = scope.team or "(total)"
    chosen = next((r for r in rows if r["team"] == wanted), None)
    if chosen is None or chosen["forecast"] is None:
        return NoData(
            f"No forecast for {scope.period.label}: the warehouse holds no complete month "
            "before it to forecast from."
        )
    return ForecastCheck(
        forecast=chosen["forecast"],
        actual=chosen["actual"],
        variance_pct=chosen["variance_pct"],
        method=chosen["method"],
    )


def realised_for(scope: ReportScope) -> RealisedSavings | NoData:
    measured = realised_savings(scope.conn, scope.generated_at)
    if scope.team is not None:
        ids = [
            rec_id
            for (rec_id,) in scope.conn.execute(
                "SELECT rec_id FROM recommendations WHERE team = ?", [scope.team]
            ).fetchall()
        ]
        measured = measured.filter(pc.is_in(measured["rec_id"], pa.array(ids, pa.string())))
    if not measured.num_rows:
        return NoData(
            "No savings realised yet: no applied recommendation has a day of spend after it."
        )
    return RealisedSavings(
        applied=measured.num_rows,
        estimated=sum(measured["estimated"].to_pylist(), Decimal(0)),
        realised=sum(measured["realised"].to_pylist(), Decimal(0)),
    )


def collect(scope: ReportScope) -> ExecutiveSummary | NoData:
    rows = _by_month(allocated_by_month(scope))
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
        realised=realised_for(scope),
        top_actions=recommendations.top_recommendations(
            scope.conn, scope.team, states=recommendations.OPEN_STATES, limit=TOP_ACTIONS
        ),
    )


def _by_month(table: pa.Table) -> list[dict]:
    """Sum the teams' rows per month and currency (exact)."""
    grouped = table.group_by(["period", "currency"]).aggregate([("exact_cost", "sum")])
    return [
        {"month": r["period"], "currency": r["currency"], "exact_cost": r["exact_cost_sum"]}
        for r in grouped.to_pylist()
    ]


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
    bold = workbook.format("total")
    sheet.write_string(below, 0, "Forecast at the start", bold)
    if isinstance(data.forecast, NoData):
        sheet.write_string(below, 1, f"No data: {data.forecast.reason}")
    else:
        sheet.write_number(below, 1, data.forecast.forecast, workbook.format("money"))
        sheet.write_string(below, 2, "variance %", bold)
        if data.forecast.variance_pct is not None:
            sheet.write_number(below, 3, data.forecast.variance_pct, workbook.format("pct"))
    sheet.write_string(below + 1, 0, "Monthly savings realised", bold)
    if isinstance(data.realised, NoData):
        sheet.write_string(below + 1, 1, f"No data: {data.realised.reason}")
    else:
        sheet.write_number(below + 1, 1, float(data.realised.realised), workbook.format("money"))
        sheet.write_string(below + 1, 2, "estimated", bold)
        sheet.write_number(below + 1, 3, float(data.realised.estimated), workbook.format("money"))
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
