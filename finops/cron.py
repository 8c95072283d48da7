"""Cron expressions as people write them, for APScheduler.

APScheduler 3 reads a crontab's day-of-week numbers with 0 = Monday, where cron (and
every schedule a person copies from one) means 0 or 7 = Sunday, 1 = Monday. Day numbers
are turned into names first, so `0 6 * * 1` fires on Mondays as it does in cron.
"""

from __future__ import annotations

import re

from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NUMBER = re.compile(r"(?<![/\d])([0-7])(?!\d)")


def cron_trigger(expression: str, time_zone: str) -> CronTrigger:
    """A trigger for a five-field cron expression (minute hour day month weekday).

    Raises ValueError (or LookupError for an unknown time zone) when it isn't one.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"Wrong number of fields; got {len(fields)}, expected 5")
    minute, hour, day, month, weekday = fields
    weekday = _DAY_NUMBER.sub(lambda m: _DAY_NAMES[int(m.group(1))], weekday)
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=time_zone
    )
