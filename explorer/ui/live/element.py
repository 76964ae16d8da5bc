"""The live element in a page: one components-v2 element (no iframe, live.js) mounted as a chart, a run's status
line, a lesson's tally or a student's ballot. Each mount costs one script run; after that the browser polls the
app's own routes (`explorer.ui.live.api`) and the page reruns only when the run's or lesson's state changes.
"""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from explorer.ui.live.api import ASSETS
from explorer.ui.live.feed import View


def _base_path() -> str:
    """Where the app's routes live: under Streamlit's base path when one is configured."""
    base = st.get_option("server.baseUrlPath").strip("/")
    return f"/{base}" if base else ""


# The element's script is a loader: the code itself (live.js, live.css) comes once per browser from the app's
# routes, cached for a year under a name that changes with its content, instead of travelling with every mount.
_LOADER = """
export default function (component) {
  let cleanup = null, gone = false;
  import(new URL("%s", window.location.origin).href).then((live) => { if (!gone) cleanup = live.default(component); });
  return () => { gone = true; if (cleanup) cleanup(); };
}
"""
_ELEMENT = st.components.v2.component("resnet_explorer_live", html='<div class="rx-root"></div>',
                                      js=_LOADER % (_base_path() + ASSETS["live.js"]), isolate_styles=False)


def _mount(key: str, data: dict[str, Any], on_change: Callable[[], None] | None = None) -> Any:
    data = {**data, "plotly": _base_path() + ASSETS["plotly.js"], "css": _base_path() + ASSETS["live.css"]}
    callbacks = {"on_state_change": on_change or (lambda: None)} if data["kind"] == "status" else \
        {"on_phase_change": on_change or (lambda: None)} if data["kind"] in ("tally", "ballot") else {}
    return _ELEMENT(key=key, data=data, **callbacks)


def run_url(run_id: str) -> str:
    return f"{_base_path()}/api/runs/{run_id}/live"


def lesson_url(lesson_id: str) -> str:
    return f"{_base_path()}/api/lessons/{lesson_id}"


def chart(run_id: str, view: View, key: str, summary: bool = True) -> None:
    """A chart of the run that extends itself as the run trains, and (with `summary`) the sentence in numbers under
    it."""
    _mount(key, {"kind": "chart", "url": run_url(run_id), "view": view.key, "summary": summary})


def status(run_id: str, rendered: str, owner: bool, key: str) -> None:
    """The run's status line, live; when its state changes from `rendered` (the state this page was drawn for) in
    a way the page shows, the page reruns."""
    _mount(key, {"kind": "status", "url": run_url(run_id), "rendered": rendered, "owner": owner})


def tally(lesson_id: str, phase: str, key: str) -> None:
    """A lesson's votes per answer as bars, live; the page reruns when the phase changes (the reveal)."""
    _mount(key, {"kind": "tally", "url": lesson_url(lesson_id), "phase": phase})


def ballot(lesson_id: str, phase: str, options: dict[str, str], key: str) -> None:
    """A student's ballot: one button per answer, the vote sent straight to the app's route (no rerun); the page
    reruns at the reveal. The voter is this browser (an id kept in its local storage), so a reload keeps the vote."""
    _mount(key, {"kind": "ballot", "url": lesson_url(lesson_id), "phase": phase, "options": options})
