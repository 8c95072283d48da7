"""FinOps KPIs for a period, each against its target from `kpi_targets` (green / amber / red).

Definitions (EffectiveCost throughout, so commitments count at their amortised rate):

- allocation coverage: share of the bill attributed directly to a team (tag or account);
  untagged: share of the bill carrying none of the allocation tag keys;
- eligible compute: Usage charges of ServiceCategory Compute, unused commitment excluded;
  spot coverage: its PricingCategory Dynamic share; commitment coverage: its Committed share;
- commitment utilisation: Used / (Used + Unused) of the cost CommitmentDiscountStatus marks;
- effective savings rate: (ListCost - EffectiveCost) / ListCost over Usage charges;
- idle GPU cost %, GPU utilisation, cost per GPU-hour: from the GPU fleet join
  (`finops.analytics.gpu`), idle as `gpu.idle_threshold_pct` defines it;
- forecast variance: the period's (actual - forecast made at its start) / forecast.

With `team`, the cost KPIs cover that team's directly attributed rows and its GPU-hours;
coverage and untagged share are the organisation's and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import duckdb
import pyarrow as pa

from finops.analytics.chargeback import (
    Allocation,
    CostBasis,
    _team_sql,
    allocation_coverage,
    allocation_history,
)
from finops.analytics.forecast import forecast_variance
from finops.analytics.gpu import gpu_totals
from finops.config import KpiTarget, KpiTargets
from finops.periods import Period

Status = Literal["green", "amber", "red", "n/a"]


def rate_status(value: float | None, target: KpiTarget | None, *, absolute: bool = False) -> Status:
    """Green at or beyond `green`, amber up to `amber`, red past it; the direction follows
    from the two thresholds (green above amber: higher is better)."""
    if value is None or target is None:
        return "n/a"
    value = abs(value) if absolute else value
    if target.green >= target.amber:
        return "green" if value >= target.green else "amber" if value >= target.amber else "red"
    return "green" if value <= target.green else "amber" if value <= target.amber else "red"


@dataclass(frozen=True)
class CostRates:
    eligible_compute: Decimal
    spot: Decimal
    committed: Decimal
    commitment_used: Decimal
    commitment_unused: Decimal
    list_cost: Decimal
    effective_cost: Decimal


def cost_rates(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    allocation: Allocation,
    team: str | None = None,
) -> CostRates:
    """The sums the cost KPIs divide, in one pass over the period's rows."""
    where, params = period.where()
    team_filter = ""
    if team is not None:
        team_sql, team_params = _team_sql(allocation.settings, allocation.teams)
        team_filter = f'AND "x_TagSetId" IN (SELECT tag_set_id FROM tag_sets WHERE {team_sql} = ?)'
        params = [*params, *team_params, team]
    rows = conn.execute(
        f"""
        WITH rated AS (
            SELECT *, "ServiceCategory" = 'Compute' AND "ChargeCategory" = 'Usage'
                      AND "CommitmentDiscountStatus" IS DISTINCT FROM 'Unused' AS eligible
            FROM cost_resolved WHERE {where} {team_filter}
        )
        SELECT coalesce(sum("EffectiveCost") FILTER (WHERE eligible), 0),
               coalesce(sum("EffectiveCost") FILTER (WHERE eligible AND "PricingCategory" = 'Dynamic'), 0),
               coalesce(sum("EffectiveCost") FILTER (WHERE eligible AND "PricingCategory" = 'Committed'), 0),
               coalesce(sum("EffectiveCost") FILTER (WHERE "CommitmentDiscountStatus" = 'Used'), 0),
               coalesce(sum("EffectiveCost") FILTER (WHERE "CommitmentDiscountStatus" = 'Unused'), 0),
               coalesce(sum("ListCost") FILTER (WHERE "ChargeCategory" = 'Usage'), 0),
               coalesce(sum("EffectiveCost") FILTER (WHERE "ChargeCategory" = 'Usage'), 0)
        FROM rated
        """,
        params,
    ).fetchall()
    return CostRates(*rows[0])


def _pct(part: Decimal | float | None, whole: Decimal | float | None) -> float | None:
    if part is None or not whole:
        return None
    return round(100 * float(part) / float(whole), 2)


def finops_kpis(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    allocation: Allocation,
    targets: KpiTargets,
    *,
    team: str | None = None,
    cost: CostBasis = "effective",
    lines: pa.Table | None = None,
    gpu_hours: pa.Table | None = None,
) -> pa.Table:
    """The scorecard's FinOps rows: kpi, value, unit, green, amber, status, detail.

    `lines`: the allocation lines of every month up to the period's end (`allocation_history`);
    computed once here when not given, for both the coverage and the forecast variance.
    `gpu_hours`: the period's `finops.analytics.gpu.gpu_hours`, when already fetched.
    """
    rates = cost_rates(conn, period, allocation, team)
    if lines is None:
        lines = allocation_history(conn, allocation, cost=cost, until=period.end)
    rows: list[dict[str, object]] = []

    def add(
        kpi: str, value: float | None, unit: str, detail: str, *, absolute: bool = False
    ) -> None:
        target = getattr(targets, kpi)
        rows.append(
            {
                "kpi": kpi,
                "value": value,
                "unit": unit,
                "green": target.green if target else None,
                "amber": target.amber if target else None,
                "status": rate_status(value, target, absolute=absolute),
                "detail": detail,
            }
        )

    currency = allocation.reporting_currency
    if team is None:
        (coverage,) = allocation_coverage(
            conn, period, allocation, cost=cost, lines=lines
        ).to_pylist() or [None]
        if coverage is not None:
            add(
                "allocation_coverage_pct",
                coverage["coverage_pct"],
                "%",
                f"{coverage['direct']:,.2f} of {coverage['bill']:,.2f} {currency} by tag or account",
            )
            add(
                "untagged_pct",
                coverage["untagged_pct"],
                "%",
                f"{coverage['untagged']:,.2f} {currency} without a team tag",
            )
    add(
        "spot_coverage_pct",
        _pct(rates.spot, rates.eligible_compute),
        "%",
        f"spot {rates.spot:,.2f} of eligible compute {rates.eligible_compute:,.2f}",
    )
    add(
        "commitment_coverage_pct",
        _pct(rates.committed, rates.eligible_compute),
        "%",
        f"committed {rates.committed:,.2f} of eligible compute {rates.eligible_compute:,.2f}",
    )
    add(
        "commitment_utilisation_pct",
        _pct(rates.commitment_used, rates.commitment_used + rates.commitment_unused),
        "%",
        f"unused commitment {rates.commitment_unused:,.2f}",
    )
    add(
        "effective_savings_rate_pct",
        _pct(rates.list_cost - rates.effective_cost, rates.list_cost),
        "%",
        f"saved {rates.list_cost - rates.effective_cost:,.2f} of list {rates.list_cost:,.2f}",
    )
    gpu = (
        gpu_totals(conn, period, allocation.gpu, team, gpu_hours)
        if allocation.gpu is not None
        else dict.fromkeys(("gpu_hours", "idle_gpu_hours", "cost", "idle_cost", "mean_util_pct"))
    )
    add(
        "idle_gpu_cost_pct",
        _pct(gpu["idle_cost"], gpu["cost"]),
        "%",
        f"idle {gpu['idle_gpu_hours'] or 0:,.0f} of {gpu['gpu_hours'] or 0:,.0f} GPU-hours",
    )
    add(
        "gpu_utilisation_pct",
        None if gpu["mean_util_pct"] is None else round(gpu["mean_util_pct"], 2),
        "%",
        "mean over GPU-hours",
    )
    per_hour = (
        round(gpu["cost"] / gpu["gpu_hours"], 2) if gpu["gpu_hours"] and gpu["cost"] else None
    )
    add("cost_per_gpu_hour", per_hour, currency, "GPU cost / GPU-hours")
    variance = {
        r["team"]: r
        for r in forecast_variance(conn, period, allocation, cost=cost, lines=lines).to_pylist()
    }
    chosen = variance.get(team or "(total)")
    add(
        "forecast_variance_pct",
        chosen["variance_pct"] if chosen else None,
        "%",
        (
            f"actual {chosen['actual']:,.2f} vs forecast {chosen['forecast']:,.2f} made at the start"
            if chosen
            else "no history before the period"
        ),
        absolute=True,
    )
    return pa.Table.from_pylist(rows)
