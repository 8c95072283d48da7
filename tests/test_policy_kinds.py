"""The policy kinds through the engine: small warehouses, a fixed `now`, figures by hand.

Each test builds a warehouse in tmp_path (FOCUS cost rows, GPU samples, prices), writes a
policy file, evaluates it with `finops.policies.engine.evaluate` and checks the exact
recommendations, and the reason given for every candidate passed over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
import yaml

from finops.collectors.focus import read_focus
from finops.config import AllocationSettings, Config, Holidays, Team
from finops.errors import PolicyError
from finops.policies.engine import Evaluation, evaluate
from finops.policies.loader import read_policy_file
from finops.policies.model import Finding, LoadedPolicy
from finops.warehouse import GpuDelivery, PriceList, Warehouse
from tests.conftest import row, write_csv

MONTH_DAYS = Decimal("30.4375")
CENT = Decimal("0.01")


# --- building a warehouse -----------------------------------------------------------------


def day_row(day: date, effective: str, billed: str | None = None, **overrides: object) -> dict:
    """One usage row for a whole UTC day (midnight to midnight)."""
    tags = overrides.pop("tags", None)
    values = row(f"{day:%m-%d}", billed or effective, effective, tags, **overrides)
    values["ChargePeriodEnd"] = f"{day + timedelta(days=1):%Y-%m-%d}T00:00:00Z"
    return values


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]


def ingest_bill(warehouse: Warehouse, tmp_path: Path, rows: list[dict], name: str = "bill") -> None:
    path = write_csv(tmp_path / f"{name}.csv", rows)
    warehouse.ingest_cost(
        lambda: read_focus(str(path)), source="aws", collector="focus", uri=str(path)
    )


def ingest_samples(warehouse: Warehouse, samples: list[dict]) -> None:
    table = pa.Table.from_pylist(samples)
    warehouse.ingest_gpu(
        lambda: GpuDelivery(uri="t", select_sql="SELECT * FROM s", tables={"s": table}),
        source="test",
        collector="test",
        uri="t",
    )


def store_prices(warehouse: Warehouse, rows: list[tuple], source: str = "aws-price-list") -> None:
    """Rows of (provider, region, instance_type, purchase_option, hourly_price), as of 1 Jan."""
    table = pa.Table.from_pylist(
        [
            {
                "provider": p,
                "region": r,
                "instance_type": t,
                "purchase_option": o,
                "hourly_price": Decimal(price),
                "currency": "USD",
            }
            for p, r, t, o, price in rows
        ]
    )
    warehouse.store_prices(PriceList(source=source, as_of=date(2026, 1, 1), table=table))


def hourly_samples(
    node: str,
    resource_id: str,
    cluster: str,
    hours: Iterable[datetime],
    util: Callable[[datetime, int], float],
    *,
    gpus: int = 2,
    mem_used: Callable[[int], float] | None = None,
    mem_total: float = 40_960.0,
) -> list[dict]:
    """One reading per GPU per hour, on the hour, with the utilisation `util(hour, gpu)`."""
    out = []
    for i, hour in enumerate(hours):
        for gpu in range(gpus):
            out.append(
                {
                    "ts": hour,
                    "node": node,
                    "gpu_index": gpu,
                    "gpu_uuid": f"GPU-{node}-{gpu}",
                    "model": "NVIDIA A100-SXM4-40GB",
                    "resource_id": resource_id,
                    "cluster": cluster,
                    "gpu_util_pct": util(hour, gpu),
                    "mem_used_mib": mem_used(i) if mem_used else 1_000.0,
                    "mem_total_mib": mem_total,
                }
            )
    return out


def utc_hours(start: datetime, end: datetime) -> list[datetime]:
    return [start + timedelta(hours=h) for h in range(int((end - start).total_seconds() // 3600))]


# --- evaluating a policy ------------------------------------------------------------------


def load_policy(tmp_path: Path, spec: dict, name: str = "policy.yaml") -> LoadedPolicy:
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump({"policies": [{"name": "p", **spec}]}), encoding="utf-8")
    loaded, problems = read_policy_file(path)
    assert problems == []
    return loaded[0]


def run_policy(
    warehouse: Warehouse, config: Config, policy: LoadedPolicy, now: datetime
) -> Evaluation:
    (result,) = evaluate(warehouse, config, [policy], now)
    return result


def by_id(evaluation: Evaluation) -> dict[str, Finding]:
    return {f.resource_id: f for f in evaluation.findings}


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT)


# --- offhours -------------------------------------------------------------------------------

MAY_11 = datetime(2026, 5, 11, 6, tzinfo=UTC)
"""A Monday: a 28-day lookback is the four whole weeks 13 Apr - 10 May (UTC days)."""
NODE_DAY_COST = "61.44"
"""A 2-GPU node's day: 2.56 a node-hour, 1.28 a GPU-hour."""
GPU_HOUR_COST = Decimal("1.28")


def office_hours(zone: str, holidays: frozenset[date] = frozenset()) -> Callable[[datetime], bool]:
    """Mon-Fri 09:00-17:00 on the local clock of `zone`, holidays off."""
    tz = ZoneInfo(zone)

    def working(instant: datetime) -> bool:
        local = instant.astimezone(tz)
        return local.weekday() < 5 and 9 <= local.hour < 17 and local.date() not in holidays

    return working


def dev_cluster(
    cluster: str,
    env: str,
    start: datetime,
    end: datetime,
    busy: Callable[[datetime, int], bool],
) -> tuple[list[dict], list[dict]]:
    """A 2-GPU node billed every day of [start, end), at 50% when `busy`, else 1%."""
    node, rid = f"{cluster}-node", f"i-{cluster}"
    bill = [
        day_row(
            d,
            NODE_DAY_COST,
            ResourceId=rid,
            x_InstanceType="g5.12xlarge",
            RegionId="eu-central-1",
            tags={"cluster": cluster, "env": env, "team": "vision"},
        )
        for d in days(start.date(), (end - start).days)
    ]
    samples = hourly_samples(
        node,
        rid,
        cluster,
        utc_hours(start, end),
        lambda hour, gpu: 50.0 if busy(hour, gpu) else 1.0,
    )
    return bill, samples


def offhours_policy(tmp_path: Path, **params: object) -> LoadedPolicy:
    return load_policy(
        tmp_path,
        {"kind": "offhours", "action": "stop", "params": {"lookback_days": 28, **params}},
    )


def expected_saving(
    start: datetime, end: datetime, in_schedule: Callable[[datetime], bool], gpus: int = 2
) -> tuple[int, Decimal]:
    """Off-schedule GPU-hours of [start, end) and what they cost, counted hour by hour."""
    off = sum(gpus for hour in utc_hours(start, end) if not in_schedule(hour))
    return off, off * GPU_HOUR_COST


def test_offhours_recommends_the_working_week_and_prices_the_hours_outside_it(
    tmp_path: Path,
) -> None:
    start, end = datetime(2026, 4, 13, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)
    working = office_hours("Europe/Berlin")
    bill, samples = dev_cluster("dev-a", "dev", start, end, lambda hour, gpu: working(hour))
    prod_bill, prod_samples = dev_cluster(
        "prod-a", "prod", start, end, lambda hour, gpu: working(hour)
    )
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest_bill(warehouse, tmp_path, bill + prod_bill)
    ingest_samples(warehouse, samples + prod_samples)

    result = run_policy(
        warehouse, Config(), offhours_policy(tmp_path, time_zone="Europe/Berlin"), MAY_11
    )

    (finding,) = result.findings
    assert finding.resource_id == "dev-a"
    assert finding.evidence["schedule"] == {
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "09:00",
        "stop": "17:00",
        "time_zone": "Europe/Berlin",
    }
    # 28 days x 24 h x 2 GPUs = 1,344 GPU-hours; 20 working days x 8 h x 2 GPUs = 320 inside.
    off_hours, saved = expected_saving(start, end, working)
    assert off_hours == 1_344 - 320
    assert finding.evidence["gpu_hours"] == 1_344
    assert finding.evidence["off_schedule_gpu_hours"] == 1_024
    assert finding.evidence["off_schedule_busy_gpu_hours"] == 0
    # Hours are priced in floating point by the GPU-hours query: equal to the cent.
    assert saved == Decimal("1310.72")
    assert cents(Decimal(finding.evidence["saved_in_window"])) == saved
    # 1,310.72 over 28 days is 1,310.72 x 30.4375 / 28 = 1,424.82 a month.
    assert cents(finding.monthly_savings) == Decimal("1424.82")
    assert finding.billed_resource_ids == ("i-dev-a",)
    assert finding.subject.environment == "dev"
    assert finding.subject.team == "vision"
    assert "prod-a: env prod is not dev/staging" in result.passed_over


def test_offhours_schedule_keeps_local_hours_across_a_dst_change(tmp_path: Path) -> None:
    # New York moves to EDT on Sunday 8 March 2026: 09:00 local is 14:00 UTC before, 13:00 after.
    start, end = datetime(2026, 2, 23, tzinfo=UTC), datetime(2026, 3, 23, tzinfo=UTC)
    working = office_hours("America/New_York")
    bill, samples = dev_cluster("dev-ny", "staging", start, end, lambda hour, gpu: working(hour))
    busy_utc = {s["ts"].hour for s in samples if s["gpu_util_pct"] == 50.0}
    assert busy_utc == set(range(13, 22))  # 14-21 UTC in EST, 13-20 UTC in EDT
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest_bill(warehouse, tmp_path, bill)
    ingest_samples(warehouse, samples)
    config = Config(time_zone="America/New_York")

    result = run_policy(
        warehouse, config, offhours_policy(tmp_path), datetime(2026, 3, 23, 12, tzinfo=UTC)
    )

    (finding,) = result.findings
    assert finding.evidence["schedule"] == {
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "09:00",
        "stop": "17:00",
        "time_zone": "America/New_York",
    }
    off_hours, saved = expected_saving(start, end, working)
    assert off_hours == 1_344 - 320
    assert finding.evidence["off_schedule_busy_gpu_hours"] == 0
    assert cents(Decimal(finding.evidence["saved_in_window"])) == saved


@pytest.mark.parametrize(
    ("holidays", "day_off"),
    [
        (Holidays(dates=(date(2026, 4, 15),)), date(2026, 4, 15)),  # a Wednesday, listed
        (Holidays(country="GB"), date(2026, 5, 4)),  # the early May bank holiday, a Monday
    ],
)
def test_offhours_counts_a_weekday_holiday_as_off_schedule(
    tmp_path: Path, holidays: Holidays, day_off: date
) -> None:
    start, end = datetime(2026, 4, 13, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)
    working = office_hours("Europe/London", frozenset({day_off}))
    bill, samples = dev_cluster("dev-uk", "dev", start, end, lambda hour, gpu: working(hour))
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest_bill(warehouse, tmp_path, bill)
    ingest_samples(warehouse, samples)
    config = Config(time_zone="Europe/London", holidays=holidays)

    (finding,) = run_policy(warehouse, config, offhours_policy(tmp_path), MAY_11).findings

    assert finding.evidence["schedule"]["days"] == ["mon", "tue", "wed", "thu", "fri"]
    assert (finding.evidence["schedule"]["start"], finding.evidence["schedule"]["stop"]) == (
        "09:00",
        "17:00",
    )
    assert day_off.isoformat() in finding.evidence["holidays"]
    # 19 working days inside the schedule: the holiday's 8 hours x 2 GPUs are saved too.
    off_hours, saved = expected_saving(start, end, working)
    assert off_hours == 1_344 - 19 * 8 * 2
    assert finding.evidence["off_schedule_gpu_hours"] == off_hours
    assert saved == 1_040 * GPU_HOUR_COST == Decimal("1331.20")
    assert cents(Decimal(finding.evidence["saved_in_window"])) == saved


def test_offhours_passes_over_a_cluster_busy_at_night_and_one_with_too_few_hours(
    tmp_path: Path,
) -> None:
    start, end = datetime(2026, 4, 13, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)
    working = office_hours("UTC")

    def nightly(hour: datetime, gpu: int) -> bool:
        # GPU 0 runs jobs 00-05 every night of the first two weeks: 2 of a cell's 8
        # GPU-hours (under busy_cell_share 0.5), 6 x 14 = 84 of 1,024 off-schedule GPU-hours.
        return working(hour) or (gpu == 0 and hour.hour < 6 and hour < start + timedelta(14))

    bill, samples = dev_cluster("dev-night", "dev", start, end, nightly)
    tiny_end = start + timedelta(hours=10)
    tiny_bill, tiny_samples = dev_cluster("dev-tiny", "dev", start, tiny_end, lambda h, g: False)
    tiny_bill = [
        day_row(
            start.date(),
            "10.00",
            ResourceId="i-dev-tiny",
            tags={"cluster": "dev-tiny", "env": "dev"},
        )
    ]
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest_bill(warehouse, tmp_path, bill + tiny_bill)
    ingest_samples(warehouse, samples + tiny_samples)

    result = run_policy(warehouse, Config(), offhours_policy(tmp_path, busy_cell_share=0.5), MAY_11)

    assert result.findings == []
    assert sorted(result.passed_over) == [
        "dev-night: busy in 8% of its GPU-hours outside run mon,tue,wed,thu,fri 09:00-17:00 "
        "UTC, stop otherwise",
        "dev-tiny: only 20 GPU-hours of metrics",
    ]


@pytest.mark.parametrize(("night_hours", "found"), [(51, True), (52, False)])
def test_offhours_night_busy_share_just_under_and_just_over_the_limit(
    tmp_path: Path, night_hours: int, found: bool
) -> None:
    start, end = datetime(2026, 4, 13, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)
    working = office_hours("UTC")
    # GPU 0 busy in the first `night_hours` hours of 00-05 UTC: of 1,024 off-schedule
    # GPU-hours, 51 is 4.98% (under max_offwindow_busy_share 5%) and 52 is 5.08%.
    nights = set([h for h in utc_hours(start, end) if h.hour < 6][:night_hours])
    bill, samples = dev_cluster(
        "dev-edge",
        "dev",
        start,
        end,
        lambda hour, gpu: working(hour) or (gpu == 0 and hour in nights),
    )
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest_bill(warehouse, tmp_path, bill)
    ingest_samples(warehouse, samples)

    result = run_policy(warehouse, Config(), offhours_policy(tmp_path, busy_cell_share=0.5), MAY_11)

    if found:
        (finding,) = result.findings
        assert finding.evidence["off_schedule_busy_gpu_hours"] == 51
        assert finding.evidence["schedule"]["start"] == "09:00"
        # Every off-schedule GPU-hour is priced, the few busy ones (under 5%) included.
        assert cents(Decimal(finding.evidence["saved_in_window"])) == 1_024 * GPU_HOUR_COST
    else:
        assert result.findings == []
        assert result.passed_over == [
            "dev-edge: busy in 5% of its GPU-hours outside run mon,tue,wed,thu,fri "
            "09:00-17:00 UTC, stop otherwise"
        ]
