"""Appendix: how the figures were made (cost basis, allocation rules, GPU idle threshold,
fiscal calendar) and what they rest on (data sources and their last ingest, policy pack
revision, configuration hash)."""

from __future__ import annotations

from dataclasses import dataclass

from finops.reports.model import ReportInputs, ReportScope
from finops.reports.workbook import Column, ReportWorkbook

COST_BASIS = {
    "effective": "EffectiveCost (amortised: commitment fees spread over the usage they cover)",
    "billed": "BilledCost (as invoiced)",
}


@dataclass(frozen=True)
class Setting:
    name: str
    value: str


@dataclass(frozen=True)
class Method:
    settings: tuple[Setting, ...]
    inputs: ReportInputs


def collect(scope: ReportScope) -> Method:
    config, inputs = scope.config, scope.inputs
    allocation = config.allocation
    fiscal = (
        "January"
        if config.fiscal_year_start_month == 1
        else f"month {config.fiscal_year_start_month}"
    )
    settings = (
        Setting(
            "Period",
            f"{scope.period.label} ({scope.period.start} to {scope.period.end}, end excluded)",
        ),
        Setting("Compared with", scope.previous.label),
        Setting("Team", scope.team or "all teams"),
        Setting("Cost basis", COST_BASIS[allocation.cost_basis]),
        Setting("Allocation tag keys", ", ".join(allocation.tag_keys)),
        Setting("Tag values normalised", "yes" if allocation.normalise_values else "no"),
        Setting("Unallocated spend label", allocation.unallocated_label),
        Setting("Idle GPU-hour", f"mean utilisation under {config.gpu.idle_threshold_pct:g}%"),
        Setting("Fiscal year starts", fiscal),
        Setting("Reporting currency", config.currency),
        Setting("Configuration file", inputs.config_file),
        Setting("Configuration hash (sha256)", inputs.config_hash),
        Setting("Policy pack", str(inputs.policy_pack)),
        Setting("finops version", inputs.finops_version),
        Setting("Inputs digest (sha256)", inputs.digest),
    )
    return Method(settings=settings, inputs=inputs)


def write_sheet(workbook: ReportWorkbook, data: Method) -> None:
    sheet = workbook.sheet("Method")
    workbook.table(
        sheet, (Column("name", "Setting"), Column("value", "Value")), data.settings, filters=False
    )
    sheet.set_column(0, 0, 30)
    sheet.set_column(1, 1, 90)
    sources = workbook.sheet("Data sources")
    workbook.table(
        sources,
        (
            Column("source", "Source"),
            Column("collector", "Collector"),
            Column("last_ingest_at", "Last ingest (UTC)", "datetime"),
            Column("latest_status", "Newest attempt"),
            Column("rows", "Rows", "int"),
            Column("run_id", "Run id"),
            Column("checksum", "Checksum"),
        ),
        data.inputs.sources,
    )
