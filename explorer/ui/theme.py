"""The app's shared look: a presentation toggle that enlarges text and charts for projectors, and one way to draw
every chart (stable key, so a live update keeps the reader's zoom; the figure's ``uirevision`` does the rest)."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

PRESENTATION_KEY = "presentation"
PRESENTATION_SCALE = 1.5
_PRESENTATION_CSS = """<style>
html { font-size: 22px; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.15rem; }
</style>"""
PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def presentation_toggle() -> None:
    """The sidebar switch for projectors; the pages read it through `scale()`."""
    st.sidebar.toggle("Presentation mode", key=PRESENTATION_KEY, help="Larger text and charts for a projector")
    if scale() > 1:
        st.html(_PRESENTATION_CSS)


def scale() -> float:
    return PRESENTATION_SCALE if st.session_state.get(PRESENTATION_KEY) else 1.0


def show_chart(fig: go.Figure, key: str, caption: str = "") -> None:
    """Draw a figure built by `explorer.charts` (with ``scale=scale()``) and a caption that says what to look for."""
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, theme=None)  # our fonts and palette, not Streamlit's
    if caption:
        st.caption(caption)
