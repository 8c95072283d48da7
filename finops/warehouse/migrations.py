"""Numbered schema migrations. A warehouse file records in `schema_version` where it stands.

Append a migration to change a table; never edit one that has shipped. Opening an older
file applies the missing ones in one transaction; opening a newer one is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from finops.warehouse.cost_storage import split_cost_storage
from finops.warehouse.events import event_tables_ddl
from finops.warehouse.schema import GPU_SAMPLE_COLUMNS, RESOURCE_COLUMNS, cost_table_ddl


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    apply: Callable[[duckdb.DuckDBPyConnection], None] | None = None
    """A step that depends on the file's contents, run after the statements."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "FOCUS cost table, tag sets, ingest lineage and source overlaps",
        (
            cost_table_ddl("cost"),
            """
            CREATE TABLE ingest_runs (
                run_id VARCHAR PRIMARY KEY,
                source VARCHAR NOT NULL,
                collector VARCHAR NOT NULL,
                uri VARCHAR NOT NULL,
                checksum VARCHAR,
                files INTEGER,
                periods DATE[],
                rows BIGINT,
                billed_cost DECIMAL(38,10),
                effective_cost DECIMAL(38,10),
                started_at TIMESTAMPTZ NOT NULL,
                finished_at TIMESTAMPTZ,
                status VARCHAR NOT NULL,
                error VARCHAR,
                notes VARCHAR[]
            )
            """,
            # Distinct tag maps, once each: grouping 10 M rows by an integer and looking
            # their few tag sets up here is many times faster than reading every row's MAP.
            """
            CREATE TABLE tag_sets (
                tag_set_id UBIGINT PRIMARY KEY,
                tags MAP(VARCHAR, VARCHAR) NOT NULL
            )
            """,
            """
            CREATE TABLE source_overlaps (
                billing_account_id VARCHAR NOT NULL,
                billing_period_start TIMESTAMPTZ NOT NULL,
                sources VARCHAR[] NOT NULL,
                winner VARCHAR NOT NULL,
                reason VARCHAR NOT NULL,
                detected_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (billing_account_id, billing_period_start)
            )
            """,
            # What analytics read: the bill once, with the losing side of any overlap left out.
            """
            CREATE VIEW cost_resolved AS
            SELECT c.* FROM cost c
            WHERE NOT EXISTS (
                SELECT 1 FROM source_overlaps o
                WHERE o.billing_account_id = c."BillingAccountId"
                  AND o.billing_period_start = c."BillingPeriodStart"
                  AND o.winner <> c."x_Source"
            )
            """,
        ),
    ),
    Migration(
        2,
        "GPU samples, hourly rollups and the one definition of GPU utilisation",
        (
            "CREATE TABLE gpu_samples (\n    "
            + ",\n    ".join(f"{name} {sql_type}" for name, sql_type in GPU_SAMPLE_COLUMNS.items())
            + ",\n    source VARCHAR NOT NULL,\n    ingest_id VARCHAR NOT NULL\n)",
            # Utilisation of a reading: GR_ENGINE_ACTIVE x 100 where the source has it (it
            # sees through DCGM's 'any kernel running' GPU_UTIL), else GPU_UTIL.
            "CREATE MACRO gpu_utilisation(gr_engine_active, gpu_util_pct) AS "
            "coalesce(gr_engine_active * 100, gpu_util_pct)",
            """
            CREATE TABLE gpu_hourly (
                hour TIMESTAMPTZ NOT NULL,
                source VARCHAR NOT NULL,
                node VARCHAR NOT NULL,
                gpu_uuid VARCHAR,
                gpu_index INTEGER,
                model VARCHAR,
                resource_id VARCHAR,
                cluster VARCHAR,
                namespaces VARCHAR[],
                samples INTEGER NOT NULL,
                mean_util_pct DOUBLE,
                p95_util_pct DOUBLE,
                max_util_pct DOUBLE,
                idle BOOLEAN,
                mean_mem_used_mib DOUBLE,
                mem_total_mib DOUBLE,
                mean_power_w DOUBLE
            )
            """,
            "ALTER TABLE ingest_runs ADD COLUMN window_start TIMESTAMPTZ",
            "ALTER TABLE ingest_runs ADD COLUMN window_end TIMESTAMPTZ",
        ),
    ),
    Migration(
        3,
        "Resource inventory",
        (
            "CREATE TABLE resources (\n    source VARCHAR NOT NULL,\n    "
            + ",\n    ".join(f"{name} {sql_type}" for name, sql_type in RESOURCE_COLUMNS.items())
            + ",\n    first_seen TIMESTAMPTZ NOT NULL,\n    last_seen TIMESTAMPTZ NOT NULL,"
            "\n    PRIMARY KEY (source, resource_id)\n)",
        ),
    ),
    Migration(
        4,
        "Hourly prices per instance type, region and purchase option",
        (
            """
            CREATE TABLE prices (
                provider VARCHAR NOT NULL,
                region VARCHAR NOT NULL,
                instance_type VARCHAR NOT NULL,
                purchase_option VARCHAR NOT NULL,
                hourly_price DECIMAL(38,10) NOT NULL,
                currency VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                as_of DATE NOT NULL,
                details JSON,
                PRIMARY KEY (source, as_of, provider, region, instance_type, purchase_option)
            )
            """,
        ),
    ),
    Migration(
        5,
        "Recommendations and their state history",
        (
            # One row per (policy, kind, resource): re-running the engine updates it in place.
            """
            CREATE TABLE recommendations (
                rec_id VARCHAR PRIMARY KEY,
                policy VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                resource_id VARCHAR NOT NULL,
                resource_name VARCHAR,
                provider VARCHAR,
                account_id VARCHAR,
                region VARCHAR,
                cluster VARCHAR,
                team VARCHAR,
                owner VARCHAR,
                action VARCHAR NOT NULL,
                mode VARCHAR NOT NULL,
                monthly_savings DECIMAL(38,10) NOT NULL,
                currency VARCHAR NOT NULL,
                confidence DOUBLE NOT NULL,
                risk VARCHAR NOT NULL,
                reason VARCHAR NOT NULL,
                evidence JSON NOT NULL,
                state VARCHAR NOT NULL,
                state_reason VARCHAR,
                state_by VARCHAR,
                snoozed_until TIMESTAMPTZ,
                active BOOLEAN NOT NULL,
                first_seen_at TIMESTAMPTZ NOT NULL,
                last_evaluated_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                applied_at TIMESTAMPTZ
            )
            """,
            """
            CREATE TABLE recommendation_history (
                rec_id VARCHAR NOT NULL,
                changed_at TIMESTAMPTZ NOT NULL,
                event VARCHAR NOT NULL,
                from_state VARCHAR,
                to_state VARCHAR NOT NULL,
                actor VARCHAR NOT NULL,
                reason VARCHAR,
                monthly_savings DECIMAL(38,10),
                evidence JSON
            )
            """,
        ),
    ),
    Migration(
        6,
        "Actions: the hash-chained audit log, warned stops waiting to act, what finops stopped",
        (
            # Append-only. An intent is written before a cloud call and its outcome after, so
            # a crash between them leaves an intent without an outcome. Each entry's hash
            # covers its content and the previous entry's hash.
            """
            CREATE TABLE audit_log (
                seq BIGINT PRIMARY KEY,
                entry_id VARCHAR NOT NULL,
                occurred_at TIMESTAMPTZ NOT NULL,
                actor VARCHAR NOT NULL,
                trigger VARCHAR NOT NULL,
                policy VARCHAR,
                rec_id VARCHAR,
                provider VARCHAR,
                resource_id VARCHAR,
                resource_type VARCHAR,
                action VARCHAR NOT NULL,
                dry_run BOOLEAN NOT NULL,
                phase VARCHAR NOT NULL,
                intent_seq BIGINT,
                before_state JSON,
                after_state JSON,
                result VARCHAR NOT NULL,
                reason VARCHAR,
                prev_hash VARCHAR NOT NULL,
                hash VARCHAR NOT NULL
            )
            """,
            """
            CREATE TABLE scheduled_actions (
                action_id VARCHAR PRIMARY KEY,
                rec_id VARCHAR NOT NULL,
                policy VARCHAR NOT NULL,
                action VARCHAR NOT NULL,
                resource_id VARCHAR NOT NULL,
                cluster VARCHAR,
                owner VARCHAR,
                reason VARCHAR NOT NULL,
                warned_at TIMESTAMPTZ NOT NULL,
                act_at TIMESTAMPTZ NOT NULL,
                state VARCHAR NOT NULL,
                snoozed_until TIMESTAMPTZ,
                changed_by VARCHAR,
                outcome VARCHAR,
                updated_at TIMESTAMPTZ NOT NULL
            )
            """,
            # What finops itself stopped or scaled down, with the capacity to give back: an
            # off-hours window's end starts these, and only these.
            """
            CREATE TABLE action_memory (
                memory_id VARCHAR PRIMARY KEY,
                policy VARCHAR NOT NULL,
                rec_id VARCHAR,
                provider VARCHAR NOT NULL,
                resource_type VARCHAR NOT NULL,
                resource_id VARCHAR NOT NULL,
                target JSON NOT NULL,
                previous_state JSON NOT NULL,
                stopped_at TIMESTAMPTZ NOT NULL,
                stopped_by VARCHAR NOT NULL,
                audit_seq BIGINT,
                restored_at TIMESTAMPTZ,
                restore_result VARCHAR
            )
            """,
        ),
    ),
    Migration(
        7,
        "Delivery and quality events: deployments, changes, incidents, model evaluations, "
        "on-call pages, framework adoption and business KPI inputs",
        event_tables_ddl(),
    ),
    Migration(
        8,
        "Spend anomalies (open / acknowledged) and FX rates",
        (
            # One row per (day, team, service): detecting again updates it in place.
            """
            CREATE TABLE anomalies (
                anomaly_id VARCHAR PRIMARY KEY,
                detected_at TIMESTAMPTZ NOT NULL,
                day DATE NOT NULL,
                team VARCHAR NOT NULL,
                service VARCHAR NOT NULL,
                currency VARCHAR NOT NULL,
                actual DECIMAL(38,10) NOT NULL,
                baseline_mean DECIMAL(38,10) NOT NULL,
                baseline_std DECIMAL(38,10) NOT NULL,
                baseline_start DATE NOT NULL,
                z DOUBLE NOT NULL,
                drivers JSON NOT NULL,
                state VARCHAR NOT NULL,
                acknowledged_by VARCHAR,
                acknowledged_at TIMESTAMPTZ,
                UNIQUE (day, team, service)
            )
            """,
            """
            CREATE TABLE fx_rates (
                from_currency VARCHAR NOT NULL,
                to_currency VARCHAR NOT NULL,
                rate_date DATE NOT NULL,
                rate DECIMAL(38,10) NOT NULL,
                source VARCHAR NOT NULL,
                PRIMARY KEY (source, from_currency, to_currency, rate_date)
            )
            """,
        ),
    ),
    Migration(
        9,
        "Scheduler job runs",
        (
            # One row per run of a scheduler job: the window it ran for (`scheduled_for`) is
            # what lets a restarted daemon make up a missed window once, and only once.
            """
            CREATE TABLE job_runs (
                job_id VARCHAR NOT NULL,
                scheduled_for TIMESTAMPTZ NOT NULL,
                started_at TIMESTAMPTZ NOT NULL,
                finished_at TIMESTAMPTZ,
                status VARCHAR NOT NULL,
                trigger VARCHAR NOT NULL,
                detail VARCHAR,
                error VARCHAR,
                PRIMARY KEY (job_id, scheduled_for)
            )
            """,
        ),
    ),
    Migration(
        10,
        "Cost rows store only the columns deliveries fill; `cost` is a view of every column",
        (),
        split_cost_storage,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
