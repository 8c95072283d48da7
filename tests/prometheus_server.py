"""A real Prometheus for tests: history backfilled with promtool, served on loopback.

Needs Debian's `prometheus` package (both binaries). Where they are missing the tests are
skipped, except on CI (`CI=true`), where a missing binary fails the run instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

READY_TIMEOUT_S = 30.0


def require_binary(name: str) -> str:
    """The path of `name`, or skip (fail on CI) saying how to install it."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed: `apt-get install prometheus` provides it"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def prometheus_serving(openmetrics: str, workdir: Path) -> Iterator[str]:
    """Backfill `openmetrics` (text ending in `# EOF`) into a TSDB and serve it; yields the URL."""
    promtool, prometheus = require_binary("promtool"), require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    source, data = workdir / "history.om", workdir / "data"
    source.write_text(openmetrics)
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # No scrape targets: the server only answers queries over the backfilled blocks.
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\n")
    url = f"http://127.0.0.1:{free_port()}"
    log = workdir / "prometheus.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address={url.removeprefix('http://')}",
                "--storage.tsdb.retention.time=30d",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prometheus exited with {server.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # still starting, or still loading blocks (503)
        time.sleep(0.1)
    pytest.fail(f"prometheus not ready after {READY_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")
