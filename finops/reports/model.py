"""What a report is made of: its scope, its recorded inputs, and each section's data or why not.

A section's data function takes a `ReportScope` (one open read connection, the settings,
the period and the previous one, an optional team) and returns its own typed record, or
`NoData` with a reason a reader can act on. Renderers only ever see `ReportData`: the
figures are fixed before any HTML, PDF or XLSX is written, so all three agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import duckdb

from finops.config import Config
from finops.periods import Period

if TYPE_CHECKING:
    import altair as alt

    from finops.reports.workbook import ReportWorkbook

CENT = Decimal("0.01")


def to_cent(amount: Decimal) -> Decimal:
    """Round money for display the way DuckDB's round() does (halves away from zero)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class NoData:
    """A section (or part of one) with nothing to show, and what would give it data."""

    reason: str


@dataclass(frozen=True)
class SourceIngest:
    """The newest successful ingest of one source: the data the report's figures rest on."""

    source: str
    collector: str
    last_ingest_at: datetime
    run_id: str
    rows: int | None
    checksum: str | None
    latest_status: str
    """Status of the source's newest attempt ('failed' means the report uses older data)."""


@dataclass(frozen=True)
class PolicyPackRevision:
    """Which policy pack the recommendations came from: a git commit, else a content hash."""

    kind: str
    """'git', 'content-hash' or 'none' (no policies folder)."""
    value: str
    modified: bool = False
    """A git checkout whose policies folder has uncommitted changes."""

    def __str__(self) -> str:
        if self.kind == "none":
            return self.value
        suffix = " (with uncommitted changes)" if self.modified else ""
        return f"{self.kind} {self.value}{suffix}"


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report's figures depend on; the same inputs give the same figures."""

    period: str
    team: str | None
    cost_basis: str
    config_file: str
    config_hash: str
    policy_pack: PolicyPackRevision
    sources: tuple[SourceIngest, ...]
    finops_version: str
    digest: str
    """sha256 over all of the above: two reports with one digest show the same figures."""


@dataclass(frozen=True)
class ReportScope:
    """What every section's data function is given."""

    conn: duckdb.DuckDBPyConnection
    config: Config
    period: Period
    previous: Period
    team: str | None
    generated_at: datetime
    inputs: ReportInputs
    shared: dict[str, Any] = field(default_factory=dict, compare=False)
    """Results more than one section asks for, computed once (see `once`)."""

    @property
    def currency(self) -> str:
        return self.config.currency

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()`'s result, computed the first time a section asks for `key`."""
        if key not in self.shared:
            self.shared[key] = compute()
        return self.shared[key]


@dataclass(frozen=True)
class Section:
    """One section of the report: its data function, HTML partial, sheet writer and charts.

    Adding a section is one entry in `finops.reports.sections.SECTIONS`: a data function
    returning a record or `NoData`, a Jinja partial under `reports/templates/sections/`
    (given `data` and `charts`), a sheet writer, and optionally chart specs.
    """

    key: str
    title: str
    collect: Callable[[ReportScope], Any]
    template: str | None = None
    write_sheet: Callable[[ReportWorkbook, Any], None] | None = None
    charts: Callable[[Any], dict[str, alt.TopLevelMixin]] | None = None


@dataclass(frozen=True)
class SectionResult:
    section: Section
    data: Any
    """The section's record, or NoData."""

    @property
    def has_data(self) -> bool:
        return not isinstance(self.data, NoData)


@dataclass(frozen=True)
class ReportData:
    """A whole report's figures, ready for any renderer."""

    organisation: str
    title: str
    period: Period
    previous: Period
    team: str | None
    generated_at: datetime
    currency: str
    inputs: ReportInputs
    sections: tuple[SectionResult, ...]

    def section(self, key: str) -> Any:
        """The data (or NoData) of the section with this key."""
        for result in self.sections:
            if result.section.key == key:
                return result.data
        raise KeyError(key)

    @property
    def file_stem(self) -> str:
        """`finops-2026-Q3` or `finops-2026-Q3-vision`."""
        label = self.period.label.replace("..", "_to_")
        return f"finops-{label}-{self.team}" if self.team else f"finops-{label}"
