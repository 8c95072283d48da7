"""An accepted off-hours schedule, enforced by the scheduler's job against moto's EC2.

The dev cluster runs Monday-Friday 09:00-18:00 London time. Across the clock change of
Sunday 29 March 2026 (GMT -> BST) and the holiday of Friday 3 April, the job stops and
starts exactly the instances it should, and leaves alone the one someone stopped by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from finops.actions.executors import Executors
from finops.actions.runner import Actions
from finops.config import Config, Holidays
from finops.scheduler import converge_offhours
from finops.warehouse import Warehouse
from tests.actions_fixtures import (
    REGION,
    add_samples,
    instance_state,
    instance_target,
    launch,
    recommend,
    settings_config,
)

pytestmark = pytest.mark.slow

SCHEDULE = {
    "days": ["mon", "tue", "wed", "thu", "fri"],
    "start": "09:00",
    "stop": "18:00",
    "time_zone": "Europe/London",
}


@pytest.fixture
def instances() -> Iterator[list[str]]:
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
        yield [launch(ec2, subnet, {"cluster": "dev-x"}) for _ in range(3)]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    base = settings_config(tmp_path)
    return base.model_copy(
        update={"time_zone": "Europe/London", "holidays": Holidays(dates=(date(2026, 4, 3),))}
    )


def _states(ids: list[str]) -> list[str]:
    return [instance_state(i) for i in ids]


def test_an_offhours_schedule_across_a_clock_change_and_a_holiday(
    instances: list[str], config: Config, warehouse: Warehouse
) -> None:
    recommend(
        warehouse,
        "rec-dev",
        cluster="dev-x",
        policy="dev-gpu-offhours",
        targets=[instance_target(i) for i in instances],
        evidence={"schedule": SCHEDULE},
    )
    with warehouse.writer() as conn:
        conn.execute("UPDATE recommendations SET kind = 'offhours' WHERE rec_id = 'rec-dev'")
    actions = Actions(
        warehouse,
        config,
        actor="scheduler",
        trigger="scheduler: off-hours",
        executors=Executors.from_settings(config.actions),
    )

    def check(at: datetime) -> list[str]:
        add_samples(warehouse, "dev-x", utils=[0.0, 1.0], newest=at - timedelta(minutes=2))
        converge_offhours(actions, config, at)
        return _states(instances)

    running, stopped = "running", "stopped"
    # Friday 27 March, 17:30 GMT: working time, nothing to do.
    assert check(datetime(2026, 3, 27, 17, 30, tzinfo=UTC)) == [running] * 3
    # Someone stops the third instance by hand before the evening.
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[instances[2]])
    # 18:10 GMT: stop what runs.
    assert check(datetime(2026, 3, 27, 18, 10, tzinfo=UTC)) == [stopped] * 3
    # Saturday: stays stopped, nothing started.
    assert check(datetime(2026, 3, 28, 12, 0, tzinfo=UTC)) == [stopped] * 3
    # Monday 30 March after the clock change: 07:50 UTC is 08:50 BST, still closed;
    # 08:10 UTC is 09:10 BST: start what finops stopped, and only that.
    assert check(datetime(2026, 3, 30, 7, 50, tzinfo=UTC)) == [stopped] * 3
    assert check(datetime(2026, 3, 30, 8, 10, tzinfo=UTC)) == [running, running, stopped]
    # Thursday 2 April, 18:10 BST (17:10 UTC): stop.
    assert check(datetime(2026, 4, 2, 17, 10, tzinfo=UTC)) == [stopped] * 3
    # Friday 3 April is a holiday: 09:30 BST stays stopped.
    assert check(datetime(2026, 4, 3, 8, 30, tzinfo=UTC)) == [stopped] * 3
    # Monday 6 April, 09:30 BST: started again.
    assert check(datetime(2026, 4, 6, 8, 30, tzinfo=UTC)) == [running, running, stopped]

    started = warehouse.query(
        "SELECT resource_id, action, result FROM audit_log WHERE phase = 'outcome' "
        "AND result IN ('stopped', 'started') ORDER BY seq"
    ).to_pylist()
    both = {instances[0], instances[1]}
    changes = [(r["resource_id"], r["result"]) for r in started]
    assert [({changes[i][0], changes[i + 1][0]}, changes[i][1]) for i in range(0, 8, 2)] == [
        (both, "stopped"),
        (both, "started"),
        (both, "stopped"),
        (both, "started"),
    ]
    assert all(changes[i][1] == changes[i + 1][1] for i in range(0, 8, 2))
