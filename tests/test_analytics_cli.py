"""The analytics commands as a user runs them, on a small bill with the repository's finops.yaml."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import row, write_csv
from tests.test_cli import REPO, finops


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    (tmp_path / "finops.yaml").write_text(
        (REPO / "finops.yaml").read_text().replace("rates: []", "rates_file: fx.csv")
    )
    (tmp_path / "fx.csv").write_text("from,to,date,rate\nEUR,USD,2026-05-01,1.10\n")
    rows = [
        row("05-01", "100.00", tags={"team": "vision"}, InvoiceId="INV-5"),
        row("05-02", "10.00", tags={"team": "EUR-team"}, BillingCurrency="EUR", InvoiceId="INV-5E"),
        # The shared-services account's untagged cost: split in proportion to direct cost.
        row("05-03", "22.00", SubAccountId="098765432109", InvoiceId="INV-5"),
    ]
    write_csv(tmp_path / "bill.csv", rows)
    finops("ingest", "focus", "bill.csv", cwd=tmp_path)
    return tmp_path


def test_allocated_chargeback_scorecard_budgets_invoices(deployment: Path) -> None:
    refused = finops("chargeback", "-p", "2026-05", cwd=deployment, ok=False)
    assert refused.returncode == 2
    assert "no EUR->USD rate" in refused.stderr
    assert "rate(s)" in finops("fx", "load", cwd=deployment).stdout

    as_csv = finops("chargeback", "-p", "2026-05", "-f", "csv", cwd=deployment).stdout
    rows = {r["team"]: Decimal(r["cost"]) for r in csv.DictReader(io.StringIO(as_csv))}
    # 10 EUR at 1.10 = 11 USD; the 22 shared split 100 : 11.
    assert rows == {"vision": Decimal("119.82"), "eur-team": Decimal("13.18")}

    kpis = {
        r["kpi"]: r["value"]
        for r in json.loads(
            finops("scorecard", "-p", "2026-05", "-f", "json", cwd=deployment).stdout
        )
    }
    assert kpis["allocation_coverage_pct"] == pytest.approx(83.46)  # 111 / 133

    budgets = finops("budgets", "-p", "2026-05", "--as-of", "2026-06-02", "-f", "json",
                     cwd=deployment, ok=False)  # fmt: skip
    assert budgets.returncode == 0
    assert json.loads(budgets.stdout)[0]["budget"] == "team ml-platform"

    invoices = json.loads(finops("invoices", "-p", "2026-05", "-f", "json", cwd=deployment).stdout)
    assert {(r["invoice_id"], r["billed"]) for r in invoices} == {
        ("INV-5", 122.0),
        ("INV-5E", 10.0),
    }


def test_anomalies_detect_list_and_ack(deployment: Path) -> None:
    found = finops("anomalies", "detect", "-p", "2026-05", "-f", "json", cwd=deployment).stdout
    assert json.loads(found) == []
    assert json.loads(finops("anomalies", "list", "-f", "json", cwd=deployment).stdout) == []
    missing = finops("anomalies", "ack", "abcdef", "--by", "ana", cwd=deployment, ok=False)
    assert missing.returncode == 2
    assert "no anomalies have this id" in missing.stderr
