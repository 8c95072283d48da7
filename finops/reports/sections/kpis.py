"""FinOps KPIs against their targets (finops.yaml `kpi_targets`): allocation coverage,
untagged share, spot and commitment coverage, commitment utilisation, effective savings
rate, idle GPU cost, GPU utilisation, cost per GPU-hour, forecast variance."""

from __future__ import annotations

from dataclasses import dataclass

from finops.analytics.chargeback import Allocation
from finops.analytics.kpis import finops_kpis
from finops.reports.model import NoData, ReportScope
from finops.reports.sections.common import allocation_lines_of, gpu_hours_of
from finops.reports.workbook import Column, ReportWorkbook


@dataclass(frozen=True)
class Kpi:
    kpi: str
    value: float | None
    unit: str
    green: float | None
    amber: float | None
    status: str
    detail: str

    @property
    def name(self) -> str:
        """`idle_gpu_cost_pct` -> `Idle GPU cost`."""
        return self.kpi.removesuffix("_pct").replace("_", " ").capitalize().replace("gpu", "GPU")


@dataclass(frozen=True)
class Kpis:
    rows: tuple[Kpi, ...]


def collect(scope: ReportScope) -> Kpis | NoData:
    table = finops_kpis(
        scope.conn,
        scope.period,
        Allocation.from_config(scope.config),
        scope.config.kpi_targets,
        team=scope.team,
        cost=scope.config.allocation.cost_basis,
        lines=allocation_lines_of(scope),
        gpu_hours=gpu_hours_of(scope),
    )
    rows = tuple(Kpi(**{k: r[k] for k in Kpi.__dataclass_fields__}) for r in table.to_pylist())
    if all(r.value is None for r in rows):
        return NoData(f"No FinOps KPIs for {scope.period.label}: the period has no spend.")
    return Kpis(rows)


COLUMNS = (
    Column("name", "KPI"),
    Column("value", "Value", "number"),
    Column("unit", "Unit"),
    Column("green", "Green at", "number"),
    Column("amber", "Amber at", "number"),
    Column("status", "Status"),
    Column("detail", "Detail"),
)


def write_sheet(workbook: ReportWorkbook, data: Kpis) -> None:
    sheet = workbook.sheet("FinOps KPIs")
    workbook.table(sheet, COLUMNS, data.rows)
    sheet.set_column(0, 0, 30)
    sheet.set_column(6, 6, 60)
