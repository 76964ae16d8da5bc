"""The Compare page's sweeps: pick a stored sweep, see final error against depth with the spread over its seeds."""

from __future__ import annotations

import streamlit as st

from explorer.store import RunStore


def section(store: RunStore) -> None:
    rows = store.read("SELECT sweep_id, name, status FROM sweeps ORDER BY created DESC")
    if not rows:
        return
    st.subheader("Sweeps")
    st.caption(f"{len(rows)} stored")
