"""Invoice tie-out: what the warehouse holds per invoice and billing month, estimated or final.

Totals are BilledCost (what an invoice sums) per provider, billing account, billing month
and FOCUS InvoiceId. A month is `estimated`, with the reason, when any of these holds:

- its billing period has not ended as of `now` (the provider can still add charges);
- some of its rows carry no InvoiceId (a CUR fills bill/InvoiceId only once the bill is
  final; FOCUS 1.2 leaves InvoiceId null until an invoice is issued);
- the latest successful ingest of its source for that month noted estimated figures
  (Cost Explorer's `Estimated` days).

Otherwise it is `final`. Given the invoices' own totals (InvoiceId, amount), each line also
shows the difference; anything over half a cent is a mismatch.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from finops.periods import Period

NO_INVOICE = "(no invoice id)"


def invoice_tieout(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    *,
    now: datetime,
    expected: pa.Table | None = None,
) -> pa.Table:
    """Per provider, billing account, month and invoice: rows, billed total, estimated or
    final (and why) and, with `expected` (invoice_id, amount), the difference."""
    where, params = period.where("c")
    invoices = (
        expected
        if expected is not None
        else pa.table(
            {"invoice_id": pa.array([], pa.string()), "amount": pa.array([], pa.decimal128(38, 10))}
        )
    )
    conn.register("expected_invoices", invoices)
    try:
        return conn.sql(
            f"""
            WITH lines AS (
                SELECT c."ProviderName" AS provider, c."BillingAccountId" AS billing_account,
                       CAST(c."BillingPeriodStart" AS DATE) AS month_start,
                       max(c."BillingPeriodEnd") AS period_end,
                       coalesce(c."InvoiceId", '{NO_INVOICE}') AS invoice_id,
                       c."BillingCurrency" AS currency,
                       list(DISTINCT c."x_Source") AS sources,
                       count(*) AS rows, sum(c."BilledCost") AS billed
                FROM cost_resolved c WHERE {where}
                GROUP BY ALL
            ),
            run_months AS (
                SELECT source, unnest(periods) AS month_start, notes, started_at
                FROM ingest_runs WHERE status = 'success'
            ),
            latest_runs AS (
                SELECT source, month_start, arg_max(notes, started_at) AS notes
                FROM run_months GROUP BY ALL
            ),
            months AS (
                SELECT provider, billing_account, month_start,
                       max(period_end) > ? AS open_period,
                       bool_or(invoice_id = '{NO_INVOICE}') AS missing_ids,
                       flatten(list(sources)) AS sources
                FROM lines GROUP BY ALL
            ),
            flagged AS (
                SELECT m.*, bool_or(coalesce(list_bool_or(
                           list_transform(r.notes, lambda n: contains(lower(n), 'estimated'))), false))
                           AS source_estimated
                FROM months m
                LEFT JOIN latest_runs r
                  ON list_contains(m.sources, r.source) AND r.month_start = m.month_start
                GROUP BY ALL
            )
            SELECT l.provider, l.billing_account, strftime(l.month_start, '%Y-%m') AS month,
                   l.invoice_id, l.currency, l.rows, round(l.billed, 2) AS billed,
                   CASE WHEN f.open_period OR f.missing_ids OR f.source_estimated
                        THEN 'estimated' ELSE 'final' END AS status,
                   concat_ws('; ',
                       CASE WHEN f.open_period THEN 'billing period not over' END,
                       CASE WHEN f.missing_ids THEN 'rows without an invoice id' END,
                       CASE WHEN f.source_estimated THEN 'source marked it estimated' END)
                       AS reason,
                   round(e.amount, 2) AS invoiced,
                   round(l.billed - e.amount, 2) AS difference,
                   CASE WHEN e.amount IS NULL THEN NULL
                        ELSE abs(l.billed - e.amount) < 0.005 END AS matches,
                   l.billed AS exact_billed
            FROM lines l
            JOIN flagged f USING (provider, billing_account, month_start)
            LEFT JOIN expected_invoices e ON e.invoice_id = l.invoice_id
            ORDER BY month, provider, billing_account, invoice_id
            """,
            params=[*params, now],
        ).to_arrow_table()
    finally:
        conn.unregister("expected_invoices")
