"""The Streamlit entry point: navigation only; each page lives in its own module."""

from __future__ import annotations

import streamlit as st

from finops.app import spend


def run() -> None:
    st.set_page_config(page_title="finops", layout="wide")
    navigation = st.navigation(
        [st.Page(spend.render, title="Spend by team", url_path="spend", default=True)]
    )
    navigation.run()


if __name__ == "__main__":
    run()
