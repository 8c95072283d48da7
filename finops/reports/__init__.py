"""Quarterly review reports (HTML, PDF, XLSX) built from the analytics and the templates in
`reports/templates/`.

- `build_report(...)`: gather the figures and write the files (the CLI and scheduler call it).
- `assemble(...)`: the figures alone, as a `ReportData`.
- `quarter_to_report(today, config)`: the quarter to build on the first working day of the next.

Reports read through `finops.analytics` and never import Streamlit.
"""

from __future__ import annotations

from finops.reports.build import FORMATS, assemble, build_report, previous_period
from finops.reports.model import NoData, ReportData, ReportInputs
from finops.reports.schedule import first_working_day_of_quarter, quarter_to_report

__all__ = [
    "FORMATS",
    "NoData",
    "ReportData",
    "ReportInputs",
    "assemble",
    "build_report",
    "first_working_day_of_quarter",
    "previous_period",
    "quarter_to_report",
]
