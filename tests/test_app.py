"""The Streamlit app: figures on a hand-made bill, and every page in a real headless Chromium.

The end-to-end test starts `streamlit run` on a free local port over the demo warehouse and
loads every page in Chromium, checking for Streamlit's exception box. It skips, saying why,
where Chromium is not installed, but fails under CI (`CI=true`), whose `.ci/run` installs
Debian's chromium. With `FINOPS_SCREENSHOTS=DIR` it saves the pages' screenshots there
(`FINOPS_SCREENSHOTS=docs` refreshes the ones the README shows).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from finops.app import ENTRY_POINT, PAGES
from finops.collectors.focus import read_focus
from finops.warehouse import Warehouse
from tests.app_demo import AppDemo, write_config
from tests.browser import Browser, find_chromium
from tests.conftest import JUNE_ROWS, MAY_ROWS, write_csv

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = {
    "overview": "app-overview.png",
    "chargeback": "app-chargeback.png",
    "gpu": "app-gpu.png",
    "recommendations": "app-recommendations.png",
    "scorecard": "app-scorecard.png",
}
"""Pages (by URL path) whose screenshots the README shows."""


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "wh.duckdb"
    monkeypatch.setenv("FINOPS_DB", str(db))
    monkeypatch.setenv("FINOPS_CONFIG", str(REPO))
    return db


def run_app() -> AppTest:
    app = AppTest.from_file(str(ENTRY_POINT), default_timeout=60)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_empty_warehouse_says_which_command_to_run(app_env: Path) -> None:
    app = run_app()
    assert "Run `finops demo`" in app.info[0].value
    assert "Local single-user mode" in app.sidebar.caption[0].value


def test_overview_shows_the_months_spend_on_either_cost_basis(
    app_env: Path, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "bill.csv", [*MAY_ROWS, *JUNE_ROWS])
    Warehouse(app_env).ingest_cost(
        lambda: read_focus(str(path)), source="aws", collector="focus", uri="bill"
    )

    app = run_app()

    assert app.sidebar.selectbox(key="period").options == ["2026-06", "2026-05", "2026-Q2"]
    assert app.metric[0].value == "200.99 USD"
    app.sidebar.selectbox(key="period").set_value("2026-05").run()
    assert app.metric[0].value == "169.96 USD"  # effective: the repository's configured basis
    app.sidebar.selectbox(key="cost").set_value("billed").run()
    assert app.metric[0].value == "175.01 USD"
    app.sidebar.selectbox(key="team").set_value("vision").run()
    assert app.metric[0].value == "150.35 USD"
    app.sidebar.selectbox(key="team").set_value("(unallocated)").run()
    assert app.metric[0].value == "4.66 USD"


HOLD_FILE = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
    "print('held', flush=True); time.sleep(float(sys.argv[2]))"
)


def hold_warehouse(path: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the file read-write, as an ingest does, for `seconds`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FILE, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def lock_timeout_config(folder: Path, seconds: float) -> Path:
    """The repository's finops.yaml with another `warehouse.lock_timeout_s`."""
    folder.mkdir()
    settings = yaml.safe_load((REPO / "finops.yaml").read_text())
    settings.setdefault("warehouse", {})["lock_timeout_s"] = seconds
    (folder / "finops.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    shutil.copytree(REPO / "policies", folder / "policies")
    return folder


@pytest.mark.parametrize("held_s", [1.5, 30.0])
def test_during_an_ingest_a_page_waits_and_never_shows_a_lock_error(
    app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held_s: float
) -> None:
    """Held briefly, the page waits and shows its figures; held past the bound (three
    tries of `lock_timeout_s`), it says the warehouse is busy and who holds it."""
    path = write_csv(tmp_path / "bill.csv", [*MAY_ROWS, *JUNE_ROWS])
    Warehouse(app_env).ingest_cost(
        lambda: read_focus(str(path)), source="aws", collector="focus", uri="bill"
    )
    monkeypatch.setenv("FINOPS_CONFIG", str(lock_timeout_config(tmp_path / "config", 1.0)))
    holder = hold_warehouse(app_env, held_s)
    try:
        started = time.monotonic()
        app = AppTest.from_file(str(ENTRY_POINT), default_timeout=60)
        app.run()
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert not app.exception, [e.value for e in app.exception]
    if held_s < 3:
        assert waited > 0.5
        assert app.metric[0].value == "200.99 USD"
        assert not app.warning
    else:
        assert 2.5 < waited < 15
        (busy,) = app.warning
        assert busy.value.startswith("The warehouse is busy, most likely with an ingest:")
        assert f"held by process {holder.pid}" in busy.value
        assert not app.metric


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_health(port: int, server: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on port {port}")


@pytest.mark.slow
def test_every_page_loads_in_chromium_without_an_exception(
    app_demo: AppDemo, tmp_path: Path
) -> None:
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing on CI: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium here (apt-get install chromium); CI runs this test")
    config = write_config(tmp_path / "config", {"mode": "local"})
    shots = Path(os.environ.get("FINOPS_SCREENSHOTS") or tmp_path / "shots")
    if not shots.is_absolute():
        shots = REPO / shots
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # `finops app` itself, as the README serves it; Streamlit reads the rest from its
    # environment variables.
    env = {**os.environ, "STREAMLIT_SERVER_ADDRESS": "127.0.0.1", "STREAMLIT_THEME_BASE": "light"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("finops")),
            "app",
            "--port",
            str(port),
            "--db",
            str(app_demo.db),
            "--config",
            str(config),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_health(port, server)
        with Browser(chromium, tmp_path / "profile") as browser:
            for index, spec in enumerate(PAGES):
                page = "" if index == 0 else spec.url_path  # the default page is the root
                shot = SCREENSHOTS.get(spec.url_path)
                browser.open(f"http://127.0.0.1:{port}/{page}?period=2026-09")
                assert browser.exceptions() == 0, (page, browser.text()[:2000])
                assert "Traceback" not in browser.text(), page
                assert "Page not found" not in browser.text(), page
                if shot:
                    browser.screenshot(shots / shot)
                    assert (shots / shot).stat().st_size > 10_000, shot
    finally:
        server.terminate()
        server.wait(timeout=20)
