"""Anomalies of the period: days whose spend of a team and service stood out from its
steadiest recent week, as `finops anomalies detect` stored them, with their state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pyarrow.compute as pc

from finops.analytics.anomalies import list_anomalies
from finops.reports.model import NoData, ReportScope
from finops.reports.sections.common import for_team
from finops.reports.workbook import Column, ReportWorkbook

TOP = 25


@dataclass(frozen=True)
class Anomaly:
    day: date
    team: str
    service: str
    currency: str
    actual: Decimal
    baseline: Decimal
    z: float
    state: str
    acknowledged_by: str | None


@dataclass(frozen=True)
class Anomalies:
    rows: tuple[Anomaly, ...]
    """Every anomaly of the period, the largest rise over the usual spend first."""

    @property
    def top(self) -> tuple[Anomaly, ...]:
        """What the HTML and PDF list; the workbook holds them all."""
        return self.rows[:TOP]


def collect(scope: ReportScope) -> Anomalies | NoData:
    stored = list_anomalies(scope.conn, "all")
    if not stored.num_rows:
        return NoData(
            "No anomaly detection has run on this warehouse: `finops anomalies detect` looks "
            "for them."
        )
    days = stored["day"]
    in_period = pc.and_(pc.greater_equal(days, scope.period.start), pc.less(days, scope.period.end))
    rows = for_team(stored.filter(in_period), scope.team).to_pylist()
    if not rows:
        whose = f" for team {scope.team}" if scope.team else ""
        return NoData(f"No spend anomalies{whose} were detected in {scope.period.label}.")
    found = [Anomaly(**{k: r[k] for k in Anomaly.__dataclass_fields__}) for r in rows]
    found.sort(key=lambda a: (a.baseline - a.actual, a.day, a.team, a.service))
    return Anomalies(tuple(found))


COLUMNS = (
    Column("day", "Day"),
    Column("team", "Team"),
    Column("service", "Service"),
    Column("actual", "Spend", "money"),
    Column("baseline", "Usual", "money"),
    Column("z", "z", "number"),
    Column("state", "State"),
    Column("acknowledged_by", "Acknowledged by"),
)


def write_sheet(workbook: ReportWorkbook, data: Anomalies) -> None:
    workbook.table(workbook.sheet("Anomalies"), COLUMNS, data.rows)
