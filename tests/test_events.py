"""Delivery and quality events: read from CSV / JSON lines, validated, stored once per id."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from finops.collectors.events import event_from_options, read_events, spool_line
from finops.errors import ConfigError, IngestError
from finops.warehouse import Warehouse

DEPLOYS_CSV = """deploy_id,service,team,environment,result,started_at,finished_at,commit_shas
d1,ranker,search-ranking,prod,success,2026-03-29T00:00:00Z,2026-03-29 03:30:00,"a1 b2"
d2,ranker,,prod,failure,,2026-04-02T10:00:00Z,c3
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def jsonl(path: Path, *records: dict | str) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return write(path, "\n".join(lines) + "\n")


def ingest(warehouse: Warehouse, location: Path, **options: object):
    return warehouse.ingest_events(
        lambda: read_events(str(location), **options),  # type: ignore[arg-type]
        source="events",
        collector="events",
        uri=str(location),
    )


def test_csv_named_after_its_kind_is_read_with_local_times_in_the_configured_zone(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "deploys.csv", DEPLOYS_CSV)
    delivery = read_events(str(path), time_zone="Europe/London")
    rows = delivery.tables["deploy"].to_pylist()
    assert [r["deploy_id"] for r in rows] == ["d1", "d2"]
    # 03:30 on 29 March 2026 in London is BST (UTC+1): 02:30 UTC.
    assert rows[0]["finished_at"] == datetime(2026, 3, 29, 2, 30, tzinfo=UTC)
    assert rows[0]["started_at"] == datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    assert rows[0]["commit_shas"] == ["a1", "b2"]
    assert rows[1]["team"] is None
    assert rows[1]["result"] == "failure"


def test_a_spool_file_mixes_kinds_and_ids_default_to_the_natural_key(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "spool" / "events-2026-04-01.jsonl",
        {"kind": "change", "sha": "a1", "committed_at": "2026-03-29T00:30:00Z"},
        "",
        {
            "kind": "kpi",
            "period": "2026q1",
            "project": "two-tower",
            "metric": "revenue_lift",
            "value": 1200.5,
            "currency": "USD",
        },
        {
            "kind": "evaluation",
            "model": "two-tower",
            "version": "v3",
            "dataset": "holdout",
            "precision": 0.91,
            "metrics": {"auc": 0.95},
            "evaluated_at": "2026-03-01T10:00:00+01:00",
        },
    )
    tables = read_events(str(path)).tables
    assert set(tables) == {"change", "kpi", "evaluation"}
    (kpi,) = tables["kpi"].to_pylist()
    assert kpi["kpi_id"] == "2026-Q1//two-tower/revenue_lift"
    assert (kpi["period"], kpi["period_start"], kpi["period_end"]) == (
        "2026-Q1",
        date(2026, 1, 1),
        date(2026, 4, 1),
    )
    assert kpi["category"] == "value"
    assert kpi["value"] == Decimal("1200.5")
    (evaluation,) = tables["evaluation"].to_pylist()
    assert evaluation["evaluation_id"] == "two-tower/v3/holdout/2026-03-01T09:00:00Z"
    assert evaluation["metrics"] == [("auc", 0.95)]


def test_fiscal_quarters_follow_the_fiscal_year(tmp_path: Path) -> None:
    from finops.collectors.events import Fiscal

    path = jsonl(
        tmp_path / "kpis.jsonl",
        {"period": "2026-Q1", "project": "p", "metric": "predictions", "value": 5},
    )
    (kpi,) = read_events(str(path), fiscal=Fiscal(4, "start")).tables["kpi"].to_pylist()
    assert (kpi["period_start"], kpi["period_end"]) == (date(2026, 4, 1), date(2026, 7, 1))
    assert kpi["category"] == "count"
    assert kpi["currency"] is None


def test_every_problem_is_named_by_file_position_and_field(tmp_path: Path) -> None:
    write(
        tmp_path / "in" / "incidents.csv",
        "incident_id,service,created_at,resolved_at\n"
        "i1,ranker,2026-04-01T10:00:00Z,2026-04-01T09:00:00Z\n"
        "i2,,yesterday,\n",
    )
    jsonl(
        tmp_path / "in" / "mixed.jsonl",
        {
            "kind": "deploy",
            "deploy_id": "d9",
            "service": "x",
            "environment": "prod",
            "result": "ok",
            "finished_at": "2026-04-01T00:00:00Z",
            "servce": "y",
        },
        "not json",
        {
            "kind": "kpi",
            "period": "2026-Q1",
            "metric": "predictions",
            "value": 3,
            "currency": "USD",
        },
        {"sha": "zz", "committed_at": "2026-01-01"},
        {
            "kind": "evaluation",
            "model": "m",
            "version": "1",
            "dataset": "d",
            "precision": 1.5,
            "evaluated_at": "2026-01-01",
        },
    )
    with pytest.raises(IngestError) as caught:
        read_events(str(tmp_path / "in"))
    message = str(caught.value)
    assert "9 problem(s); nothing was ingested" in message
    for expected in (
        "incidents.csv row 1, resolved_at: '2026-04-01T09:00:00Z' is before created_at",
        "incidents.csv row 2, service: is missing",
        "incidents.csv row 2, created_at: 'yesterday' is not a timestamp",
        "mixed.jsonl line 1: unknown field(s) servce",
        "mixed.jsonl line 1, result: 'ok' must be one of success, failure, cancelled",
        "mixed.jsonl line 2: is not a JSON object",
        "mixed.jsonl line 3, currency: 'USD' must be empty: a count (predictions) is not money",
        "mixed.jsonl line 4, kind: is missing",
        "mixed.jsonl line 5, precision: '1.5' is not a number from 0 to 1",
    ):
        assert expected in message


def test_an_unknown_csv_column_and_a_bad_period_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"changes.csv, column 'commited_at': unknown column"):
        read_events(str(write(tmp_path / "a" / "changes.csv", "sha,commited_at\nx,2026-01-01\n")))
    path = jsonl(
        tmp_path / "b" / "kpis.jsonl",
        {"period": "2026-Q1", "metric": "predictions", "value": 1},
        {"period": "2026-Q5", "metric": "predictions", "value": 1},
    )
    with pytest.raises(IngestError, match=r"kpis.jsonl line 2, period: '2026-Q5' is not a period"):
        read_events(str(path))


def test_ingest_is_idempotent_by_event_id_and_a_resent_event_corrects_itself(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    path = write(tmp_path / "deploys.csv", DEPLOYS_CSV)
    first = ingest(warehouse, path)
    assert (first.stored, first.new) == ({"deploy": 2}, {"deploy": 2})
    again = ingest(warehouse, path)
    assert (again.stored, again.new) == ({"deploy": 2}, {"deploy": 0})
    write(path, DEPLOYS_CSV.replace("d2,ranker,,prod,failure", "d2,ranker,,prod,success"))
    ingest(warehouse, path)
    table = warehouse.query("SELECT deploy_id, result FROM deployments ORDER BY deploy_id")
    assert table.to_pylist() == [
        {"deploy_id": "d1", "result": "success"},
        {"deploy_id": "d2", "result": "success"},
    ]
    runs = warehouse.query("SELECT status, rows FROM ingest_runs ORDER BY started_at")
    assert runs.to_pylist() == [{"status": "success", "rows": 2}] * 3


def test_the_last_copy_of_an_event_in_one_delivery_wins(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "pages.jsonl",
        {"page_id": "p1", "service": "s", "paged_at": "2026-01-01T00:00:00Z"},
        {
            "page_id": "p1",
            "service": "s",
            "paged_at": "2026-01-01T00:00:00Z",
            "resolved_at": "2026-01-01T01:00:00Z",
        },
    )
    delivery = read_events(str(path))
    (page,) = delivery.tables["page"].to_pylist()
    assert page["resolved_at"] == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    assert delivery.notes == ["1 page event(s) sent more than once: the last one kept"]


def test_a_refused_delivery_leaves_the_warehouse_as_it_was(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    ingest(warehouse, write(tmp_path / "ok" / "deploys.csv", DEPLOYS_CSV))
    bad = write(tmp_path / "bad" / "deploys.csv", DEPLOYS_CSV + "d3,ranker,,prod,success,,never,\n")
    with pytest.raises(IngestError, match=r"deploys\.csv row 3, finished_at: 'never'"):
        ingest(warehouse, bad)
    assert warehouse.query("SELECT count(*) AS n FROM deployments").to_pylist() == [{"n": 2}]
    runs = warehouse.query("SELECT status FROM ingest_runs ORDER BY started_at").to_pylist()
    assert [r["status"] for r in runs] == ["success", "failed"]


def test_one_event_from_options_is_checked_and_spooled_as_a_json_line() -> None:
    delivery = event_from_options(
        "deploy",
        {
            "deploy_id": "gh-981",
            "service": "ranker",
            "environment": "prod",
            "result": "success",
            "finished_at": "2026-04-01T12:00:00+02:00",
            "commit_shas": ["a1", "b2"],
            "team": None,
        },
    )
    assert json.loads(spool_line(delivery)) == {
        "kind": "deploy",
        "deploy_id": "gh-981",
        "service": "ranker",
        "team": None,
        "environment": "prod",
        "result": "success",
        "started_at": None,
        "finished_at": "2026-04-01T10:00:00Z",
        "commit_shas": ["a1", "b2"],
    }
    with pytest.raises(IngestError, match="finops event incident, service: is missing"):
        event_from_options("incident", {"incident_id": "i1", "created_at": "2026-04-01"})
    with pytest.raises(ConfigError, match="event kind 'deploiement'"):
        event_from_options("deploiement", {})
