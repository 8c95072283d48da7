"""Sections whose analytics are not in this version of finops: each says so in its panel.

Each becomes a real section by giving its `Section` entry in `SECTIONS` a data function,
a template partial and a sheet writer in place of `pending(...)`.
"""

from __future__ import annotations

from collections.abc import Callable

from finops.reports.model import NoData, ReportScope


def pending(reason: str) -> Callable[[ReportScope], NoData]:
    """A data function that always answers `NoData(reason)`."""

    def collect(scope: ReportScope) -> NoData:
        return NoData(reason)

    return collect


ROI = pending(
    "No ROI figures: cost against value per model or project, and optimisation projects' "
    "payback against the hurdle rate, are not computed by this version of finops."
)
DORA = pending(
    "No DORA data: deployment, change and incident events are not loaded into this "
    "warehouse, so the four keys (deployment frequency, lead time for changes, change "
    "failure rate, time to restore service) cannot be computed."
)
