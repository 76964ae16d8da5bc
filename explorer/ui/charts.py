"""Plotly figures of a run, built from the run store's DataFrames; shared by the app and the HTML report.

Every builder takes the store's tables as they come out of `RunStore` (columns in docs/ARCHITECTURE.md) and
returns a `plotly.graph_objects.Figure`; nothing here knows about Streamlit. Conventions across every chart:

- one colour per family from the Okabe-Ito colour-blind-safe palette (plain = vermillion, resnet = blue,
  vgg = bluish green); within a family, deeper nets are drawn darker;
- error curves follow He et al. 2015 Fig. 1/6: plain nets on the left, residual nets on the right, dashed
  training error and solid test error on a shared axis;
- long histories are bucket-averaged to at most `MAX_POINTS` per trace (the last point is always kept), so a
  10,000-step run draws as fast as a short one;
- one legend entry per model, ordered plain, resnet, vgg and shallow to deep;
- `style(fig, scale)` applies the shared look; `scale` > 1 enlarges every font for projectors, and a fixed
  ``uirevision`` keeps the reader's zoom while live data arrives.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from explorer.config import display_name
from explorer.metrics import running_mean
from explorer.palette import (FAMILY_COLORS, FAMILY_TITLES, OTHER_COLOR, depth_of, families, family_of,
                              model_colors, model_order)
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


# --- look ------------------------------------------------------------------------------------------------
# plotly_white's layout alone: every figure copies its template, and the whole one (with a default for every trace
# type) costs 10 ms a figure, a third of a live chart's build.
TEMPLATE = go.layout.Template(layout=pio.templates["plotly_white"].layout)


def style(fig: go.Figure, scale: float = 1.0, uirevision: str = "explorer", height: int | None = None) -> go.Figure:
    """The shared look: white template, fonts times `scale`, legend at the right, zoom kept across updates."""
    size = BASE_FONT * scale
    fig.update_layout(
        template=TEMPLATE,
        font=dict(size=size),
        legend=dict(font=dict(size=size), tracegroupgap=2),
        margin=dict(l=10, r=10, t=30 + 20 * scale, b=10),
        hoverlabel=dict(font=dict(size=size)),
        uirevision=uirevision,
    )
    fig.update_annotations(font=dict(size=size * 1.05))
    if height is not None:
        fig.update_layout(height=int(height * (0.5 + 0.5 * scale)))
    return fig


def figure_html(fig: go.Figure) -> str:
    """A standalone HTML page of the figure (plotly.js embedded: opens offline)."""
    return fig.to_html(full_html=True, include_plotlyjs=True)


def _y_axis(fig: go.Figure, metric: str, log: bool | None = None) -> None:
    """Title the y axis after `metric`; norms and losses get a log axis, labelled at 1, 2 and 5 of each decade when
    the curves span one to three decades (plotly's own labels crowd there), else as plotly chooses."""
    log = metric in LOG_METRICS if log is None else log
    fig.update_yaxes(title_text=METRIC_TITLES.get(metric, metric), type="log" if log else "linear")
    if log:
        values = np.concatenate([np.asarray(t.y, dtype=float) for t in fig.data] or [np.ones(1)])
        values = values[np.isfinite(values) & (values > 0)]
        decades = np.log10(values.max() / values.min()) if len(values) else 0.0
        fig.update_yaxes(exponentformat="power", dtick="D2" if 1 <= decades < 3 else None)


# --- data shaping ----------------------------------------------------------------------------------------
def downsample(frame: pd.DataFrame, x: str, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """At most `max_points` rows of one trace: numeric columns averaged over equal buckets, last row kept."""
    if len(frame) <= max_points:
        return frame
    frame = frame.sort_values(x)
    numeric = frame.select_dtypes("number")
    buckets = np.arange(len(frame)) * (max_points - 1) // len(frame)
    means = numeric.groupby(buckets).mean()
    means = pd.concat([means, numeric.iloc[[-1]]], ignore_index=True)
    for column in frame.columns.difference(numeric.columns):
        means[column] = frame[column].iloc[-1]
    return means[list(frame.columns)]


def _labels(frame: pd.DataFrame, column: str = "model") -> list[str]:
    """The distinct values of `column`; model labels come plain before resnet before vgg, shallow to deep."""
    labels = list(frame[column].unique()) if len(frame) else []
    return sorted(labels, key=model_order) if column == "model" else labels


def _divergence_marker(fig: go.Figure, curve: pd.DataFrame, x: str, y: str, label: str, step: int, color: str,
                       **where: int) -> None:
    """An X where a model's curve stops because it diverged at `step` (its later records are not drawn)."""
    if curve.empty:
        return
    last = curve.iloc[-1]
    fig.add_trace(go.Scatter(x=[last[x]], y=[last[y]], mode="markers+text", text=["diverged"],
                             textposition="top center", marker=dict(symbol="x", size=12, color=color),
                             showlegend=False, hovertemplate=f"{display_name(label)} diverged at step {step}"
                                                             "<extra></extra>"), **where)


# --- training curves -------------------------------------------------------------------------------------
def error_figure(steps: pd.DataFrame, evals: pd.DataFrame, x: str = "epoch", scale: float = 1.0,
                 diverged: dict[str, int] | None = None) -> go.Figure:
    """Training error (dashed: per-batch error, running mean) and test error (solid) per model, one panel per
    family side by side on a shared y axis: the layout of He et al. 2015 Fig. 6. A model that diverged ends in an
    X (`diverged`: label -> step)."""
    diverged = diverged or {}
    labels = sorted({*_labels(steps), *_labels(evals)}, key=model_order)
    panels = families(labels) or ["plain", "resnet"]
    steps = running_mean(steps, "train_err")
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[FAMILY_TITLES.get(f, "Other") for f in panels])
    colors = model_colors(labels)
    for label in labels:
        col = panels.index(family_of(label)) + 1
        curve = downsample(steps.loc[steps["model"] == label, [x, "train_err"]], x)
        if len(curve):
            fig.add_trace(go.Scatter(
                x=curve[x], y=curve["train_err"], name=display_name(label), legendgroup=label, mode="lines",
                line=dict(color=colors[label], width=1.5, dash="dash"), hovertemplate="%{y:.1f}% training",
            ), row=1, col=col)
            if label in diverged:
                _divergence_marker(fig, curve, x, "train_err", label, diverged[label], colors[label], row=1, col=col)
        tested = downsample(evals.loc[evals["model"] == label, [x, "test_err"]].sort_values(x), x)
        if len(tested):
            fig.add_trace(go.Scatter(
                x=tested[x], y=tested["test_err"], name=display_name(label), legendgroup=label,
                showlegend=not len(curve), mode="lines+markers" if len(tested) < 60 else "lines",
                hovertemplate="%{y:.1f}% test", line=dict(color=colors[label], width=3), marker=dict(size=5),
            ), row=1, col=col)
    fig.update_yaxes(title_text="error (%)", row=1, col=1)
    fig.update_xaxes(title_text=X_TITLES.get(x, x))
    return style(fig, scale, height=420)


def metric_figure(frame: pd.DataFrame, y: str, x: str = "epoch", scale: float = 1.0,
                  smoothed: bool = False, log: bool | None = None, diverged: dict[str, int] | None = None
                  ) -> go.Figure:
    """One line per model of any per-step or per-eval column (loss, lr, test error, ...); `smoothed` draws the
    running mean of per-batch values; a model that diverged ends in an X."""
    fig = go.Figure()
    colors = model_colors(_labels(frame))
    frame = running_mean(frame, y) if smoothed else frame
    for label in _labels(frame):
        curve = downsample(frame.loc[frame["model"] == label, [x, y]].sort_values(x), x)
        fig.add_trace(go.Scatter(x=curve[x], y=curve[y], name=display_name(label), mode="lines",
                                 line=dict(color=colors[label], width=2)))
        if diverged and label in diverged:
            _divergence_marker(fig, curve, x, y, label, diverged[label], colors[label])
    fig.update_xaxes(title_text=X_TITLES.get(x, x))
    _y_axis(fig, y, log)
    return style(fig, scale, height=340)


def lr_figure(steps: pd.DataFrame, x: str = "epoch", scale: float = 1.0) -> go.Figure:
    """The learning-rate schedule (shared by every model of a run, so drawn once)."""
    first = steps[steps["model"] == steps["model"].iloc[0]] if len(steps) else steps
    fig = metric_figure(first.assign(model="learning rate"), "lr", x, scale, log=False)
    fig.update_traces(line=dict(color=OTHER_COLOR))
    fig.update_yaxes(rangemode="tozero")
    return fig.update_layout(showlegend=False)


# --- comparing runs --------------------------------------------------------------------------------------
def overlay_figure(frame: pd.DataFrame, y: str, x: str = "epoch", scale: float = 1.0) -> go.Figure:
    """Curves of several runs on shared axes: colour by model, dash by run. `frame` needs columns
    ``run`` (a display name per run), ``model``, `x` and `y`; smooth per-batch values first with `running_mean`."""
    fig = go.Figure()
    colors = model_colors(_labels(frame))
    dashes = {run: RUN_DASHES[i % len(RUN_DASHES)] for i, run in enumerate(_labels(frame, "run"))}
    for run, label in sorted(frame.groupby(["run", "model"], sort=False).groups,
                             key=lambda key: (list(dashes).index(key[0]), model_order(key[1]))):
        curve = frame.loc[(frame["run"] == run) & (frame["model"] == label), [x, y]]
        curve = downsample(curve.sort_values(x), x)
        fig.add_trace(go.Scatter(x=curve[x], y=curve[y], name=f"{run} · {display_name(label)}", mode="lines",
                                 line=dict(color=colors[label], dash=dashes[run], width=2)))
    fig.update_xaxes(title_text=X_TITLES.get(x, x))
    _y_axis(fig, y)
    return style(fig, scale, height=420)


def difference_figure(first: pd.DataFrame, second: pd.DataFrame, y: str, x: str = "epoch",
                      names: Sequence[str] = ("A", "B"), scale: float = 1.0) -> go.Figure:
    """`first` minus `second` on the first curve's x values (the second is interpolated onto them); above
    zero means the first is higher (for an error: worse)."""
    a = first[[x, y]].dropna().sort_values(x)
    b = second[[x, y]].dropna().sort_values(x)
    a = a[(a[x] >= b[x].min()) & (a[x] <= b[x].max())] if len(b) else a.iloc[0:0]
    gap = a[y].to_numpy() - np.interp(a[x].to_numpy(), b[x].to_numpy(), b[y].to_numpy()) if len(a) else []
    curve = downsample(pd.DataFrame({x: a[x].to_numpy(), "gap": gap}), x)
    fig = go.Figure(go.Scatter(x=curve[x], y=curve["gap"], mode="lines", name=f"{names[0]} − {names[1]}",
                               line=dict(color="#000000", width=2), fill="tozeroy",
                               fillcolor="rgba(0,0,0,0.08)"))
    fig.add_hline(y=0, line=dict(color=OTHER_COLOR, width=1))
    fig.update_xaxes(title_text=X_TITLES.get(x, x))
    fig.update_yaxes(title_text=f"Δ {METRIC_TITLES.get(y, y)}")
    fig.update_layout(title=dict(text=f"{names[0]} − {names[1]}", x=0), showlegend=False)
    return style(fig, scale, height=300)


# --- per-layer probes ------------------------------------------------------------------------------------
def probe_steps(probes: pd.DataFrame) -> list[int]:
    return sorted(int(s) for s in probes["step"].unique()) if len(probes) else []


def _log_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """Colour-bar ticks at the powers of ten between two log10 values: 0.01, 0.1, 1, 10, 100, else 1e-5."""
    exponents = list(range(int(np.floor(low)), int(np.ceil(high)) + 1))
    return [float(e) for e in exponents], [f"{10.0 ** e:g}" if -2 <= e <= 2 else f"1e{e}" for e in exponents]


def probe_heatmap(probes: pd.DataFrame, metric: str = "grad_norm", models: Sequence[str] | None = None,
                  step_range: tuple[int, int] | None = None, scale_to: str = "all",
                  scale: float = 1.0) -> go.Figure:
    """Layer-by-step heatmap of a probe metric on a log colour scale, one panel per model side by side, all on
    one colour scale. `step_range` limits the steps drawn; `scale_to` fits the colours to ``all`` recorded steps
    or to the drawn ``window`` only (to see small late gradients)."""
    models = list(models) if models is not None else _labels(probes)
    fig = make_subplots(rows=1, cols=max(1, len(models)), shared_yaxes=False, horizontal_spacing=0.04,
                        subplot_titles=models or ["no probes yet"])
    values = probes[probes["model"].isin(models)]
    positive = values[metric].where(values[metric] > 0)
    logged = values.assign(z=np.log10(positive))
    shown = logged if step_range is None else logged[logged["step"].between(*step_range)]
    fitted = (shown if scale_to == "window" else logged)["z"].replace([np.inf, -np.inf], np.nan).dropna()
    low, high = (float(fitted.min()), float(fitted.max())) if len(fitted) else (-3.0, 0.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    for col, label in enumerate(models, start=1):
        grid = shown[shown["model"] == label].pivot_table(index="layer", columns="step", values="z", aggfunc="mean")
        if grid.shape[1] > MAX_HEATMAP_COLUMNS:
            buckets = np.arange(grid.shape[1]) * MAX_HEATMAP_COLUMNS // grid.shape[1]
            steps = pd.Series(grid.columns).groupby(buckets).last().to_numpy()
            grid = grid.T.groupby(buckets).mean().T
            grid.columns = steps
        names = shown[shown["model"] == label].drop_duplicates("layer").set_index("layer")["layer_name"]
        text = np.repeat(names.reindex(grid.index).fillna("").to_numpy()[:, None], grid.shape[1], axis=1)
        fig.add_trace(go.Heatmap(
            x=grid.columns, y=grid.index, z=grid.to_numpy(), customdata=text, coloraxis="coloraxis",
            hovertemplate="step %{x}<br>layer %{y} %{customdata}<br>log10 = %{z:.2f}<extra>" + label + "</extra>",
        ), row=1, col=col)
    tickvals, ticktext = _log_ticks(low, high)
    fig.update_layout(coloraxis=dict(
        colorscale="Viridis", cmin=low, cmax=high,
        colorbar=dict(title=dict(text=METRIC_TITLES.get(metric, metric)), tickvals=tickvals, ticktext=ticktext),
    ))
    fig.update_xaxes(title_text="iteration")
    fig.update_yaxes(title_text="layer (input → output)", row=1, col=1)
    return style(fig, scale, height=440)


def layer_profile(probes: pd.DataFrame, metric: str = "grad_norm", step: int | None = None,
                  sort: bool = False, scale: float = 1.0, models: Sequence[str] | None = None) -> go.Figure:
    """A probe metric per layer at one step (the last probe at or before `step`), one line per model.
    With ``metric="response_std"`` this is He et al. 2015 Fig. 7 (top: by layer; bottom: `sort` by magnitude), which
    shows the conv layers only: the classifier's logits would dwarf them. `models` picks the lines (default: all);
    colours stay those of the whole run."""
    if metric == "response_std":
        probes = probes[~probes["layer_name"].str.startswith(CLASSIFIER_PREFIX)]
    fig = go.Figure()
    colors = model_colors(_labels(probes))
    for label in [m for m in _labels(probes) if models is None or m in models]:
        rows = probes[probes["model"] == label]
        available = rows["step"][rows["step"] <= step] if step is not None else rows["step"]
        at = available.max() if len(available) else rows["step"].min()
        profile = rows[rows["step"] == at].sort_values("layer")
        y = profile[metric].to_numpy()
        x = profile["layer"].to_numpy()
        if sort:
            y, x = np.sort(y)[::-1], np.arange(len(y))
        fig.add_trace(go.Scatter(
            x=x, y=y, name=display_name(label), mode="lines+markers", customdata=profile["layer_name"],
            line=dict(color=colors[label], width=2), marker=dict(size=5),
            hovertemplate=None if sort else "layer %{x} %{customdata}<br>%{y:.3g}",
        ))
    fig.update_xaxes(title_text="layer, sorted by magnitude" if sort else "layer index (input → output)")
    _y_axis(fig, metric)
    return style(fig, scale, height=360)


# --- studies ---------------------------------------------------------------------------------------------
def depth_sweep_figure(finals: pd.DataFrame, y: str = "batch_train_err", scale: float = 1.0) -> go.Figure:
    """Final error against depth, one line per family (He et al. 2015 Table 6 / Fig. 6 summary). `finals` is
    `final_numbers(...)` over the runs of a sweep."""
    table = finals.assign(family=finals["model"].map(family_of), depth=finals["model"].map(depth_of))
    fig = go.Figure()
    for family in families(table["model"]):
        line = table[table["family"] == family].sort_values("depth")
        fig.add_trace(go.Scatter(
            x=line["depth"], y=line[y], name=FAMILY_TITLES.get(family, family), mode="lines+markers",
            text=line["model"], line=dict(color=FAMILY_COLORS.get(family, OTHER_COLOR), width=3),
            marker=dict(size=9), hovertemplate="%{text}: %{y:.1f}",
        ))
    fig.update_xaxes(title_text="depth (weighted layers)")
    fig.update_yaxes(title_text=METRIC_TITLES.get(y, "training error (%)"), rangemode="tozero")
    return style(fig, scale, height=380)


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
                 reference: pd.DataFrame | None = None) -> go.Figure:
    """Final error against depth over a sweep's seeds (He et al. 2015 Fig. 6 and Table 6).

    `summary` is `explorer.sweep.summary(...)` of one sweep. Each family (and architecture variant or run setting)
    is a line through the mean over its finished seeds, with error bars of one sd and a shaded band from the min to
    the max. `reference` (`explorer.paper.reference_frame()`) adds published numbers of `metric` as open diamonds
    named after their source. He et al. 2015 give test errors of residual nets only (Table 6); plain nets' errors
    are shown only as curves in their Fig. 6, with no table, so no plain-net reference is drawn and none is made up.
    """
    rows = summary[(summary["metric"] == metric) & (summary["n"] > 0)]
    fig = go.Figure()
    lines_of: dict[str, int] = {}  # lines drawn per family so far: each further variant gets the next dash
    for name, line in _sweep_lines(rows).items():
        family = line["family"].iat[0]
        color = FAMILY_COLORS.get(family, OTHER_COLOR)
        dash = RUN_DASHES[lines_of.get(family, 0) % len(RUN_DASHES)]
        lines_of[family] = lines_of.get(family, 0) + 1
        depths = line["depth"].tolist()
        fig.add_trace(go.Scatter(
            x=depths + depths[::-1], y=line["max"].tolist() + line["min"].tolist()[::-1], fill="toself",
            fillcolor=_rgba(color, 0.18), line=dict(width=0), mode="lines", hoverinfo="skip", showlegend=False,
            legendgroup=name, name=f"{name}: min–max over seeds",
        ))
        fig.add_trace(go.Scatter(
            x=depths, y=line["mean"], name=name, legendgroup=name, mode="lines+markers",
            line=dict(color=color, width=3, dash=dash), marker=dict(size=9),
            error_y=dict(type="data", array=line["sd"].fillna(0.0), visible=True, thickness=1.5, width=4),
            customdata=np.stack([line["model"], line["n"], line["min"], line["max"]], axis=-1),
            hovertemplate="%{customdata[0]}: mean %{y:.2f}% over %{customdata[1]} seeds "
                          "(min %{customdata[2]:.2f}, max %{customdata[3]:.2f})<extra></extra>",
        ))
    if reference is not None:
        published = reference[reference["metric"] == metric]
        for (source, family), marks in published.groupby(["source", "family"], sort=False):
            fig.add_trace(go.Scatter(
                x=marks["depth"], y=marks["value"], mode="markers",
                name=f"{source} ({FAMILY_TITLES.get(family, family).lower()})",
                marker=dict(symbol="diamond-open", size=12, color=FAMILY_COLORS.get(family, OTHER_COLOR),
                            line=dict(width=2)),
                customdata=np.stack([marks["note"].fillna(""), [source] * len(marks)], axis=-1),
                hovertemplate="depth %{x}: %{y:.2f}% (%{customdata[1]}) %{customdata[0]}<extra></extra>",
            ))
    fig.update_xaxes(title_text="depth (weighted layers)")
    fig.update_yaxes(title_text=METRIC_TITLES.get(metric, metric), rangemode="tozero")
    return style(fig, scale, height=380)


def lesion_figure(lesions: pd.DataFrame, baseline: dict[str, float] | None = None, chance: float = 90.0,
                  scale: float = 1.0) -> go.Figure:
    """Test error after removing one block at a time (Veit et al. 2016 Fig. 3), one line per model; dotted:
    each model's error with every block in place (`baseline`, else the rows with a negative block, which the
    lesion study stores for the intact net); dashed grey: chance."""
    intact = lesions[lesions["block"] < 0]
    lesions = lesions[lesions["block"] >= 0]
    if baseline is None:
        baseline = intact.set_index("model")["test_err"].to_dict()
    fig = go.Figure()
    colors = model_colors(_labels(lesions))
    for label in _labels(lesions):
        rows = lesions[lesions["model"] == label].sort_values("block")
        fig.add_trace(go.Scatter(x=rows["block"], y=rows["test_err"], name=display_name(label), mode="lines+markers",
                                 customdata=rows["block_name"], hovertemplate="block %{x} %{customdata}: %{y:.1f}%",
                                 line=dict(color=colors[label], width=2)))
        if label in baseline:
            fig.add_hline(y=baseline[label], line=dict(color=colors[label], dash="dot", width=1))
    fig.add_hline(y=chance, line=dict(color=OTHER_COLOR, dash="dash", width=1), annotation_text="chance")
    fig.update_xaxes(title_text="removed block")
    fig.update_yaxes(title_text="test error (%)", range=[0, 100])
    return style(fig, scale, height=360)


# --- loss landscapes (explorer.landscape) ----------------------------------------------------------------------
def landscape_1d_figure(frame: pd.DataFrame, scale: float = 1.0) -> go.Figure:
    """Loss (log axis) and training error along the straight line from each model's initial weights (α = 0) to
    its trained weights (α = 1), one line per model (Goodfellow et al. 2015; Li et al. 2018). `frame`: columns
    model, alpha, loss, error."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=["loss", "training error"])
    colors = model_colors(_labels(frame))
    for label in _labels(frame):
        line = frame[frame["model"] == label].sort_values("alpha")
        for col, metric, hover in ((1, "loss", "loss %{y:.3f}"), (2, "error", "%{y:.1f}% wrong")):
            fig.add_trace(go.Scatter(
                x=line["alpha"], y=line[metric], name=display_name(label), legendgroup=label, showlegend=col == 1,
                mode="lines+markers", line=dict(color=colors[label], width=2), marker=dict(size=5),
                hovertemplate=f"α = %{{x:.2f}}: {hover}<extra>{display_name(label)}</extra>",
            ), row=1, col=col)
    fig.update_xaxes(title_text="α (0: initial weights, 1: trained weights)", range=[-0.02, 1.02])
    fig.update_yaxes(title_text="training loss (log)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="training error (%)", rangemode="tozero", row=1, col=2)
    return style(fig, scale, height=360)


def landscape_2d_figure(frame: pd.DataFrame, scale: float = 1.0) -> go.Figure:
    """Contours of log10 loss on a plane around each model's trained weights (the white cross), along two
    filter-normalised random directions, one panel per model side by side on one colour scale and the same contour
    levels: the layout of Li et al. 2018's ResNet-56 with and without skip connections. `frame`: columns model,
    a, b, loss."""
    models = _labels(frame)
    fig = make_subplots(rows=1, cols=max(1, len(models)), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[display_name(m) for m in models] or ["no slice yet"])
    logged = np.log10(frame["loss"].where(frame["loss"] > 0)) if len(frame) else pd.Series(dtype=float)
    logged = logged.replace([np.inf, -np.inf], np.nan)  # an exploded loss is a blank, not a colour
    finite = logged.dropna()
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.05, high + 0.05
    levels = dict(start=low, end=high, size=(high - low) / 20)
    for col, label in enumerate(models, start=1):
        rows = frame[frame["model"] == label].assign(z=logged)
        grid = rows.pivot_table(index="b", columns="a", values="z")
        loss = rows.pivot_table(index="b", columns="a", values="loss")
        hover = f"a = %{{x:.2f}}, b = %{{y:.2f}}: loss %{{customdata:.3f}}<extra>{display_name(label)}</extra>"
        fig.add_trace(go.Contour(
            x=grid.columns, y=grid.index, z=grid.to_numpy(), customdata=loss.to_numpy(), coloraxis="coloraxis",
            autocontour=False, contours=levels, line=dict(width=0.5), hovertemplate=hover,
        ), row=1, col=col)
        fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(symbol="x-thin", size=12, line=dict(width=2, color="white"))),
                      row=1, col=col)
    ticks = np.linspace(low, high, 6)
    fig.update_layout(coloraxis=dict(
        colorscale="Viridis", cmin=low, cmax=high,
        colorbar=dict(title=dict(text="training loss"), tickvals=ticks, ticktext=[f"{10 ** t:.3g}" for t in ticks]),
    ))
    fig.update_xaxes(title_text="direction δ (filter-normalised)")
    fig.update_yaxes(title_text="direction η", row=1, col=1)
    return style(fig, scale, height=420)
