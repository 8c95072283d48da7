"""Storing spend anomalies: one row per (day, team, service), open until someone acknowledges it.

Detection (in `finops.analytics.anomalies`) hands over what it found for a span of days;
here, in one transaction, each finding is inserted or updated in place (an acknowledged
anomaly stays acknowledged), and open anomalies of that span that the new findings no
longer contain (the day's bill was restated) are removed. Running detection twice changes
nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import date, datetime

import duckdb
import pyarrow as pa

from finops.errors import FinopsError
from finops.warehouse.runs import transaction

ANOMALY_COLUMNS: dict[str, str] = {
    "day": "DATE",
    "team": "VARCHAR",
    "service": "VARCHAR",
    "currency": "VARCHAR",
    "actual": "DECIMAL(38,10)",
    "baseline_mean": "DECIMAL(38,10)",
    "baseline_std": "DECIMAL(38,10)",
    "baseline_start": "DATE",
    "z": "DOUBLE",
    "drivers": "JSON",
}
"""What detection hands over per anomaly (drivers: a JSON list of what moved)."""

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]


def store_anomalies(
    connect: Connect, found: pa.Table, *, first_day: date, last_day: date, now: datetime
) -> int:
    """Upsert the anomalies found for days [first_day, last_day]; return how many are stored."""
    columns = ", ".join(f"CAST(f.{n} AS {t}) AS {n}" for n, t in ANOMALY_COLUMNS.items())
    with connect() as conn:
        conn.register("found_anomalies", found)
        try:
            with transaction(conn, "anomalies: the warehouse refused them"):
                conn.execute(
                    f"CREATE OR REPLACE TEMP TABLE incoming AS SELECT {columns} FROM found_anomalies f"
                )
                conn.execute(
                    """
                    DELETE FROM anomalies a
                    WHERE a.state = 'open' AND a.day BETWEEN ? AND ?
                      AND NOT EXISTS (
                          SELECT 1 FROM incoming i
                          WHERE i.day = a.day AND i.team = a.team AND i.service = a.service
                      )
                    """,
                    [first_day, last_day],
                )
                conn.execute(
                    """
                    INSERT INTO anomalies BY NAME
                    SELECT md5(concat_ws('|', day, team, service)) AS anomaly_id,
                           ? AS detected_at, *, 'open' AS state
                    FROM incoming
                    ON CONFLICT (anomaly_id) DO UPDATE SET
                        detected_at = excluded.detected_at, currency = excluded.currency,
                        actual = excluded.actual, baseline_mean = excluded.baseline_mean,
                        baseline_std = excluded.baseline_std,
                        baseline_start = excluded.baseline_start, z = excluded.z,
                        drivers = excluded.drivers
                    """,
                    [now],
                )
                stored = conn.execute("SELECT count(*) FROM incoming").fetchall()
        finally:
            conn.unregister("found_anomalies")
    return int(stored[0][0])


def acknowledge_anomaly(connect: Connect, anomaly_id: str, *, by: str, now: datetime) -> None:
    """Mark an anomaly acknowledged by a person; an unknown id is an error."""
    with connect() as conn, transaction(conn, f"anomaly {anomaly_id}: not acknowledged"):
        changed = conn.execute(
            """
            UPDATE anomalies SET state = 'acknowledged', acknowledged_by = ?, acknowledged_at = ?
            WHERE anomaly_id = ? OR (length(?) >= 6 AND starts_with(anomaly_id, ?))
            RETURNING anomaly_id
            """,
            [by, now, anomaly_id, anomaly_id, anomaly_id],
        ).fetchall()
        if len(changed) != 1:
            found = "no" if not changed else f"{len(changed)}"
            raise FinopsError(
                f"anomaly {anomaly_id!r}: {found} anomalies have this id; "
                "use an id from `finops anomalies list`"
            )
