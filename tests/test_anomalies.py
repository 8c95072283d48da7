"""Anomalies: a day far above the steadiest recent week, its drivers, and the stored states."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from finops.analytics.anomalies import detect_anomalies, list_anomalies
from finops.analytics.chargeback import Allocation
from finops.collectors.focus import read_focus
from finops.config import AllocationSettings, Team
from finops.errors import FinopsError
from finops.warehouse import Warehouse
from tests.conftest import row, write_csv

ALLOCATION = Allocation(settings=AllocationSettings(), teams=(Team(name="vision"),))
EC2 = "Amazon Elastic Compute Cloud"
SPIKE = date(2026, 5, 29)
NOW = datetime(2026, 5, 30, tzinfo=UTC)


def usage(day: date, amount: str, resource: str, **more: str) -> dict:
    return row(f"{day:%m-%d}", amount, tags={"team": "vision"}, ResourceId=resource, **more)


@pytest.fixture
def daily(tmp_path: Path, warehouse: Warehouse) -> Warehouse:
    rows = []
    for offset in range(28):  # 1-28 May: three noisy weeks (5/15), then a flat one (10)
        day = date(2026, 5, 1) + timedelta(days=offset)
        amount = "10" if offset >= 21 else ("5" if offset % 2 else "15")
        rows.append(usage(day, amount, "i-a"))
        rows.append(row(f"{day:%m-%d}", "3", tags={"team": "search"}, ServiceName="Amazon S3"))
    # 29 May: i-a as usual, a new i-b as much again; S3 as usual; a monthly credit.
    rows += [
        usage(SPIKE, "10", "i-a"),
        usage(SPIKE, "10", "i-b"),
        row("05-29", "3", tags={"team": "search"}, ServiceName="Amazon S3"),
        row("05-29", "-50", tags={"team": "search"}, ChargeCategory="Credit"),
    ]
    path = write_csv(tmp_path / "d.csv", rows)
    warehouse.ingest_cost(lambda: read_focus(str(path)), source="a", collector="focus", uri="d")
    return warehouse


def test_a_spike_against_the_flat_week_is_found_with_its_driver(daily: Warehouse) -> None:
    with daily.reader() as conn:
        found = detect_anomalies(conn, SPIKE, SPIKE, ALLOCATION).to_pylist()
    assert len(found) == 1
    (spike,) = found
    assert (spike["day"], spike["team"], spike["service"]) == (SPIKE, "vision", EC2)
    assert spike["actual"] == Decimal("20")
    # The steadiest week is 22-28 May (10 a day, no deviation), not the 5/15 weeks before:
    # the deviation is floored at 1% of the mean, 0.10, so z = (20 - 10) / 0.10.
    assert (spike["baseline_mean"], spike["baseline_std"]) == (Decimal("10"), Decimal("0"))
    assert spike["baseline_start"] == date(2026, 5, 22)
    assert spike["z"] == 100.0
    assert json.loads(spike["drivers"]) == [
        {"resource": "i-b", "actual": 10.0, "baseline": 0.0, "change": 10.0}
    ]


def test_a_noisy_baseline_and_a_minimum_increase_hold_alerts_back(daily: Warehouse) -> None:
    with daily.reader() as conn:
        # On 22 May the only full weeks are the 5/15 ones (std about 5.35): 10 is no anomaly.
        assert (
            detect_anomalies(conn, date(2026, 5, 22), date(2026, 5, 22), ALLOCATION).num_rows == 0
        )
        assert detect_anomalies(conn, SPIKE, SPIKE, ALLOCATION, min_increase=10.01).num_rows == 0


def test_storing_is_idempotent_and_keeps_acknowledgements(daily: Warehouse) -> None:
    with daily.reader() as conn:
        found = detect_anomalies(conn, SPIKE, SPIKE, ALLOCATION)
    for _ in range(2):
        assert daily.store_anomalies(found, first_day=SPIKE, last_day=SPIKE, now=NOW) == 1
    with daily.reader() as conn:
        (stored,) = list_anomalies(conn).to_pylist()
    assert (stored["team"], stored["state"], stored["actual"]) == (
        "vision",
        "open",
        Decimal("20.00"),
    )

    daily.acknowledge_anomaly(stored["anomaly_id"][:8], by="ana", now=NOW)
    daily.store_anomalies(found, first_day=SPIKE, last_day=SPIKE, now=NOW)
    with daily.reader() as conn:
        assert list_anomalies(conn).num_rows == 0
        (acked,) = list_anomalies(conn, "acknowledged").to_pylist()
    assert (acked["state"], acked["acknowledged_by"]) == ("acknowledged", "ana")

    with pytest.raises(FinopsError, match="no anomalies have this id"):
        daily.acknowledge_anomaly("nosuchid", by="ana", now=NOW)


def test_a_restated_day_that_no_longer_spikes_drops_its_open_anomaly(daily: Warehouse) -> None:
    with daily.reader() as conn:
        found = detect_anomalies(conn, SPIKE, SPIKE, ALLOCATION)
    daily.store_anomalies(found, first_day=SPIKE, last_day=SPIKE, now=NOW)
    daily.store_anomalies(found.slice(0, 0), first_day=SPIKE, last_day=SPIKE, now=NOW)
    with daily.reader() as conn:
        assert list_anomalies(conn, "all").num_rows == 0
