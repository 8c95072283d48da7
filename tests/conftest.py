"""Shared fixtures: tiny FOCUS files written by hand, and a warehouse in a temporary folder."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finops.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]

# The CLI's rich console takes its width once, when finops.cli is first imported: wide
# enough that ids are never wrapped in the tables tests read, in every xdist worker.
os.environ.setdefault("COLUMNS", "250")

BASE_ROW: dict[str, str] = {
    "BillingAccountId": "012345678901",
    "BillingAccountName": "Example payer",
    "BillingCurrency": "USD",
    "BillingPeriodStart": "2026-05-01T00:00:00Z",
    "BillingPeriodEnd": "2026-06-01T00:00:00Z",
    "ChargeCategory": "Usage",
    "ChargePeriodStart": "2026-05-01T00:00:00Z",
    "ChargePeriodEnd": "2026-05-02T00:00:00Z",
    "BilledCost": "0",
    "EffectiveCost": "0",
    "ListCost": "0",
    "ContractedCost": "0",
    "ServiceName": "Amazon Elastic Compute Cloud",
    "ServiceCategory": "Compute",
    "ProviderName": "AWS",
    "PublisherName": "AWS",
    "InvoiceIssuerName": "AWS",
    "ChargeFrequency": "Usage-Based",
    "SubAccountId": "012345678901",
    "Tags": "",
}


def row(
    day: str, billed: str, effective: str | None = None, tags: dict | None = None, **overrides: str
) -> dict:
    """One FOCUS row for a day of 2026 (`05-03` is 3 May), as CSV text values."""
    month = int(day[:2])
    start = f"2026-{day}T00:00:00Z"
    values = {
        **BASE_ROW,
        "BillingPeriodStart": f"2026-{month:02d}-01T00:00:00Z",
        "BillingPeriodEnd": f"{2026 + month // 12}-{month % 12 + 1:02d}-01T00:00:00Z",
        "ChargePeriodStart": start,
        "ChargePeriodEnd": start.replace("T00:00:00Z", "T23:59:59Z"),
        "BilledCost": billed,
        "EffectiveCost": effective if effective is not None else billed,
        "ListCost": billed,
        "ContractedCost": billed,
        "Tags": json.dumps(tags) if tags else "",
    }
    values.update(overrides)
    return values


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = columns or list(dict.fromkeys(key for r in rows for key in r))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    """The same rows as a typed Parquet file: decimals, UTC timestamps, Tags as a map."""

    def ts(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)

    money = pa.decimal128(38, 10)
    columns: dict[str, pa.Array] = {}
    for name in rows[0]:
        values = [r.get(name) or None for r in rows]
        if name.endswith("Cost"):
            columns[name] = pa.array([Decimal(v) if v else None for v in values], money)
        elif name.endswith(("PeriodStart", "PeriodEnd")):
            columns[name] = pa.array([ts(v) for v in values], pa.timestamp("us", tz="UTC"))
        elif name == "Tags":
            columns[name] = pa.array(
                [list(json.loads(v).items()) if v else None for v in values],
                pa.map_(pa.string(), pa.string()),
            )
        else:
            columns[name] = pa.array(values, pa.string())
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


MAY_ROWS = [
    row("05-01", "100.10", "90.05", {"team": "vision", "env": "prod"}),
    row("05-02", "50.25", tags={"Team": "Vision"}),
    row("05-03", "20.00", "25.00", {"owner": "ml_platform"}),
    row("05-03", "-5.35", tags=None, ChargeCategory="Credit"),
    row("05-31", "10.01", tags={"env": "dev"}),
]
"""May 2026: billed 175.01 (vision 150.35, ml-platform 20.00, unallocated 4.66); effective 169.96."""

JUNE_ROWS = [
    row("06-01", "200.00", tags={"team": "vision"}),
    row("06-15", "0.99", tags={"team": "search"}),
]
"""June 2026: billed 200.99 (vision 200.00, search 0.99)."""


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "wh" / "warehouse.duckdb", lock_timeout_s=20)


@pytest.fixture
def total_billed(warehouse: Warehouse) -> Callable[..., Decimal]:
    """Sum of BilledCost in the cost table, optionally for one source."""

    def total(source: str | None = None) -> Decimal:
        where = "WHERE x_Source = ?" if source else ""
        table = warehouse.query(
            f'SELECT coalesce(sum("BilledCost"), 0) AS t FROM cost {where}',
            [source] if source else [],
        )
        return table.column("t")[0].as_py()

    return total


@dataclass(frozen=True)
class DemoRun:
    """`finops demo` run once per test session, as a user runs it, in its own folder."""

    folder: Path
    output: str
    months: tuple[str, ...]

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.folder / ".finops" / "warehouse.duckdb")

    @property
    def data_dir(self) -> Path:
        return self.folder / ".finops" / "demo"


DEMO_MONTHS = ("2026-07", "2026-08", "2026-09")
"""The shared demo's months: one quarter (2026-Q3 under the repository's finops.yaml)."""


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, testrun_uid: str) -> DemoRun:
    """The demo organisation generated and ingested by the real `finops demo` command, with
    the repository's finops.yaml and policy pack, for tests that need the whole story.

    Built once per test run: with pytest-xdist, the first worker builds it under a lock
    and the others use the same folder."""
    shared = os.environ.get("PYTEST_XDIST_WORKER") is not None
    base = tmp_path_factory.getbasetemp()
    folder = base.parent / f"demo-run-{testrun_uid}" if shared else base / "demo-run"
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / "demo-output.txt"
    with (folder.parent / f"{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not output.exists():
            _run_demo(folder, output)
    return DemoRun(folder, output.read_text(), DEMO_MONTHS)


def _run_demo(folder: Path, output: Path) -> None:
    (folder / "finops.yaml").write_text((REPO / "finops.yaml").read_text())
    shutil.copytree(REPO / "policies", folder / "policies")
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("finops")),
            "demo",
            "--months",
            str(len(DEMO_MONTHS)),
            "--end-month",
            DEMO_MONTHS[-1],
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    output.write_text(result.stdout)


@pytest.fixture(scope="session")
def app_demo(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory):  # -> AppDemo
    """The session's demo run, with the access rules the app's tests use."""
    from tests.app_demo import build

    return build(demo_run, tmp_path_factory.mktemp("app-demo"))


@pytest.fixture
def demo(app_demo, monkeypatch: pytest.MonkeyPatch):  # -> AppDemo
    monkeypatch.setenv("FINOPS_DB", str(app_demo.db))
    monkeypatch.setenv("FINOPS_CONFIG", str(app_demo.config_dir))
    from finops.app import data
    from tests.app_demo import NOW

    monkeypatch.setattr(data, "clock", lambda: NOW)
    return app_demo
