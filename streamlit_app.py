"""ResNet Explorer in the browser: `streamlit run streamlit_app.py`.

The app is an ASGI app (`st.App`): Streamlit's own routes serve each browser session, which runs
explorer/ui/shell.py (the navigation over the pages); the app's routes (explorer/ui/live/api.py) answer the live
charts' and the classroom's polls without a script rerun per viewer. Its lifespan starts the embedded workers with
the server and stops them (each run checkpointed, resumable) when the server stops.
"""

import asyncio
import logging
from contextlib import asynccontextmanager

import streamlit as st

from explorer.pool import server_pool, stop_server_pools
from explorer.store import RunStore, StoreError
from explorer.ui.live.api import routes


@asynccontextmanager
async def lifespan(_app: st.App):
    try:
        await asyncio.to_thread(lambda: server_pool(RunStore()))
    except StoreError as error:  # the pages say what to change; the server still starts
        logging.getLogger(__name__).error("no workers started: %s", error)
    try:
        yield None
    finally:
        await asyncio.to_thread(stop_server_pools)


app = st.App("explorer/ui/shell.py", routes=routes(st.get_option("server.baseUrlPath")), lifespan=lifespan)
