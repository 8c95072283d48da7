"""How a collector reports bad input: every problem found, the first ones spelled out."""

from __future__ import annotations

from collections.abc import Sequence

from finops.errors import IngestError

MAX_PROBLEMS_SHOWN = 20


def refuse(uri: str, problems: Sequence[str]) -> IngestError:
    """One error for a whole delivery, listing the problems (file, row/line, column, value)."""
    shown = "\n  ".join(problems[:MAX_PROBLEMS_SHOWN])
    hidden = len(problems) - MAX_PROBLEMS_SHOWN
    more = f"\n  ... and {hidden} more" if hidden > 0 else ""
    return IngestError(f"{uri}: {len(problems)} problem(s); nothing was ingested\n  {shown}{more}")
