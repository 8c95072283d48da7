"""Numbered schema migrations. A warehouse file records in `schema_version` where it stands.

Append a migration to change a table; never edit one that has shipped. Opening an older
file applies the missing ones in one transaction; opening a newer one is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from finops.warehouse.schema import cost_table_ddl


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


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
)

LATEST_VERSION = MIGRATIONS[-1].version
