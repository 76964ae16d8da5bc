"""Gradients: what every layer sees during training, for plain and residual twins on one colour scale.

A layer-by-step heatmap of gradient norms (or weight norms, or update-to-weight ratios) on a log colour scale,
fitted to all recorded steps or to a window; the per-layer profile at any probe step; and the per-layer response
std of He et al. 2015 Fig. 7, measured with the probe batch's own statistics. A model that diverged stops at the
step it did. The page refreshes every two seconds while its run trains, reading only the new probe rows.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.config import display_name
from explorer.palette import twin_pair
from explorer.ui import charts, session, theme

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
                         key="gradients-profile", caption=f"{METRICS[metric]} of every layer at step {step}.")
    with right:
        theme.show_chart(charts.layer_profile(probes, "response_std", step, ordered, theme.scale(), models=shown),
                         key="gradients-response",
                         caption="Std of each conv layer's response (its BN output, before the addition and ReLU) "
                         "on the fixed probe batch, normalised by that batch's own statistics as in training (the "
                         "running statistics are not used: early on they lag the weights and inflate responses "
                         "by orders of magnitude). He et al. 2015 (Fig. 7) found residual layers respond more "
                         "weakly than plain ones. A net that starts as the identity (zero-initialised branches) "
                         "shows every second layer at 0 until its BN gains grow.")


def page() -> None:
    st.title("Gradients")
    st.caption("Each layer's gradient, weights and response, recorded every few steps on a fixed probe batch.")
    wanted = session.url_run() or st.session_state.get("lab_run")
    picked = session.pick_runs("gradients_run", session.runs_table(), default=[wanted] if wanted else [],
                               multi=False, label="Run")
    if not picked:
        return
    run_id = picked[0]
    session.sync_url({session.RUN_KEY: run_id})
    st.fragment(run_every=2.0 if session.is_polling(run_id) else None)(gradients)(run_id)

