"""The policy kinds through the engine: small warehouses, a fixed `now`, figures by hand.

Each test builds a warehouse in tmp_path (FOCUS cost rows, GPU samples, prices), writes a
policy file, evaluates it with `finops.policies.engine.evaluate` and checks the exact
recommendations, and the reason given for every candidate passed over.
"""

from __future__ import annotations

import json
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
# The offhours tests are marked slow: four weeks of hourly samples are rolled up day by day.
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


APR_13, MAY_11_UTC = datetime(2026, 4, 13, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)
LISTED_HOLIDAY, BANK_HOLIDAY = date(2026, 4, 15), date(2026, 5, 4)
"""A Wednesday listed in finops.yaml; the early May bank holiday, a Monday (GB)."""


def night_jobs(count: int) -> set[datetime]:
    """The first `count` of the four weeks' 00-05 UTC hours."""
    return set([h for h in utc_hours(APR_13, MAY_11_UTC) if h.hour < 6][:count])


@pytest.fixture(scope="module")
def office_fleet(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """Four weeks of 2-GPU dev clusters, each busy in its own pattern (one ingest for all)."""
    berlin, utc = office_hours("Europe/Berlin"), office_hours("UTC")
    nightly, edge_51, edge_52 = night_jobs(84), night_jobs(51), night_jobs(52)
    patterns: dict[str, tuple[str, Callable[[datetime, int], bool]]] = {
        "dev-a": ("dev", lambda hour, gpu: berlin(hour)),
        "prod-a": ("prod", lambda hour, gpu: berlin(hour)),
        # GPU 0 runs jobs 00-05 UTC every night of the first two weeks: 2 of a cell's 8
        # GPU-hours (under busy_cell_share 0.5), 84 of the 1,024 off-schedule GPU-hours.
        "dev-night": ("dev", lambda hour, gpu: utc(hour) or (gpu == 0 and hour in nightly)),
        # 51 busy of 1,024 off-schedule GPU-hours is 4.98%, under the 5% allowed; 52 is 5.08%.
        "dev-edge-51": ("dev", lambda hour, gpu: utc(hour) or (gpu == 0 and hour in edge_51)),
        "dev-edge-52": ("dev", lambda hour, gpu: utc(hour) or (gpu == 0 and hour in edge_52)),
    }
    for day_off in (LISTED_HOLIDAY, BANK_HOLIDAY):
        london = office_hours("Europe/London", frozenset({day_off}))
        patterns[f"dev-uk-{day_off:%m%d}"] = ("dev", lambda hour, gpu, w=london: w(hour))
    patterns["dev-kept"] = ("dev", lambda hour, gpu: berlin(hour))
    bill, samples = [], []
    for cluster, (env, busy) in patterns.items():
        more_bill, more_samples = dev_cluster(cluster, env, APR_13, MAY_11_UTC, busy)
        bill += more_bill
        samples += more_samples
    # dev-kept opts out: one day's bill of its instance carries the protect tag.
    kept = next(r for r in bill if r["ResourceId"] == "i-dev-kept")
    kept["Tags"] = json.dumps({**json.loads(kept["Tags"]), "finops:protect": "true"})
    # Ten hours of metrics only.
    _, tiny = dev_cluster(
        "dev-tiny", "dev", APR_13, APR_13 + timedelta(hours=10), lambda h, g: False
    )
    bill.append(
        day_row(
            APR_13.date(),
            "10.00",
            ResourceId="i-dev-tiny",
            tags={"cluster": "dev-tiny", "env": "dev"},
        )
    )
    folder = tmp_path_factory.mktemp("offhours")
    warehouse = Warehouse(folder / "wh.duckdb")
    ingest_bill(warehouse, folder, bill)
    ingest_samples(warehouse, samples + tiny)
    return warehouse


@pytest.mark.slow
def test_offhours_recommends_the_working_week_and_prices_the_hours_outside_it(
    office_fleet: Warehouse, tmp_path: Path
) -> None:
    policy = offhours_policy(tmp_path, time_zone="Europe/Berlin")

    result = run_policy(office_fleet, Config(), policy, MAY_11)

    finding = by_id(result)["dev-a"]
    assert finding.evidence["schedule"] == {
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "09:00",
        "stop": "17:00",
        "time_zone": "Europe/Berlin",
    }
    # 28 days x 24 h x 2 GPUs = 1,344 GPU-hours; 20 working days x 8 h x 2 GPUs = 320 inside.
    off_hours, saved = expected_saving(APR_13, MAY_11_UTC, office_hours("Europe/Berlin"))
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
    assert "prod-a" not in by_id(result)
    assert "prod-a: env prod is not dev/staging" in result.passed_over
    assert "dev-kept" not in by_id(result)
    assert "dev-kept: tag finops:protect=true is set" in result.passed_over


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize(
    ("holidays", "day_off"),
    [
        (Holidays(dates=(LISTED_HOLIDAY,)), LISTED_HOLIDAY),
        (Holidays(country="GB"), BANK_HOLIDAY),
    ],
)
def test_offhours_counts_a_weekday_holiday_as_off_schedule(
    office_fleet: Warehouse, tmp_path: Path, holidays: Holidays, day_off: date
) -> None:
    config = Config(time_zone="Europe/London", holidays=holidays)

    result = run_policy(office_fleet, config, offhours_policy(tmp_path), MAY_11)

    finding = by_id(result)[f"dev-uk-{day_off:%m%d}"]
    assert finding.evidence["schedule"] == {
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "09:00",
        "stop": "17:00",
        "time_zone": "Europe/London",
    }
    assert day_off.isoformat() in finding.evidence["holidays"]
    # 19 working days inside the schedule: the holiday's 8 hours x 2 GPUs are saved too.
    working = office_hours("Europe/London", frozenset({day_off}))
    off_hours, saved = expected_saving(APR_13, MAY_11_UTC, working)
    assert off_hours == 1_344 - 19 * 8 * 2
    assert finding.evidence["off_schedule_gpu_hours"] == off_hours
    assert saved == 1_040 * GPU_HOUR_COST == Decimal("1331.20")
    assert cents(Decimal(finding.evidence["saved_in_window"])) == saved


@pytest.mark.slow
def test_offhours_passes_over_busy_nights_and_too_few_hours_and_finds_the_just_idle(
    office_fleet: Warehouse, tmp_path: Path
) -> None:
    policy = offhours_policy(tmp_path, busy_cell_share=0.5)

    result = run_policy(office_fleet, Config(), policy, MAY_11)

    schedule = "run mon,tue,wed,thu,fri 09:00-17:00 UTC, stop otherwise"
    assert f"dev-night: busy in 8% of its GPU-hours outside {schedule}" in result.passed_over
    assert f"dev-edge-52: busy in 5% of its GPU-hours outside {schedule}" in result.passed_over
    assert "dev-tiny: only 20 GPU-hours of metrics" in result.passed_over
    found = by_id(result)
    assert not {"dev-night", "dev-edge-52", "dev-tiny"} & set(found)
    edge = found["dev-edge-51"]
    assert edge.evidence["off_schedule_busy_gpu_hours"] == 51
    assert edge.evidence["schedule"]["start"] == "09:00"
    # Every off-schedule GPU-hour is priced, the few busy ones (under 5%) included.
    assert cents(Decimal(edge.evidence["saved_in_window"])) == 1_024 * GPU_HOUR_COST


# --- spot-shift ---------------------------------------------------------------------------

JUNE_1 = datetime(2026, 6, 1, 6, tzinfo=UTC)
"""A 30-day lookback is 2 - 31 May (UTC days)."""
MAY_DAYS = days(date(2026, 5, 2), 30)
ACCOUNT = "012345678901"


def capacity_rows(
    rid: str, instance_type: str, hourly: str, tags: dict, *, billed: str | None = None, **extra
) -> list[dict]:
    """24 billed hours a day for every day of the lookback, at `hourly` (amortised)."""
    return [
        day_row(
            d,
            str(Decimal(hourly) * 24),
            str(Decimal(billed) * 24) if billed else None,
            ResourceId=rid,
            x_InstanceType=instance_type,
            RegionId="us-east-1",
            PricingQuantity="24",
            PricingUnit="Hours",
            tags=tags,
            **extra,
        )
        for d in MAY_DAYS
    ]


def build_spot_fleet(folder: Path) -> Warehouse:
    warehouse = Warehouse(folder / "wh.duckdb")
    on_demand = {"PricingCategory": "Standard"}
    spot = {"PricingCategory": "Dynamic"}
    bill = [
        # Training on on-demand p4d: billed 40.96/h, amortised 32.00/h (a discount applies).
        *capacity_rows(
            "i-train-a",
            "p4d.24xlarge",
            "32.00",
            {"cluster": "train-a", "workload": "training", "team": "vision", "env": "dev"},
            billed="40.96",
            **on_demand,
        ),
        # Inference on the same type: nothing marks it interruptible.
        *capacity_rows(
            "i-serve-a",
            "p4d.24xlarge",
            "32.00",
            {"cluster": "serve-a", "workload": "inference", "team": "search", "env": "prod"},
            **on_demand,
        ),
        # A checkpointing batch project on CPUs, with no Spot price known.
        *capacity_rows(
            "i-etl-1",
            "m6i.8xlarge",
            "1.536",
            {"project": "etl", "checkpointing": "true"},
            **on_demand,
        ),
        # Spot fine-tuning with a deadline 14 days after 1 June (inside the horizon) ...
        *capacity_rows(
            "i-ft-b", "g5.48xlarge", "5.00", {"cluster": "ft-b", "deadline": "2026-06-15"}, **spot
        ),
        # ... and one 15 days away (outside it).
        *capacity_rows(
            "i-ft-late",
            "g5.48xlarge",
            "5.00",
            {"cluster": "ft-late", "deadline": "2026-06-16"},
            **spot,
        ),
        # Spot capacity whose GPUs run at 95%.
        *capacity_rows("i-sat-c", "g5.48xlarge", "6.00", {"cluster": "sat-c"}, **spot),
    ]
    ingest_bill(warehouse, folder, bill)
    ingest_samples(
        warehouse,
        hourly_samples(
            "sat-node",
            "i-sat-c",
            "sat-c",
            utc_hours(datetime(2026, 5, 10, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)),
            lambda hour, gpu: 95.0,
        ),
    )
    store_prices(warehouse, [("AWS", "us-east-1", "p4d.24xlarge", "Spot", "12.50")], "aws-spot")
    store_prices(warehouse, [("AWS", "us-east-1", "g5.48xlarge", "OnDemand", "16.288")])
    return warehouse


@pytest.fixture(scope="module")
def spot_fleet(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """Shared by the tests that only read it."""
    return build_spot_fleet(tmp_path_factory.mktemp("spot"))


def spot_policy(tmp_path: Path, **params: object) -> LoadedPolicy:
    return load_policy(tmp_path, {"kind": "spot-shift", "params": {"lookback_days": 30, **params}})


def test_spot_shift_moves_interruptible_on_demand_work_to_spot(
    spot_fleet: Warehouse, tmp_path: Path
) -> None:
    result = run_policy(spot_fleet, Config(), spot_policy(tmp_path), JUNE_1)

    found = by_id(result)
    train = found[f"{ACCOUNT}/us-east-1/train-a/p4d.24xlarge"]
    # 720 h x (32.00 amortised - 12.50 Spot) = 14,040.00 in 30 days; x 30.4375 / 30 a month.
    assert train.monthly_savings == Decimal("14244.75")
    assert train.confidence == 0.8
    assert (train.risk, train.evidence["interruption_bucket"]) == ("high", ">20%")
    assert Decimal(train.evidence["on_demand_hourly"]) == Decimal("32")
    assert Decimal(train.evidence["spot_hourly"]) == Decimal("12.5")
    assert train.evidence["interruptible_by"] == "workload=training"
    assert train.billed_resource_ids == ("i-train-a",)
    assert (train.subject.cluster, train.subject.team) == ("train-a", "vision")

    etl = found[f"{ACCOUNT}/us-east-1/etl/m6i.8xlarge"]
    # No Spot price: 60% off assumed. 720 h x 1.536 x 0.6 = 663.552; x 30.4375 / 30 a month.
    assert cents(etl.monthly_savings) == Decimal("673.23")
    assert etl.confidence == 0.5
    assert (etl.risk, etl.evidence["interruption_bucket"]) == ("low", "<5%")
    assert etl.evidence["interruptible_by"] == "checkpointing=true"

    assert "serve-a p4d.24xlarge (us-east-1): no tag marks its work interruptible" in (
        result.passed_over
    )


def test_spot_shift_interruption_bucket_can_be_overridden_per_family(
    spot_fleet: Warehouse, tmp_path: Path
) -> None:
    policy = spot_policy(tmp_path, interruption={"p4d": "<5%"})

    found = by_id(run_policy(spot_fleet, Config(), policy, JUNE_1))

    train = found[f"{ACCOUNT}/us-east-1/train-a/p4d.24xlarge"]
    assert (train.risk, train.evidence["interruption_bucket"]) == ("low", "<5%")


def test_spot_shift_guarantees_spot_capacity_with_a_deadline_or_saturated(
    spot_fleet: Warehouse, tmp_path: Path
) -> None:
    result = run_policy(spot_fleet, Config(), spot_policy(tmp_path), JUNE_1)

    found = by_id(result)
    deadline = found[f"{ACCOUNT}/us-east-1/ft-b/g5.48xlarge"]
    # Guaranteeing 720 Spot hours at 5.00 on on-demand at 16.288: 720 x 11.288 = 8,127.36
    # more in 30 days, x 30.4375 / 30 = 8,245.884 a month: negative savings.
    assert deadline.monthly_savings == Decimal("-8245.884")
    assert deadline.evidence["direction"] == "to-on-demand"
    assert deadline.evidence["deadline"] == "2026-06-15"
    assert "deadline 2026-06-15 is 14 days away" in deadline.reason
    saturated = found[f"{ACCOUNT}/us-east-1/sat-c/g5.48xlarge"]
    # 720 x (16.288 - 6.00) = 7,407.36; x 30.4375 / 30 = 7,515.384 a month.
    assert saturated.monthly_savings == Decimal("-7515.384")
    assert saturated.evidence["p95_util_pct"] == 95.0
    assert "hourly p95 95.0% > 90%" in saturated.reason
    assert "ft-late g5.48xlarge (us-east-1, Spot): no deadline within 14 days" in (
        result.passed_over
    )
    assert len(result.findings) == 4


def test_spot_shift_reads_deadlines_from_a_file_beside_the_policy(
    spot_fleet: Warehouse, tmp_path: Path
) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "deadlines.csv").write_text(
        "group,deadline\nft-late,2026-06-05\n", encoding="utf-8"
    )
    policy = spot_policy(tmp_path, deadlines_file="deadlines.csv")

    found = by_id(run_policy(spot_fleet, Config(), policy, JUNE_1))

    late = found[f"{ACCOUNT}/us-east-1/ft-late/g5.48xlarge"]
    assert late.evidence["deadline"] == "2026-06-05"
    assert late.monthly_savings == Decimal("-8245.884")


def test_spot_shift_refuses_a_malformed_deadlines_file_naming_file_and_line(
    spot_fleet: Warehouse, tmp_path: Path
) -> None:
    (tmp_path / "policies").mkdir()
    path = tmp_path / "policies" / "deadlines.csv"
    path.write_text("group,deadline\nft-b,2026-06-05\nft-late,next friday\n", encoding="utf-8")
    policy = spot_policy(tmp_path, deadlines_file="deadlines.csv")

    with pytest.raises(PolicyError, match=rf"^{path}:3: expected columns group,deadline"):
        run_policy(spot_fleet, Config(), policy, JUNE_1)


def test_spot_shift_prefers_the_providers_spot_price_to_one_seen_in_billing(
    tmp_path: Path,
) -> None:
    fleet = build_spot_fleet(tmp_path)
    store_prices(fleet, [("AWS", "us-east-1", "p4d.24xlarge", "Spot", "14.00")], "billing")

    found = by_id(run_policy(fleet, Config(), spot_policy(tmp_path), JUNE_1))

    train = found[f"{ACCOUNT}/us-east-1/train-a/p4d.24xlarge"]
    assert Decimal(train.evidence["spot_hourly"]) == Decimal("12.5")
    assert "aws-spot" in train.evidence["spot_price_basis"]


def test_spot_shift_knows_a_cluster_by_any_cluster_tag_key(tmp_path: Path) -> None:
    # An EKS node group tagged `eks:cluster-name` (one of gpu.cluster_tag_keys), saturated.
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest_bill(
        warehouse,
        tmp_path,
        capacity_rows(
            "i-eks-1",
            "g5.48xlarge",
            "6.00",
            {"eks:cluster-name": "sat-eks"},
            PricingCategory="Dynamic",
        ),
    )
    ingest_samples(
        warehouse,
        hourly_samples(
            "eks-node",
            "i-eks-1",
            "sat-eks",
            utc_hours(datetime(2026, 5, 10, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)),
            lambda hour, gpu: 95.0,
        ),
    )
    store_prices(warehouse, [("AWS", "us-east-1", "g5.48xlarge", "OnDemand", "16.288")])

    result = run_policy(warehouse, Config(), spot_policy(tmp_path), JUNE_1)

    (finding,) = result.findings
    assert finding.resource_id == f"{ACCOUNT}/us-east-1/sat-eks/g5.48xlarge"
    assert finding.subject.cluster == "sat-eks"
    assert finding.monthly_savings == Decimal("-7515.384")


# --- rightsize-gpu ------------------------------------------------------------------------

MAY_15 = datetime(2026, 5, 15, 6, tzinfo=UTC)
"""A 14-day lookback is 1 - 14 May (UTC days)."""
LADDER = [
    {"from": "p4d.24xlarge", "to": "g5.48xlarge", "to_gpu_memory_mib": 24_000},
    {"from": "a2-highgpu-8g", "to": "g2-standard-96", "to_gpu_memory_mib": 23_034},
]


def gpu_node(
    cluster: str,
    instance_type: str,
    *,
    mem_used: Callable[[int], float],
    util: float = 20.0,
    sample_hours: int = 200,
) -> tuple[list[dict], list[dict]]:
    """A 1-GPU node billed 24 h a day for 14 days at 32.00/h, with one sample an hour."""
    rid = f"i-{cluster}"
    bill = [
        day_row(
            d,
            "768.00",
            ResourceId=rid,
            x_InstanceType=instance_type,
            RegionId="us-east-1",
            PricingQuantity="24",
            PricingUnit="Hours",
            tags={"cluster": cluster, "team": "vision", "env": "dev"},
        )
        for d in days(date(2026, 5, 1), 14)
    ]
    start = datetime(2026, 5, 1, tzinfo=UTC)
    samples = hourly_samples(
        f"{cluster}-node",
        rid,
        cluster,
        utc_hours(start, start + timedelta(hours=sample_hours)),
        lambda hour, gpu: util,
        gpus=1,
        mem_used=mem_used,
    )
    return bill, samples


def test_rightsize_gpu_fits_a_cheaper_type_or_says_why_not(tmp_path: Path) -> None:
    nodes = [
        # p95 of 190 x 8,000 and 10 x 20,000 MiB: position 199 x 0.95 = 189.05, so
        # 8,000 + 0.05 x 12,000 = 8,600 MiB; 1 - 8,600 / 24,000 = 64.2% headroom: low risk.
        gpu_node("roomy", "p4d.24xlarge", mem_used=lambda i: 8_000.0 if i % 20 else 20_000.0),
        # 19,150 MiB: 20.2% headroom, just enough (min_headroom 20%): high risk.
        gpu_node("edge", "p4d.24xlarge", mem_used=lambda i: 19_150.0),
        # 19,250 MiB: 19.8% headroom, just too little.
        gpu_node("tight", "p4d.24xlarge", mem_used=lambda i: 19_250.0),
        gpu_node("busy", "p4d.24xlarge", mem_used=lambda i: 8_000.0, util=70.0),
        gpu_node("few", "p4d.24xlarge", mem_used=lambda i: 8_000.0, sample_hours=167),
        gpu_node("gcp", "a2-highgpu-8g", mem_used=lambda i: 8_000.0),
    ]
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest_bill(warehouse, tmp_path, [r for bill, _ in nodes for r in bill])
    ingest_samples(warehouse, [s for _, samples in nodes for s in samples])
    store_prices(warehouse, [("AWS", "us-east-1", "g5.48xlarge", "OnDemand", "16.288")])
    policy = load_policy(
        tmp_path,
        {"kind": "rightsize-gpu", "params": {"lookback_days": 14, "ladder": LADDER}},
    )

    result = run_policy(warehouse, Config(), policy, MAY_15)

    found = by_id(result)
    assert sorted(found) == ["edge/p4d.24xlarge", "roomy/p4d.24xlarge"]
    roomy = found["roomy/p4d.24xlarge"]
    assert roomy.evidence["p95_mem_used_mib"] == 8_600.0
    assert roomy.evidence["headroom"] == 0.642
    assert roomy.risk == "low"
    assert roomy.evidence["samples"] == 200
    # 336 billed hours x (32.00 - 16.288) = 5,279.232 in 14 days; x 30.4375 / 14 a month.
    assert roomy.monthly_savings == Decimal("5279.232") * MONTH_DAYS / 14
    assert cents(roomy.monthly_savings) == Decimal("11477.62")
    edge = found["edge/p4d.24xlarge"]
    assert (edge.evidence["headroom"], edge.risk) == (0.202, "high")
    assert edge.monthly_savings == roomy.monthly_savings
    assert sorted(result.passed_over) == [
        "busy p4d.24xlarge: p95 utilisation 70.0% >= 60%",
        "few p4d.24xlarge: only 167 samples",
        "gcp a2-highgpu-8g: fits g2-standard-96, but no price for it in us-east-1: "
        "run `finops prices refresh`",
        "tight p4d.24xlarge: p95 memory 19,250 MiB leaves 19.8% of a g5.48xlarge GPU's "
        "24,000 MiB, need 20.0%",
    ]


# --- untagged-spend -------------------------------------------------------------------------

EC2 = "Amazon Elastic Compute Cloud"
S3 = "Amazon Simple Storage Service"


def spend(account: str, day: str, cost: str, tags: dict | None, **overrides: str) -> dict:
    return row(day, cost, tags=tags, SubAccountId=account, **overrides)


def test_untagged_spend_groups_untagged_usage_by_account_and_service_with_an_owner(
    tmp_path: Path,
) -> None:
    a, b = "111111111111", "222222222222"
    bill = [
        # Account A's tagged usage: vision 400 + 100 (`Team: Vision`) + 100 (`team: CV`, an
        # alias) = 600, search 200: vision holds 75% of it.
        spend(a, "05-10", "400.00", {"team": "vision"}, ResourceId="i-a1"),
        spend(a, "05-10", "100.00", {"Team": "Vision"}, ResourceId="i-a2"),
        spend(a, "05-10", "100.00", {"team": "CV"}, ResourceId="bucket-a", ServiceName=S3),
        spend(a, "05-11", "200.00", {"team": "search"}, ResourceId="i-a3"),
        # Untagged EC2 in A: i-a4 250 + 50, i-a5 110 = 410.
        spend(a, "05-12", "250.00", {"env": "dev"}, ResourceId="i-a4"),
        spend(a, "05-13", "110.00", None, ResourceId="i-a5"),
        spend(a, "05-14", "50.00", None, ResourceId="i-a4"),
        # Not counted: a credit and a tax (nothing to tag), and usage before the lookback.
        spend(a, "05-14", "-30.00", None, ChargeCategory="Credit"),
        spend(a, "05-14", "20.00", None, ChargeCategory="Tax"),
        spend(a, "05-01", "1000.00", None, ResourceId="i-a6"),
        # Untagged S3 in A: 60 a lookback, 60.88 a month, under min_monthly_cost 100.
        spend(a, "05-20", "60.00", None, ResourceId="bucket-b", ServiceName=S3),
        # Account B: tagged usage split three ways (no team holds half), 600 untagged.
        spend(b, "05-10", "100.00", {"team": "vision"}, ResourceId="i-b2"),
        spend(b, "05-10", "100.00", {"team": "search"}, ResourceId="i-b3"),
        spend(b, "05-10", "100.00", {"team": "ml-platform"}, ResourceId="i-b4"),
        spend(b, "05-15", "600.00", None, ResourceId="i-b1"),
    ]
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    ingest_bill(warehouse, tmp_path, bill)
    config = Config(
        allocation=AllocationSettings(tag_key="team", tag_aliases=("Team",)),
        teams=(Team(name="vision", aliases=("cv",)),),
    )
    policy = load_policy(tmp_path, {"kind": "untagged-spend", "params": {"lookback_days": 30}})

    result = run_policy(warehouse, config, policy, JUNE_1)

    found = by_id(result)
    assert sorted(found) == [f"{a}/{EC2}", f"{b}/{EC2}"]
    ec2_a = found[f"{a}/{EC2}"]
    assert Decimal(ec2_a.evidence["untagged_cost"]) == Decimal("410.00")
    # 410 over 30 days: 410 x 30.4375 / 30 = 415.98 a month.
    assert ec2_a.evidence["untagged_monthly_cost"] == "415.98"
    assert (ec2_a.evidence["resources"], ec2_a.evidence["top_resources"]) == (2, ["i-a4", "i-a5"])
    assert (ec2_a.evidence["likely_owner"], ec2_a.evidence["owner_share"]) == ("vision", 0.75)
    assert (ec2_a.owner, ec2_a.subject.team) == ("vision", "vision")
    assert ec2_a.monthly_savings == 0
    ec2_b = found[f"{b}/{EC2}"]
    assert ec2_b.evidence["untagged_monthly_cost"] == "608.75"
    assert ec2_b.evidence["likely_owner"] is None
    assert ec2_b.evidence["owner_share"] == 0.333
    assert ec2_b.owner is None
    assert result.passed_over == [f"{S3} in {a}: 60.88 a month untagged, under the minimum"]


# --- commitment-coverage --------------------------------------------------------------------


def build_steady_fleet(folder: Path) -> Warehouse:
    """m6i: 480 a day on demand (20.00/h) but 240 (10.00/h) on 9 and 10 May, plus usage a
    savings plan already covers; c6i: on demand on 20 of the 30 days only."""
    bill = []
    for d in MAY_DAYS:
        quiet = d in (date(2026, 5, 9), date(2026, 5, 10))
        for itype, share in (("m6i.8xlarge", "0.6"), ("m6i.4xlarge", "0.4")):
            day_cost = Decimal(240 if quiet else 480) * Decimal(share)
            bill.append(
                day_row(
                    d,
                    str(day_cost),
                    ResourceId=f"i-{itype}",
                    x_InstanceType=itype,
                    RegionId="us-east-1",
                    PricingCategory="Standard",
                    PricingQuantity="24",
                    PricingUnit="Hours",
                )
            )
        bill.append(
            day_row(
                d,
                "1000.00",
                ResourceId="i-covered",
                x_InstanceType="m6i.8xlarge",
                RegionId="us-east-1",
                PricingCategory="Committed",
                CommitmentDiscountId="sp-1",
                PricingQuantity="24",
                PricingUnit="Hours",
            )
        )
        if d.day <= 21:
            bill.append(
                day_row(
                    d,
                    "960.00",
                    ResourceId="i-c6i",
                    x_InstanceType="c6i.8xlarge",
                    RegionId="us-east-1",
                    PricingCategory="Standard",
                    PricingQuantity="24",
                    PricingUnit="Hours",
                )
            )
    warehouse = Warehouse(folder / "wh.duckdb")
    ingest_bill(warehouse, folder, bill)
    return warehouse


@pytest.fixture(scope="module")
def steady_fleet(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """Shared by the tests that only read it."""
    return build_steady_fleet(tmp_path_factory.mktemp("steady"))


def test_commitment_coverage_prices_the_steady_baseline_at_the_default_discount(
    steady_fleet: Warehouse, tmp_path: Path
) -> None:
    policy = load_policy(tmp_path, {"kind": "commitment-coverage"})

    result = run_policy(steady_fleet, Config(), policy, JUNE_1)

    (finding,) = result.findings
    assert finding.resource_id == "AWS/us-east-1/m6i"
    # The 10th percentile of the 30 days' hourly rates (two at 10.00, 28 at 20.00) is 20.00;
    # 20.00 x 730.5 h x 28% = 4,090.80 a month; break-even after 12 x (1 - 0.28) = 8.6 months.
    assert Decimal(finding.evidence["baseline_hourly"]) == 20
    assert finding.monthly_savings == Decimal("4090.80")
    assert finding.evidence["break_even_months"] == 8.6
    assert finding.evidence["discount_basis"] == "assumed for AWS"
    assert finding.confidence == 0.6
    assert result.passed_over == ["AWS c6i in us-east-1: on-demand on 20 of 30 days, not steady"]


def test_commitment_coverage_uses_the_discount_observed_in_prices(tmp_path: Path) -> None:
    fleet = build_steady_fleet(tmp_path)
    store_prices(
        fleet,
        [
            ("AWS", "us-east-1", "m6i.8xlarge", "OnDemand", "1.536"),
            ("AWS", "us-east-1", "m6i.8xlarge", "SavingsPlan", "0.9984"),
            ("AWS", "us-east-1", "m6i.4xlarge", "OnDemand", "0.768"),
            ("AWS", "us-east-1", "m6i.4xlarge", "SavingsPlan", "0.4992"),
        ],
    )
    policy = load_policy(tmp_path, {"kind": "commitment-coverage"})

    (finding,) = run_policy(fleet, Config(), policy, JUNE_1).findings

    # 1 - (0.9984 + 0.4992) / (1.536 + 0.768) = 35% off: 20.00 x 730.5 x 0.35 = 5,113.50 a
    # month, breaking even after 12 x 0.65 = 7.8 months.
    assert finding.evidence["discount"] == 0.35
    assert cents(finding.monthly_savings) == Decimal("5113.50")
    assert finding.evidence["break_even_months"] == 7.8
    assert finding.evidence["discount_basis"] == "observed in prices"
    assert finding.confidence == 0.8


def test_commitment_coverage_flags_commitments_ending_within_90_days(
    steady_fleet: Warehouse, tmp_path: Path
) -> None:
    expiries = {"sp-soon": "2026-07-16", "sp-day-90": "2026-08-30", "sp-day-91": "2026-08-31"}
    policy = load_policy(
        tmp_path,
        {
            "kind": "commitment-coverage",
            "params": {"expiries": expiries, "min_monthly_savings": 10_000},
        },
    )

    result = run_policy(steady_fleet, Config(), policy, JUNE_1)

    assert {f.resource_id: f.evidence["days_left"] for f in result.findings} == {
        "sp-day-90": 90,
        "sp-soon": 45,
    }
    assert "AWS m6i in us-east-1: 4,090.80 a month, under the minimum" in result.passed_over


# --- scope ------------------------------------------------------------------------------------

TRAIN_A = f"{ACCOUNT}/us-east-1/train-a/p4d.24xlarge"
ETL = f"{ACCOUNT}/us-east-1/etl/m6i.8xlarge"
FT_B = f"{ACCOUNT}/us-east-1/ft-b/g5.48xlarge"
SAT_C = f"{ACCOUNT}/us-east-1/sat-c/g5.48xlarge"


@pytest.mark.parametrize(
    ("scope", "kept", "why_not"),
    [
        ({"include": {"providers": ["AWS"]}}, [ETL, FT_B, SAT_C, TRAIN_A], None),
        (
            {"include": {"providers": ["Google Cloud"]}},
            [],
            f"{TRAIN_A}: outside the policy's scope (provider AWS)",
        ),
        (
            {"include": {"environments": ["dev"]}},
            [TRAIN_A],
            f"{ETL}: outside the policy's scope (environment (none))",
        ),
        (
            {"exclude": {"clusters": ["train-a", "sat-c"]}},
            [ETL, FT_B],
            f"{TRAIN_A}: excluded by the policy (cluster train-a)",
        ),
        (
            {"include": {"tags": {"team": ["vision"]}}},
            [TRAIN_A],
            f"{FT_B}: outside the policy's scope (tag team=(none))",
        ),
        (
            {"exclude": {"tags": {"checkpointing": None}}},
            [FT_B, SAT_C, TRAIN_A],
            f"{ETL}: excluded by the policy (tag checkpointing=true)",
        ),
    ],
)
def test_scope_filters_findings_through_the_engine(
    spot_fleet: Warehouse, tmp_path: Path, scope: dict, kept: list[str], why_not: str | None
) -> None:
    policy = load_policy(tmp_path, {"kind": "spot-shift", "scope": scope})

    result = run_policy(spot_fleet, Config(), policy, JUNE_1)

    assert sorted(by_id(result)) == kept
    if why_not:
        assert why_not in result.passed_over
