"""Streamlit entry for a checkout (`streamlit run app.py`); `finops app` runs the packaged one."""

from finops.app.main import run

run()
