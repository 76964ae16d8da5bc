"""The app's shell: navigation over the pages (each a typed function in `pages/`), the sidebar every page shares,
and the embedded workers. `streamlit_app.py` calls `main`; so does any page file Streamlit runs on its own.

Streamlit treats a folder named ``pages/`` beside the entry script as an old-style multipage app until the entry
script first calls `st.navigation`; a first visitor who opens a deep link (``/Lab?run=...``) on a fresh server then
gets that page's file run as a script. Each page file (named as its URL path, so the old-style router finds it)
therefore ends by calling `main`, and `main` reruns a session's first script run once `st.navigation` has taken
over, so the page renders in the app's own navigation: public API only.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

PAGES: dict[str, Any] = {}  # page key -> the st.Page object, for links
NAVIGATED = "navigated"


def register_pages() -> list[Any]:
    """The app's pages as st.Page objects (kept in `PAGES` for links)."""
    from pages import Architecture, Classroom, Compare, Gradients, Lab, Learn

    PAGES.update({
        "learn": st.Page(Learn.page, title="Learn", icon=":material/school:", url_path="Learn", default=True),
        "lab": st.Page(Lab.page, title="Lab", icon=":material/science:", url_path="Lab"),
        "architecture": st.Page(Architecture.page, title="Architecture", icon=":material/account_tree:",
                                url_path="Architecture"),
        "compare": st.Page(Compare.page, title="Compare", icon=":material/compare_arrows:", url_path="Compare"),
        "gradients": st.Page(Gradients.page, title="Gradients", icon=":material/gradient:", url_path="Gradients"),
        "classroom": st.Page(Classroom.page, title="Classroom", icon=":material/how_to_vote:",
                             url_path="Classroom"),
    })
    return list(PAGES.values())


def main() -> None:
    from explorer.ui import panels, session, theme

    st.set_page_config(page_title="ResNet Explorer", page_icon=":material/hub:", layout="wide")
    navigation = st.navigation(register_pages())
    if not st.session_state.get(NAVIGATED):  # this session's first run may be the old-style router's: go again
        st.session_state[NAVIGATED] = True
        st.rerun()
    session.workers()
    theme.presentation_toggle()
    panels.data_status()
    navigation.run()


def link(page: str, label: str, icon: str | None = None) -> None:
    """A link to one of the app's pages by its key (``lab``, ``compare``, ...)."""
    st.page_link(PAGES[page], label=label, icon=icon)


def switch(page: str) -> None:
    st.switch_page(PAGES[page])
