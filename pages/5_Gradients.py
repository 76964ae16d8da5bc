"""Gradients: what every layer sees during training, for plain and residual twins on one colour scale.

A layer-by-step heatmap of gradient norms (or weight norms, or update-to-weight ratios) on a log colour scale,
fitted to all recorded steps or to a window; the per-layer profile at any probe step; and the per-layer response
std of He et al. 2015 Fig. 7. The page refreshes every two seconds while its run trains.
"""

import pandas as pd
import streamlit as st

from explorer import charts
from explorer.ui import session, theme

METRICS = {"grad_norm": "Gradient norm", "weight_norm": "Weight norm", "update_ratio": "Update / weight"}

session.require_navigation()
st.title("Gradients")
st.caption("Each layer's gradient, weights and response, recorded every few steps on a fixed probe batch.")
store = session.get_store()
wanted = st.query_params.get(session.RUN_KEY) or st.session_state.get(session.LAB_RUN)
picked = session.pick_runs("gradients_run", session.runs_table(), default=[wanted] if wanted else [], multi=False,
                           label="Run")
if not picked:
    st.stop()
run_id = picked[0]
session.sync_url({session.RUN_KEY: run_id})


def twins(labels: list[str]) -> list[str]:
    """The deepest plain net and the residual net of the same depth (else the first two models)."""
    plain = sorted((m for m in labels if charts.family_of(m) == "plain"), key=charts.depth_of)
    for candidate in reversed(plain):
        match = [m for m in labels if charts.family_of(m) == "resnet" and charts.depth_of(m) == charts.depth_of(
            candidate)]
        if match:
            return [candidate, match[0]]
    return labels[:2]


@st.cache_data(max_entries=4, show_spinner=False)
def probe_history(run_id: str, latest_step: int) -> pd.DataFrame:
    """Every probe of the run up to `latest_step` (the key: a finished run is read once)."""
    return store.probes(run_id)


@st.fragment(run_every=2.0 if session.is_polling(run_id) else None)
def gradients() -> None:
    probes = probe_history(run_id, store.latest_step(run_id))
    if probes.empty:
        st.info("This run has no probes yet. Probes are recorded every `probe` steps (set above 0 in the Lab's "
                "Run tab).")
        return
    labels = list(dict.fromkeys(probes["model"]))
    steps = charts.probe_steps(probes)
    metric_col, models_col = st.columns([2, 3])
    metric = metric_col.segmented_control("Quantity", list(METRICS), format_func=METRICS.get, default="grad_norm",
                                          required=True, key="gradients_metric") or "grad_norm"
    models = models_col.multiselect("Models, side by side", labels, default=twins(labels), key="gradients_models")
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
                         caption="Std of each conv layer's response (the BN output, before the addition and ReLU) on "
                         "the probe batch. He et al. 2015 (Fig. 7) found residual layers respond more weakly than "
                         "plain ones.")


gradients()
