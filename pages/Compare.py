"""Compare: stored runs on shared axes, the difference between two curves, a table of final numbers, and sweeps.

Colour says the model (family hue, darker when deeper) and dash says the run, so the same net trained twice, or
with other settings, lines up against itself; the legend groups each run's models under its recipe. It opens on
like-for-like runs and warns when the chosen ones are not (`explorer.comparison` picks and computes; this page
draws). The chosen runs live in the URL (key ``runs``). Charts that join
points across depth only ever join the models of one run, or the members of one sweep (with the spread over its
seeds): a line between unrelated runs would draw a trend that no experiment measured.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer import paper
from explorer.comparison import CURVES, Comparison, default_difference, default_runs
from explorer.config import display_name
from explorer.palette import family_of
from explorer.store import valid_run_id
from explorer.ui import charts, panels, session, sweeps, theme
from explorer.ui.session import plain

MISSING = "–"
FINAL_COLUMNS = {
    "batch_train_err": st.column_config.TextColumn("train err (batches)", help="Mean of the last batches, %"),
    "train_err": st.column_config.TextColumn("train err (evaluated)", help="Last evaluation, %. – : not evaluated "
                                             "(the model diverged, or the run stopped before an evaluation)"),
    "test_err": st.column_config.TextColumn("test err", help="Last evaluation, %. – : not evaluated"),
    "best_test_err": st.column_config.TextColumn("best test err", help="Lowest evaluated test error, %. – : none"),
    "paper_test_err": st.column_config.TextColumn("paper's test err", help="He et al. 2015 Table 6, %: the paper's "
                                                  "nets trained 164 epochs on all of CIFAR-10. – : a net the paper "
                                                  "did not report"),
    "loss": st.column_config.TextColumn("loss", help="Mean training loss of the last batches"),
    "params": st.column_config.TextColumn("parameters"),
}


def shown_finals(finals: pd.DataFrame) -> pd.DataFrame:
    """Final numbers as text: a missing value reads "–" (never "None"), with the reason in the column's help."""
    table = finals.copy()
    for column, digits in (("batch_train_err", 1), ("train_err", 1), ("test_err", 1), ("best_test_err", 1),
                           ("paper_test_err", 2), ("loss", 3), ("epoch", 1)):
        if column in table:
            table[column] = table[column].map(lambda v, d=digits: MISSING if pd.isna(v) else f"{v:.{d}f}")
    if "params" in table:
        table["params"] = table["params"].map(lambda v: MISSING if pd.isna(v) else f"{int(v):,}")
    table["model"] = table["model"].map(display_name)
    return table.fillna(MISSING)


def page() -> None:
    st.title("Compare")
    st.caption("Overlay stored runs: the same axes, one colour per model, one dash per run. Sweeps (several seeds "
               "per depth) are drawn below with their spread.")
    store = session.get_store()
    all_runs = session.runs_table()
    asked = [r for r in st.query_params.get("runs", "").split(",") if r]
    wanted = [r for r in asked if valid_run_id(r) and store.has_run(r)]
    if len(wanted) < len(asked):
        st.warning(f"{len(asked) - len(wanted)} run(s) from the link are not in this app's run store "
                   f"({plain(', '.join(r[:24] for r in asked if r not in wanted)[:200])}): showing the others.")
    demo = {kind: run for kind in ("gpu", "cpu") if (run := session.recorded_run_of("degradation", kind))}
    opening = default_runs(all_runs, set(session.recorded_runs()), demo)
    run_ids = session.pick_runs("compare_runs", all_runs, default=wanted or opening, label="Runs to compare")
    session.sync_url({"runs": ",".join(run_ids)})
    sweeps.section(store)
    if not run_ids:
        return

    comparison = Comparison.load(store, all_runs, run_ids)
    if not comparison.like_for_like:
        st.warning("These runs trained with different recipes (" + plain("; ".join(comparison.titles.values()))
                   + "): their curves differ by data, length or batch as much as by net. Compare runs of one "
                   "recipe to see what the nets do.", icon=":material/compare_arrows:")
    pick, axis = st.columns([3, 2], vertical_alignment="bottom")
    curve = pick.segmented_control("Curve", list(CURVES), format_func=lambda k: CURVES[k][2], default="test_err",
                                   required=True, key="compare_curve") or "test_err"
    with axis:
        x = panels.x_axis_picker("compare_x")
    frame = comparison.curve(curve)
    if frame.empty:
        st.info(f"The chosen runs have no {CURVES[curve][2].lower()} records yet.")
    overlay = charts.overlay_figure(frame, curve, x, theme.scale())
    theme.show_chart(overlay, key="compare-overlay",
                     caption="Hover to read values; drag to zoom (double-click resets). The legend groups each "
                     "run's models under the run and its recipe." +
                     (" Per-batch curves show a running mean." if CURVES[curve][0] == "steps" else ""))

    st.subheader("Difference")
    series = {f"{run} · {display_name(model)}": (run, model)
              for run, model in frame[["run", "model"]].drop_duplicates().itertuples(index=False)}
    difference = None
    if len(series) < 2:
        st.caption("Pick runs with at least two curves to see their difference.")
    else:
        first_default, second_default = default_difference(series)
        left, right = st.columns(2)
        first = left.selectbox("First", list(series), index=list(series).index(first_default), key="compare_a")
        second = right.selectbox("minus second", list(series), index=list(series).index(second_default),
                                 key="compare_b")

        def curve_of(name: str) -> pd.DataFrame:
            run, model = series[name]
            return frame[(frame["run"] == run) & (frame["model"] == model)]

        difference = charts.difference_figure(curve_of(first), curve_of(second), curve, x, (first, second),
                                              theme.scale())
        theme.show_chart(difference, key="compare-difference",
                         caption="Above zero: the first curve is higher. For the degradation gap, compare the deep "
                         "plain net with the shallow one.")

    st.subheader("Final numbers")
    finals = comparison.finals()
    paper_errors = finals["model"].map(paper.table6_error)  # Table 6, for the nets the paper trained
    finals.insert(finals.columns.get_loc("best_test_err") + 1, "paper_test_err", paper_errors)
    st.dataframe(shown_finals(finals.drop(columns="run_id")), hide_index=True, width="stretch",
                 column_config=FINAL_COLUMNS)
    st.caption("Errors in %. Batch training error: the mean over the last steps' batches (augmented when the run "
               "augments). Evaluated errors: the last evaluation, without augmentation. – : no value (see the "
               "column's help).")

    if len(run_ids) == 1 and finals["model"].map(family_of).value_counts().max() >= 2:
        theme.show_chart(charts.depth_sweep_figure(finals, "batch_train_err", theme.scale()), key="compare-depth",
                         caption="Final training error against depth, over this one run's models (trained in "
                         "lockstep on the same batches): plain nets rise with depth, residual nets do not.")
    elif len(run_ids) > 1:
        st.caption("The depth chart draws one run's models, or one sweep (below): pick a single run to see it.")
    for run, lesions in comparison.tables["lesions"].groupby("run", sort=False):
        theme.show_chart(charts.lesion_figure(lesions, scale=theme.scale()), key=f"compare-lesions-{run}",
                         caption=f"{plain(run)}: test error with one block removed at test time (Veit et al. 2016). "
                         "Residual nets degrade gracefully, plain nets collapse to chance.")

    with st.expander("Export"):
        columns = st.columns(4)
        exports = {
            "Final numbers (CSV)": (finals.to_csv(index=False), "final_numbers.csv", "text/csv"),
            "Curves (CSV)": (frame.to_csv(index=False), f"{curve}.csv", "text/csv"),
            "Overlay chart (HTML)": (lambda: charts.figure_html(overlay), "overlay.html", "text/html"),
        }
        if difference is not None:
            exports["Difference chart (HTML)"] = (lambda: charts.figure_html(difference), "difference.html",
                                                  "text/html")
        for column_, (label, (data, file_name, mime)) in zip(columns, exports.items()):
            column_.download_button(label, data, file_name=file_name, mime=mime, on_click="ignore", width="stretch")

