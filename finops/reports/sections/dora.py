"""DORA's four keys: this period per team with their performance bands, and the trend over
the last four fiscal quarters (the organisation's, or the team's in a team report)."""

from __future__ import annotations

from dataclasses import dataclass

from finops.analytics.dora import DeliveryScope, dora, load_bands
from finops.periods import Period, add_months, quarter_containing
from finops.reports.model import NoData, ReportScope
from finops.reports.workbook import Column, ReportWorkbook

TREND_QUARTERS = 4


@dataclass(frozen=True)
class DoraRow:
    quarter: str
    group: str
    deployments: int
    deploys_per_week: float
    lead_time_hours: float | None
    change_failure_rate_pct: float | None
    recovery_hours: float | None
    unrecovered: int
    unlinked_incidents: int
    band: str | None
    deployment_frequency_band: str | None
    lead_time_hours_band: str | None
    change_failure_rate_pct_band: str | None
    recovery_hours_band: str | None


@dataclass(frozen=True)
class Dora:
    bands_report: str
    teams: tuple[DoraRow, ...]
    trend: tuple[DoraRow, ...]


def _trend_buckets(scope: ReportScope) -> list[Period]:
    """The last four fiscal quarters, ending with the report's (or the period alone)."""
    if scope.period.kind != "quarter":
        return [scope.period]
    fiscal = {
        "fiscal_year_start_month": scope.config.fiscal_year_start_month,
        "fiscal_year_label": scope.config.fiscal_year_label,
    }
    return [
        quarter_containing(add_months(scope.period.start, -3 * back), **fiscal)
        for back in reversed(range(TREND_QUARTERS))
    ]


def _rows(table_rows: list[dict], group: str) -> tuple[DoraRow, ...]:
    fields = [f for f in DoraRow.__dataclass_fields__ if f != "group"]
    return tuple(DoraRow(group=r[group], **{f: r[f] for f in fields}) for r in table_rows)


def collect(scope: ReportScope) -> Dora | NoData:
    ((deployments,),) = scope.conn.execute("SELECT count(*) FROM deployments").fetchall()
    if not deployments:
        return NoData(
            "No DORA data: no deployments are loaded. Send them from CI/CD with "
            "`finops event deploy` or load files with `finops ingest events`."
        )
    report = scope.config.scorecard.dora_bands
    bands = load_bands(report)
    delivery = DeliveryScope.from_config(scope.config)
    per_team = dora(
        scope.conn, [scope.period], bands, by="team", scope=delivery, team=scope.team
    ).to_pylist()
    by = "team" if scope.team else "organisation"
    trend = dora(
        scope.conn, _trend_buckets(scope), bands, by=by, scope=delivery, team=scope.team
    ).to_pylist()
    if not per_team:
        whose = f" of team {scope.team}" if scope.team else ""
        return NoData(f"No DORA data: no production deployments{whose} up to {scope.period.label}.")
    return Dora(report, _rows(per_team, "team"), _rows(trend, by))


COLUMNS = (
    Column("quarter", "Quarter"),
    Column("group", "Team"),
    Column("deployments", "Deployments", "int"),
    Column("deploys_per_week", "Per week", "number"),
    Column("lead_time_hours", "Lead time (h)", "number"),
    Column("change_failure_rate_pct", "Change failure rate", "pct"),
    Column("recovery_hours", "Recovery (h)", "number"),
    Column("unrecovered", "Unrecovered", "int"),
    Column("band", "Band"),
    Column("deployment_frequency_band", "Frequency band"),
    Column("lead_time_hours_band", "Lead time band"),
    Column("change_failure_rate_pct_band", "Failure rate band"),
    Column("recovery_hours_band", "Recovery band"),
)


def write_sheet(workbook: ReportWorkbook, data: Dora) -> None:
    workbook.table(workbook.sheet("DORA"), COLUMNS, data.teams)
    workbook.table(workbook.sheet("DORA trend"), COLUMNS, data.trend)
