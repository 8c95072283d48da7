"""Running one benchmark step in a fresh process, so its time and peak RSS are its own.

A step is Python source that sets a `result` dict; constants are prepended to it, and the
harness adds the process's peak RSS before printing the result as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_HARNESS = """
import json, resource
{body}
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(result))
"""


def run_step(source: str, **values: object) -> dict:
    """Run `source` with `values` as module constants; return its `result` dict."""
    constants = "\n".join(f"{key} = {value!r}" for key, value in values.items())
    body = constants + "\n" + textwrap.dedent(source)
    completed = subprocess.run(
        [sys.executable, "-c", _HARNESS.format(body=body)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{completed.stderr}")
    line = next(x for x in completed.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))
