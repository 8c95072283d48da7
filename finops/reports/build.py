"""Build a report: gather every section's figures in one read, then write HTML, PDF, XLSX.

`build_report` is what `finops report` and the scheduler's quarterly job call. Time is
passed in (`generated_at`): the same warehouse, settings and time give the same files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from finops.config import Config
from finops.errors import ConfigError
from finops.periods import Period, add_months, parse_period, quarter_containing
from finops.reports.inputs import report_inputs
from finops.reports.model import ReportData, ReportScope, SectionResult
from finops.reports.render import render_html, template_dir, write_pdf
from finops.reports.sections import SECTIONS
from finops.reports.workbook import write_workbook
from finops.warehouse import Warehouse

ReportFormat = Literal["html", "pdf", "xlsx"]
FORMATS: tuple[ReportFormat, ...] = ("html", "pdf", "xlsx")


def previous_period(period: Period, config: Config) -> Period:
    """The period a report compares against: the quarter, month or same-length days before."""
    fiscal = {
        "fiscal_year_start_month": config.fiscal_year_start_month,
        "fiscal_year_label": config.fiscal_year_label,
    }
    if period.kind == "quarter":
        return quarter_containing(add_months(period.start, -1), **fiscal)
    if period.kind == "month":
        return parse_period(f"{add_months(period.start, -1):%Y-%m}")
    first = period.start - (period.end - period.start)
    return Period(f"{first}..{period.start - timedelta(days=1)}", "range", first, period.start)


def team_name(config: Config, team: str | None) -> str | None:
    """The configured team a `--team` value names (its name or an alias)."""
    if team is None or not config.teams:
        return team
    for known in config.teams:
        if team == known.name or team in known.aliases:
            return known.name
    names = ", ".join(t.name for t in config.teams)
    raise ConfigError(f"--team {team!r} is not a team in finops.yaml (teams: {names})")


def parse_formats(text: str | Iterable[str]) -> tuple[ReportFormat, ...]:
    """`html,pdf` -> ('html', 'pdf'), refusing anything else."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    chosen = [p.strip().lower() for p in parts if p.strip()]
    unknown = [p for p in chosen if p not in FORMATS]
    if unknown or not chosen:
        raise ConfigError(f"--format {','.join(parts)!r}: use one or more of {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in chosen)


def _title(period: Period, team: str | None) -> str:
    kind = {"quarter": "Quarterly review", "month": "Monthly review"}.get(period.kind, "Review")
    return f"{kind} {period.label}" + (f": team {team}" if team else "")


def assemble(
    warehouse: Warehouse,
    config: Config,
    period: Period,
    team: str | None,
    generated_at: datetime,
) -> ReportData:
    """Every section's figures for the period (and team), read in one short connection."""
    team = team_name(config, team)
    previous = previous_period(period, config)
    with warehouse.reader() as conn:
        inputs = report_inputs(conn, config, period, team)
        scope = ReportScope(conn, config, period, previous, team, generated_at, inputs)
        results = tuple(SectionResult(section, section.collect(scope)) for section in SECTIONS)
    return ReportData(
        organisation=config.organisation,
        title=_title(period, team),
        period=period,
        previous=previous,
        team=team,
        generated_at=generated_at,
        currency=config.currency,
        inputs=inputs,
        sections=results,
    )


def build_report(
    warehouse: Warehouse,
    config: Config,
    period: Period | str,
    team: str | None,
    formats: Iterable[str],
    out_dir: Path,
    generated_at: datetime,
) -> list[Path]:
    """Write the report in each format to `out_dir` (finops-2026-Q3[-team].html ...).

    Each file is written beside its final name and renamed into place, so a reader (or an
    archive job) never picks up half a report.
    """
    if isinstance(period, str):
        period = parse_period(
            period,
            fiscal_year_start_month=config.fiscal_year_start_month,
            fiscal_year_label=config.fiscal_year_label,
        )
    chosen = parse_formats(formats)
    report = assemble(warehouse, config, period, team, generated_at)
    templates = template_dir(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    html = render_html(report, templates) if {"html", "pdf"} & set(chosen) else ""
    for fmt in chosen:
        path = out_dir / f"{report.file_stem}.{fmt}"
        partial = path.with_name(f".{path.name}.partial")
        if fmt == "html":
            partial.write_text(html, encoding="utf-8")
        elif fmt == "pdf":
            write_pdf(html, partial, templates)
        else:
            write_workbook(partial, report)
        os.replace(partial, path)
        written.append(path)
    return written
