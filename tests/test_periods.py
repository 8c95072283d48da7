"""Reporting periods: months and quarters by billing period, ranges by charge period."""

from __future__ import annotations

from datetime import date

import pytest

from finops.errors import ConfigError
from finops.periods import parse_period, quarter_containing


@pytest.mark.parametrize(
    ("text", "kind", "start", "end"),
    [
        ("2026-05", "month", date(2026, 5, 1), date(2026, 6, 1)),
        ("2026-12", "month", date(2026, 12, 1), date(2027, 1, 1)),
        ("2026-Q2", "quarter", date(2026, 4, 1), date(2026, 7, 1)),
        ("2026-q4", "quarter", date(2026, 10, 1), date(2027, 1, 1)),
        ("2026-05-01..2026-06-30", "range", date(2026, 5, 1), date(2026, 7, 1)),
    ],
)
def test_calendar_periods(text: str, kind: str, start: date, end: date) -> None:
    period = parse_period(text)
    assert (period.kind, period.start, period.end) == (kind, start, end)


def test_fiscal_quarters_follow_the_configured_year_start() -> None:
    april = {"fiscal_year_start_month": 4}
    assert parse_period("2026-Q1", **april).start == date(2026, 4, 1)
    assert parse_period("2026-Q4", **april).start == date(2027, 1, 1)
    named_by_end = {"fiscal_year_start_month": 4, "fiscal_year_label": "end"}
    assert parse_period("2027-Q1", **named_by_end).start == date(2026, 4, 1)
    assert parse_period("2027-Q4", **named_by_end).end == date(2027, 4, 1)


def test_quarter_containing_a_day() -> None:
    assert quarter_containing(date(2026, 11, 15)).label == "2026-Q4"
    assert quarter_containing(date(2027, 2, 1), fiscal_year_start_month=4).label == "2026-Q4"
    assert (
        quarter_containing(
            date(2027, 2, 1), fiscal_year_start_month=4, fiscal_year_label="end"
        ).label
        == "2027-Q4"
    )


def test_month_and_quarter_filter_on_billing_period_range_on_charge_period() -> None:
    assert parse_period("2026-05").column == "BillingPeriodStart"
    assert parse_period("2026-05-01..2026-05-31").column == "ChargePeriodStart"


@pytest.mark.parametrize(
    "text", ["2026-13", "May 2026", "2026-Q5", "2026-06-01..2026-05-01", "2026-02-30..2026-03-01"]
)
def test_bad_periods_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ConfigError, match="period"):
        parse_period(text)
