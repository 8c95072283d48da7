"""The report's sections, in order. Each entry names its data function, Jinja partial
(`reports/templates/<template>`), sheet writer and charts.

Sections still waiting for their analytics use `pending(...)`: they render the no-data
panel with the reason given there. Plugging one in means replacing its entry's
`collect=pending.X` with the new data function and adding `template=`, `write_sheet=` (and
`charts=` if it draws any).
"""

from __future__ import annotations

from finops.reports.model import Section
from finops.reports.sections import (
    anomalies,
    appendix,
    chargeback,
    gpu,
    kpis,
    pending,
    recommendations,
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
    Section("roi", "ROI and payback", pending.ROI),
    Section("dora", "DORA four keys", pending.DORA),
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
