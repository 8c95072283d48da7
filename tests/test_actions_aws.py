"""Acting on recommendations against moto: EC2 (on-demand and spot), Auto Scaling groups, EKS
node groups and SageMaker notebooks, with every safety check. The clock is frozen at NOW."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from finops.actions.executors import Executors
from finops.actions.runner import Actions, kill_switch
from finops.config import ActionSettings, Config
from finops.warehouse import Warehouse
from tests.actions_fixtures import (
    NOW,
    REGION,
    Fleet,
    add_samples,
    asg_capacity,
    audit_rows,
    build_fleet,
    instance_state,
    instance_target,
    launch,
    nodegroup_capacity,
    notebook_status,
    protect_in_inventory,
    recommend,
    settings_config,
)

# moto and a warehouse file per test: several seconds each on a shared machine.
pytestmark = pytest.mark.slow

IDLE = [1.0, 0.0, 2.0, 0.5]
"""Four one-minute readings, all under the 5% idle threshold."""


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with mock_aws():
        yield build_fleet()


def actions(
    warehouse: Warehouse,
    config: Config,
    session: boto3.session.Session | None = None,
    environ: dict[str, str] | None = None,
) -> Actions:
    return Actions(
        warehouse,
        config,
        actor="alice",
        trigger="finops apply",
        executors=Executors.from_settings(config.actions, aws_session=session),
        environ=environ or {},
    )


def idle_fleet_recommendations(warehouse: Warehouse, fleet: Fleet) -> None:
    """train-a (both instances and its node group), infer-b (its group, auto mode) and the
    research notebook: all idle, samples two minutes old."""
    for cluster in ("train-a", "infer-b", "research"):
        add_samples(warehouse, cluster, utils=IDLE, newest=NOW - timedelta(minutes=2))
    recommend(
        warehouse,
        "rec-train",
        cluster="train-a",
        action="scale-to-zero",
        targets=[
            instance_target(fleet.on_demand),
            instance_target(fleet.spot),
            {
                "provider": "aws",
                "resource_type": "eks-nodegroup",
                "resource_id": fleet.nodegroup_arn,
                "region": REGION,
            },
        ],
    )
    recommend(
        warehouse,
        "rec-infer",
        cluster="infer-b",
        action="scale-to-zero",
        state="open",
        mode="auto",
        targets=[
            {
                "provider": "aws",
                "resource_type": "asg",
                "resource_id": fleet.asg_arn,
                "region": REGION,
            }
        ],
    )
    recommend(
        warehouse,
        "rec-notebook",
        cluster="research",
        targets=[
            {
                "provider": "aws",
                "resource_type": "sagemaker-notebook",
                "resource_id": "research-nb",
                "region": REGION,
            }
        ],
    )


def test_dry_run_is_the_default_and_changes_nothing(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    idle_fleet_recommendations(warehouse, fleet)
    report = actions(warehouse, settings_config(tmp_path)).apply(NOW)

    assert report.dry_run
    assert report.why_dry == "dry run (pass --apply to act)"
    assert [(o.target.resource_id, o.result) for o in report.outcomes if o.target] == [
        (fleet.asg_arn, "would-stop"),
        ("research-nb", "would-stop"),
        (fleet.on_demand, "would-stop"),
        (fleet.spot, "would-stop"),
        (fleet.nodegroup_arn, "would-stop"),
    ]
    assert instance_state(fleet.on_demand) == "running"
    assert asg_capacity() == (1, 2, 4)
    assert nodegroup_capacity() == (1, 2, 4)
    assert notebook_status() == "InService"
    assert {row[2:5] for row in audit_rows(warehouse)} == {("outcome", "would-stop", True)}


def test_apply_stops_instances_and_scales_groups_to_zero(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    idle_fleet_recommendations(warehouse, fleet)
    applied: list[tuple[str, datetime]] = []
    report = actions(warehouse, settings_config(tmp_path)).apply(
        NOW, dry_run=False, on_applied=lambda rec, at: applied.append((rec, at))
    )

    assert not report.dry_run
    assert report.failed == []
    assert instance_state(fleet.on_demand) == "stopped"
    assert instance_state(fleet.spot) == "stopped"
    assert asg_capacity() == (0, 0, 4)
    assert nodegroup_capacity() == (0, 0, 4)
    assert notebook_status() == "Stopped"
    assert sorted(applied) == [("rec-infer", NOW), ("rec-notebook", NOW), ("rec-train", NOW)]

    # Each act is an intent followed by its outcome, pointing back at the intent.
    rows = audit_rows(warehouse)
    assert [(r[1], r[2], r[3], r[5]) for r in rows[:2]] == [
        (fleet.asg_arn, "intent", "started", None),
        (fleet.asg_arn, "outcome", "stopped", 1),
    ]
    assert len(rows) == 10
    remembered = warehouse.query(
        "SELECT resource_id, previous_state::VARCHAR AS s FROM action_memory ORDER BY resource_id"
    ).to_pylist()
    capacities = {r["resource_id"]: json.loads(r["s"]).get("capacity") for r in remembered}
    assert capacities == {
        fleet.asg_arn: {"min": 1, "desired": 2, "max": 4},
        fleet.nodegroup_arn: {"min": 1, "desired": 2, "max": 4},
        fleet.on_demand: None,
        fleet.spot: None,
        "research-nb": None,
    }


def test_only_accepted_or_auto_mode_recommendations_are_acted_on(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    add_samples(warehouse, "train-a", utils=IDLE, newest=NOW - timedelta(minutes=2))
    target = [instance_target(fleet.on_demand)]
    recommend(warehouse, "open-manual", cluster="train-a", targets=target, state="open")
    recommend(warehouse, "dismissed", cluster="train-a", targets=target, state="dismissed")
    recommend(warehouse, "applied", cluster="train-a", targets=target, state="applied")
    recommend(warehouse, "inactive", cluster="train-a", targets=target, active=False)
    recommend(warehouse, "resize", cluster="train-a", targets=target, action="rightsize")
    recommend(
        warehouse,
        "snoozed",
        cluster="train-a",
        targets=target,
        state="snoozed",
        mode="auto",
        snoozed_until=NOW + timedelta(hours=1),
    )
    recommend(
        warehouse,
        "snooze-over",
        cluster="train-a",
        targets=target,
        state="snoozed",
        mode="auto",
        snoozed_until=NOW - timedelta(minutes=1),
    )
    runner = actions(warehouse, settings_config(tmp_path))
    assert [r.rec_id for r in runner.actionable(NOW)] == ["snooze-over"]


def test_protected_busy_stale_and_excluded_resources_are_untouched(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    tagged = launch(ec2, fleet.subnet, {"finops:protect": "true"})
    in_inventory = launch(ec2, fleet.subnet)
    protect_in_inventory(warehouse, in_inventory)
    busy = launch(ec2, fleet.subnet)
    stale = launch(ec2, fleet.subnet)
    excluded = launch(ec2, fleet.subnet)
    add_samples(warehouse, "quiet", utils=IDLE, newest=NOW - timedelta(minutes=1))
    # busy-b: GPU 0 idle, GPU 1 took a job four minutes ago: its newest 15 readings average
    # (11 x 0 + 80 + 90 + 100 + 100) / 15 = 24.7%.
    add_samples(warehouse, "busy-b", utils=[0.0] * 20, newest=NOW - timedelta(minutes=1))
    add_samples(
        warehouse,
        "busy-b",
        utils=[0.0] * 11 + [80.0, 90.0, 100.0, 100.0],
        newest=NOW - timedelta(minutes=1),
        gpu_index=1,
    )
    add_samples(warehouse, "stale-c", utils=IDLE, newest=NOW - timedelta(minutes=45))
    recommend(
        warehouse,
        "rec-quiet",
        cluster="quiet",
        targets=[instance_target(i) for i in (tagged, in_inventory, excluded)],
    )
    recommend(warehouse, "rec-busy", cluster="busy-b", targets=[instance_target(busy)])
    recommend(warehouse, "rec-stale", cluster="stale-c", targets=[instance_target(stale)])
    recommend(warehouse, "rec-unwatched", cluster="nowhere", targets=[instance_target(stale)])

    report = actions(warehouse, settings_config(tmp_path)).apply(
        NOW, dry_run=False, exclusions={excluded}
    )

    for instance in (tagged, in_inventory, busy, stale, excluded):
        assert instance_state(instance) == "running"
    reasons = {(o.rec_id, o.target.resource_id): (o.result, o.reason) for o in report.outcomes}
    assert reasons[("rec-quiet", tagged)] == (
        "skipped",
        "protected: tag finops:protect=true on the resource",
    )
    assert reasons[("rec-quiet", in_inventory)] == (
        "skipped",
        "protected: tag finops:protect=true in the inventory",
    )
    assert reasons[("rec-quiet", excluded)] == ("skipped", "excluded by policy idle-gpu")
    assert reasons[("rec-busy", busy)] == (
        "skipped",
        "cluster busy-b became busy: node-1 GPU 1 averaged 24.7% over the newest 15 min "
        "(idle below 5%)",
    )
    assert reasons[("rec-stale", stale)] == (
        "skipped",
        "newest GPU sample of cluster stale-c is 45 min old (older than 30 min): "
        "cannot confirm it is still idle",
    )
    assert reasons[("rec-unwatched", stale)] == (
        "skipped",
        "no GPU samples for cluster nowhere to re-check",
    )
    assert report.applied == []
    # Every skip is in the audit log with its reason.
    logged = warehouse.query(
        "SELECT resource_id, reason FROM audit_log WHERE rec_id = 'rec-busy'"
    ).to_pylist()
    assert logged == [{"resource_id": busy, "reason": reasons[("rec-busy", busy)][1]}]


def test_blast_radius_over_the_count_cap_acts_on_nothing(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    idle_fleet_recommendations(warehouse, fleet)
    config = settings_config(tmp_path, max_resources_per_run=4)
    report = actions(warehouse, config).apply(NOW, dry_run=False)

    assert report.refused == (
        "5 resources would be acted on, over the cap of 4 per run "
        "(actions.max_resources_per_run); nothing was done"
    )
    assert report.changed == []
    assert {o.result for o in report.outcomes} == {"skipped"}
    assert instance_state(fleet.on_demand) == "running"
    assert asg_capacity() == (1, 2, 4)
    assert nodegroup_capacity() == (1, 2, 4)


def test_blast_radius_over_the_scope_share_acts_on_nothing(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    idle_fleet_recommendations(warehouse, fleet)
    # idle-gpu covers 8 resources; 5 of them is 62.5%, over 50%.
    report = actions(warehouse, settings_config(tmp_path)).apply(
        NOW, dry_run=False, scope_sizes={"idle-gpu": 8}
    )
    assert report.refused == (
        "policy idle-gpu would act on 5 of the 8 resources in its scope (62%), over the cap "
        "of 50% (actions.max_scope_percent); nothing was done"
    )
    assert report.changed == []
    # Ten resources in scope: half of them is within the cap, and the run acts.
    report = actions(warehouse, settings_config(tmp_path)).apply(
        NOW, dry_run=False, scope_sizes={"idle-gpu": 10}
    )
    assert report.refused is None
    assert len(report.changed) == 5


def test_kill_switch_turns_apply_into_a_dry_run(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    idle_fleet_recommendations(warehouse, fleet)
    by_env = actions(warehouse, settings_config(tmp_path), environ={"FINOPS_ACTIONS": "off"})
    report = by_env.apply(NOW, dry_run=False)
    assert report.dry_run
    assert report.why_dry == "kill switch: FINOPS_ACTIONS=off"
    assert {o.result for o in report.outcomes} == {"would-stop"}
    assert instance_state(fleet.on_demand) == "running"

    disabled = settings_config(tmp_path, enabled=False)
    assert kill_switch(disabled, {}) == "kill switch: actions.enabled is false in finops.yaml"
    assert actions(warehouse, disabled).apply(NOW, dry_run=False).dry_run
    assert asg_capacity() == (1, 2, 4)


def test_an_already_stopped_instance_is_left_alone_and_not_remembered(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    add_samples(warehouse, "train-a", utils=IDLE, newest=NOW - timedelta(minutes=2))
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[fleet.on_demand])
    recommend(warehouse, "rec-train", cluster="train-a", targets=[instance_target(fleet.on_demand)])

    report = actions(warehouse, settings_config(tmp_path)).apply(NOW, dry_run=False)

    assert [(o.result, o.reason) for o in report.outcomes] == [
        ("already-stopped", "already stopped; nothing to do")
    ]
    assert report.applied == ["rec-train"]
    assert warehouse.query("SELECT count(*) AS n FROM action_memory").column("n")[0].as_py() == 0


def test_restore_starts_only_what_finops_stopped_to_the_remembered_capacity(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    stopped_by_hand = launch(ec2, fleet.subnet)
    ec2.stop_instances(InstanceIds=[stopped_by_hand])
    idle_fleet_recommendations(warehouse, fleet)
    with warehouse.writer() as conn:
        # The same off-hours policy also names the instance someone stopped by hand.
        conn.execute(
            "UPDATE recommendations SET evidence = json_merge_patch(evidence, ?) "
            "WHERE rec_id = 'rec-notebook'",
            [
                json.dumps(
                    {
                        "targets": [
                            {
                                "provider": "aws",
                                "resource_type": "sagemaker-notebook",
                                "resource_id": "research-nb",
                                "region": REGION,
                            },
                            instance_target(stopped_by_hand),
                        ]
                    }
                )
            ],
        )
    runner = actions(warehouse, settings_config(tmp_path))
    runner.apply(NOW, dry_run=False)
    assert asg_capacity() == (0, 0, 4)

    # Someone scales the node group up by hand during the night: restore leaves it be.
    boto3.client("eks", region_name=REGION).update_nodegroup_config(
        clusterName="train-a",
        nodegroupName="gpu-ng",
        scalingConfig={"minSize": 0, "desiredSize": 3, "maxSize": 4},
    )
    morning = NOW + timedelta(hours=12)
    report = runner.restore(morning, policy="idle-gpu")

    assert asg_capacity() == (1, 2, 4)
    assert nodegroup_capacity() == (0, 3, 4)
    assert instance_state(fleet.on_demand) == "running"
    assert instance_state(fleet.spot) == "running"
    assert notebook_status() == "InService"
    assert instance_state(stopped_by_hand) == "stopped"
    assert sorted((o.target.resource_id, o.result) for o in report.outcomes) == sorted(
        [
            (fleet.asg_arn, "started"),
            (fleet.nodegroup_arn, "already-running"),
            (fleet.on_demand, "started"),
            (fleet.spot, "started"),
            ("research-nb", "started"),
        ]
    )
    # Given back once: a second restore has nothing left to do.
    assert runner.restore(morning, policy="idle-gpu").outcomes == []


def test_restore_gives_a_node_group_its_remembered_capacity(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    idle_fleet_recommendations(warehouse, fleet)
    runner = actions(warehouse, settings_config(tmp_path))
    runner.apply(NOW, dry_run=False, rec_ids=["rec-train"])
    assert nodegroup_capacity() == (0, 0, 4)
    report = runner.restore(NOW + timedelta(hours=12), policy="idle-gpu")
    assert nodegroup_capacity() == (1, 2, 4)
    (node_group,) = [o for o in report.outcomes if o.target.resource_type == "eks-nodegroup"]
    assert node_group.reason == "restoring what finops stopped to min 1, desired 2, max 4"


def refuse_first(
    session: boto3.session.Session, event: str, code: str, times: int = 1
) -> list[dict[str, Any]]:
    """Answer the first `times` calls of `event` with error `code` at the botocore boundary;
    return every call's parameters."""
    calls: list[dict[str, Any]] = []

    def handler(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict] | None:
        calls.append(params)
        if len(calls) > times:
            return None
        body = {"Error": {"Code": code, "Message": f"{code} (injected)"}}
        return AWSResponse("https://ec2.amazonaws.com/", 400, {}, None), body

    session.events.register(event, handler)
    return calls


def test_a_throttled_stop_is_retried(fleet: Fleet, warehouse: Warehouse, tmp_path: Path) -> None:
    add_samples(warehouse, "train-a", utils=IDLE, newest=NOW - timedelta(minutes=2))
    recommend(warehouse, "rec-train", cluster="train-a", targets=[instance_target(fleet.on_demand)])
    session = boto3.session.Session()
    calls = refuse_first(session, "before-call.ec2.StopInstances", "RequestLimitExceeded", times=2)

    report = actions(warehouse, settings_config(tmp_path), session).apply(NOW, dry_run=False)

    assert len(calls) == 3
    assert [o.result for o in report.outcomes] == ["stopped"]
    assert instance_state(fleet.on_demand) == "stopped"


def test_a_stop_still_throttled_after_every_attempt_fails_cleanly(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    add_samples(warehouse, "train-a", utils=IDLE, newest=NOW - timedelta(minutes=2))
    recommend(warehouse, "rec-train", cluster="train-a", targets=[instance_target(fleet.on_demand)])
    session = boto3.session.Session()
    calls = refuse_first(session, "before-call.ec2.StopInstances", "Throttling", times=99)
    config = settings_config(tmp_path, retry_attempts=3)

    report = actions(warehouse, config, session).apply(NOW, dry_run=False)

    assert len(calls) == 3
    (outcome,) = report.outcomes
    assert outcome.result == "failed"
    assert outcome.reason.startswith("stop failed: ClientError: An error occurred (Throttling)")
    assert instance_state(fleet.on_demand) == "running"


def test_partial_failure_leaves_an_audit_log_naming_what_changed(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    third = launch(boto3.client("ec2", region_name=REGION), fleet.subnet)
    add_samples(warehouse, "train-a", utils=IDLE, newest=NOW - timedelta(minutes=2))
    recommend(
        warehouse,
        "rec-train",
        cluster="train-a",
        targets=[instance_target(i) for i in (fleet.on_demand, fleet.spot, third)],
    )
    session = boto3.session.Session()
    calls: list[str] = []

    def refuse_second(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict] | None:
        # `params` is the request as serialised for the wire.
        calls.append(params["body"]["InstanceId.1"])
        if calls[-1] == fleet.spot:
            body = {"Error": {"Code": "UnauthorizedOperation", "Message": "not allowed"}}
            return AWSResponse("https://ec2.amazonaws.com/", 403, {}, None), body
        return None

    session.events.register("before-call.ec2.StopInstances", refuse_second)
    report = actions(warehouse, settings_config(tmp_path), session).apply(NOW, dry_run=False)

    assert calls == [fleet.on_demand, fleet.spot, third]
    assert [instance_state(i) for i in (fleet.on_demand, fleet.spot, third)] == [
        "stopped",
        "running",
        "stopped",
    ]
    assert [(r[1], r[2], r[3], r[5]) for r in audit_rows(warehouse)] == [
        (fleet.on_demand, "intent", "started", None),
        (fleet.on_demand, "outcome", "stopped", 1),
        (fleet.spot, "intent", "started", None),
        (fleet.spot, "outcome", "failed", 3),
        (third, "intent", "started", None),
        (third, "outcome", "stopped", 5),
    ]
    assert report.applied == []
    changed = warehouse.query(
        "SELECT resource_id FROM audit_log WHERE phase = 'outcome' AND result = 'stopped' "
        "ORDER BY seq"
    ).column("resource_id")
    assert changed.to_pylist() == [fleet.on_demand, third]


def test_hibernation_where_configured_falls_back_to_a_stop_when_refused(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    add_samples(warehouse, "train-a", utils=IDLE, newest=NOW - timedelta(minutes=2))
    recommend(warehouse, "rec-train", cluster="train-a", targets=[instance_target(fleet.on_demand)])
    session = boto3.session.Session()

    def hibernation_configured(parsed: dict[str, Any], **_: Any) -> None:
        # moto does not report HibernationOptions; AWS does for instances launched with it.
        for reservation in parsed.get("Reservations", []):
            for instance in reservation["Instances"]:
                instance["HibernationOptions"] = {"Configured": True}

    stops: list[dict[str, Any]] = []

    def refuse_hibernation(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict] | None:
        stops.append(dict(params["body"]))
        if params["body"].get("Hibernate") == "true":
            body = {"Error": {"Code": "UnsupportedHibernationConfiguration", "Message": "no"}}
            return AWSResponse("https://ec2.amazonaws.com/", 400, {}, None), body
        return None

    session.events.register("after-call.ec2.DescribeInstances", hibernation_configured)
    session.events.register("before-call.ec2.StopInstances", refuse_hibernation)
    report = actions(warehouse, settings_config(tmp_path), session).apply(NOW, dry_run=False)

    assert [s.get("Hibernate") for s in stops] == ["true", None]
    (outcome,) = report.outcomes
    assert outcome.result == "stopped"
    assert outcome.after["details"] == {
        "hibernated": False,
        "hibernation_refused": "UnsupportedHibernationConfiguration",
    }
    assert instance_state(fleet.on_demand) == "stopped"


def test_a_recommendation_without_readable_targets_is_skipped_with_the_reason(
    fleet: Fleet, warehouse: Warehouse, tmp_path: Path
) -> None:
    recommend(
        warehouse,
        "rec-bad",
        cluster="train-a",
        targets=[{"provider": "aws", "resource_type": "ec2-instance", "resource_id": "i-1"}],
    )
    report = actions(warehouse, settings_config(tmp_path)).apply(NOW, dry_run=False)
    assert [(o.rec_id, o.result, o.reason) for o in report.outcomes] == [
        (
            "rec-bad",
            "skipped",
            "recommendation rec-bad evidence, targets[0]: `region` is missing "
            "(a ec2-instance needs it)",
        )
    ]


def test_settings_read_short_durations_and_refuse_a_bad_webhook() -> None:
    settings = ActionSettings.model_validate({"warn_lead_time": "90m", "max_sample_age": "2h"})
    assert settings.warn_lead_time == timedelta(minutes=90)
    assert settings.max_sample_age == timedelta(hours=2)
    with pytest.raises(ValueError, match="expected an http"):
        ActionSettings.model_validate({"webhook_url": "hooks.slack.com/x"})
