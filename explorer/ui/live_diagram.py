"""The block diagram, live: plain and residual twins drawn block by block, each block coloured by what the probes
measured in it at one step, on one colour scale for both.

A block's signal is the mean, over its weighted layers, of a probe quantity (gradient L2 norm by default, or the
update-to-weight ratio, or the response std) at the chosen probe step; the stem and the classifier are blocks of
their own. Residual blocks carry their shortcut as an arc (dashed where it subsamples and zero-pads, option A).
Deep nets collapse the middle blocks of each stage into one box coloured by their mean, as the Architecture page
does, so ResNet-1202 stays readable. In a deep plain net the early blocks' gradients are orders of magnitude away
from the late ones' within a few hundred steps; with shortcuts the column stays even.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.config import display_name
from explorer.palette import FAMILY_COLORS, family_of
from explorer.ui.charts import CLASSIFIER_PREFIX, METRIC_TITLES, Figure, figure, scatter

SIGNALS = {"grad_norm": "gradient norm", "update_ratio": "update / weight", "response_std": "response std"}
BLOCK_NAME = re.compile(r"^(stage\d+\.\d+)\.")
BOX_HEIGHT, GAP = 0.8, 0.2


@dataclass(frozen=True)
class Box:
    name: str  # stem, stage1.0, ..., "stage1.3–stage1.7" for a collapsed run, head
    stage: int
    value: float  # mean signal of its layers (NaN when none was probed)
    blocks: int  # blocks it stands for (1, or the count collapsed)
    downsamples: bool


def block_of(layer_name: str) -> str:
    """The block a probed layer belongs to: ``stage2.0`` for ``stage2.0.layer1.conv``; stem and head as such."""
    if layer_name.startswith(CLASSIFIER_PREFIX):
        return "head"
    match = BLOCK_NAME.match(layer_name)
    return match[1] if match else "stem"


def boxes(probes: pd.DataFrame, model: str, step: int, signal: str, keep: int = 3) -> list[Box]:
    """The model's blocks at `step` (the last probe at or before it), middle blocks of long stages collapsed to
    one box: the first `keep` and the last block of each stage stay."""
    rows = probes[probes["model"] == model]
    available = rows["step"][rows["step"] <= step]
    at = available.max() if len(available) else rows["step"].min()
    rows = rows[rows["step"] == at]
    if signal == "response_std":
        rows = rows[~rows["layer_name"].str.startswith(CLASSIFIER_PREFIX)]
    means = rows.assign(block=rows["layer_name"].map(block_of)).groupby("block", sort=False)[signal].mean()
    order = sorted(means.index, key=_block_order)
    stages: dict[int, list[str]] = {}
    for name in order:
        stages.setdefault(_block_order(name)[0], []).append(name)
    result: list[Box] = []
    for stage, names in sorted(stages.items()):
        if len(names) > keep + 2:
            middle = names[keep:-1]
            names = names[:keep] + ["…"] + names[-1:]
        for name in names:
            if name == "…":
                result.append(Box(f"{middle[0]}–{middle[-1]}", stage, float(means[middle].mean()), len(middle),
                                  False))
            else:
                first = name.endswith(".0") and stage > 1
                result.append(Box(name, stage, float(means.get(name, np.nan)), 1, first))
    return result


def _block_order(name: str) -> tuple[int, int]:
    if name == "stem":
        return 0, 0
    if name == "head":
        return 99, 0
    stage, index = name[len("stage"):].split(".")
    return int(stage), int(index)


def diagram_figure(probes: pd.DataFrame, models: list[str], step: int, signal: str = "grad_norm",
                   scale: float = 1.0, keep: int = 3) -> Figure:
    """`models` side by side (plain twin first), blocks coloured by log10 of `signal` on one scale."""
    columns = {model: boxes(probes, model, step, signal, keep) for model in models}
    values = np.array([b.value for bs in columns.values() for b in bs if np.isfinite(b.value) and b.value > 0])
    low, high = (np.log10(values.min()), np.log10(values.max())) if len(values) else (-3.0, 0.0)
    if high - low < 1e-6:
        low, high = low - 0.5, high + 0.5
    tallest = max((len(bs) for bs in columns.values()), default=1)
    data, notes = [], []
    for col, (model, bs) in enumerate(columns.items()):
        x0 = col * 3.0
        residual = family_of(model) == "resnet"
        logged = np.array([np.log10(b.value) if np.isfinite(b.value) and b.value > 0 else np.nan for b in bs])
        fills = _colours(logged, low, high)
        for row, (box, z, fill) in enumerate(zip(bs, logged, fills)):
            y = -row * (BOX_HEIGHT + GAP)
            label = box.name if box.blocks == 1 else f"⋮ {box.blocks} blocks"
            data.append(scatter([x0, x0 + 1.6, x0 + 1.6, x0, x0], [y, y, y - BOX_HEIGHT, y - BOX_HEIGHT, y],
                                fill="toself", mode="lines", line={"color": "#404040", "width": 1},
                                showlegend=False, fillcolor=fill, hoveron="fills",
                                hovertemplate=f"{display_name(model)} · {box.name}<br>{SIGNALS[signal]} "
                                              f"{box.value:.3g}<extra></extra>"))
            dark = np.isfinite(z) and (z - low) / (high - low) < 0.55
            notes.append({"x": x0 + 0.8, "y": y - BOX_HEIGHT / 2, "text": label, "showarrow": False,
                          "font": {"size": 10 * scale, "color": "#ffffff" if dark else "#000000"}})
            if residual and box.name not in ("stem", "head"):
                bulge = x0 + 2.05
                data.append(scatter([x0 + 1.6, bulge, bulge, x0 + 1.6],
                                    [y - 0.05, y - 0.15, y - BOX_HEIGHT + 0.15, y - BOX_HEIGHT + 0.05],
                                    mode="lines", hoverinfo="skip", showlegend=False,
                                    line={"color": FAMILY_COLORS["resnet"], "width": 1.5, "shape": "spline",
                                          "dash": "dash" if box.downsamples else "solid"}))
        name, _, detail = display_name(model).partition(" (")  # two lines: long names never reach the twin's
        notes.append({"x": x0 + 0.8, "y": 0.45, "yanchor": "bottom", "showarrow": False, "font": {"size": 12 * scale},
                      "text": f"<b>{name}</b>" + (f"<br>({detail}" if detail else "")})
    ticks = np.linspace(low, high, 5)
    data.append(scatter(  # carries the colour bar: a log scale labelled in the signal's own values
        [None], [None], mode="markers", showlegend=False, hoverinfo="skip",
        marker={"colorscale": "Viridis", "cmin": low, "cmax": high, "color": [low], "showscale": True,
                "colorbar": {"title": {"text": METRIC_TITLES.get(signal, signal)}, "thickness": 12,
                             "tickvals": ticks.tolist(), "ticktext": [f"{10 ** t:.2g}" for t in ticks]}}))
    layout = {"xaxis": {"visible": False, "range": [-0.3, 3.0 * len(models) - 0.4]},
              "yaxis": {"visible": False, "range": [-tallest * (BOX_HEIGHT + GAP) - 0.1, 1.4]},
              "annotations": notes}
    return figure(data, layout, scale, height=min(900, 120 + 32 * tallest))


def _colours(logged: np.ndarray, low: float, high: float) -> list[str]:
    """Viridis colours of log10 values on [low, high]; grey where a block has no value."""
    from plotly.colors import sample_colorscale

    finite = np.isfinite(logged)
    sampled = iter(sample_colorscale("Viridis", np.clip((logged[finite] - low) / (high - low), 0, 1).tolist())
                   if finite.any() else [])
    return [next(sampled) if ok else "#DDDDDD" for ok in finite]


def summary(probes: pd.DataFrame, models: list[str], step: int, signal: str = "grad_norm") -> str:
    """One sentence: how far apart the first and last blocks' signals are in each model, at the step drawn."""
    parts = []
    for model in models:
        bs = [b for b in boxes(probes, model, step, signal) if b.name not in ("stem", "head") and np.isfinite(b.value)]
        if len(bs) >= 2 and bs[-1].value > 0:
            parts.append(f"{display_name(model)}: first block {bs[0].value:.3g}, last block {bs[-1].value:.3g} "
                         f"({bs[0].value / bs[-1].value:.2g}x)")
    return f"{SIGNALS[signal].capitalize()} at step {step}: " + "; ".join(parts) + "." if parts else ""
