"""The policy engine: policy files, the idle-cluster kind, and recommendation state.

The fleet below is six GPU clusters over the seven days before NOW, each node billed
24.00 a day (1.00 an hour) and reporting one GPU every hour:

- idle-a: 2 nodes at 1% utilisation -> stop; 2 x 7 x 24.00 = 336.00 in the window,
  336.00 x 30.4375 / 7 = 1,461.00 a month.
- busy-b: 1 node at 60% -> kept.
- edge-c: 1 node at exactly 5.0% -> kept (idle means under the threshold).
- edge-d: 1 node at 4.9% -> stop: 24.00 x 7 x 30.4375 / 7 = 730.50 a month.
- thin-e: 1 node billed all week that reported 10 hours -> kept, not enough metrics.
- safe-f: 1 idle node tagged finops:protect=true -> kept.
- rsvd-g: 1 idle node whose first 4 days a reserved instance covered: only the 3 days on
  demand save anything: 72.00 x 30.4375 / 7 = 313.07 a month, with a lower confidence.
"""

from __future__ import annotations

import shutil
import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from finops.collectors.focus import read_focus
from finops.config import Config
from finops.errors import PolicyError
from finops.policies import engine
from finops.policies.loader import read_policy_file, validate_policies
from finops.policies.store import (
    change_state,
    history,
    list_recommendations,
    realised_savings,
    savings_totals,
)
from finops.warehouse import GpuDelivery, Warehouse
from tests.conftest import row, write_csv

NOW = datetime(2026, 5, 8, 9, 30, tzinfo=UTC)
WINDOW_START = datetime(2026, 5, 1, tzinfo=UTC)

NODES: dict[str, tuple[str, float, dict[str, str]]] = {
    "i-a1": ("idle-a", 1.0, {}),
    "i-a2": ("idle-a", 1.0, {}),
    "i-b1": ("busy-b", 60.0, {}),
    "i-c1": ("edge-c", 5.0, {}),
    "i-d1": ("edge-d", 4.9, {}),
    "i-e1": ("thin-e", 1.0, {}),
    "i-f1": ("safe-f", 1.0, {"finops:protect": "true"}),
    "i-g1": ("rsvd-g", 1.0, {}),
}


def _bill(tmp_path: Path, days: range = range(1, 8), daily: dict[str, str] | None = None) -> Path:
    """Every node billed 24.00 a day (or `daily[instance]`) on the days given."""
    rows = []
    for instance, (cluster, _, tags) in NODES.items():
        for day in days:
            covered = instance == "i-g1" and day <= 4
            rows.append(
                row(
                    f"05-{day:02d}",
                    (daily or {}).get(instance, "24.00"),
                    ResourceId=instance,
                    ResourceName=instance,
                    x_InstanceType="p4d.24xlarge",
                    RegionId="us-east-1",
                    PricingQuantity="24",
                    PricingUnit="Hours",
                    PricingCategory="Committed" if covered else "Standard",
                    CommitmentDiscountId="ri-p4d" if covered else "",
                    CommitmentDiscountStatus="Used" if covered else "",
                    tags={"cluster": cluster, "team": "vision", "env": "prod", **tags},
                )
            )
    return write_csv(tmp_path / "bill.csv", rows)


def _samples() -> pa.Table:
    rows = []
    for instance, (cluster, util, _) in NODES.items():
        hours = 10 if cluster == "thin-e" else 7 * 24
        for hour in range(hours):
            rows.append(
                {
                    "ts": WINDOW_START + timedelta(hours=hour, minutes=30),
                    "node": f"node-{instance}",
                    "gpu_index": 0,
                    "gpu_uuid": f"GPU-{instance}",
                    "model": "NVIDIA A100-SXM4-40GB",
                    "resource_id": instance,
                    "cluster": cluster,
                    "gpu_util_pct": util,
                }
            )
    return pa.Table.from_pylist(rows)


@pytest.fixture(scope="module")
def fleet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fleet's warehouse, built once; each test works on its own copy."""
    folder = tmp_path_factory.mktemp("fleet")
    warehouse = Warehouse(folder / "wh.duckdb")
    bill = _bill(folder)
    warehouse.ingest_cost(lambda: read_focus(str(bill)), source="aws", collector="focus", uri="b")
    table = _samples()
    warehouse.ingest_gpu(
        lambda: GpuDelivery(uri="t", select_sql="SELECT * FROM s", tables={"s": table}),
        source="dcgm",
        collector="test",
        uri="t",
    )
    return warehouse.path


@pytest.fixture
def fleet(fleet_file: Path, tmp_path: Path) -> Warehouse:
    copy = tmp_path / "wh.duckdb"
    shutil.copyfile(fleet_file, copy)
    return Warehouse(copy)


def _pack(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "pack.yaml").write_text(textwrap.dedent(text))
    return folder


IDLE_POLICY = """
    policies:
      - name: idle-gpus
        kind: idle-cluster
        owner: platform
        params: {lookback_days: 7, min_coverage_pct: 80}
        action: stop
"""


def _run(warehouse: Warehouse, folder: Path, now: datetime = NOW, config: Config | None = None):
    return engine.run(warehouse, config or Config(), now, folder=folder)


def _open(warehouse: Warehouse) -> dict[str, dict]:
    with warehouse.reader() as conn:
        table = list_recommendations(conn)
    return {r["resource_id"]: r for r in table.to_pylist()}


# --- idle-cluster ------------------------------------------------------------------------


def test_idle_cluster_finds_exactly_the_idle_clusters_with_their_savings(
    fleet: Warehouse, tmp_path: Path
) -> None:
    evaluations, _ = _run(fleet, _pack(tmp_path, IDLE_POLICY))
    found = _open(fleet)
    assert set(found) == {"idle-a", "edge-d", "rsvd-g"}
    assert round(found["idle-a"]["monthly_savings"], 2) == Decimal("1461.00")
    assert round(found["edge-d"]["monthly_savings"], 2) == Decimal("730.50")
    assert round(found["rsvd-g"]["monthly_savings"], 2) == Decimal("313.07")
    assert found["idle-a"]["reason"] == (
        "idle-a: p95 GPU utilisation 1.0% < 5% over the last 7 days"
    )
    assert found["idle-a"]["state"] == "open"
    assert found["idle-a"]["team"] == "vision"
    assert found["idle-a"]["action"] == "stop"
    passed_over = evaluations[0].passed_over
    assert "busy-b: p95 GPU utilisation 60.0% >= 5%" in passed_over
    assert "edge-c: p95 GPU utilisation 5.0% >= 5%" in passed_over
    assert "thin-e: only 10 node-hours of metrics, need 24" in passed_over
    assert "safe-f: tag finops:protect=true is set" in passed_over


def test_commitment_covered_usage_saves_nothing_and_lowers_confidence(
    fleet: Warehouse, tmp_path: Path
) -> None:
    _run(fleet, _pack(tmp_path, IDLE_POLICY))
    found = _open(fleet)
    assert "covered by commitment ri-p4d" in found["rsvd-g"]["reason"]
    assert found["rsvd-g"]["confidence"] < found["idle-a"]["confidence"]
    # idle-a: full coverage, 1% against 5% -> 1.0 x (0.6 + 0.4 x 0.8) = 0.92.
    assert found["idle-a"]["confidence"] == pytest.approx(0.92)


def test_max_statistic_and_threshold_are_parameters(fleet: Warehouse, tmp_path: Path) -> None:
    folder = _pack(
        tmp_path,
        """
        policies:
          - name: idle-gpus
            kind: idle-cluster
            params: {lookback_days: 7, statistic: max, max_util_pct: 70}
        """,
    )
    _run(fleet, folder)
    assert set(_open(fleet)) == {"idle-a", "busy-b", "edge-c", "edge-d", "rsvd-g"}


def test_not_enough_coverage_of_billed_hours_is_kept(fleet: Warehouse, tmp_path: Path) -> None:
    folder = _pack(
        tmp_path,
        """
        policies:
          - name: idle-gpus
            kind: idle-cluster
            params: {lookback_days: 7, min_metric_hours: 5, min_coverage_pct: 80}
        """,
    )
    evaluations, _ = _run(fleet, folder)
    # 10 node-hours of metrics against 168 billed instance-hours: 6%.
    assert (
        "thin-e: metrics for 6% of 168 billed instance-hours, need 80%"
        in evaluations[0].passed_over
    )


def test_scope_excludes_a_cluster(fleet: Warehouse, tmp_path: Path) -> None:
    folder = _pack(
        tmp_path,
        """
        policies:
          - name: idle-gpus
            kind: idle-cluster
            scope:
              exclude: {clusters: [idle-a]}
        """,
    )
    evaluations, _ = _run(fleet, folder)
    assert set(_open(fleet)) == {"edge-d", "rsvd-g"}
    assert "idle-a: excluded by the policy (cluster idle-a)" in evaluations[0].passed_over


# --- recommendation state ----------------------------------------------------------------


def test_rerunning_updates_in_place_and_never_duplicates(fleet: Warehouse, tmp_path: Path) -> None:
    folder = _pack(tmp_path, IDLE_POLICY)
    _, first = _run(fleet, folder)
    _, second = _run(fleet, folder, NOW + timedelta(minutes=5))
    assert sorted(c.event for c in first) == ["created", "created", "created"]
    assert sorted(c.event for c in second) == ["unchanged", "unchanged", "unchanged"]
    count = fleet.query("SELECT count(*) AS n FROM recommendations").column("n")[0].as_py()
    assert count == 3


def test_state_changes_are_kept_in_history(fleet: Warehouse, tmp_path: Path) -> None:
    _run(fleet, _pack(tmp_path, IDLE_POLICY))
    rec = _open(fleet)["idle-a"]["rec_id"]
    later = NOW + timedelta(hours=1)
    change_state(fleet, rec, "accepted", actor="ana", now=later)
    change_state(fleet, rec, "snoozed", actor="ana", now=later, until=later + timedelta(days=3))
    with pytest.raises(PolicyError, match="needs a reason"):
        change_state(fleet, rec, "dismissed", actor="ana", now=later)
    row = change_state(fleet, rec, "dismissed", actor="bo", now=later, reason="cluster retired")
    assert row["state"] == "dismissed"
    with pytest.raises(PolicyError, match="is dismissed: it cannot become accepted"):
        change_state(fleet, rec, "accepted", actor="ana", now=later)
    with fleet.reader() as conn:
        events = [(r["event"], r["actor"]) for r in history(conn, rec).to_pylist()]
    assert events == [
        ("created", "engine"),
        ("accepted", "ana"),
        ("snoozed", "ana"),
        ("dismissed", "bo"),
    ]


def test_a_dismissed_one_reopens_only_when_savings_grow_past_the_factor(
    fleet: Warehouse, tmp_path: Path
) -> None:
    folder = _pack(tmp_path, IDLE_POLICY)
    _run(fleet, folder)
    rec = _open(fleet)["edge-d"]["rec_id"]
    change_state(fleet, rec, "dismissed", actor="bo", now=NOW, reason="needed for a demo")
    # The same savings the next day: still dismissed.
    _, changes = _run(fleet, folder, NOW + timedelta(hours=2))
    assert {c.rec_id: c.event for c in changes}[rec] == "dismissed-kept"
    # A restated bill prices its node at twice the rate: savings double (730.50 ->
    # 1,461.00), past the 1.5 factor.
    bill = _bill(tmp_path, daily={"i-d1": "48.00"})
    fleet.ingest_cost(lambda: read_focus(str(bill)), source="aws", collector="focus", uri="b2")
    _, changes = _run(fleet, folder, NOW + timedelta(hours=3))
    reopened = next(c for c in changes if c.rec_id == rec)
    assert reopened.event == "reopened"
    assert round(reopened.monthly_savings, 2) == Decimal("1461.00")
    assert _open(fleet)["edge-d"]["state"] == "open"


def test_a_snooze_ends_at_its_date(fleet: Warehouse, tmp_path: Path) -> None:
    folder = _pack(tmp_path, IDLE_POLICY)
    _run(fleet, folder)
    rec = _open(fleet)["idle-a"]["rec_id"]
    change_state(fleet, rec, "snoozed", actor="ana", now=NOW, until=NOW + timedelta(hours=1))
    _, changes = _run(fleet, folder, NOW + timedelta(minutes=30))
    assert {c.rec_id: c.event for c in changes}[rec] == "unchanged"
    assert _open(fleet)["idle-a"]["state"] == "snoozed"
    _, changes = _run(fleet, folder, NOW + timedelta(hours=2))
    assert {c.rec_id: c.event for c in changes}[rec] == "snooze-ended"
    assert _open(fleet)["idle-a"]["state"] == "open"


def test_a_cluster_no_longer_idle_turns_inactive(fleet: Warehouse, tmp_path: Path) -> None:
    folder = _pack(tmp_path, IDLE_POLICY)
    _run(fleet, folder)
    narrowed = _pack(
        tmp_path,
        IDLE_POLICY.replace(
            "action: stop", "action: stop\n        scope: {exclude: {clusters: [edge-d]}}"
        ),
    )
    _, changes = _run(fleet, narrowed, NOW + timedelta(hours=1))
    assert [c.resource_id for c in changes if c.event == "resolved"] == ["edge-d"]
    assert set(_open(fleet)) == {"idle-a", "rsvd-g"}


def test_overlapping_recommendations_on_one_resource_count_once(
    fleet: Warehouse, tmp_path: Path
) -> None:
    folder = _pack(
        tmp_path,
        IDLE_POLICY
        + """
      - name: idle-gpus-strict
        kind: idle-cluster
        params: {lookback_days: 7, max_util_pct: 2}
    """,
    )
    _run(fleet, folder)
    with fleet.reader() as conn:
        totals = {r["state"]: r for r in savings_totals(conn).to_pylist()}
    # idle-gpus: 1,461.00 + 730.50 + 313.07; idle-gpus-strict finds idle-a and rsvd-g again
    # with the same savings: each resource counts once.
    assert round(totals["open"]["monthly_savings"], 2) == Decimal("2504.57")
    assert totals["open"]["recommendations"] == 3


def test_realised_savings_compare_equal_windows_before_and_after(
    fleet: Warehouse, tmp_path: Path
) -> None:
    _run(fleet, _pack(tmp_path, IDLE_POLICY))
    rec = _open(fleet)["idle-a"]["rec_id"]
    applied_at = datetime(2026, 5, 5, tzinfo=UTC)
    change_state(fleet, rec, "accepted", actor="ana", now=applied_at)
    change_state(fleet, rec, "applied", actor="runner", now=applied_at)
    # The bill has 1-7 May; the nodes stop billing after the 4th in a restated delivery.
    bill = _bill(tmp_path, days=range(1, 5))
    fleet.ingest_cost(
        lambda: read_focus(str(bill)), source="aws", collector="focus", uri="b3", force=True
    )
    with fleet.reader() as conn:
        realised = realised_savings(conn, datetime(2026, 5, 8, tzinfo=UTC)).to_pylist()
    # 3 days either side: before 2 nodes x 3 days x 24.00 = 144.00, after 0.
    (item,) = realised
    assert item["days"] == 3
    assert item["cost_before"] == Decimal("144.00")
    assert item["cost_after"] == Decimal("0")
    assert round(item["realised"], 2) == Decimal("1461.00")


# --- policy files ------------------------------------------------------------------------


def test_policy_file_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            policies:
              - name: idle
                kind: idle-cluster
                params:
                  lookback_dayz: 3
              - name: typo
                kind: idle-cluster
                schedul: "0 6 * * *"
              - name: nokind
                kind: shutdown-everything
              - name: badcron
                kind: idle-cluster
                schedule: "every day"
              - name: spot
                kind: spot-shift
                action: stop
              - name: idle
                kind: idle-cluster
            """
        )
    )
    loaded, problems = validate_policies([path])
    assert [str(p).replace(f"{path}:", "") for p in problems] == [
        "5: idle.params.lookback_dayz: unknown key (check its spelling)",
        "8: typo.schedul: unknown key (check its spelling)",
        "10: nokind.kind: unknown policy kind 'shutdown-everything': use one of "
        "commitment-coverage, idle-cluster, offhours, rightsize-gpu, spot-shift, untagged-spend",
        "13: badcron.schedule: not a cron expression: Wrong number of fields; got 2, expected 5",
        "16: spot.action: spot-shift may only notify",
    ]
    assert [p.policy.name for p in loaded] == ["idle"]


def test_duplicate_names_and_invalid_yaml_are_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("policies:\n  - name: one\n    kind: idle-cluster\n")
    (tmp_path / "b.yaml").write_text("policies:\n  - name: one\n    kind: offhours\n")
    (tmp_path / "c.yaml").write_text("policies: [\n")
    _, problems = validate_policies([tmp_path])
    text = [str(p) for p in problems]
    assert (
        f"{tmp_path / 'b.yaml'}:2: one: policy name already used at {tmp_path / 'a.yaml'}:2" in text
    )
    assert any(t.startswith(f"{tmp_path / 'c.yaml'}:2: (file): not valid YAML") for t in text)


def test_the_shipped_pack_is_valid() -> None:
    loaded, problems = validate_policies([Path(__file__).parent.parent / "policies"])
    assert problems == []
    assert {p.policy.kind for p in loaded} == {
        "idle-cluster",
        "offhours",
        "spot-shift",
        "rightsize-gpu",
        "untagged-spend",
        "commitment-coverage",
    }


def test_read_policy_file_gives_line_of_each_policy(tmp_path: Path) -> None:
    folder = _pack(tmp_path, IDLE_POLICY)
    loaded, problems = read_policy_file(folder / "pack.yaml")
    assert problems == []
    assert (loaded[0].line, loaded[0].policy.mode, loaded[0].params.lookback_days) == (
        3,
        "recommend",
        7,
    )
