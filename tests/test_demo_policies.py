"""On the demo, the default policy pack finds exactly what the demo organisation planted.

`finops demo` runs the pack as of the day after its last month. What the demo planted is
read from its own declaration (finops/demo.py): the clusters it leaves idle, its one dev
GPU cluster started an hour before the office opens and kept on into the evening, its
on-demand training and batch fleets, and its untagged fleets. Every saving is recomputed
here with SQL of its own over the cost table.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from finops import demo as demo_data
from finops.policies.store import list_recommendations
from tests.conftest import DemoRun

pytestmark = pytest.mark.slow

NOW = datetime(2026, 10, 1, tzinfo=UTC)
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def found(demo_run: DemoRun) -> dict[str, dict[str, dict]]:
    with demo_run.warehouse.reader() as conn:
        rows = list_recommendations(conn).to_pylist()
    by_policy: dict[str, dict[str, dict]] = {}
    for row in rows:
        row["evidence"] = json.loads(row["evidence"])
        by_policy.setdefault(row["policy"], {})[row["resource_id"]] = row
    return by_policy


def _sql(demo_run: DemoRun, sql: str, params: list[object]) -> list[tuple]:
    with demo_run.warehouse.reader() as conn:
        return conn.execute(sql, params).fetchall()


def test_idle_clusters_are_exactly_the_planted_ones(demo_run: DemoRun, found: dict) -> None:
    idle = found["idle-gpu-clusters"]
    assert set(idle) == set(demo_data.IDLE_CLUSTERS)
    for cluster, rec in idle.items():
        # The cluster's GPU instances' usage over the last 7 days, on demand (a commitment
        # covered the rest), as a month: 30.4375 / 7.
        ((on_demand,),) = _sql(
            demo_run,
            """
            SELECT sum("EffectiveCost") FROM cost_resolved
            WHERE "Tags"['cluster'] = ? AND "ChargeCategory" = 'Usage'
              AND regexp_matches("x_InstanceType", '^(p[0-9]|g[0-9]|a2-|a3-|g2-)')
              AND "CommitmentDiscountId" IS NULL
              AND "ChargePeriodStart" >= '2026-09-24' AND "ChargePeriodStart" < '2026-10-01'
            """,
            [cluster],
        )
        expected = on_demand * Decimal("30.4375") / 7
        assert rec["monthly_savings"].quantize(CENT) == expected.quantize(CENT), cluster
        assert rec["action"] == "stop"
        assert rec["evidence"]["targets"], cluster


def test_the_shared_training_cluster_is_partly_on_a_reservation(found: dict) -> None:
    rec = found["idle-gpu-clusters"]["train-p4d-use1"]
    assert "covered by commitment" in rec["reason"]
    assert rec["confidence"] < found["idle-gpu-clusters"]["vision-serving"]["confidence"]


def test_the_dev_cluster_gets_an_office_hours_schedule(demo_run: DemoRun, found: dict) -> None:
    (rec,) = found["dev-gpu-offhours"].values()
    dev_clusters = {
        f.cluster for f in demo_data._FLEETS if f.env == "dev" and f.cluster is not None
    }
    assert rec["resource_id"] in dev_clusters
    schedule = rec["evidence"]["schedule"]
    assert schedule == {
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "09:00",
        "stop": "18:00",
        "time_zone": "Europe/London",
    }
    # The GPU-hours outside Monday-Friday 09:00-18:00 London time in the 28 days, priced
    # from each node's billed day spread over the hours it reported.
    ((outside,),) = _sql(
        demo_run,
        """
        WITH hours AS (
            SELECT h.hour, h.resource_id, timezone('Europe/London', h.hour) AS local_time
            FROM gpu_hourly h
            WHERE h.cluster = ? AND h.hour >= '2026-09-03' AND h.hour < '2026-10-01'
        ),
        per_day AS (
            SELECT "ResourceId" AS resource_id, CAST("ChargePeriodStart" AS DATE) AS day,
                   sum("EffectiveCost") AS cost
            FROM cost_resolved WHERE "ChargeCategory" = 'Usage' AND "Tags"['cluster'] = ?
            GROUP BY ALL
        ),
        reported AS (
            SELECT resource_id, CAST(hour AS DATE) AS day, count(*) AS hours
            FROM hours GROUP BY ALL
        )
        SELECT sum(d.cost / r.hours)
        FROM hours h
        JOIN reported r ON r.resource_id = h.resource_id AND r.day = CAST(h.hour AS DATE)
        JOIN per_day d ON d.resource_id = h.resource_id AND d.day = CAST(h.hour AS DATE)
        WHERE isodow(h.local_time) > 5 OR hour(h.local_time) < 9 OR hour(h.local_time) >= 18
        """,
        [rec["resource_id"], rec["resource_id"]],
    )
    assert Decimal(rec["evidence"]["saved_in_window"]).quantize(CENT) == Decimal(
        str(outside)
    ).quantize(CENT)


def test_spot_candidates_are_the_on_demand_training_and_batch_fleets(
    demo_run: DemoRun, found: dict
) -> None:
    planted = {
        (f.cluster or f.project, demo_data._OFFERINGS[f.offering].instance_type)
        for f in demo_data._FLEETS
        if f.purchase == demo_data.ON_DEMAND
        and f.commitment is None
        and f.workload in ("training", "batch")
        and demo_data._OFFERINGS[f.offering].category in ("Compute", "AI and Machine Learning")
        and demo_data._OFFERINGS[f.offering].instance_type
    }
    shifts = found["spot-shift"]
    assert {
        (rec["evidence"]["group"], rec["evidence"]["instance_type"]) for rec in shifts.values()
    } == planted
    for rec in shifts.values():
        ((cost, hours),) = _sql(
            demo_run,
            """
            SELECT sum("EffectiveCost"), sum("PricingQuantity") FROM cost_resolved
            WHERE "ChargeCategory" = 'Usage' AND "PricingCategory" = 'Standard'
              AND "CommitmentDiscountId" IS NULL AND "x_InstanceType" = ?
              AND coalesce("Tags"['cluster'], "Tags"['project']) = ?
              AND "ChargePeriodStart" >= '2026-09-01' AND "ChargePeriodStart" < '2026-10-01'
            """,
            [rec["evidence"]["instance_type"], rec["evidence"]["group"]],
        )
        spot = Decimal(rec["evidence"]["spot_hourly"])
        expected = (cost - hours * spot) * Decimal("30.4375") / 30
        assert rec["monthly_savings"].quantize(CENT) == expected.quantize(CENT)


def test_untagged_spend_is_every_untagged_account_and_service(
    demo_run: DemoRun, found: dict
) -> None:
    rows = _sql(
        demo_run,
        """
        SELECT coalesce("SubAccountId", "BillingAccountId") || '/' || "ServiceName",
               sum("EffectiveCost") * CAST(30.4375 AS DECIMAL(18,4)) / 30
        FROM cost_resolved
        WHERE "ChargeCategory" = 'Usage'
          AND "Tags"['team'] IS NULL AND "Tags"['Team'] IS NULL AND "Tags"['owner'] IS NULL
          AND "ChargePeriodStart" >= '2026-09-01' AND "ChargePeriodStart" < '2026-10-01'
        GROUP BY 1 HAVING sum("EffectiveCost") * 30.4375 / 30 >= 100
        """,
        [],
    )
    expected = dict(rows)
    untagged = found["untagged-spend"]
    assert set(untagged) == set(expected)
    for key, rec in untagged.items():
        assert Decimal(rec["evidence"]["untagged_monthly_cost"]) == expected[key].quantize(CENT)
    # The planted fleets are among them: ml-dev's untagged notebooks and sandbox GPUs.
    ml_dev = next(r for r in untagged.values() if r["resource_name"].endswith("in ml-dev"))
    names = _sql(
        demo_run,
        "SELECT DISTINCT regexp_replace(\"ResourceName\", '-[0-9]+$', '') FROM cost_resolved "
        'WHERE list_contains(?, "ResourceId") ORDER BY 1',
        [ml_dev["evidence"]["top_resources"]],
    )
    planted = sorted(
        {f.name for f in demo_data._FLEETS if f.team is None and f.account == "aws-ml-dev"}
    )
    assert [name for (name,) in names] == [n for n in planted if n != "orphaned-volumes"]
