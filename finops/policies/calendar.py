"""Working time: an IANA time zone, working days and hours, and a holiday calendar.

Holidays come from the `holidays` package for the configured country (and subdivision)
plus any dates listed in finops.yaml. The same calendar answers in Python (one instant)
and in SQL (a column of instants), so a policy's query and its tests agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import holidays as holiday_calendars

from finops.config import Config
from finops.errors import ConfigError

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class WorkCalendar:
    time_zone: str
    workdays: frozenset[int] = frozenset(range(5))
    """ISO weekday numbers minus one: 0 is Monday."""
    start: time = time(8)
    end: time = time(19)
    country: str | None = None
    subdivision: str | None = None
    extra_holidays: frozenset[date] = frozenset()

    @classmethod
    def from_config(cls, config: Config) -> WorkCalendar:
        return cls(
            time_zone=config.time_zone,
            country=config.holidays.country,
            subdivision=config.holidays.subdivision,
            extra_holidays=frozenset(config.holidays.dates),
        )

    def with_hours(
        self,
        *,
        time_zone: str | None = None,
        workdays: tuple[str, ...] | None = None,
        start: time | None = None,
        end: time | None = None,
    ) -> WorkCalendar:
        return WorkCalendar(
            time_zone=time_zone or self.time_zone,
            workdays=frozenset(parse_weekdays(workdays)) if workdays else self.workdays,
            start=start or self.start,
            end=end or self.end,
            country=self.country,
            subdivision=self.subdivision,
            extra_holidays=self.extra_holidays,
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def holidays_between(self, first: date, last: date) -> list[date]:
        found = {d for d in self.extra_holidays if first <= d <= last}
        if self.country:
            try:
                calendar = holiday_calendars.country_holidays(
                    self.country, subdiv=self.subdivision, years=range(first.year, last.year + 1)
                )
            except NotImplementedError as exc:
                raise ConfigError(f"holidays: {exc}") from None
            found |= {d for d in calendar if first <= d <= last}
        return sorted(found)

    def is_working_time(self, instant: datetime) -> bool:
        local = instant.astimezone(self.tz)
        return (
            local.weekday() in self.workdays
            and self.start <= local.time() < self.end
            and not self.holidays_between(local.date(), local.date())
        )

    def working_time_sql(self, column: str, first: date, last: date) -> tuple[str, list[object]]:
        """A SQL boolean: is the TIMESTAMPTZ `column` working time? (local clock, DST-aware)"""
        local = f"timezone(?, {column})"
        holidays = self.holidays_between(first, last)
        sql = (
            f"(isodow({local}) - 1 IN ({', '.join(str(d) for d in sorted(self.workdays)) or '-1'})"
            f" AND CAST({local} AS TIME) >= ? AND CAST({local} AS TIME) < ?"
            f" AND NOT list_contains(?, CAST({local} AS DATE)))"
        )
        tz = self.time_zone
        return sql, [tz, tz, self.start, tz, self.end, holidays, tz]

    def describe(self) -> str:
        days = ", ".join(WEEKDAY_NAMES[d] for d in sorted(self.workdays))
        holidays = f" except {self.country} holidays" if self.country else ""
        listed = " and listed holidays" if self.extra_holidays else ""
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.time_zone}{holidays}{listed}"


def parse_weekdays(names: tuple[str, ...]) -> list[int]:
    days: list[int] = []
    for name in names:
        key = name.strip().lower()[:3]
        if key not in WEEKDAY_NAMES:
            raise ConfigError(f"{name!r} is not a weekday: use mon, tue, ... sun")
        days.append(WEEKDAY_NAMES.index(key))
    return days
