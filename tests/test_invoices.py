"""Invoice tie-out: totals per invoice and month, estimated or final, against invoiced amounts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from finops.analytics.invoices import invoice_tieout
from finops.collectors.focus import read_focus
from finops.periods import parse_period
from finops.warehouse import Warehouse
from tests.conftest import row, write_csv


def test_final_and_estimated_months_with_invoice_differences(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    rows = [
        row("05-01", "100.10", InvoiceId="INV-5"),
        row("05-20", "-0.10", InvoiceId="INV-5", ChargeCategory="Credit"),
        row("06-01", "40.00", InvoiceId="INV-6"),
        row("06-02", "2.50"),  # no invoice id yet
    ]
    path = write_csv(tmp_path / "i.csv", rows)
    warehouse.ingest_cost(lambda: read_focus(str(path)), source="a", collector="focus", uri="i")
    invoiced = pa.table({"invoice_id": ["INV-5"], "amount": [Decimal("100.01")]})
    with warehouse.reader() as conn:
        table = invoice_tieout(
            conn,
            parse_period("2026-Q2"),
            now=datetime(2026, 6, 15, tzinfo=UTC),
            expected=invoiced,
        )
    lines = {(r["month"], r["invoice_id"]): r for r in table.to_pylist()}
    may = lines[("2026-05", "INV-5")]
    assert (may["rows"], may["billed"], may["status"], may["reason"]) == (
        2,
        Decimal("100.00"),
        "final",
        "",
    )
    assert (may["invoiced"], may["difference"], may["matches"]) == (
        Decimal("100.01"),
        Decimal("-0.01"),
        False,
    )
    june = lines[("2026-06", "INV-6")]
    assert june["status"] == "estimated"
    assert june["reason"] == "billing period not over; rows without an invoice id"
    assert lines[("2026-06", "(no invoice id)")]["billed"] == Decimal("2.50")
    assert june["matches"] is None
