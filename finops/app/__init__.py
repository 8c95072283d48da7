"""The Streamlit app: pages and shared UI helpers. It reads through `finops.analytics` only."""

from dataclasses import dataclass
from pathlib import Path

ENTRY_POINT = Path(__file__).with_name("main.py")
"""The script `finops app` hands to `streamlit run`."""


@dataclass(frozen=True)
class PageSpec:
    module: str
    """The page's script in this package (it runs its `render()` when Streamlit runs it)."""
    title: str
    icon: str
    url_path: str
    admin_only: bool = False
    """Shown only to viewers who see every team."""

    @property
    def script(self) -> str:
        return str(ENTRY_POINT.with_name(f"{self.module}.py"))


PAGES: tuple[PageSpec, ...] = (
    PageSpec("overview", "Overview", ":material/dashboard:", "overview"),
    PageSpec("chargeback_page", "Charge-back", ":material/account_balance:", "chargeback"),
    PageSpec("gpu_page", "GPU fleet", ":material/memory:", "gpu"),
    PageSpec("recommendations_page", "Recommendations", ":material/lightbulb:", "recommendations"),
    PageSpec("roi_page", "ROI", ":material/trending_up:", "roi"),
    PageSpec("scorecard", "Scorecard", ":material/scoreboard:", "scorecard"),
    PageSpec("quarterly", "Quarterly review", ":material/summarize:", "quarterly"),
    PageSpec("health_page", "Data health", ":material/monitor_heart:", "health", admin_only=True),
)
"""The app's pages in navigation order; the first is the default."""
