"""A reader process and an ingesting process share the warehouse file, as DESIGN.md requires."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from finops.collectors.focus import read_focus
from finops.errors import WarehouseBusyError
from finops.warehouse import Warehouse
from tests.conftest import MAY_ROWS, row, write_csv

READER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from finops.warehouse import Warehouse

    warehouse = Warehouse(Path(sys.argv[1]), lock_timeout_s=30)
    stop, out = Path(sys.argv[2]), open(sys.argv[3], "w")
    while not stop.exists():
        try:
            total = warehouse.query('SELECT sum("BilledCost") AS t FROM cost').column("t")[0].as_py()
            out.write(f"ok {total}\\n")
        except Exception as exc:
            out.write(f"error {type(exc).__name__}: {exc}\\n")
        out.flush()
        time.sleep(0.005)
    """
)


@pytest.mark.slow
def test_reader_sees_old_or_new_total_never_a_partial_one(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb", lock_timeout_s=30)
    original = write_csv(tmp_path / "may.csv", MAY_ROWS)  # 175.01
    restated = write_csv(
        tmp_path / "may-restated.csv", [*MAY_ROWS[:4], row("05-31", "30.01")]
    )  # 195.01
    warehouse.ingest_cost(
        lambda: read_focus(str(original)), source="aws", collector="focus", uri="may"
    )
    stop, log = tmp_path / "stop", tmp_path / "reads.log"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(warehouse.path), str(stop), str(log)]
    )
    try:
        time.sleep(1.0)
        for index in range(12):
            path = restated if index % 2 == 0 else original
            result = warehouse.ingest_cost(
                lambda path=path: read_focus(str(path)),
                source="aws",
                collector="focus",
                uri=str(path),
            )
            assert result.status == "success"
        time.sleep(0.5)
    finally:
        stop.touch()
        reader.wait(timeout=60)

    reads = log.read_text().splitlines()
    assert reader.returncode == 0
    assert [line for line in reads if not line.startswith("ok ")] == []
    totals = {Decimal(line.removeprefix("ok ")) for line in reads}
    assert totals <= {Decimal("175.01"), Decimal("195.01")}
    assert len(reads) >= 20
    assert Decimal("175.01") in totals


def test_busy_file_gives_up_after_the_bound_and_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    with Warehouse(path).writer():
        pass  # create the file at the current schema
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(
            WarehouseBusyError, match=rf"held by process {holder.pid} .* for over 1 s"
        ):
            Warehouse(path, lock_timeout_s=1.0).query("SELECT 1")
        assert 0.9 < time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
