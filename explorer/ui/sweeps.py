"""The Compare page's sweeps: start the depth sweep from its preset, pick a stored sweep, and see final error
against depth with the spread over its seeds, filling in live as members finish, beside the paper's numbers.

Only the members of one sweep are drawn together: the figure is built from that sweep's own summary.
"""

from __future__ import annotations

import io
from dataclasses import replace

import streamlit as st

from explorer import paper, sweep
from explorer.config import ConfigError
from explorer.store import RunStore
from explorer.ui import charts, config_form, session, theme
from explorer.ui.session import plain

METRIC_NAMES = {"test_err": "test error", "train_err": "training error (evaluated)",
                "batch_train_err": "training error (batches)"}


def start_form(store: RunStore) -> None:
    """Start the depth sweep preset as a real sweep: every family and depth, several seeds, one model per run."""
    with st.expander("Start a sweep: the depth sweep over seeds"):
        seeds = st.select_slider("Seeds per net", [1, 2, 3, 5], value=2, key="sweep_seeds")
        config = config_form.preset_config("depth-sweep")
        grid = {"family": ["plain", "resnet"], "depth": sorted({m.depth for m in config.models})}
        base = replace(config, models=config.models[:1])
        spec = sweep.SweepSpec(name="Depth sweep over seeds", base=base, grid=grid, seeds=seeds)
        st.caption(f"{len(sweep.plan(spec))} runs of one net each ({', '.join(map(str, grid['depth']))} layers, plain "
                   f"and residual, {seeds} seed{'s' if seeds > 1 else ''}), trained by this server's workers one "
                   "after another.")
        if st.button("Start the sweep", key="start_sweep", icon=":material/play_arrow:"):
            try:
                sweep_id = sweep.start(store, spec, session.owner_key())
            except (session.REFUSALS + (ConfigError,)) as error:
                st.error(plain(error))
                return
            st.session_state["sweep_pick"] = sweep_id
            st.rerun()


def section(store: RunStore) -> None:
    st.subheader("Sweeps")
    start_form(store)
    ids = sweep.sweep_ids(store)
    if not ids:
        st.caption("No sweep stored yet. A sweep trains each net of a grid several times (seeds) and draws the mean "
                   "and spread; `python -m explorer sweep` starts one from a terminal, on this machine or on Ray.")
        return
    statuses = {sweep_id: sweep.status(store, sweep_id) for sweep_id in ids}
    picked = st.selectbox("Sweep", ids, key="sweep_pick",
                          format_func=lambda s: f"{statuses[s].name} · {statuses[s].state} · {s}")
    status = statuses[picked]
    if status.state.active and st.button("Stop the sweep", key="stop_sweep", icon=":material/stop:"):
        try:
            sweep.stop(store, picked, session.owner_key())
            st.rerun()
        except session.REFUSALS as error:
            st.error(plain(error))

    @st.fragment(run_every=2.0 if status.state.active else None)
    def live() -> None:
        now = sweep.status(store, picked)
        st.caption(plain(now.line()))
        summary = sweep.summary(store, picked)
        metric = st.segmented_control("Final", list(METRIC_NAMES), format_func=METRIC_NAMES.get, default="test_err",
                                      required=True, key="sweep_metric") or "test_err"
        reference = paper.reference_frame() if metric == "test_err" else None
        theme.show_chart(charts.sweep_figure(summary, metric, theme.scale(), reference), key="sweep-figure",
                         caption="Mean over the seeds that finished, with ±1 sd bars and a min–max band; open "
                         "diamonds: the paper's ResNet test errors (He et al. 2015, Table 6; trained 164 epochs on "
                         "all 50,000 images, so lower than a short run). The paper gives plain nets' errors only as "
                         "curves (Fig. 6), so none is drawn.")
        tidy = sweep.table(store, picked)
        buffer = io.BytesIO()
        tidy.to_parquet(buffer, index=False)
        left, right = st.columns(2)
        left.download_button("Sweep table (CSV)", tidy.to_csv(index=False), file_name=f"{picked}.csv",
                             mime="text/csv", key="sweep_csv", on_click="ignore", width="stretch")
        right.download_button("Sweep table (Parquet)", buffer.getvalue(), file_name=f"{picked}.parquet",
                              mime="application/octet-stream", key="sweep_parquet", on_click="ignore",
                              width="stretch")

    live()
