"""HTML and PDF from the Jinja templates in `reports/templates/`, with one stylesheet.

The templates are the deployment's own (`reports/templates/` beside finops.yaml) when it
has them, else the defaults that ship with finops. `report.html` lays the report out and
includes one partial per section; `report.css` styles the screen and, through WeasyPrint's
paged media, the PDF (page numbers, running header, tables that break between rows).
Formatting filters (`money`, `pct`, `number`, `utc`) live here so every template prints a
figure the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2

from finops.config import Config
from finops.defaults import defaults_root
from finops.reports.charts import svg_data_uri
from finops.reports.model import NoData, ReportData, to_cent

STYLESHEET = "report.css"
LAYOUT = "report.html"


def template_dir(config: Config) -> Path:
    """The deployment's `reports/templates/`, else the packaged defaults."""
    own = config.base_dir / "reports" / "templates"
    if (own / LAYOUT).is_file():
        return own
    return defaults_root() / "reports" / "templates"


def money(value: Decimal | float | None) -> str:
    """`1234567.891` -> `1,234,567.89` (halves rounded away from zero, as DuckDB does)."""
    if value is None:
        return ""
    amount = value if isinstance(value, Decimal) else Decimal(repr(value))
    return f"{to_cent(amount):,.2f}"


def pct(value: Decimal | float | None, places: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{places}f}%"


def number(value: Decimal | float | int | None, places: int = 2) -> str:
    if value is None:
        return ""
    return f"{value:,.{places}f}"


def utc(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def field(record: Any, key: str) -> Any:
    """A record's value by name, from a dataclass or a mapping; None when it has none."""
    if isinstance(record, dict):
        return record.get(key)
    return getattr(record, key, None)


def environment(templates: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, pct=pct, number=number, utc=utc, field=field)
    env.tests["no_data"] = lambda value: isinstance(value, NoData)
    return env


def render_html(report: ReportData, templates: Path) -> str:
    """The report as one self-contained HTML document (stylesheet and charts inside)."""
    env = environment(templates)
    charts: dict[str, dict[str, str]] = {}
    for result in report.sections:
        if result.has_data and result.section.charts is not None:
            drawn = result.section.charts(result.data)
            charts[result.section.key] = {name: svg_data_uri(c) for name, c in drawn.items()}
    stylesheet = (templates / STYLESHEET).read_text(encoding="utf-8")
    context: dict[str, Any] = {"report": report, "charts": charts, "stylesheet": stylesheet}
    return env.get_template(LAYOUT).render(context)


def write_pdf(html: str, path: Path, templates: Path) -> None:
    """Lay the HTML out on pages with WeasyPrint (Pango) and write the PDF."""
    import weasyprint

    weasyprint.HTML(string=html, base_url=str(templates)).write_pdf(str(path))
