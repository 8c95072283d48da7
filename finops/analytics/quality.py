"""Model quality: each model's latest scores, their trend over versions, and regressions.

A version's score on a dataset is its latest evaluation there; versions are ordered by
when they were first evaluated (not by their names, which follow no one scheme). A
version *regresses* on a metric when it is worse than the previous version's on the same
dataset by more than `tolerance` (absolute): precision, recall and custom metrics are
better higher; calibration error, and custom metrics whose name ends in `error` or
`loss`, are better lower.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from finops.periods import Period


@dataclass(frozen=True)
class QualityReport:
    latest: pa.Table
    """Per model and dataset: the newest version evaluated by the period's end, its scores,
    and the metrics on which it regressed."""
    trend: pa.Table
    """Per model, dataset, version and metric, for versions first evaluated in the period:
    the score, the previous version's, the change and whether it regressed."""

    @property
    def regressions(self) -> pa.Table:
        return self.trend.filter(self.trend["regression"])


_TREND_SQL = """
    WITH evals AS (
        SELECT * FROM model_evaluations WHERE evaluated_at < $end
    ),
    scores AS (
        SELECT model, dataset, version, evaluated_at, 'precision' AS metric, precision AS value,
               false AS lower_is_better FROM evals WHERE precision IS NOT NULL
        UNION ALL
        SELECT model, dataset, version, evaluated_at, 'recall', recall, false
        FROM evals WHERE recall IS NOT NULL
        UNION ALL
        SELECT model, dataset, version, evaluated_at, 'calibration_error', calibration_error, true
        FROM evals WHERE calibration_error IS NOT NULL
        UNION ALL
        SELECT model, dataset, version, evaluated_at, metric, value,
               metric LIKE '%error' OR metric LIKE '%loss'
        FROM (
            SELECT model, dataset, version, evaluated_at,
                   unnest(map_keys(metrics)) AS metric, unnest(map_values(metrics)) AS value
            FROM evals WHERE metrics IS NOT NULL
        )
    ),
    per_version AS (
        SELECT model, dataset, version, metric, bool_or(lower_is_better) AS lower_is_better,
               arg_max(value, evaluated_at) AS value, max(evaluated_at) AS evaluated_at
        FROM scores GROUP BY ALL
    ),
    version_order AS (
        SELECT model, dataset, version, min(evaluated_at) AS first_evaluated
        FROM evals GROUP BY ALL
    ),
    trend AS (
        SELECT p.*, v.first_evaluated,
               lag(p.version) OVER w AS previous_version,
               lag(p.value) OVER w AS previous_value
        FROM per_version p JOIN version_order v USING (model, dataset, version)
        WINDOW w AS (PARTITION BY p.model, p.dataset, p.metric
                     ORDER BY v.first_evaluated, p.version)
    )
    SELECT model, dataset, version, metric, value, previous_version, previous_value,
           value - previous_value AS change,
           coalesce(CASE WHEN lower_is_better THEN value - previous_value
                         ELSE previous_value - value END > $tolerance, false) AS regression,
           evaluated_at, first_evaluated
    FROM trend
"""


def model_quality(
    conn: duckdb.DuckDBPyConnection, period: Period, *, tolerance: float = 0.01
) -> QualityReport:
    """Latest scores per model as of the period's end, and the period's version changes."""
    params = {"end": period.end_ts, "tolerance": tolerance}
    trend = conn.sql(
        f"""
        SELECT model, dataset, version, metric, value, previous_version, previous_value,
               change, regression, evaluated_at
        FROM ({_TREND_SQL})
        WHERE first_evaluated >= $start
        ORDER BY model, dataset, first_evaluated, version, metric
        """,
        params={**params, "start": period.start_ts},
    ).to_arrow_table()
    latest = conn.sql(
        f"""
        WITH trend AS ({_TREND_SQL}),
        newest AS (
            SELECT model, dataset, arg_max(version, first_evaluated) AS version
            FROM trend GROUP BY ALL
        )
        SELECT model, dataset, version, max(evaluated_at) AS evaluated_at,
               any_value(value) FILTER (WHERE metric = 'precision') AS precision,
               any_value(value) FILTER (WHERE metric = 'recall') AS recall,
               any_value(value) FILTER (WHERE metric = 'calibration_error') AS calibration_error,
               any_value(previous_version) AS previous_version,
               list(metric ORDER BY metric) FILTER (WHERE regression) AS regressed_metrics
        FROM trend JOIN newest USING (model, dataset, version)
        GROUP BY ALL
        ORDER BY model, dataset
        """,
        params=params,
    ).to_arrow_table()
    return QualityReport(latest, trend)
