"""Headless Chromium driven over the DevTools protocol, for the app's end-to-end test.

No driver package: Chromium's own remote-debugging websocket, spoken with `websockets`
(which Streamlit already depends on). Enough to open a page, wait for Streamlit to finish its
run, ask the DOM a question and take a screenshot.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

# Streamlit has finished a run when its status widget (running / connecting) is gone and
# the page's first heading is drawn.
SETTLED = """
(() => {
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const heading = document.querySelector('[data-testid="stMain"] h1');
  const skeleton = document.querySelector('[data-testid="stSkeleton"]');
  return Boolean(heading) && !running && !skeleton;
})()
"""
EXCEPTIONS = "document.querySelectorAll('[data-testid=\"stException\"]').length"


def find_chromium() -> str | None:
    found = next((c for c in CANDIDATES if Path(c).exists()), None)
    return found or shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one tab; use as a context manager."""

    def __init__(self, executable: str, profile: Path, *, width: int = 1400, height: int = 1000):
        self._process = subprocess.Popen(
            [
                executable,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.close()
                raise RuntimeError(f"{executable} did not start its DevTools endpoint")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            targets = json.load(response)
        self._ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self._ids = itertools.count(1)
        self._connection = ExitStack()
        self._ws = self._connection.enter_context(connect(self._ws_url, max_size=1 << 28))

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_ws", None) is not None:
            self._connection.close()
            self._ws = None
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=120))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, *, timeout_s: float = 90, settle_s: float = 1.5) -> float:
        """Load `url` and wait until Streamlit has drawn it and stayed still; the seconds taken."""
        started = time.monotonic()
        self.call("Page.navigate", url=url)
        still_since = None
        while time.monotonic() - started < timeout_s:
            if self.evaluate(SETTLED):
                still_since = still_since or time.monotonic()
                if time.monotonic() - still_since >= settle_s:
                    return still_since - started
            else:
                still_since = None
            time.sleep(0.2)
        raise TimeoutError(f"{url} did not finish rendering in {timeout_s:.0f} s")

    def exceptions(self) -> int:
        return int(self.evaluate(EXCEPTIONS) or 0)

    def text(self) -> str:
        return str(self.evaluate("document.body.innerText") or "")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
