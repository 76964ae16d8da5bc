"""What every browser session runs (streamlit_app.py serves it through st.App): page set-up, the navigation over
the pages, the sidebar every page shares, and the embedded workers. It only routes: each page is a typed function
in `pages/`."""

from pathlib import Path

import streamlit as st

from explorer.ui import nav, panels, session, theme
from pages import PAGES

ICON = Path(__file__).resolve().parents[2] / "assets" / "favicon.png"  # local: no icon fetched from another host

st.set_page_config(page_title="ResNet Explorer", page_icon=str(ICON), layout="wide")
navigation = st.navigation(nav.register(PAGES))
nav.follow_link()
session.workers()
theme.presentation_toggle()
panels.data_status()
navigation.run()
