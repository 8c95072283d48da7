"""When the quarterly report is due: the first working day of a fiscal quarter.

A working day is a weekday that is neither a public holiday of the configured country
(and subdivision, through the `holidays` package) nor one of `holidays.dates` (the
organisation's own days off). On that day the scheduler builds the quarter just ended.
The functions are pure: the caller passes today's date in the organisation's time zone.
"""

from __future__ import annotations

from datetime import date, timedelta

import holidays as public_holidays

from finops.config import Config, Holidays
from finops.errors import ConfigError
from finops.periods import Period, add_months, quarter_containing

_SEARCH_DAYS = 31
"""A quarter's first working day is well inside its first month."""


def days_off(calendar: Holidays, years: list[int]) -> set[date]:
    """Public holidays of the configured country and the organisation's own dates."""
    off = set(calendar.dates)
    if calendar.country:
        try:
            found = public_holidays.country_holidays(
                calendar.country, subdiv=calendar.subdivision, years=years
            )
        except NotImplementedError as exc:
            raise ConfigError(
                f"holidays.country {calendar.country!r}"
                f"{f' / subdivision {calendar.subdivision!r}' if calendar.subdivision else ''}: "
                f"{exc}"
            ) from None
        off.update(found.keys())
    return off


def first_working_day(start: date, calendar: Holidays) -> date:
    """The first day on or after `start` that is a weekday and not a day off."""
    off = days_off(calendar, [start.year, start.year + 1])
    for offset in range(_SEARCH_DAYS):
        day = start + timedelta(days=offset)
        if day.weekday() < 5 and day not in off:
            return day
    raise ConfigError(
        f"holidays: no working day in the {_SEARCH_DAYS} days from {start}; check holidays.dates"
    )


def first_working_day_of_quarter(quarter: Period, calendar: Holidays) -> date:
    return first_working_day(quarter.start, calendar)


def quarter_to_report(today: date, config: Config) -> Period | None:
    """The fiscal quarter just ended if today is the first working day of a new one, else None."""
    fiscal = {
        "fiscal_year_start_month": config.fiscal_year_start_month,
        "fiscal_year_label": config.fiscal_year_label,
    }
    current = quarter_containing(today, **fiscal)
    if today != first_working_day_of_quarter(current, config.holidays):
        return None
    return quarter_containing(add_months(current.start, -1), **fiscal)
