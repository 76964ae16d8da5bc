"""The Compare page's sweeps: start the depth sweep from its preset, pick a stored sweep, and see final error
against depth with the spread over its seeds, filling in live as members finish, beside the paper's numbers.

Only the members of one sweep are drawn together: the figure is built from that sweep's own summary.
"""

from __future__ import annotations

import io
from dataclasses import replace

import pandas as pd
import streamlit as st

from explorer import paper, sweep
from explorer.config import ConfigError
from explorer.store import RunStore
from explorer.ui import charts, config_form, figures, session, theme
from explorer.ui.session import plain

# Training error first: degradation is a claim about training error (He et al. 2015 §4.2: "deeper plain nets have
# higher training error"), and the paper's test errors need 164 epochs on all 50,000 images to compare with.
METRIC_NAMES = {"train_err": "training error (evaluated)", "batch_train_err": "training error (batches)",
                "test_err": "test error"}
GPU_SWEEP = "depth-sweep"  # the recorded run of the depth-sweep preset on a GPU: eight nets in lockstep


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


def recorded_gpu_sweep(store: RunStore) -> None:
    """The depth sweep recorded on a GPU (one run: every depth, plain and residual, in lockstep), where the paper's
    claim shows cleanly: final training error against depth."""
    run_id = session.recorded_run_of(GPU_SWEEP, "gpu")
    if run_id is None:
        return
    tables = figures.RunTables.read(store, run_id)
    config = tables.config
    recipe = (f"{config.data.subset:,} images, {config.optim.epochs:g} epochs, batch {config.optim.batch_size}"
              if config else "")
    spec = figures.CHARTS["depth"]
    theme.show_chart(spec.build(tables, "epoch", theme.scale()), key="gpu-depth-sweep",
                     caption=f"The depth sweep recorded on a GPU ({recipe}, one seed): final training error of "
                     "every net against its depth. Plain nets train worse the deeper they are; residual nets do "
                     "not. This is the degradation problem.", summary=spec.summary(tables))


def recipe_note(store: RunStore, sweep_id: str) -> str:
    """What a stored sweep trained on, and what that means beside the paper's numbers."""
    base = sweep.spec_of(store, sweep_id).base
    total, _ = base.run_steps()
    short = base.data.subset < 50_000 or base.optim.epochs < 100
    text = (f"Each net trained on {base.data.subset:,} images for {base.optim.epochs:g} epochs ({total:,} steps, "
            f"batch {base.optim.batch_size}, width ×{base.models[0].width:g}).")
    if short:
        text += (" A short sweep: its errors sit far above the paper's, which trained 164 epochs on all 50,000 "
                 "images; compare how error moves with depth, not its level. Its test error mixes in "
                 "overfitting on so few images: degradation shows in training error.")
    return text


def reference_in_range(summary: pd.DataFrame, reference: pd.DataFrame | None) -> tuple[pd.DataFrame | None, str]:
    """The paper's numbers at the depths this sweep trained (the axes fit the data), and a note on the others."""
    depths = summary["depth"] if len(summary) else []
    if reference is None or not len(depths):
        return reference, ""
    inside = reference[reference["depth"].between(min(depths), max(depths))]
    outside = reference[~reference.index.isin(inside.index)]
    note = "; ".join(f"ResNet-{int(r.depth)} {r.value:.2f}%" for r in outside.itertuples())
    return inside, (f" Off this chart's depths: {note} ({outside['source'].iat[0]})." if note else "")


def section(store: RunStore) -> None:
    st.subheader("Sweeps")
    recorded_gpu_sweep(store)
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
        st.caption(plain(now.line()) + "  \n" + plain(recipe_note(store, picked)))
        summary = sweep.summary(store, picked)
        metric = st.segmented_control("Final", list(METRIC_NAMES), format_func=METRIC_NAMES.get,
                                      default="train_err", required=True, key="sweep_metric") or "train_err"
        reference, off_chart = reference_in_range(summary, paper.reference_frame() if metric == "test_err" else None)
        theme.show_chart(charts.sweep_figure(summary, metric, theme.scale(), reference), key="sweep-figure",
                         caption="Mean over the seeds that finished, with ±1 sd bars and a min–max band." +
                         (" Open diamonds: the paper's ResNet test errors (He et al. 2015, Table 6; 164 epochs on "
                          "all 50,000 images). The paper gives plain nets' errors only as curves (Fig. 6), so none "
                          "is drawn." + off_chart if metric == "test_err" else ""))
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
