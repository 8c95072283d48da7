"""The report's sections, in order. Each entry names its data function, Jinja partial
(`reports/templates/<template>`), sheet writer and charts.

A new section is a module here (a record type, `collect(scope) -> record | NoData`,
`write_sheet`, optionally `charts`), a partial under `reports/templates/sections/`, and
one entry below. Whenever `collect` answers NoData, the layout shows the no-data panel
with its reason and the workbook a sheet saying so; the partial only ever sees data.
"""

from __future__ import annotations

from finops.reports.model import Section
from finops.reports.sections import (
    anomalies,
    appendix,
    chargeback,
    dora,
    gpu,
    kpis,
    recommendations,
    roi,
    summary,
)

SECTIONS: tuple[Section, ...] = (
    Section(
        "summary",
        "Executive summary",
        summary.collect,
        "sections/summary.html",
        summary.write_sheet,
        summary.charts,
    ),
    Section(
        "chargeback",
        "Charge-back per team",
        chargeback.collect,
        "sections/chargeback.html",
        chargeback.write_sheet,
        chargeback.charts,
    ),
    Section("gpu", "GPU fleet", gpu.collect, "sections/gpu.html", gpu.write_sheet, gpu.charts),
    Section(
        "recommendations",
        "Recommendations",
        recommendations.collect,
        "sections/recommendations.html",
        recommendations.write_sheet,
    ),
    Section("roi", "ROI and payback", roi.collect, "sections/roi.html", roi.write_sheet),
    Section("dora", "DORA four keys", dora.collect, "sections/dora.html", dora.write_sheet),
    Section("kpis", "FinOps KPIs", kpis.collect, "sections/kpis.html", kpis.write_sheet),
    Section(
        "anomalies",
        "Anomalies",
        anomalies.collect,
        "sections/anomalies.html",
        anomalies.write_sheet,
    ),
    Section(
        "appendix",
        "Appendix: method and inputs",
        appendix.collect,
        "sections/appendix.html",
        appendix.write_sheet,
    ),
)
