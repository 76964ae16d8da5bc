"""Plotly figures of a run, built from the run store's DataFrames; shared by the app, the live feed and the report.

Every builder takes the store's tables as they come out of `RunStore` (columns in docs/ARCHITECTURE.md) and
returns a `Figure`: plotly's JSON as a plain dict (``{"data": [...], "layout": {...}}``). Plain dicts cost
microseconds to build where ``plotly.graph_objects`` validates every attribute (the error chart took 62 ms that
way, most of a live update's cost; bench/viewers.py), they diff trace by trace for live updates
(explorer/ui/live/feed.py), and `st.plotly_chart`, plotly.js and plotly's own exporters all take them as they are.
Nothing here knows about Streamlit. Conventions across every chart:

- one colour per family from the Okabe-Ito colour-blind-safe palette (plain = vermillion, resnet = blue,
  vgg = bluish green); within a family, deeper nets are drawn darker;
- error curves follow He et al. 2015 Fig. 1/6: plain nets on the left, residual nets on the right, dashed
  training error and solid test error on a shared axis;
- long histories are thinned to at most `MAX_POINTS` per trace, every k-th point with k fixed by the run's planned
  length, and the last point always kept: a live curve keeps the points it has drawn as it grows, so a viewer
  receives only the new ones;
- per-batch curves are running means over a window fixed by the run's planned length (same reason);
- values that span decades get a log axis (`_y_axis`); one legend entry per model, ordered plain, resnet, vgg and
  shallow to deep;
- `look(scale)` is the shared layout; `scale` > 1 enlarges every font for projectors, and a fixed ``uirevision``
  keeps the reader's zoom while live data arrives.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.io as pio

from explorer.config import display_name
from explorer.metrics import running_mean, smoothing_window
from explorer.palette import (FAMILY_COLORS, FAMILY_TITLES, OTHER_COLOR, depth_of, families, family_of,
                              model_colors, model_order)

Figure = dict[str, Any]  # plotly's figure JSON: {"data": [trace, ...], "layout": {...}}

RUN_DASHES: tuple[str, ...] = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
MAX_POINTS = 2000
MAX_HEATMAP_COLUMNS = 600
BASE_FONT = 13
X_TITLES: dict[str, str] = {"step": "iteration", "epoch": "epoch", "wall": "seconds"}
METRIC_TITLES: dict[str, str] = {
    "train_err": "training error (%)",
    "test_err": "test error (%)",
    "loss": "training loss",
    "train_loss": "training loss",
    "test_loss": "test loss",
    "lr": "learning rate",
    "grad_norm": "gradient L2 norm",
    "weight_norm": "weight L2 norm",
    "update_ratio": "update / weight ratio",
    "response_std": "layer response std",
}
CLASSIFIER_PREFIX = "classifier."  # models.ExplorerNet names its final linear layers classifier.<i>
LOG_METRICS = frozenset({"loss", "train_loss", "test_loss", "grad_norm", "weight_norm", "update_ratio"})
LINEAR_METRICS = frozenset({"train_err", "test_err", "lr"})  # percentages and the schedule: always linear
LOG_SPAN = 1.0  # decades: any other positive metric spanning more (one layer 24x the rest) gets a log axis
VIRIDIS = "Viridis"
# plotly_white's layout alone: its full template adds a default for every trace type (a third of a figure's bytes).
TEMPLATE = {"layout": pio.templates["plotly_white"].layout.to_plotly_json()}


# --- look ------------------------------------------------------------------------------------------------
def look(scale: float = 1.0, height: int | None = None, uirevision: str = "explorer") -> dict[str, Any]:
    """The shared layout: white template, fonts times `scale`, legend at the right, zoom kept across updates."""
    size = BASE_FONT * scale
    layout: dict[str, Any] = {
        "template": TEMPLATE, "font": {"size": size}, "legend": {"font": {"size": size}, "tracegroupgap": 2},
        "margin": {"l": 10, "r": 10, "t": 30 + 20 * scale, "b": 10}, "hoverlabel": {"font": {"size": size}},
        "uirevision": uirevision,
    }
    if height is not None:
        layout["height"] = int(height * (0.5 + 0.5 * scale))
    return layout


def figure(data: list[dict], layout: dict[str, Any], scale: float = 1.0, height: int | None = None) -> Figure:
    """A figure with the shared look under `layout` (whose keys win); annotations without a font size of their
    own (panel titles, notes) get the scaled title size."""
    merged = look(scale, height)
    for key, value in layout.items():  # one level deep: a chart's legend keeps the shared font
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    for note in merged.get("annotations", []):
        note["font"] = {"size": BASE_FONT * scale * 1.05, **note.get("font", {})}
    return {"data": data, "layout": merged}


def as_plotly(fig: Figure):
    """The figure as a ``plotly.graph_objects.Figure`` (validated), for exporters that want one."""
    import plotly.graph_objects as go

    return go.Figure(fig)


def figure_html(fig: Figure) -> str:
    """A standalone HTML page of the figure (plotly.js embedded: opens offline)."""
    return as_plotly(fig).to_html(full_html=True, include_plotlyjs=True)


def axis_title(text: str) -> dict[str, Any]:
    return {"title": {"text": text}}


def _column_values(values: Any) -> list:
    """A column as a JSON-ready list: numpy scalars as Python numbers, NaN and infinities as null (gaps)."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return np.where(np.isfinite(array), array, None).tolist()
    return array.tolist()


def scatter(x: Any, y: Any, **attributes: Any) -> dict[str, Any]:
    """A scatter trace with its columns as plain lists."""
    return {"type": "scatter", "x": _column_values(x), "y": _column_values(y), **attributes}


def hline(y: float, color: str, dash: str = "solid", width: float = 1, xref: str = "x", yref: str = "y"
          ) -> dict[str, Any]:
    """A horizontal line across a panel at `y` (plotly's add_hline as a shape)."""
    return {"type": "line", "xref": f"{xref} domain", "x0": 0, "x1": 1, "yref": yref, "y0": y, "y1": y,
            "line": {"color": color, "dash": dash, "width": width}}


def columns(titles: Sequence[str], spacing: float = 0.03, shared_y: bool = False) -> dict[str, Any]:
    """Layout of side-by-side panels (make_subplots with one row): axes ``x``, ``x2``, ... anchored to ``y``,
    ``y2``, ...; with `shared_y` the later panels follow the first one's y axis and hide its labels."""
    n = max(1, len(titles))
    width = (1 - spacing * (n - 1)) / n
    layout: dict[str, Any] = {"annotations": []}
    for i in range(n):
        left = i * (width + spacing)
        suffix = "" if i == 0 else str(i + 1)
        layout[f"xaxis{suffix}"] = {"domain": [left, left + width], "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {"domain": [0.0, 1.0], "anchor": f"x{suffix}"}
        if shared_y and i > 0:
            layout[f"yaxis{suffix}"].update(matches="y", showticklabels=False)
        if i < len(titles):
            layout["annotations"].append({"text": titles[i], "x": left + width / 2, "xref": "paper", "y": 1.0,
                                          "yref": "paper", "xanchor": "center", "yanchor": "bottom",
                                          "showarrow": False})
    return layout


def axes(layout: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The layout's x or y axes (``kind`` "x" or "y"), each a dict to update in place."""
    return [value for key, value in layout.items() if key.startswith(f"{kind}axis")]


def panel_axes(col: int) -> dict[str, str]:
    """The trace attributes that put a trace in panel `col` (1-based) of `columns`."""
    suffix = "" if col == 1 else str(col)
    return {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}


def _y_axis(data: list[dict], metric: str, log: bool | None = None) -> dict[str, Any]:
    """The y axis of `metric`: titled after it, on a log scale for norms and losses and for any other metric but
    errors and the learning rate whose positive values span more than `LOG_SPAN` decade (an outlier would flatten
    the rest on a linear axis: a deep plain net's first-layer response of 24 against 1 everywhere else),
    labelled at 1, 2 and 5 of each decade when the curves span one to three decades (plotly's own labels crowd
    there)."""
    values = np.concatenate([np.asarray(t["y"], dtype=float) for t in data if t.get("y")] or [np.ones(1)])
    values = values[np.isfinite(values) & (values > 0)]
    decades = float(np.log10(values.max() / values.min())) if len(values) else 0.0
    if log is None:
        log = metric in LOG_METRICS or (metric not in LINEAR_METRICS and decades > LOG_SPAN)
    axis: dict[str, Any] = {**axis_title(METRIC_TITLES.get(metric, metric)), "type": "log" if log else "linear"}
    if log:
        axis["exponentformat"] = "power"
        if 1 <= decades < 3:
            axis["dtick"] = "D2"
    return axis


# --- data shaping ----------------------------------------------------------------------------------------
def downsample(frame: pd.DataFrame, x: str, max_points: int = MAX_POINTS, planned: int | None = None
               ) -> pd.DataFrame:
    """At most `max_points` rows of one trace, in `x` order: every k-th row and the last one, where k is fixed by
    the `planned` length of the whole history when it is known (so a growing curve keeps the points drawn so far)."""
    frame = frame.sort_values(x)
    total = max(len(frame), planned or 0)
    if total <= max_points:
        return frame
    every = math.ceil(total / (max_points - 1))
    keep = np.arange(len(frame)) % every == 0
    keep[-1] = True
    return frame[keep]


def by_model(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, pd.DataFrame]:
    """`columns` of `frame` per model label, each in the frame's order (one pass, not one scan per model)."""
    if frame.empty:
        return {}
    return {label: rows for label, rows in frame[["model", *columns]].groupby("model", sort=False)}


def _labels(frame: pd.DataFrame, column: str = "model") -> list[str]:
    """The distinct values of `column`; model labels come plain before resnet before vgg, shallow to deep."""
    labels = list(frame[column].unique()) if len(frame) else []
    return sorted(labels, key=model_order) if column == "model" else labels


def _divergence_marker(curve: pd.DataFrame, x: str, y: str, label: str, step: int, color: str,
                       **where: str) -> dict[str, Any]:
    """An X where a model's curve stops because it diverged at `step` (its later records are not drawn)."""
    last = curve.iloc[-1]
    return scatter([last[x]], [last[y]], mode="markers+text", text=["diverged"], textposition="top center",
                   marker={"symbol": "x", "size": 12, "color": color}, showlegend=False,
                   hovertemplate=f"{display_name(label)} diverged at step {step}<extra></extra>", **where)


def smoothed(steps: pd.DataFrame, y: str, planned: int | None) -> pd.DataFrame:
    """Per-batch values of `y` as their running mean over a window fixed by the planned run length (the length so
    far when it is not known)."""
    window = smoothing_window(planned) if planned else None
    return running_mean(steps, y, window=window)


# --- training curves -------------------------------------------------------------------------------------
def error_figure(steps: pd.DataFrame, evals: pd.DataFrame, x: str = "epoch", scale: float = 1.0,
                 diverged: dict[str, int] | None = None, planned: int | None = None) -> Figure:
    """Training error (dashed: per-batch error, running mean) and test error (solid) per model, one panel per
    family side by side on a shared y axis: the layout of He et al. 2015 Fig. 6. A model that diverged ends in an
    X (`diverged`: label -> step). `planned`: the run's planned steps, which fix the smoothing and thinning."""
    diverged = diverged or {}
    labels = sorted({*_labels(steps), *_labels(evals)}, key=model_order)
    panels = families(labels) or ["plain", "resnet"]
    trained = by_model(smoothed(steps, "train_err", planned), [x, "train_err"])
    tests = by_model(evals, [x, "test_err"])
    layout = columns([FAMILY_TITLES.get(f, "Other") for f in panels], shared_y=True)
    colors = model_colors(labels)
    data = []
    for label in labels:
        where = panel_axes(panels.index(family_of(label)) + 1)
        curve = downsample(trained[label], x, planned=planned) if label in trained else pd.DataFrame()
        if len(curve):
            data.append(scatter(curve[x], curve["train_err"], name=display_name(label), legendgroup=label,
                                mode="lines", line={"color": colors[label], "width": 1.5, "dash": "dash"},
                                hovertemplate="%{y:.1f}% training", **where))
            if label in diverged:
                data.append(_divergence_marker(curve, x, "train_err", label, diverged[label], colors[label],
                                               **where))
        tested = tests[label].sort_values(x) if label in tests else pd.DataFrame()
        if len(tested):
            data.append(scatter(tested[x], tested["test_err"], name=display_name(label), legendgroup=label,
                                showlegend=not len(curve), mode="lines+markers" if len(tested) < 60 else "lines",
                                hovertemplate="%{y:.1f}% test", line={"color": colors[label], "width": 3},
                                marker={"size": 5}, **where))
    for axis in axes(layout, "x"):
        axis.update(axis_title(X_TITLES.get(x, x)))
    layout["yaxis"].update(axis_title("error (%)"))
    # The legend below the axis titles (its own strip at the figure's bottom), so the two panels keep the width.
    layout["legend"] = {"orientation": "h", "x": 0, "xanchor": "left", "yref": "container", "y": 0,
                        "yanchor": "bottom"}
    layout["margin"] = {"b": int(40 * scale)}
    return figure(data, layout, scale, height=440)


def metric_figure(frame: pd.DataFrame, y: str, x: str = "epoch", scale: float = 1.0, smooth: bool = False,
                  log: bool | None = None, diverged: dict[str, int] | None = None, planned: int | None = None
                  ) -> Figure:
    """One line per model of any per-step or per-eval column (loss, lr, test error, ...); `smooth` draws the
    running mean of per-batch values; a model that diverged ends in an X."""
    colors = model_colors(_labels(frame))
    curves = by_model(smoothed(frame, y, planned) if smooth else frame, [x, y])
    data = []
    for label in sorted(curves, key=model_order):
        curve = downsample(curves[label], x, planned=planned)
        data.append(scatter(curve[x], curve[y], name=display_name(label), mode="lines",
                            line={"color": colors[label], "width": 2}))
        if diverged and label in diverged and len(curve):
            data.append(_divergence_marker(curve, x, y, label, diverged[label], colors[label]))
    layout = {"xaxis": axis_title(X_TITLES.get(x, x)), "yaxis": _y_axis(data, y, log)}
    return figure(data, layout, scale, height=340)


def lr_figure(steps: pd.DataFrame, x: str = "epoch", scale: float = 1.0, planned: int | None = None) -> Figure:
    """The learning-rate schedule (shared by every model of a run, so drawn once)."""
    first = steps[steps["model"] == steps["model"].iloc[0]] if len(steps) else steps
    curve = downsample(first[[x, "lr"]], x, planned=planned)
    data = [scatter(curve[x], curve["lr"], name="learning rate", mode="lines",
                    line={"color": OTHER_COLOR, "width": 2})]
    layout = {"xaxis": axis_title(X_TITLES.get(x, x)), "yaxis": {**_y_axis(data, "lr", log=False),
                                                                  "rangemode": "tozero"}, "showlegend": False}
    return figure(data, layout, scale, height=340)


# --- comparing runs --------------------------------------------------------------------------------------
def overlay_figure(frame: pd.DataFrame, y: str, x: str = "epoch", scale: float = 1.0) -> Figure:
    """Curves of several runs on shared axes: colour by model, dash by run, the legend grouping each run's models
    under the run's name. `frame` needs columns ``run`` (a display name per run), ``model``, `x` and `y`; smooth
    per-batch values first with `running_mean`."""
    colors = model_colors(_labels(frame))
    dashes = {run: RUN_DASHES[i % len(RUN_DASHES)] for i, run in enumerate(_labels(frame, "run"))}
    data = []
    for run, label in sorted(frame.groupby(["run", "model"], sort=False).groups,
                             key=lambda key: (list(dashes).index(key[0]), model_order(key[1]))):
        curve = downsample(frame.loc[(frame["run"] == run) & (frame["model"] == label), [x, y]], x)
        data.append(scatter(curve[x], curve[y], name=display_name(label), legendgroup=run,
                            legendgrouptitle={"text": run}, mode="lines",
                            hovertemplate=f"{display_name(label)}, {run}: %{{y:.3g}}<extra></extra>",
                            line={"color": colors[label], "dash": dashes[run], "width": 2}))
    layout = {"xaxis": axis_title(X_TITLES.get(x, x)), "yaxis": _y_axis(data, y),
              "legend": {"orientation": "h", "y": -0.2, "groupclick": "toggleitem"}}
    return figure(data, layout, scale, height=460)


def difference_figure(first: pd.DataFrame, second: pd.DataFrame, y: str, x: str = "epoch",
                      names: Sequence[str] = ("A", "B"), scale: float = 1.0) -> Figure:
    """`first` minus `second` on the first curve's x values (the second is interpolated onto them); above
    zero means the first is higher (for an error: worse)."""
    a = first[[x, y]].dropna().sort_values(x)
    b = second[[x, y]].dropna().sort_values(x)
    a = a[(a[x] >= b[x].min()) & (a[x] <= b[x].max())] if len(b) else a.iloc[0:0]
    gap = a[y].to_numpy() - np.interp(a[x].to_numpy(), b[x].to_numpy(), b[y].to_numpy()) if len(a) else []
    curve = downsample(pd.DataFrame({x: a[x].to_numpy(), "gap": gap}), x)
    data = [scatter(curve[x], curve["gap"], mode="lines", name=f"{names[0]} − {names[1]}",
                    line={"color": "#000000", "width": 2}, fill="tozeroy", fillcolor="rgba(0,0,0,0.08)")]
    layout = {"xaxis": axis_title(X_TITLES.get(x, x)), "yaxis": axis_title(f"Δ {METRIC_TITLES.get(y, y)}"),
              "shapes": [hline(0, OTHER_COLOR)], "showlegend": False,
              "title": {"text": f"{names[0]}<br>minus {names[1]}", "x": 0, "font": {"size": BASE_FONT * scale}},
              "margin": {"t": 50 + 30 * scale}}  # two lines of title: long run names wrap, never cut
    return figure(data, layout, scale, height=320)


# --- per-layer probes ------------------------------------------------------------------------------------
def probe_steps(probes: pd.DataFrame) -> list[int]:
    return sorted(int(s) for s in probes["step"].unique()) if len(probes) else []


def log_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """Colour-bar ticks at the powers of ten between two log10 values: 0.01, 0.1, 1, 10, 100, else 1e-5."""
    exponents = list(range(int(np.floor(low)), int(np.ceil(high)) + 1))
    return [float(e) for e in exponents], [f"{10.0 ** e:g}" if -2 <= e <= 2 else f"1e{e}" for e in exponents]


def probe_heatmap(probes: pd.DataFrame, metric: str = "grad_norm", models: Sequence[str] | None = None,
                  step_range: tuple[int, int] | None = None, scale_to: str = "all",
                  scale: float = 1.0) -> Figure:
    """Layer-by-step heatmap of a probe metric on a log colour scale, one panel per model side by side, all on
    one colour scale. `step_range` limits the steps drawn; `scale_to` fits the colours to ``all`` recorded steps
    or to the drawn ``window`` only (to see small late gradients)."""
    models = list(models) if models is not None else _labels(probes)
    layout = columns([display_name(m) for m in models] or ["no probes yet"], spacing=0.04)
    values = probes[probes["model"].isin(models)]
    positive = values[metric].where(values[metric] > 0)
    logged = values.assign(z=np.log10(positive))
    shown = logged if step_range is None else logged[logged["step"].between(*step_range)]
    fitted = (shown if scale_to == "window" else logged)["z"].replace([np.inf, -np.inf], np.nan).dropna()
    low, high = (float(fitted.min()), float(fitted.max())) if len(fitted) else (-3.0, 0.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    data = []
    for col, label in enumerate(models, start=1):
        grid = shown[shown["model"] == label].pivot_table(index="layer", columns="step", values="z", aggfunc="mean")
        if grid.shape[1] > MAX_HEATMAP_COLUMNS:
            buckets = np.arange(grid.shape[1]) * MAX_HEATMAP_COLUMNS // grid.shape[1]
            steps = pd.Series(grid.columns).groupby(buckets).last().to_numpy()
            grid = grid.T.groupby(buckets).mean().T
            grid.columns = steps
        names = shown[shown["model"] == label].drop_duplicates("layer").set_index("layer")["layer_name"]
        text = np.repeat(names.reindex(grid.index).fillna("").to_numpy()[:, None], grid.shape[1], axis=1)
        data.append({"type": "heatmap", "x": _column_values(grid.columns), "y": _column_values(grid.index),
                     "z": [_column_values(row) for row in grid.to_numpy()], "customdata": text.tolist(),
                     "coloraxis": "coloraxis", **panel_axes(col),
                     "hovertemplate": "step %{x}<br>layer %{y} %{customdata}<br>log10 = %{z:.2f}<extra>"
                                      + display_name(label) + "</extra>"})
    tickvals, ticktext = log_ticks(low, high)
    layout["coloraxis"] = {"colorscale": VIRIDIS, "cmin": low, "cmax": high, "colorbar": {
        "title": {"text": METRIC_TITLES.get(metric, metric)}, "tickvals": tickvals, "ticktext": ticktext}}
    for axis in axes(layout, "x"):
        axis.update(axis_title("iteration"))
    layout["yaxis"].update(axis_title("layer (input → output)"))
    return figure(data, layout, scale, height=440)


def layer_profile(probes: pd.DataFrame, metric: str = "grad_norm", step: int | None = None,
                  sort: bool = False, scale: float = 1.0, models: Sequence[str] | None = None) -> Figure:
    """A probe metric per layer at one step (the last probe at or before `step`), one line per model.
    With ``metric="response_std"`` this is He et al. 2015 Fig. 7 (top: by layer; bottom: `sort` by magnitude), which
    shows the conv layers only: the classifier's logits would dwarf them. `models` picks the lines (default: all);
    colours stay those of the whole run. Values spanning decades get a log axis (`_y_axis`)."""
    if metric == "response_std":
        probes = probes[~probes["layer_name"].str.startswith(CLASSIFIER_PREFIX)]
    colors = model_colors(_labels(probes))
    data = []
    for label in [m for m in _labels(probes) if models is None or m in models]:
        rows = probes[probes["model"] == label]
        available = rows["step"][rows["step"] <= step] if step is not None else rows["step"]
        at = available.max() if len(available) else rows["step"].min()
        profile = rows[rows["step"] == at].sort_values("layer")
        y, x = profile[metric].to_numpy(), profile["layer"].to_numpy()
        if sort:
            y, x = np.sort(y)[::-1], np.arange(len(y))
        data.append(scatter(x, y, name=display_name(label), mode="lines+markers",
                            customdata=profile["layer_name"].tolist(), line={"color": colors[label], "width": 2},
                            marker={"size": 5}, hovertemplate=None if sort else "layer %{x} %{customdata}<br>%{y:.3g}"))
    layout = {"xaxis": axis_title("layer, sorted by magnitude" if sort else "layer index (input → output)"),
              "yaxis": _y_axis(data, metric)}
    return figure(data, layout, scale, height=360)


# --- studies ---------------------------------------------------------------------------------------------
def depth_sweep_figure(finals: pd.DataFrame, y: str = "batch_train_err", scale: float = 1.0) -> Figure:
    """Final error against depth, one line per family (He et al. 2015 Table 6 / Fig. 6 summary). `finals` is
    `final_numbers(...)` over the runs of a sweep."""
    table = finals.assign(family=finals["model"].map(family_of), depth=finals["model"].map(depth_of))
    data = []
    for family in families(table["model"]):
        line = table[table["family"] == family].sort_values("depth")
        data.append(scatter(line["depth"], line[y], name=FAMILY_TITLES.get(family, family), mode="lines+markers",
                            text=line["model"].tolist(), marker={"size": 9}, hovertemplate="%{text}: %{y:.1f}",
                            line={"color": FAMILY_COLORS.get(family, OTHER_COLOR), "width": 3}))
    layout = {"xaxis": axis_title("depth (weighted layers)"),
              "yaxis": {**axis_title(METRIC_TITLES.get(y, "training error (%)")), "rangemode": "tozero"}}
    return figure(data, layout, scale, height=380)


SWEEP_STAT_COLUMNS = ("model", "family", "depth", "metric", "mean", "sd", "min", "max", "n", "members")


def _sweep_lines(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Line name -> its rows by depth: one line per family, architecture variant (``-B``, ``-pre``) and run setting."""
    settings = [c for c in rows.columns if c not in SWEEP_STAT_COLUMNS]
    variant = rows["model"].str.partition("-")[2]
    keys = rows.assign(_variant=variant)
    lines: dict[str, pd.DataFrame] = {}
    for key, line in keys.groupby(["family", "_variant", *settings], sort=False):
        family, variant_text, *values = key
        notes = [variant_text] * bool(variant_text) + [f"{s}={v}" for s, v in zip(settings, values)]
        name = FAMILY_TITLES.get(family, family) + (f" ({', '.join(notes)})" if notes else "")
        lines[name] = line.sort_values("depth")
    return lines


def _rgba(color: str, alpha: float) -> str:
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def sweep_figure(summary: pd.DataFrame, metric: str = "test_err", scale: float = 1.0,
                 reference: pd.DataFrame | None = None) -> Figure:
    """Final error against depth over a sweep's seeds (He et al. 2015 Fig. 6 and Table 6).

    `summary` is `explorer.sweep.summary(...)` of one sweep. Each family (and architecture variant or run setting)
    is a line through the mean over its finished seeds, with error bars of one sd and a shaded band from the min to
    the max. `reference` (`explorer.paper.reference_frame()`) adds published numbers of `metric` as open diamonds
    named after their source. He et al. 2015 give test errors of residual nets only (Table 6); plain nets' errors
    are shown only as curves in their Fig. 6, with no table, so no plain-net reference is drawn and none is made up.
    """
    rows = summary[(summary["metric"] == metric) & (summary["n"] > 0)]
    data = []
    lines_of: dict[str, int] = {}  # lines drawn per family so far: each further variant gets the next dash
    for name, line in _sweep_lines(rows).items():
        family = line["family"].iat[0]
        color = FAMILY_COLORS.get(family, OTHER_COLOR)
        dash = RUN_DASHES[lines_of.get(family, 0) % len(RUN_DASHES)]
        lines_of[family] = lines_of.get(family, 0) + 1
        depths = line["depth"].tolist()
        data.append(scatter(depths + depths[::-1], line["max"].tolist() + line["min"].tolist()[::-1], fill="toself",
                            fillcolor=_rgba(color, 0.18), line={"width": 0}, mode="lines", hoverinfo="skip",
                            showlegend=False, legendgroup=name, name=f"{name}: min–max over seeds"))
        data.append(scatter(
            depths, line["mean"], name=name, legendgroup=name, mode="lines+markers",
            line={"color": color, "width": 3, "dash": dash}, marker={"size": 9},
            error_y={"type": "data", "array": _column_values(line["sd"].fillna(0.0)), "visible": True,
                     "thickness": 1.5, "width": 4},
            customdata=[[m, int(n), float(lo), float(hi)] for m, n, lo, hi in
                        zip(line["model"], line["n"], line["min"], line["max"])],
            hovertemplate="%{customdata[0]}: mean %{y:.2f}% over %{customdata[1]} seeds "
                          "(min %{customdata[2]:.2f}, max %{customdata[3]:.2f})<extra></extra>"))
    if reference is not None:
        published = reference[reference["metric"] == metric]
        for (source, family), marks in published.groupby(["source", "family"], sort=False):
            data.append(scatter(
                marks["depth"], marks["value"], mode="markers",
                name=f"{source} ({FAMILY_TITLES.get(family, family).lower()})",
                marker={"symbol": "diamond-open", "size": 12, "color": FAMILY_COLORS.get(family, OTHER_COLOR),
                        "line": {"width": 2}},
                customdata=[[note, source] for note in marks["note"].fillna("")],
                hovertemplate="depth %{x}: %{y:.2f}% (%{customdata[1]}) %{customdata[0]}<extra></extra>"))
    layout = {"xaxis": axis_title("depth (weighted layers)"),
              "yaxis": {**axis_title(METRIC_TITLES.get(metric, metric)), "rangemode": "tozero"}}
    return figure(data, layout, scale, height=380)


def lesion_figure(lesions: pd.DataFrame, baseline: dict[str, float] | None = None, chance: float = 90.0,
                  scale: float = 1.0) -> Figure:
    """Test error after removing one block at a time (Veit et al. 2016 Fig. 3), one line per model; dotted:
    each model's error with every block in place (`baseline`, else the rows with a negative block, which the
    lesion study stores for the intact net); dashed grey: chance."""
    intact = lesions[lesions["block"] < 0]
    lesions = lesions[lesions["block"] >= 0]
    if baseline is None:
        baseline = intact.set_index("model")["test_err"].to_dict()
    colors = model_colors(_labels(lesions))
    data, shapes = [], []
    for label in _labels(lesions):
        rows = lesions[lesions["model"] == label].sort_values("block")
        data.append(scatter(rows["block"], rows["test_err"], name=display_name(label), mode="lines+markers",
                            customdata=rows["block_name"].tolist(), line={"color": colors[label], "width": 2},
                            hovertemplate="block %{x} %{customdata}: %{y:.1f}%"))
        if label in baseline:
            shapes.append(hline(baseline[label], colors[label], dash="dot"))
    shapes.append(hline(chance, OTHER_COLOR, dash="dash"))
    chance_note = {"text": "chance", "x": 1, "xref": "x domain", "y": chance, "yref": "y", "xanchor": "right",
                   "yanchor": "bottom", "showarrow": False}
    layout = {"xaxis": axis_title("removed block"), "yaxis": {**axis_title("test error (%)"), "range": [0, 100]},
              "shapes": shapes, "annotations": [chance_note]}
    return figure(data, layout, scale, height=360)


# --- loss landscapes (explorer.landscape) ----------------------------------------------------------------------
def landscape_1d_figure(frame: pd.DataFrame, scale: float = 1.0) -> Figure:
    """Loss (log axis) and training error along the straight line from each model's initial weights (α = 0) to
    its trained weights (α = 1), one line per model (Goodfellow et al. 2015; Li et al. 2018). `frame`: columns
    model, alpha, loss, error."""
    layout = columns(["loss", "training error"], spacing=0.08)
    colors = model_colors(_labels(frame))
    data = []
    for label in _labels(frame):
        line = frame[frame["model"] == label].sort_values("alpha")
        for col, metric, hover in ((1, "loss", "loss %{y:.3f}"), (2, "error", "%{y:.1f}% wrong")):
            data.append(scatter(line["alpha"], line[metric], name=display_name(label), legendgroup=label,
                                showlegend=col == 1, mode="lines+markers", marker={"size": 5},
                                line={"color": colors[label], "width": 2}, **panel_axes(col),
                                hovertemplate=f"α = %{{x:.2f}}: {hover}<extra>{display_name(label)}</extra>"))
    for axis in axes(layout, "x"):
        axis.update(axis_title("α (0: initial weights, 1: trained weights)"), range=[-0.02, 1.02])
    layout["yaxis"].update(axis_title("training loss (log)"), type="log")
    layout["yaxis2"].update(axis_title("training error (%)"), rangemode="tozero")
    return figure(data, layout, scale, height=360)


def landscape_2d_figure(frame: pd.DataFrame, scale: float = 1.0) -> Figure:
    """Contours of log10 loss on a plane around each model's trained weights (the white cross), along two
    filter-normalised random directions, one panel per model side by side on one colour scale and the same contour
    levels: the layout of Li et al. 2018's ResNet-56 with and without skip connections. `frame`: columns model,
    a, b, loss."""
    models = _labels(frame)
    layout = columns([display_name(m) for m in models] or ["no slice yet"], spacing=0.04, shared_y=True)
    logged = np.log10(frame["loss"].where(frame["loss"] > 0)) if len(frame) else pd.Series(dtype=float)
    logged = logged.replace([np.inf, -np.inf], np.nan)  # an exploded loss is a blank, not a colour
    finite = logged.dropna()
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.05, high + 0.05
    levels = {"start": low, "end": high, "size": (high - low) / 20}
    data = []
    for col, label in enumerate(models, start=1):
        rows = frame[frame["model"] == label].assign(z=logged)
        grid = rows.pivot_table(index="b", columns="a", values="z")
        loss = rows.pivot_table(index="b", columns="a", values="loss")
        hover = f"a = %{{x:.2f}}, b = %{{y:.2f}}: loss %{{customdata:.3f}}<extra>{display_name(label)}</extra>"
        data.append({"type": "contour", "x": _column_values(grid.columns), "y": _column_values(grid.index),
                     "z": [_column_values(row) for row in grid.to_numpy()],
                     "customdata": [_column_values(row) for row in loss.to_numpy()], "coloraxis": "coloraxis",
                     "autocontour": False, "contours": levels, "line": {"width": 0.5}, "hovertemplate": hover,
                     **panel_axes(col)})
        data.append(scatter([0], [0], mode="markers", showlegend=False, hoverinfo="skip", **panel_axes(col),
                            marker={"symbol": "x-thin", "size": 12, "line": {"width": 2, "color": "white"}}))
    ticks = np.linspace(low, high, 6)
    layout["coloraxis"] = {"colorscale": VIRIDIS, "cmin": low, "cmax": high, "colorbar": {
        "title": {"text": "training loss"}, "tickvals": ticks.tolist(), "ticktext": [f"{10 ** t:.3g}" for t in ticks]}}
    for axis in axes(layout, "x"):
        axis.update(axis_title("direction δ (filter-normalised)"))
    layout["yaxis"].update(axis_title("direction η"))
    return figure(data, layout, scale, height=420)
