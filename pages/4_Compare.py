"""Compare: any stored runs on shared axes, the difference between two curves, and a table of final numbers.

Colour says the model (family hue, darker when deeper) and dash says the run, so the same net trained twice,
or with other settings, lines up against itself. The chosen runs live in the URL (key ``runs``).
"""

import pandas as pd
import streamlit as st

from explorer import charts
from explorer.ui import panels, session, theme

# key -> (table, column, title); training error comes per batch (steps) or evaluated without augmentation (evals)
CURVES = {
    "test_err": ("evals", "test_err", "Test error"),
    "train_err": ("steps", "train_err", "Training error (batches)"),
    "eval_train_err": ("evals", "train_err", "Training error (evaluated)"),
    "loss": ("steps", "loss", "Training loss"),
}

session.require_navigation()
st.title("Compare")
st.caption("Overlay stored runs: the same axes, one colour per model, one dash per run.")
store = session.get_store()
all_runs = session.runs_table()
wanted = [r for r in st.query_params.get("runs", "").split(",") if r]
run_ids = session.pick_runs("compare_runs", all_runs, default=wanted or all_runs["run_id"][:2].tolist(),
                            label="Runs to compare")
session.sync_url({"runs": ",".join(run_ids)})
if not run_ids:
    st.stop()

runs = all_runs.set_index("run_id").loc[run_ids]
names = {run_id: f"{row['name'] or row['preset'] or 'run'} {run_id[-4:]}" for run_id, row in runs.iterrows()}
tables = {table: pd.concat([getattr(store, table)(r).assign(run=names[r]) for r in run_ids], ignore_index=True)
          for table in ("steps", "evals", "models", "lesions")}

pick, axis = st.columns([3, 2], vertical_alignment="bottom")
curve = pick.segmented_control("Curve", list(CURVES), format_func=lambda k: CURVES[k][2], default="test_err",
                               required=True, key="compare_curve") or "test_err"
with axis:
    x = panels.x_axis_picker("compare_x")
table, column, _ = CURVES[curve]
frame = tables[table].rename(columns={column: curve})
if table == "steps":
    frame = charts.running_mean(frame, curve, by=("run", "model"))
overlay = charts.overlay_figure(frame, curve, x, theme.scale())
theme.show_chart(overlay, key="compare-overlay",
                 caption="Hover to read values; drag to zoom (double-click resets)." +
                 (" Per-batch curves show a running mean." if table == "steps" else ""))

st.subheader("Difference")
series = {f"{run} · {model}": (run, model) for run, model in frame[["run", "model"]].drop_duplicates().itertuples(
    index=False)}
if len(series) < 2:
    st.caption("Pick runs with at least two curves to see their difference.")
else:
    plain = sorted((s for s in series if charts.family_of(series[s][1]) == "plain"),
                   key=lambda s: charts.depth_of(series[s][1]))
    first_default, second_default = (plain[-1], plain[0]) if len(plain) >= 2 else list(series)[:2]
    left, right = st.columns(2)
    first = left.selectbox("First", list(series), index=list(series).index(first_default), key="compare_a")
    second = right.selectbox("minus second", list(series), index=list(series).index(second_default),
                             key="compare_b")

    def curve_of(name: str) -> pd.DataFrame:
        run, model = series[name]
        return frame[(frame["run"] == run) & (frame["model"] == model)]

    difference = charts.difference_figure(curve_of(first), curve_of(second), curve, x, (first, second), theme.scale())
    theme.show_chart(difference, key="compare-difference",
                     caption="Above zero: the first curve is higher. For the degradation gap, compare the deep plain "
                     "net with the shallow one.")

st.subheader("Final numbers")
finals = charts.final_numbers(tables["steps"], tables["evals"], tables["models"])
finals.insert(0, "run", finals["run_id"].map(names))
st.dataframe(finals.drop(columns="run_id"), hide_index=True, width="stretch",
             column_config={"batch_train_err": st.column_config.NumberColumn("train err (batches)", format="%.1f"),
                            "train_err": st.column_config.NumberColumn("train err (evaluated)", format="%.1f"),
                            "test_err": st.column_config.NumberColumn("test err", format="%.1f"),
                            "best_test_err": st.column_config.NumberColumn("best test err", format="%.1f"),
                            "loss": st.column_config.NumberColumn("loss", format="%.3f"),
                            "epoch": st.column_config.NumberColumn("epoch", format="%.1f")})
st.caption("Errors in %. Batch training error: the mean over the last steps' batches (augmented when the run "
           "augments). Evaluated errors: the last evaluation, without augmentation.")

if finals["model"].map(charts.family_of).value_counts().max() >= 3 or len(finals) >= 6:
    theme.show_chart(charts.depth_sweep_figure(finals, "batch_train_err", theme.scale()), key="compare-depth",
                     caption="Final training error against depth: plain nets rise with depth, residual nets do not.")
for run, lesions in tables["lesions"].groupby("run", sort=False):
    theme.show_chart(charts.lesion_figure(lesions, scale=theme.scale()), key=f"compare-lesions-{run}",
                     caption=f"{run}: test error with one block removed at test time (Veit et al. 2016). Residual "
                     "nets degrade gracefully, plain nets collapse to chance.")

with st.expander("Export"):
    columns = st.columns(4)
    exports = {
        "Final numbers (CSV)": (finals.to_csv(index=False), "final_numbers.csv", "text/csv"),
        "Curves (CSV)": (frame.to_csv(index=False), f"{curve}.csv", "text/csv"),
        "Overlay chart (HTML)": (lambda: charts.figure_html(overlay), "overlay.html", "text/html"),
    }
    if len(series) >= 2:
        exports["Difference chart (HTML)"] = (lambda: charts.figure_html(difference), "difference.html", "text/html")
    for column_, (label, (data, file_name, mime)) in zip(columns, exports.items()):
        column_.download_button(label, data, file_name=file_name, mime=mime, on_click="ignore", width="stretch")
