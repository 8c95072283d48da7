"""The Streamlit app: pages and shared UI helpers. It reads through `finops.analytics` only."""

from pathlib import Path

ENTRY_POINT = Path(__file__).with_name("main.py")
"""The script `finops app` hands to `streamlit run`."""
