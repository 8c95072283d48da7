"""Delivery and quality events: their tables, and the upsert that stores a batch of them.

Seven kinds of event, each in its own table and keyed by its event id, so sending the
same event twice (a CI job retried, a spool file read again) stores it once, and sending
it again with other values corrects it:

    kind        table              id              what it records
    deploy      deployments        deploy_id       a deployment of a service or model
    change      changes            sha             a commit and when it was made
    incident    incidents          incident_id     a production incident and what caused it
    evaluation  model_evaluations  evaluation_id   a model version's scores on a dataset
    page        oncall_pages       page_id         an on-call page, acknowledged, resolved
    adoption    adoption_events    adoption_id     a project passing a framework stage gate
    kpi         kpi_inputs         kpi_id          a business KPI input for a period

Where an event has no natural id (evaluations, adoption, KPI inputs) the id defaults to
its natural key joined by `/`, e.g. `2026-Q1/recommendations/two-tower/revenue_lift`.

`kpi_inputs` holds every figure a person supplies for the scorecard, each with its `category`:
`value` (business value such as revenue lift or cost avoidance, money), `engineering_cost`
and `realised_savings` (an optimisation project's cost and savings, money) and `count`
(units of work such as predictions or training runs, no currency).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import duckdb
import pyarrow as pa

from finops.errors import FinopsError, IngestError
from finops.warehouse.runs import record_failure, record_run, transaction

FieldKind = Literal["text", "timestamp", "ratio", "number", "money", "shas", "metrics", "period"]


@dataclass(frozen=True)
class EventField:
    """One field of an event: how it is read, checked and stored."""

    name: str
    kind: FieldKind = "text"
    required: bool = False
    choices: tuple[str, ...] = ()
    """For text: the only values accepted (empty: any)."""

    @property
    def sql_type(self) -> str:
        return {
            "text": "VARCHAR",
            "timestamp": "TIMESTAMPTZ",
            "ratio": "DOUBLE",
            "number": "DOUBLE",
            "money": "DECIMAL(38,10)",
            "shas": "VARCHAR[]",
            "metrics": "MAP(VARCHAR, DOUBLE)",
            "period": "VARCHAR",
        }[self.kind]


@dataclass(frozen=True)
class EventKind:
    """A kind of event: its table, its id and its fields (the id is the first field)."""

    name: str
    table: str
    fields: tuple[EventField, ...]
    natural_key: tuple[str, ...] = ()
    """Fields whose values, joined by '/', are the id when an event gives none."""
    file_names: tuple[str, ...] = ()
    """Other names a file of these events may have (its name without the suffix)."""

    @property
    def id_column(self) -> str:
        return self.fields[0].name

    @property
    def columns(self) -> dict[str, str]:
        """The table's columns and SQL types, in order (a period adds its first and next day)."""
        columns: dict[str, str] = {}
        for item in self.fields:
            columns[item.name] = item.sql_type
            if item.kind == "period":
                columns["period_start"] = "DATE"
                columns["period_end"] = "DATE"
        return columns

    def field(self, name: str) -> EventField:
        return next(f for f in self.fields if f.name == name)


DEPLOY_RESULTS = ("success", "failure", "cancelled")
KPI_CATEGORIES = ("value", "engineering_cost", "realised_savings", "count")
KPI_CATEGORY_OF_METRIC: dict[str, str] = {
    "revenue_lift": "value",
    "cost_avoidance": "value",
    "engineering_cost": "engineering_cost",
    "realised_savings": "realised_savings",
    "predictions": "count",
    "training_runs": "count",
}
"""Metrics whose category need not be written: any other metric must say its category."""

_F = EventField

EVENT_KINDS: dict[str, EventKind] = {
    kind.name: kind
    for kind in (
        EventKind(
            "deploy",
            "deployments",
            (
                _F("deploy_id", required=True),
                _F("service", required=True),
                _F("team"),
                _F("environment", required=True),
                _F("result", required=True, choices=DEPLOY_RESULTS),
                _F("started_at", "timestamp"),
                _F("finished_at", "timestamp", required=True),
                _F("commit_shas", "shas"),
            ),
            file_names=("deploys", "deployments"),
        ),
        EventKind(
            "change",
            "changes",
            (
                _F("sha", required=True),
                _F("service"),
                _F("team"),
                _F("committed_at", "timestamp", required=True),
            ),
            file_names=("changes", "commits"),
        ),
        EventKind(
            "incident",
            "incidents",
            (
                _F("incident_id", required=True),
                _F("service", required=True),
                _F("team"),
                _F("severity"),
                _F("created_at", "timestamp", required=True),
                _F("resolved_at", "timestamp"),
                _F("caused_by_deploy"),
                _F("caused_by_sha"),
            ),
            file_names=("incidents",),
        ),
        EventKind(
            "evaluation",
            "model_evaluations",
            (
                _F("evaluation_id"),
                _F("model", required=True),
                _F("version", required=True),
                _F("dataset", required=True),
                _F("team"),
                _F("precision", "ratio"),
                _F("recall", "ratio"),
                _F("calibration_error", "ratio"),
                _F("metrics", "metrics"),
                _F("evaluated_at", "timestamp", required=True),
            ),
            natural_key=("model", "version", "dataset", "evaluated_at"),
            file_names=("evaluations", "model_evaluations"),
        ),
        EventKind(
            "page",
            "oncall_pages",
            (
                _F("page_id", required=True),
                _F("service", required=True),
                _F("team"),
                _F("paged_at", "timestamp", required=True),
                _F("acknowledged_at", "timestamp"),
                _F("resolved_at", "timestamp"),
                _F("incident_id"),
            ),
            file_names=("pages", "oncall_pages"),
        ),
        EventKind(
            "adoption",
            "adoption_events",
            (
                _F("adoption_id"),
                _F("project", required=True),
                _F("team"),
                _F("stage", required=True),
                _F("passed_at", "timestamp", required=True),
            ),
            natural_key=("project", "stage"),
            file_names=("adoption", "adoption_events"),
        ),
        EventKind(
            "kpi",
            "kpi_inputs",
            (
                _F("kpi_id"),
                _F("period", "period", required=True),
                _F("team"),
                _F("project"),
                _F("metric", required=True),
                _F("category", choices=KPI_CATEGORIES),
                _F("value", "money", required=True),
                _F("currency"),
                _F("note"),
            ),
            natural_key=("period", "team", "project", "metric"),
            file_names=("kpis", "kpi_inputs"),
        ),
    )
}

LINEAGE_COLUMNS: dict[str, str] = {"source": "VARCHAR NOT NULL", "ingest_id": "VARCHAR NOT NULL"}


def event_tables_ddl() -> tuple[str, ...]:
    """CREATE TABLE statements for every kind of event (migration 7)."""
    statements = []
    for kind in EVENT_KINDS.values():
        required = {f.name for f in kind.fields if f.required}
        if "period" in required:
            required |= {"period_start", "period_end"}
        columns = [
            f"{name} {sql_type}"
            + (" PRIMARY KEY" if name == kind.id_column else "")
            + (" NOT NULL" if name in required and name != kind.id_column else "")
            for name, sql_type in kind.columns.items()
        ]
        columns += [f"{name} {sql_type}" for name, sql_type in LINEAGE_COLUMNS.items()]
        statements.append(f"CREATE TABLE {kind.table} (\n    " + ",\n    ".join(columns) + "\n)")
    return tuple(statements)


@dataclass
class EventDelivery:
    """Validated events, typed as their tables' columns, one Arrow table per kind."""

    uri: str
    tables: dict[str, pa.Table]
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables.values())


@dataclass(frozen=True)
class EventIngestResult:
    run_id: str
    source: str
    stored: dict[str, int]
    """Events stored per kind."""
    new: dict[str, int]
    """Of those, events whose id the warehouse did not hold before."""
    seconds: float
    notes: tuple[str, ...] = ()


def run_event_ingest(
    connect: Callable[[], duckdb.DuckDBPyConnection],
    read: Callable[[], EventDelivery],
    *,
    source: str,
    collector: str,
    uri: str,
) -> EventIngestResult:
    """Upsert every event of `read()`'s delivery by its id, all kinds in one transaction."""
    started, clock = datetime.now(UTC), time.perf_counter()
    run_id = uuid.uuid4().hex
    try:
        delivery = read()
        stored: dict[str, int] = {}
        new: dict[str, int] = {}
        with (
            connect() as conn,
            transaction(conn, f"{uri}: the warehouse refused the events"),
        ):
            for name, table in delivery.tables.items():
                stored[name], new[name] = _upsert(conn, EVENT_KINDS[name], table, source, run_id)
            record_run(
                conn,
                run_id,
                source,
                collector,
                uri,
                started,
                "success",
                delivery.rows,
                None,
                delivery.notes,
            )
    except FinopsError as exc:
        error = str(exc)
        record_failure(
            connect,
            lambda conn: record_run(
                conn, run_id, source, collector, uri, started, "failed", None, error, []
            ),
        )
        raise
    return EventIngestResult(
        run_id, source, stored, new, time.perf_counter() - clock, tuple(delivery.notes)
    )


def _upsert(
    conn: duckdb.DuckDBPyConnection, kind: EventKind, table: pa.Table, source: str, run_id: str
) -> tuple[int, int]:
    missing = [name for name in kind.columns if name not in table.column_names]
    if missing:
        raise IngestError(f"{kind.name} events lack column(s) {', '.join(missing)}")
    conn.register("incoming_events", table)
    try:
        columns = ", ".join(f"CAST({n} AS {t}) AS {n}" for n, t in kind.columns.items())
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE incoming AS SELECT {columns} FROM incoming_events"
        )
    finally:
        conn.unregister("incoming_events")
    ((known,),) = conn.execute(
        f"SELECT count(*) FROM incoming JOIN {kind.table} USING ({kind.id_column})"
    ).fetchall()
    conn.execute(
        f"INSERT OR REPLACE INTO {kind.table} SELECT incoming.*, ? AS source, ? AS ingest_id FROM incoming",
        [source, run_id],
    )
    ((total,),) = conn.execute("SELECT count(*) FROM incoming").fetchall()
    conn.execute("DROP TABLE incoming")
    return int(total), int(total) - int(known)
