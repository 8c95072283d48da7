"""The Streamlit entry point: who is looking, the shared filters, and the pages' navigation.

Each page lives in its own module (a script Streamlit runs, so tests can switch to it) and reads its context (viewer, filters, warehouse) from
`finops.app.ui.context()`, which this run sets before the page renders.
"""

from __future__ import annotations

import streamlit as st

from finops.app import PAGES, data, ui
from finops.app.access import NoAccess, Viewer, check_teams, resolve_viewer
from finops.config import Config
from finops.errors import WarehouseBusyError


def identify() -> Viewer | NoAccess:
    """The viewer of this session, from `st.user` (OIDC), a proxy's header, or local mode."""
    access = data.settings().access
    user = st.user.to_dict() if access.mode == "oidc" else None
    headers = dict(st.context.headers) if access.mode == "header" else None
    return resolve_viewer(access, user=user, headers=headers)


def refuse(denied: NoAccess) -> None:
    st.title("finops")
    st.warning(denied.reason)
    if denied.needs_login:
        st.button("Sign in", on_click=st.login, type="primary")


def run() -> None:
    st.set_page_config(page_title="finops", page_icon=":material/savings:", layout="wide")
    config = data.settings()
    check_teams(config)
    viewer = identify()
    if isinstance(viewer, NoAccess):
        refuse(viewer)
        return
    wh = data.warehouse()
    ready = wh.path.exists()
    marker = data.last_change(wh) if ready else "none"
    with data.one_connection():
        try:
            draw(viewer, config, str(wh.path), marker, ready)
        except WarehouseBusyError as busy:
            # Each read already waited behind the spinner; say why instead of a traceback.
            st.warning(
                f"The warehouse is busy, most likely with an ingest: {busy}. "
                "Reload this page when it has finished."
            )


def draw(viewer: Viewer, config: Config, db: str, marker: str, ready: bool) -> None:
    """The sidebar and the chosen page."""
    with st.spinner("Reading the warehouse..."):
        filters = ui.sidebar_filters(viewer, db, marker, ready)
    st.session_state["_context"] = ui.Context(
        db, marker, viewer, filters, config.reporting_currency
    )
    if viewer.mode == "local":
        st.sidebar.caption(
            "Local single-user mode: you are an admin. Set `access.mode` in finops.yaml "
            "(oidc or header) to sign people in."
        )
    else:
        st.sidebar.caption(f"Signed in as {viewer.name} ({viewer.role})")
        if viewer.mode == "oidc":
            st.sidebar.button("Sign out", on_click=st.logout)
    pages = [
        st.Page(
            spec.script, title=spec.title, icon=spec.icon, url_path=spec.url_path, default=i == 0
        )
        for i, spec in enumerate(PAGES)
        if viewer.sees_everything or not spec.admin_only
    ]
    st.navigation(pages).run()


if __name__ == "__main__":
    run()
