"""The app's shared look: a presentation toggle that enlarges text and charts for projectors, and one way to draw
every chart (stable key, so a live update keeps the reader's zoom; the figure's ``uirevision`` does the rest)."""

from __future__ import annotations

import streamlit as st

from explorer.ui.charts import Figure

PRESENTATION_KEY = "presentation"
PRESENTATION_PARAM = "present"  # ?present=1 in any page's address: presentation mode survives reloads and links
PRESENTATION_SCALE = 1.5
_PRESENTATION_CSS = """<style>
html { font-size: 22px; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.15rem; }
</style>"""
PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def presentation_toggle() -> None:
    """The sidebar switch for projectors, seeded from the address (``?present=1``) on a session's first run; the
    pages read it through `scale()`, and `url_params` keeps it in every address the app writes."""
    st.session_state[PROJECTOR_KEY] = False
    if PRESENTATION_KEY not in st.session_state:
        st.session_state[PRESENTATION_KEY] = st.query_params.get(PRESENTATION_PARAM) == "1"
    st.sidebar.toggle("Presentation mode", key=PRESENTATION_KEY, help="Larger text and charts for a projector")
    if st.session_state[PRESENTATION_KEY] != (st.query_params.get(PRESENTATION_PARAM) == "1"):
        if st.session_state[PRESENTATION_KEY]:
            st.query_params[PRESENTATION_PARAM] = "1"
        else:
            del st.query_params[PRESENTATION_PARAM]
    if scale() > 1:
        st.html(_PRESENTATION_CSS)


def url_params() -> dict[str, str]:
    """The app-wide part of every address: presentation mode, when on."""
    return {PRESENTATION_PARAM: "1"} if st.session_state.get(PRESENTATION_KEY) else {}


PROJECTOR_KEY = "projector"  # set for this run by a view made for a projector (the classroom's teacher view)


_PROJECTOR_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 1.2rem; padding-bottom: 0.5rem; max-width: none; }
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"] {
  display: none; }
[data-testid="stHeader"] { height: 0; }
</style>"""


def projector() -> None:
    """Large type for the rest of this run, whatever the toggle says, the sidebar hidden and the page's top padding
    trimmed: a view that is always projected, where every line and column of a 1280x720 screen counts."""
    st.html(_PROJECTOR_CSS if st.session_state.get(PRESENTATION_KEY) else _PRESENTATION_CSS + _PROJECTOR_CSS)
    st.session_state[PROJECTOR_KEY] = True


def scale() -> float:
    if st.session_state.get(PRESENTATION_KEY) or st.session_state.get(PROJECTOR_KEY):
        return PRESENTATION_SCALE
    return 1.0


def show_chart(fig: Figure, key: str, caption: str = "", summary: str = "") -> None:
    """Draw a figure built by `explorer.ui.charts` (with ``scale=scale()``), a caption that says what to look for,
    and a one-sentence summary of its numbers (generated from the data; what a screen reader reads)."""
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, theme=None)  # our fonts and palette, not Streamlit's
    if caption:
        st.caption(caption)
    if summary:
        st.caption(f"**In numbers:** {summary}")
