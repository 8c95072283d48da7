"""GPU fleet: GPU-hours, utilisation, idle GPU-hours and their cost per cluster, and the
fleet's utilisation day by day."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import altair as alt

from finops.analytics.gpu import GpuAttribution, gpu_usage
from finops.reports.model import NoData, ReportScope
from finops.reports.sections.common import for_team, gpu_hours_of, money
from finops.reports.workbook import Column, ReportWorkbook


@dataclass(frozen=True)
class ClusterUsage:
    cluster: str
    gpus: int
    gpu_hours: float
    mean_util_pct: float | None
    p95_util_pct: float | None
    idle_gpu_hours: float
    idle_pct: float | None
    cost: Decimal
    idle_cost: Decimal
    currency: str


@dataclass(frozen=True)
class DayUsage:
    day: str
    gpu_hours: float
    mean_util_pct: float | None
    idle_pct: float | None


@dataclass(frozen=True)
class GpuFleet:
    idle_threshold_pct: float
    currency: str
    clusters: tuple[ClusterUsage, ...]
    days: tuple[DayUsage, ...]

    @property
    def gpu_hours(self) -> float:
        return round(sum(c.gpu_hours for c in self.clusters), 2)

    @property
    def idle_gpu_hours(self) -> float:
        return round(sum(c.idle_gpu_hours for c in self.clusters), 2)

    @property
    def idle_pct(self) -> float:
        return round(100 * self.idle_gpu_hours / self.gpu_hours, 1) if self.gpu_hours else 0.0

    @property
    def cost(self) -> Decimal:
        """Sum of the clusters' rounded costs: what the table's rows add up to."""
        return sum((c.cost for c in self.clusters), Decimal(0))

    @property
    def idle_cost(self) -> Decimal:
        return sum((c.idle_cost for c in self.clusters), Decimal(0))


def collect(scope: ReportScope) -> GpuFleet | NoData:
    attribution = GpuAttribution.from_config(scope.config)
    prefix = "team," if scope.team else ""
    clusters = for_team(
        gpu_usage(scope.conn, scope.period, f"{prefix}cluster", attribution, gpu_hours_of(scope)),
        scope.team,
    ).to_pylist()
    if not clusters:
        whose = f" attributed to team {scope.team}" if scope.team else ""
        return NoData(
            f"No GPU metrics{whose} in {scope.period.label}: ingest the GPUs' DCGM, Prometheus "
            "or nvidia-smi metrics (`finops collect`, `finops ingest dcgm|prometheus|nvidia-smi`)."
        )
    days = for_team(
        gpu_usage(scope.conn, scope.period, f"{prefix}day", attribution, gpu_hours_of(scope)),
        scope.team,
    ).to_pylist()
    return GpuFleet(
        idle_threshold_pct=scope.config.gpu.idle_threshold_pct,
        currency=scope.currency,
        clusters=tuple(
            ClusterUsage(
                cluster=r["cluster"],
                gpus=r["gpus"],
                gpu_hours=r["gpu_hours"],
                mean_util_pct=r["mean_util_pct"],
                p95_util_pct=r["p95_util_pct"],
                idle_gpu_hours=r["idle_gpu_hours"] or 0.0,
                idle_pct=r["idle_pct"],
                cost=money(r["cost"]),
                idle_cost=money(r["idle_cost"]),
                currency=scope.currency,
            )
            for r in clusters
        ),
        days=tuple(
            DayUsage(r["day"], r["gpu_hours"], r["mean_util_pct"], r["idle_pct"])
            for r in sorted(days, key=lambda r: r["day"])
        ),
    )


def charts(data: GpuFleet) -> dict[str, alt.TopLevelMixin]:
    costs = [
        {"cluster": c.cluster, "kind": kind, "cost": float(amount)}
        for c in data.clusters
        for kind, amount in (("busy", c.cost - c.idle_cost), ("idle", c.idle_cost))
    ]
    by_cluster = (
        alt.Chart(alt.Data(values=costs), title="GPU cost by cluster: busy and idle")
        .mark_bar()
        .encode(
            y=alt.Y("cluster:N", title=None, sort="-x"),
            x=alt.X("sum(cost):Q", title=f"Cost ({data.currency})"),
            color=alt.Color(
                "kind:N",
                title=None,
                scale=alt.Scale(domain=["busy", "idle"], range=["#1F3A5F", "#E07A5F"]),
            ),
            order=alt.Order("kind:N"),
        )
        .properties(width=420, height=max(60, 18 * len(data.clusters)))
    )
    daily = [
        {"day": d.day, "measure": name, "pct": value}
        for d in data.days
        for name, value in (("mean utilisation", d.mean_util_pct), ("idle share", d.idle_pct))
        if value is not None
    ]
    by_day = (
        alt.Chart(alt.Data(values=daily), title="Fleet utilisation by day")
        .mark_line()
        .encode(
            x=alt.X("day:T", title=None),
            y=alt.Y("pct:Q", title="%", scale=alt.Scale(domain=[0, 100])),
            color=alt.Color(
                "measure:N",
                title=None,
                scale=alt.Scale(
                    domain=["mean utilisation", "idle share"], range=["#1F3A5F", "#E07A5F"]
                ),
            ),
        )
        .properties(width=420, height=160)
    )
    return {"by_cluster": by_cluster, "by_day": by_day}


COLUMNS = (
    Column("cluster", "Cluster"),
    Column("gpus", "GPUs", "int"),
    Column("gpu_hours", "GPU-hours", "number"),
    Column("mean_util_pct", "Mean utilisation", "pct"),
    Column("p95_util_pct", "p95 utilisation", "pct"),
    Column("idle_gpu_hours", "Idle GPU-hours", "number"),
    Column("idle_pct", "Idle share", "pct"),
    Column("cost", "Cost", "money"),
    Column("idle_cost", "Idle cost", "money"),
)


def write_sheet(workbook: ReportWorkbook, data: GpuFleet) -> None:
    sheet = workbook.sheet("GPU fleet")
    span = workbook.table(
        sheet,
        COLUMNS,
        data.clusters,
        total={
            "cluster": "Total",
            "gpu_hours": data.gpu_hours,
            "idle_gpu_hours": data.idle_gpu_hours,
            "idle_pct": data.idle_pct,
            "cost": data.cost,
            "idle_cost": data.idle_cost,
            "currency": data.currency,
        },
    )
    workbook.bar_chart(
        sheet,
        span,
        category="cluster",
        values=["cost", "idle_cost"],
        title="GPU cost and idle cost by cluster",
        anchor="L2",
    )
    days = workbook.sheet("GPU fleet by day")
    workbook.table(
        days,
        (
            Column("day", "Day"),
            Column("gpu_hours", "GPU-hours", "number"),
            Column("mean_util_pct", "Mean utilisation", "pct"),
            Column("idle_pct", "Idle share", "pct"),
        ),
        data.days,
    )
