"""The re-check just before acting: are the newest GPU samples of a cluster still idle?

A recommendation was computed from history; by the time it is acted on, a job may have
started. So the newest samples (those within `actions.recheck_window` of the newest one, and
not after `now`) are read again. The cluster is busy when any one GPU's mean utilisation
over them reaches the idle threshold (utilisation as everywhere: the `gpu_utilisation`
macro), so one busy GPU among many idle ones still counts. Samples older than
`actions.max_sample_age` cannot vouch for the present: the action is skipped as stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import duckdb


@dataclass(frozen=True)
class Recheck:
    verdict: Literal["idle", "busy", "stale", "no-samples"]
    reason: str
    newest_sample_at: datetime | None = None
    busiest_util_pct: float | None = None
    gpus: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "newest_sample_at": self.newest_sample_at.isoformat()
            if self.newest_sample_at
            else None,
            "busiest_gpu_util_pct": self.busiest_util_pct,
            "gpus": self.gpus,
        }


def recheck_utilisation(
    conn: duckdb.DuckDBPyConnection,
    *,
    cluster: str | None,
    resource_ids: list[str],
    now: datetime,
    idle_threshold_pct: float,
    max_sample_age: timedelta,
    window: timedelta,
) -> Recheck:
    """Re-read the newest samples of `cluster` (or, without one, of the resources' own ids)."""
    rows = conn.execute(
        """
        WITH scoped AS (
            SELECT ts, node, coalesce(gpu_uuid, gpu_index::VARCHAR) AS gpu,
                   gpu_utilisation(gr_engine_active, gpu_util_pct) AS util
            FROM gpu_samples
            WHERE (cluster = $cluster OR list_contains($ids, resource_id)) AND ts <= $now
        ),
        newest AS (SELECT max(ts) AS newest FROM scoped),
        per_gpu AS (
            SELECT node, gpu, avg(util) AS mean_util
            FROM scoped, newest
            WHERE ts >= newest.newest - $window
            GROUP BY node, gpu
        )
        SELECT (SELECT newest FROM newest), max(mean_util), count(*),
               arg_max(node || ' GPU ' || gpu, mean_util)
        FROM per_gpu
        """,
        {
            "cluster": cluster,
            "ids": resource_ids,
            "now": now,
            "window": window,
        },
    ).fetchall()
    newest, busiest, gpus, busiest_gpu = rows[0]
    subject = f"cluster {cluster}" if cluster else ", ".join(resource_ids)
    if newest is None:
        return Recheck("no-samples", f"no GPU samples for {subject} to re-check")
    age = now - newest
    if age > max_sample_age:
        return Recheck(
            "stale",
            f"newest GPU sample of {subject} is {_minutes(age)} old "
            f"(older than {_minutes(max_sample_age)}): cannot confirm it is still idle",
            newest,
            busiest,
            gpus,
        )
    span = _minutes(window)
    if busiest is not None and busiest >= idle_threshold_pct:
        return Recheck(
            "busy",
            f"{subject} became busy: {busiest_gpu} averaged {busiest:.1f}% "
            f"over the newest {span} (idle below {idle_threshold_pct:g}%)",
            newest,
            busiest,
            gpus,
        )
    return Recheck(
        "idle",
        f"{subject} still idle: busiest of {gpus} GPU(s) averaged {busiest or 0:.1f}% "
        f"over the newest {span}",
        newest,
        busiest,
        gpus,
    )


def _minutes(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
