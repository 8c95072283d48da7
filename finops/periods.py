"""Reporting periods: `2026-05` (a month), `2026-Q2` (a fiscal quarter), `2026-05-01..2026-06-30`.

A month or quarter selects cost rows by BillingPeriodStart, so it matches the invoice;
a date range selects by ChargePeriodStart, both ends included, in UTC. Quarters follow
the fiscal year set in finops.yaml (`fiscal_year_start_month`, `fiscal_year_label`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from finops.errors import ConfigError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(?:FY)?(\d{4})-?Q([1-4])$", re.IGNORECASE)
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Period:
    """A half-open span [start, end) of days and the column it filters on."""

    label: str
    kind: Literal["month", "quarter", "range"]
    start: date
    end: date

    @property
    def column(self) -> str:
        return "ChargePeriodStart" if self.kind == "range" else "BillingPeriodStart"

    @property
    def start_ts(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_ts(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)

    def where(self, alias: str = "") -> tuple[str, list[datetime]]:
        """A parameterised SQL condition selecting this period's cost rows."""
        column = f'{alias}."{self.column}"' if alias else f'"{self.column}"'
        return f"{column} >= ? AND {column} < ?", [self.start_ts, self.end_ts]


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def fiscal_quarter(
    fiscal_year: int, quarter: int, start_month: int = 1, label: str = "start"
) -> tuple[date, date]:
    """First day of the quarter and first day after it."""
    first_year = fiscal_year if label == "start" or start_month == 1 else fiscal_year - 1
    start = add_months(date(first_year, start_month, 1), 3 * (quarter - 1))
    return start, add_months(start, 3)


def parse_period(
    text: str, *, fiscal_year_start_month: int = 1, fiscal_year_label: str = "start"
) -> Period:
    """Parse a period the way every command's `--period` takes it."""
    text = text.strip()
    if match := _MONTH.match(text):
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise ConfigError(f"period {text!r}: month must be 01-12")
        start = date(year, month, 1)
        return Period(text, "month", start, add_months(start, 1))
    if match := _QUARTER.match(text):
        start, end = fiscal_quarter(
            int(match[1]), int(match[2]), fiscal_year_start_month, fiscal_year_label
        )
        return Period(f"{match[1]}-Q{match[2]}", "quarter", start, end)
    if match := _RANGE.match(text):
        try:
            first, last = date.fromisoformat(match[1]), date.fromisoformat(match[2])
        except ValueError as exc:
            raise ConfigError(f"period {text!r}: {exc}") from None
        if last < first:
            raise ConfigError(f"period {text!r}: the range ends before it starts")
        return Period(text, "range", first, last + timedelta(days=1))
    raise ConfigError(
        f"period {text!r} not understood: use a month (2026-05), a quarter (2026-Q2) "
        "or a date range with both ends included (2026-05-01..2026-06-30)"
    )


def quarter_containing(
    day: date, *, fiscal_year_start_month: int = 1, fiscal_year_label: str = "start"
) -> Period:
    """The fiscal quarter a day falls in."""
    offset = (day.month - fiscal_year_start_month) % 12
    first_year = day.year if day.month >= fiscal_year_start_month else day.year - 1
    named = (
        first_year
        if fiscal_year_label == "start" or fiscal_year_start_month == 1
        else first_year + 1
    )
    return parse_period(
        f"{named}-Q{offset // 3 + 1}",
        fiscal_year_start_month=fiscal_year_start_month,
        fiscal_year_label=fiscal_year_label,
    )
