"""The demo organisation's delivery history: the events behind its scorecard.

Northwind AI's teams (finops.demo.DEMO_TEAMS) run services, most of them serving one of
the models its billing tags as `project` (foundation-models, ranking-v3, fraud-gnn,
two-tower, detector-v2, llm-finetune). For the demo's months this writes what its CI/CD,
incident tool, model registry, pager and finance team would send:

- `deploys.csv` and `changes.csv`: production deployments (each after a staging one,
  some failing in the pipeline) with the commits they ship; teams deploy from several
  times a day (search-ranking) to every couple of months (nlp-research), with lead times
  to match, so the DORA bands differ by team.
- `incidents.jsonl`: some deployments cause an incident, linked by deploy id, by commit
  or not at all (the last deploy before it is then blamed); the shared network has
  incidents no deploy caused (unlinked); the newest may still be open.
- `evaluations.jsonl`: a new version of each model about monthly, scored on two
  datasets; scores drift, so some versions regress.
- `pages.csv`: on-call pages per service, plus one per incident.
- `adoption.csv`: projects passing the ML framework's stage gates.
- `kpis.csv`: monthly business value per model (sized against its billed cost so ROI
  ranges from negative to several hundred percent), predictions and training runs, and
  three optimisation projects' engineering cost and realised savings.

Deterministic: the same seed and months give the same files. Generated with numpy per
service; Python loops run over services, models and projects only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

__all__ = ["DEMO_SERVICES", "DeliveryFiles", "generate_delivery"]


@dataclass(frozen=True)
class DemoService:
    """A service of the demo organisation and how its team delivers it."""

    name: str
    team: str
    model: str | None
    """The model it serves: the `project` tag of its cost in the demo billing."""
    deploys_per_week: float
    lead_time_hours: float
    """Median hours from commit to production."""
    failure_rate: float
    """Share of production deployments that cause an incident."""
    recovery_hours: float
    """Median hours to resolve an incident."""
    pages_per_week: float


DEMO_SERVICES: tuple[DemoService, ...] = (
    DemoService("ranker", "search-ranking", "ranking-v3", 9, 3, 0.04, 0.7, 1.5),
    DemoService("search-api", "search-ranking", None, 5, 5, 0.06, 1.5, 1.0),
    DemoService("recs-serving", "recommendations", "two-tower", 3, 20, 0.12, 4, 1.0),
    DemoService("fraud-scorer", "fraud-detection", "fraud-gnn", 1.5, 40, 0.08, 10, 0.8),
    DemoService("training-platform", "ml-platform", "foundation-models", 2, 30, 0.15, 6, 2.0),
    DemoService("etl-pipelines", "data-engineering", None, 6, 8, 0.10, 3, 1.2),
    DemoService("vision-serving", "vision", "detector-v2", 0.5, 180, 0.2, 30, 0.3),
    DemoService("llm-assistant", "nlp-research", "llm-finetune", 0.15, 900, 0.3, 200, 0.2),
)

_SHARED_NETWORK = ("shared-network", "ml-platform")
"""A service that never deploys: its incidents (about one a month) link to no deployment."""

# Per model, per month: business value (metric, USD), predictions, training runs. Values
# are sized against the model's monthly billed cost in the demo (foundation-models about
# 117k, ranking-v3 87k, two-tower 34k, detector-v2 32k, llm-finetune 20k, fraud-gnn 9k).
_MODEL_VALUE: dict[str, tuple[str, int, int, int]] = {
    "foundation-models": ("cost_avoidance", 60_000, 0, 6),
    "ranking-v3": ("revenue_lift", 240_000, 900_000_000, 20),
    "two-tower": ("revenue_lift", 70_000, 400_000_000, 25),
    "fraud-gnn": ("cost_avoidance", 45_000, 60_000_000, 8),
    "detector-v2": ("revenue_lift", 25_000, 30_000_000, 10),
    "llm-finetune": ("revenue_lift", 12_000, 5_000_000, 4),
}

# Optimisation projects: team, engineering cost (USD, in the first month), month the
# savings start (from the first), realised savings a month (USD).
_OPTIMISATIONS: dict[str, tuple[str, int, int, int]] = {
    "spot-migration": ("ml-platform", 60_000, 1, 14_000),
    "idle-gpu-shutdown": ("ml-platform", 15_000, 2, 9_000),
    "gpu-rightsizing": ("vision", 90_000, 1, 900),
}

_ADOPTION_STAGES = ("prototype", "pilot", "production")
_ADOPTION: dict[str, tuple[str, int]] = {
    "foundation-models": ("ml-platform", 3),
    "ranking-v3": ("search-ranking", 3),
    "two-tower": ("recommendations", 3),
    "fraud-gnn": ("fraud-detection", 3),
    "detector-v2": ("vision", 3),
    "llm-finetune": ("nlp-research", 2),
    "churn-model": ("data-engineering", 2),
    "demand-forecast": ("data-engineering", 1),
}
"""Project -> (team, how many stage gates it passes in the demo's months)."""

_HOUR = 3600
_DAY = 24 * _HOUR


@dataclass(frozen=True)
class DeliveryFiles:
    """Where the delivery history was written, and how many of each event."""

    root: Path
    counts: dict[str, int]


def generate_delivery(out_dir: Path, *, months: tuple[date, ...], seed: int = 7) -> DeliveryFiles:
    """Write the demo's delivery history for `months` (first days, ascending) into `out_dir`."""
    if not months:
        raise ValueError("months must name at least one month")
    start = _epoch(months[0])
    last = months[-1]
    end = _epoch(date(last.year + last.month // 12, last.month % 12 + 1, 1))
    rng = np.random.default_rng([seed, 2])
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)

    deploys, changes, incidents = [], [], []
    for service in DEMO_SERVICES:
        d, c, i = _service_history(service, start, end, rng)
        deploys.append(d)
        changes.append(c)
        incidents.append(i)
    incidents.append(_network_incidents(start, end, rng))
    tables = {
        "deploys.csv": pa.concat_tables(deploys),
        "changes.csv": pa.concat_tables(changes),
        "incidents.jsonl": pa.concat_tables(incidents),
        "evaluations.jsonl": _evaluations(start, end, rng),
        "adoption.csv": _adoption(start, end, rng),
        "kpis.csv": _kpis(months, rng),
    }
    tables["pages.csv"] = _pages(start, end, tables["incidents.jsonl"], rng)
    for name, table in tables.items():
        _write(root / name, table)
    return DeliveryFiles(root, {name: t.num_rows for name, t in tables.items()})


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _iso(seconds: np.ndarray) -> pa.Array:
    stamps = pa.array(np.asarray(seconds, dtype=np.int64), pa.timestamp("s", tz="UTC"))
    return pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%SZ")


def _hex(rng: np.random.Generator, count: int) -> np.ndarray:
    high = rng.integers(0, 2**63, count, dtype=np.int64)
    low = rng.integers(0, 2**31, count, dtype=np.int64)
    return np.char.add(np.char.mod("%016x", high), np.char.mod("%08x", low))


def _lognormal(rng: np.random.Generator, median: float, sigma: float, count: int) -> np.ndarray:
    return median * np.exp(rng.normal(0, sigma, count))


def _service_history(
    service: DemoService, start: int, end: int, rng: np.random.Generator
) -> tuple[pa.Table, pa.Table, pa.Table]:
    weeks = (end - start) / (7 * _DAY)
    count = max(int(rng.poisson(service.deploys_per_week * weeks)), 1)
    finished = np.sort(rng.integers(start + _DAY, end, count))
    result = np.where(rng.random(count) < 0.05, "failure", "success")
    prefix = service.name[:3]
    ids = np.char.add(f"{prefix}-", np.arange(1, count + 1).astype(str))
    commits_each = 1 + rng.poisson(1.5, count)
    shas = _hex(rng, int(commits_each.sum()))
    owner = np.repeat(np.arange(count), commits_each)
    lead_s = _lognormal(rng, service.lead_time_hours, 0.8, len(shas)) * _HOUR
    committed = finished[owner] - lead_s.astype(np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(commits_each)]).astype(np.int32))
    shipped = pc.binary_join(pa.ListArray.from_arrays(offsets, pa.array(shas)), " ")
    # Each production deployment follows a staging one of the same commits two hours before.
    staging_ids = np.char.add(ids, "-staging")
    deploys = _text_table(
        {
            "deploy_id": np.concatenate([staging_ids, ids]),
            "service": [service.name] * (2 * count),
            "team": [service.team] * (2 * count),
            "environment": ["staging"] * count + ["prod"] * count,
            "result": np.concatenate([np.full(count, "success"), result]),
            "started_at": _iso(np.concatenate([finished - 2 * _HOUR - 600, finished - 900])),
            "finished_at": _iso(np.concatenate([finished - 2 * _HOUR, finished])),
            "commit_shas": pa.concat_arrays([shipped, shipped]),
        }
    )
    changes = _text_table(
        {"sha": shas, "service": [service.name] * len(shas), "committed_at": _iso(committed)}
    )
    # Incidents: caused by some successful production deployments.
    caused = (result == "success") & (rng.random(count) < service.failure_rate)
    which = np.flatnonzero(caused)
    created = finished[which] + (rng.uniform(0.25, 24, len(which)) * _HOUR).astype(np.int64)
    resolved = created + (_lognormal(rng, service.recovery_hours, 0.7, len(which)) * _HOUR).astype(
        np.int64
    )
    keep = created < end
    which, created, resolved = which[keep], created[keep], resolved[keep]
    link = rng.choice(3, len(which), p=[0.5, 0.25, 0.25])  # by deploy id, by commit, none
    first_sha = shas[np.concatenate([[0], np.cumsum(commits_each)[:-1]])[which]]
    resolved_text = _iso(resolved)
    incidents = _text_table(
        {
            "incident_id": np.char.add(f"INC-{prefix}-", np.arange(1, len(which) + 1).astype(str)),
            "service": [service.name] * len(which),
            "team": [service.team] * len(which),
            "severity": rng.choice(["SEV2", "SEV3"], len(which), p=[0.3, 0.7]),
            "created_at": _iso(created),
            "resolved_at": pc.if_else(pa.array(resolved < end), resolved_text, None),
            "caused_by_deploy": pc.if_else(pa.array(link == 0), pa.array(ids[which]), None),
            "caused_by_sha": pc.if_else(pa.array(link == 1), pa.array(first_sha), None),
        }
    )
    return deploys, changes, incidents


def _network_incidents(start: int, end: int, rng: np.random.Generator) -> pa.Table:
    name, team = _SHARED_NETWORK
    count = int(rng.poisson((end - start) / (30 * _DAY)))
    created = np.sort(rng.integers(start, end - _DAY, count))
    resolved = created + (_lognormal(rng, 3, 0.6, count) * _HOUR).astype(np.int64)
    return _text_table(
        {
            "incident_id": np.char.add("INC-net-", np.arange(1, count + 1).astype(str)),
            "service": [name] * count,
            "team": [team] * count,
            "severity": ["SEV2"] * count,
            "created_at": _iso(created),
            "resolved_at": _iso(resolved),
            "caused_by_deploy": pa.nulls(count, pa.string()),
            "caused_by_sha": pa.nulls(count, pa.string()),
        }
    )


def _pages(start: int, end: int, incidents: pa.Table, rng: np.random.Generator) -> pa.Table:
    parts = []
    for service in (*DEMO_SERVICES,):
        weeks = (end - start) / (7 * _DAY)
        count = int(rng.poisson(service.pages_per_week * weeks))
        paged = np.sort(rng.integers(start, end - _DAY, count))
        parts.append(
            (
                np.char.add(f"PG-{service.name[:3]}-", np.arange(1, count + 1).astype(str)),
                np.full(count, service.name),
                np.full(count, service.team),
                paged,
                np.full(count, None, dtype=object),
            )
        )
    created = pc.strptime(incidents["created_at"], format="%Y-%m-%dT%H:%M:%SZ", unit="s")
    parts.append(
        (
            np.char.add(
                "PG-",
                np.asarray(incidents["incident_id"].to_numpy(zero_copy_only=False), dtype=str),
            ),
            np.asarray(incidents["service"].to_numpy(zero_copy_only=False), dtype=str),
            np.asarray(incidents["team"].to_numpy(zero_copy_only=False), dtype=str),
            created.cast(pa.int64()).to_numpy(),
            incidents["incident_id"].to_numpy(zero_copy_only=False),
        )
    )
    ids = np.concatenate([p[0] for p in parts])
    paged = np.concatenate([p[3] for p in parts])
    ack = paged + (_lognormal(rng, 6, 0.8, len(ids)) * 60).astype(np.int64)
    acknowledged = rng.random(len(ids)) > 0.05
    resolved = ack + (_lognormal(rng, 45, 0.9, len(ids)) * 60).astype(np.int64)
    return _text_table(
        {
            "page_id": ids,
            "service": np.concatenate([p[1] for p in parts]),
            "team": np.concatenate([p[2] for p in parts]),
            "paged_at": _iso(paged),
            "acknowledged_at": pc.if_else(pa.array(acknowledged), _iso(ack), None),
            "resolved_at": pc.if_else(pa.array(resolved < end), _iso(resolved), None),
            "incident_id": pa.array(np.concatenate([p[4] for p in parts]), pa.string()),
        }
    )


def _evaluations(start: int, end: int, rng: np.random.Generator) -> pa.Table:
    parts = []
    for model in _MODEL_VALUE:
        versions = max((end - start) // (30 * _DAY), 1)
        at = start + np.arange(versions) * 30 * _DAY + rng.integers(_DAY, 20 * _DAY, versions)
        precision = np.clip(0.80 + np.cumsum(rng.normal(0.004, 0.012, versions)), 0, 1)
        recall = np.clip(0.70 + np.cumsum(rng.normal(0.004, 0.012, versions)), 0, 1)
        calibration = np.clip(0.05 + np.cumsum(rng.normal(-0.001, 0.006, versions)), 0.005, 1)
        auc = np.clip(0.88 + np.cumsum(rng.normal(0.003, 0.008, versions)), 0, 1)
        names = np.char.add("v", np.arange(1, versions + 1).astype(str))
        for dataset, shift in (("holdout", 0.0), ("recent-traffic", -0.02)):
            parts.append(
                pa.table(
                    {
                        "model": [model] * versions,
                        "version": names,
                        "dataset": [dataset] * versions,
                        "precision": np.round(precision + shift, 4),
                        "recall": np.round(recall + shift, 4),
                        "calibration_error": np.round(calibration, 4),
                        "auc": np.round(auc + shift, 4),
                        "evaluated_at": _iso(at + (3600 if shift else 0)),
                    }
                )
            )
    return pa.concat_tables(parts)


def _adoption(start: int, end: int, rng: np.random.Generator) -> pa.Table:
    projects, teams, stages, passed = [], [], [], []
    for project, (team, gates) in _ADOPTION.items():
        times = np.sort(rng.integers(start, end, gates))
        projects += [project] * gates
        teams += [team] * gates
        stages += list(_ADOPTION_STAGES[:gates])
        passed.append(times)
    return _text_table(
        {
            "project": projects,
            "team": teams,
            "stage": stages,
            "passed_at": _iso(np.concatenate(passed)),
        }
    )


def _kpis(months: tuple[date, ...], rng: np.random.Generator) -> pa.Table:
    labels = np.array([f"{m:%Y-%m}" for m in months])
    n = len(months)
    columns: dict[str, list] = {
        k: [] for k in ("period", "team", "project", "metric", "value", "currency")
    }

    def add(project: str, team: str | None, metric: str, values: np.ndarray, money: bool) -> None:
        keep = values > 0
        count = int(keep.sum())
        columns["period"].append(labels[keep])
        columns["team"].append(np.full(count, team, dtype=object))
        columns["project"].append(np.full(count, project))
        columns["metric"].append(np.full(count, metric))
        columns["value"].append(np.round(values[keep], 2 if money else 0).astype(str))
        columns["currency"].append(np.full(count, "USD" if money else None, dtype=object))

    teams = {s.model: s.team for s in DEMO_SERVICES if s.model}
    for project, (metric, value, predictions, runs) in _MODEL_VALUE.items():
        team = teams[project]
        add(project, team, metric, value * rng.uniform(0.85, 1.15, n), True)
        add(project, team, "predictions", predictions * rng.uniform(0.9, 1.1, n), False)
        add(project, team, "training_runs", np.maximum(rng.poisson(runs, n), 1.0), False)
    for project, (team, engineering, from_month, savings) in _OPTIMISATIONS.items():
        add(project, team, "engineering_cost", np.eye(1, n, 0)[0] * engineering, True)
        monthly = savings * rng.uniform(0.9, 1.1, n) * (np.arange(n) >= from_month)
        add(project, team, "realised_savings", monthly, True)
    return pa.table(
        {name: pa.array(np.concatenate(parts), pa.string()) for name, parts in columns.items()}
    )


def _text_table(columns: dict[str, object]) -> pa.Table:
    """Columns as text, typed even when empty, so every service's tables concatenate."""
    return pa.table(
        {
            name: values.cast(pa.string())
            if isinstance(values, pa.Array | pa.ChunkedArray)
            else pa.array(list(values) if isinstance(values, np.ndarray) else values, pa.string())
            for name, values in columns.items()
        }
    )


def _write(path: Path, table: pa.Table) -> None:
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
        return
    conn = duckdb.connect()
    try:
        conn.register("events", table)
        select = "SELECT * FROM events"
        if "auc" in table.column_names:
            select = "SELECT * EXCLUDE (auc), {'auc': auc} AS metrics FROM events"
        conn.execute(f"COPY ({select}) TO '{path}' (FORMAT json)")
    finally:
        conn.close()
