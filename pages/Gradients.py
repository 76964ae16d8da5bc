"""Gradients: what every layer sees during training, for plain and residual twins on one colour scale.

A layer-by-step heatmap of gradient norms (or weight norms, or update-to-weight ratios) on a log colour scale,
fitted to all recorded steps or to a window; the per-layer profile at any probe step; and the per-layer response
std of He et al. 2015 Fig. 7, measured with the probe batch's own statistics. A model that diverged stops at the
step it did. It opens on the link's run, or the Lab's, or the pinned reference run (the classic demo with probes),
and refreshes every `REFRESH_SECONDS` while its run trains, reading only the new probe rows.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.config import display_name
from explorer.palette import twin_pair
from explorer.ui import charts, figures, session, theme
from explorer.ui.session import plain

METRICS = {"grad_norm": "Gradient norm", "weight_norm": "Weight norm", "update_ratio": "Update / weight"}


@st.cache_resource(max_entries=8, ttl=3600, show_spinner=False)
def _history(run_id: str) -> dict:
    """The run's probe rows read so far, shared by every viewer and topped up with new rows only."""
    return {"probes": session.get_store().probes(run_id), "step": -1}


def probe_history(run_id: str) -> pd.DataFrame:
    cache = _history(run_id)
    probes = cache["probes"]
    latest = int(probes["step"].max()) if len(probes) else -1
    new = session.get_store().probes(run_id, since_step=latest)
    if len(new):
        probes = pd.concat([probes, new], ignore_index=True)
        cache["probes"] = probes
    return probes


def gradients(run_id: str) -> None:
    probes = probe_history(run_id)
    if probes.empty:
        st.info("This run has no probes yet. Probes are recorded every `probe` steps (set above 0 in the Lab's "
                "Run tab).")
        return
    labels = list(dict.fromkeys(probes["model"]))
    steps = charts.probe_steps(probes)
    metric_col, models_col = st.columns([2, 3])
    metric = metric_col.segmented_control("Quantity", list(METRICS), format_func=METRICS.get, default="grad_norm",
                                          required=True, key="gradients_metric") or "grad_norm"
    models = models_col.multiselect("Models, side by side", labels, default=twin_pair(labels), key="gradients_models",
                                    format_func=display_name)
    scaling_col, window_col = st.columns([2, 3])
    scaling = scaling_col.segmented_control("Colour scale", ["all", "window"], default="all", required=True,
                                            format_func={"all": "all steps", "window": "window"}.get,
                                            key="gradients_scaling") or "all"
    window = None
    if scaling == "window" and len(steps) > 1:
        window = window_col.select_slider("Window of steps", steps, value=(steps[len(steps) // 2], steps[-1]),
                                          key="gradients_window")
    theme.show_chart(
        charts.probe_heatmap(probes, metric, models, window, scaling, theme.scale()), key="gradients-heatmap",
        caption="Rows are layers from input (bottom) to output (top), columns are steps; one colour scale for all "
        "panels. In a deep plain net the early layers' gradients start far from the late layers' and their "
        "weights grow; with shortcuts the rows stay close. Use the window scale to see small late gradients.")

    scrubber, sorting = st.columns([4, 1], vertical_alignment="bottom")
    step = scrubber.select_slider("Step", steps, value=steps[-1], key="gradients_step",
                                  help="Scrub through the recorded probe steps")
    ordered = sorting.toggle("Sort by size", key="gradients_sorted", help="He et al. 2015 Fig. 7, bottom")
    shown = models or labels
    left, right = st.columns(2)
    with left:
        theme.show_chart(charts.layer_profile(probes, metric, step, scale=theme.scale(), models=shown),
                         key="gradients-profile", caption=f"{METRICS[metric]} of every layer at step {step}.",
                         summary=figures.profile_summary(probes[probes["model"].isin(shown)], metric,
                                                         METRICS[metric], step))
    with right:
        theme.show_chart(charts.layer_profile(probes, "response_std", step, ordered, theme.scale(), models=shown),
                         key="gradients-response",
                         caption="Std of each conv layer's response (its BN output, before the addition and ReLU) "
                         "on the fixed probe batch, normalised by that batch's own statistics as in training (the "
                         "running statistics are not used: early on they lag the weights and inflate responses "
                         "by orders of magnitude). He et al. 2015 (Fig. 7) found residual layers respond more "
                         "weakly than plain ones. A net that starts as the identity (zero-initialised branches) "
                         "shows every second layer at 0 until its BN gains grow.",
                         summary=figures.CHARTS["responses"].summary(
                             figures.RunTables(steps=pd.DataFrame(), evals=pd.DataFrame(),
                                               probes=probes[probes["step"] <= step], models=pd.DataFrame(),
                                               lesions=pd.DataFrame())))


REFERENCE = "degradation"  # the pinned reference run the page opens on: the classic demo, recorded with probes
REFRESH_SECONDS = 10.0  # a live run's views redraw this often (a rerun each: this page is not the class's live view)


def opening_run() -> str | None:
    """The run the page opens on: the link's, else this session's Lab run when it has probes, else the pinned
    reference run (the classic demo recorded with probes), never an arbitrary newest run without any."""
    wanted = session.url_run() or st.session_state.get("lab_run")
    if wanted and session.has_probes(wanted):
        return wanted
    return session.recorded_run_of(REFERENCE)


def page() -> None:
    st.title("Gradients")
    st.caption("Each layer's gradient, weights and response, recorded every few steps on a fixed probe batch.")
    opening = opening_run()
    picked = session.pick_runs("gradients_run", session.runs_table(), default=[opening] if opening else [],
                               multi=False, label="Run")
    if not picked:
        return
    run_id = picked[0]
    if run_id == session.recorded_run_of(REFERENCE):
        st.caption(f"Showing the reference run: the classic demo recorded on "
                   f"{plain(session.recorded_facts(run_id).get('device', 'a GPU'))}. Pick any run above.")
    session.sync_url({session.RUN_KEY: run_id})
    st.fragment(run_every=REFRESH_SECONDS if session.is_polling(run_id) else None)(gradients)(run_id)

