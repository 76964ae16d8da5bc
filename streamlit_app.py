"""ResNet Explorer in the browser: `streamlit run streamlit_app.py`.

The app is an ASGI app (`st.App`): Streamlit's own routes serve each browser session, which runs
explorer/ui/shell.py (the navigation over the pages); the app's routes (explorer/ui/live/api.py) answer the live
charts' and the classroom's polls without a script rerun per viewer.
"""

import streamlit as st

from explorer.ui.live.api import routes

app = st.App("explorer/ui/shell.py", routes=routes(st.get_option("server.baseUrlPath")))
