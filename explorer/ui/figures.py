"""The chart registry: every chart of a run, one entry each, for the Lab, the Learn page and the HTML report.

A `ChartSpec` says how to build the figure from a run's tables (`RunTables`, read from the store), its caption
(what to look for), and a one-sentence summary of what it shows in numbers, generated from the same data (for
screen readers, the report and static exports: never fixed text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from explorer import landscape
from explorer.config import Config, ConfigError, display_name
from explorer.lesion import BASELINE_BLOCK
from explorer.metrics import final_numbers
from explorer.palette import model_order
from explorer.store import RunStore
from explorer.ui import charts


@dataclass(frozen=True)
class RunTables:
    """What the charts of one run read: its tables as the store returns them (probes: the history drawn)."""

    steps: pd.DataFrame
    evals: pd.DataFrame
    probes: pd.DataFrame
    models: pd.DataFrame
    lesions: pd.DataFrame
    config: Config | None = None
    landscape_1d: pd.DataFrame = field(default_factory=pd.DataFrame)  # the newest stored slices (explorer.landscape)
    landscape_2d: pd.DataFrame = field(default_factory=pd.DataFrame)

    @classmethod
    def read(cls, store: RunStore, run_id: str, probes: pd.DataFrame | None = None) -> "RunTables":
        try:
            config = store.config(run_id)
        except ConfigError:
            config = None
        slices = {kind: result.frame if (result := landscape.latest(store, run_id, kind)) else pd.DataFrame()
                  for kind in landscape.KINDS}
        return cls(steps=store.steps(run_id), evals=store.evals(run_id),
                   probes=store.probes(run_id) if probes is None else probes, models=store.models(run_id),
                   lesions=store.lesions(run_id), config=config, landscape_1d=slices["1d"],
                   landscape_2d=slices["2d"])

    @property
    def diverged(self) -> dict[str, int]:
        """label -> the step at which the model diverged."""
        rows = self.models.dropna(subset=["diverged_step"]) if len(self.models) else self.models
        return {row.model: int(row.diverged_step) for row in rows.itertuples()} if len(rows) else {}

    @property
    def planned(self) -> int | None:
        """The run's planned steps, which fix how its curves are smoothed and thinned while it grows."""
        return self.config.run_steps()[0] if self.config else None

    @property
    def chance(self) -> float:
        classes = len(self.config.data.classes) if self.config else 0
        return 100.0 * (1 - 1 / (classes or 10))


@dataclass(frozen=True)
class ChartSpec:
    title: str
    build: Callable[[RunTables, str, float], charts.Figure]  # (tables, x axis, font scale) -> figure
    caption: str
    summary: Callable[[RunTables], str]
    needs: str = "steps"  # the table that must have rows for the chart to mean anything
    reads: tuple[str, ...] = ("steps", "models")  # the tables it is drawn from: live, rebuilt when they change


OUTLIER = 5.0  # a layer this many times the other nets' median response is named in the Fig. 7 summary


def _names(values: dict[str, float], unit: str = "%", digits: int = 1) -> str:
    ordered = sorted(values, key=model_order)
    return ", ".join(f"{display_name(label)} {values[label]:.{digits}f}{unit}" for label in ordered)


def _finals(t: RunTables) -> pd.DataFrame:
    return final_numbers(t.steps, t.evals, t.models if len(t.models) else None)


def _errors_summary(t: RunTables) -> str:
    if t.steps.empty:
        return "No steps recorded yet."
    finals = _finals(t).set_index("model")
    epoch = float(t.steps["epoch"].max())
    text = f"After {epoch:.1f} epochs, training error (recent batches): {_names(finals['batch_train_err'].to_dict())}"
    tested = finals["test_err"].dropna()
    if len(tested):
        text += f"; test error at the last evaluation: {_names(tested.to_dict())}"
    if t.diverged:
        text += f"; diverged: {', '.join(display_name(m) for m in t.diverged)}"
    return text + "."


def _loss_summary(t: RunTables) -> str:
    if t.steps.empty:
        return "No steps recorded yet."
    finals = _finals(t).set_index("model")
    return f"Training loss over the last steps: {_names(finals['loss'].to_dict(), '', 3)}."


def _lr_summary(t: RunTables) -> str:
    if t.steps.empty:
        return "No steps recorded yet."
    lr = t.steps.drop_duplicates("step")["lr"]
    return f"The learning rate went from {lr.iloc[0]:.3g} to a peak of {lr.max():.3g} and is now {lr.iloc[-1]:.3g}."


def _test_summary(t: RunTables) -> str:
    if t.evals.empty:
        return "No evaluation yet."
    best = t.evals.groupby("model")["test_err"].min().to_dict()
    last = t.evals.sort_values("step").groupby("model")["test_err"].last().to_dict()
    return (f"Test error at the last of {t.evals['step'].nunique()} evaluations: {_names(last)}; "
            f"best: {_names(best)}.")


def _conv_probes(probes: pd.DataFrame) -> pd.DataFrame:
    """The conv layers' probes (the classifier's would dwarf them)."""
    return probes[~probes["layer_name"].str.startswith(charts.CLASSIFIER_PREFIX)] if len(probes) else probes


def profile_summary(probes: pd.DataFrame, metric: str, words: str, step: int | None = None) -> str:
    """Each model's `metric` at its last probe at or before `step` (default: the latest): the first layers against
    the last ones, and its smallest and largest layer, in numbers."""
    probes = _conv_probes(probes)
    if probes.empty:
        return "No probes recorded yet."
    at = int(probes["step"].max()) if step is None else int(probes.loc[probes["step"] <= step, "step"].max())
    parts = []
    for label in sorted(probes["model"].unique(), key=model_order):
        rows = probes[(probes["model"] == label) & (probes["step"] == at)].sort_values("layer")
        if rows.empty:
            continue
        low, high = rows.loc[rows[metric].idxmin()], rows.loc[rows[metric].idxmax()]
        parts.append(f"{display_name(label)} {rows[metric].head(3).mean():.3g} (first layers) vs "
                     f"{rows[metric].tail(3).mean():.3g} (last layers), from {low[metric]:.3g} "
                     f"({low['layer_name']}) to {high[metric]:.3g} ({high['layer_name']})")
    return f"{words} at step {at}: " + "; ".join(parts) + "."


def _response_summary(t: RunTables) -> str:
    """Each net's mean response std at the latest probe and, when one layer stands far above every other net's
    layers (He et al. 2015 Fig. 7 on a linear axis would show nothing else), that layer, how far, and the largest
    gradient its net met: with batch statistics a BN output's std is its learned scale γ and the spread of its
    shifts β, which large early gradients push up."""
    probes = _conv_probes(t.probes)
    if probes.empty:
        return "No probes recorded yet."
    last = probes[probes["step"] == probes["step"].max()]
    means = last.groupby("model")["response_std"].mean().to_dict()
    text = (f"Mean layer response std at step {int(last['step'].max())} (batch statistics): "
            f"{_names(means, '', 3)}.")
    top = last.loc[last["response_std"].idxmax()]
    others = last.loc[last["model"] != top["model"], "response_std"]
    typical = float(others.median()) if len(others) else float(last["response_std"].median())
    if typical > 0 and top["response_std"] > OUTLIER * typical:
        early = probes.loc[probes["model"] == top["model"]]
        text += (f" {display_name(top['model'])}'s {top['layer_name']} reads {top['response_std']:.3g}, "
                 f"{top['response_std'] / typical:.0f}x the other nets' median layer ({typical:.2g}): its BN scale "
                 f"and shift grew under that net's large early gradients (up to {early['grad_norm'].max():,.0f}, "
                 "see Gradients), not because it normalises less.")
    return text


def _depth_summary(t: RunTables) -> str:
    if t.steps.empty:
        return "No steps recorded yet."
    finals = _finals(t).set_index("model")
    return f"Final training error against depth: {_names(finals['batch_train_err'].to_dict())}."


def _lesion_summary(t: RunTables) -> str:
    if t.lesions.empty:
        return "The lesion study has not run."
    parts = []
    for label, rows in t.lesions.groupby("model"):
        intact = rows.loc[rows["block"] == BASELINE_BLOCK, "test_err"]
        removed = rows.loc[rows["block"] != BASELINE_BLOCK, "test_err"]
        parts.append(f"{display_name(label)}: {float(intact.iloc[0]) if len(intact) else float('nan'):.1f}% intact, "
                     f"median {removed.median():.1f}% with one block removed")
    return "; ".join(parts) + f" (chance {t.chance:.0f}%)."


def _landscape_1d_summary(t: RunTables) -> str:
    if t.landscape_1d.empty:
        return "No 1-D loss slice computed yet (python -m explorer landscape RUN_ID --kind 1d)."
    parts = []
    for label in sorted(t.landscape_1d["model"].unique(), key=model_order):
        rows = t.landscape_1d[t.landscape_1d["model"] == label]
        line = landscape.line_profile(rows["alpha"].to_numpy(), rows["loss"].to_numpy())
        name = display_name(label)
        if line.peak > line.start + 0.01:
            parts.append(f"{name}'s rises to a barrier of {line.peak:.3g} at α={line.peak_alpha:.2f} and ends at "
                         f"{line.end:.3g}")
        elif line.monotone:
            parts.append(f"{name}'s falls monotonically from {line.start:.3g} to {line.end:.3g}")
        else:
            parts.append(f"{name}'s falls from {line.start:.3g} to {line.end:.3g}, not monotonically (it rises by "
                         f"{line.biggest_rise:.2g} at α={line.rise_alpha:.2f})")
    first = parts[0].replace("'s ", "'s loss ", 1)
    return "Along the straight line from the initial to the trained weights, " + "; ".join([first, *parts[1:]]) + "."


def _landscape_2d_summary(t: RunTables) -> str:
    if t.landscape_2d.empty:
        return "No 2-D loss slice computed yet (python -m explorer landscape RUN_ID --kind 2d)."
    span = float(t.landscape_2d["a"].abs().max())
    grid = t.landscape_2d["a"].nunique()
    parts = []
    for label in sorted(t.landscape_2d["model"].unique(), key=model_order):
        surface = landscape.surface_profile(t.landscape_2d[t.landscape_2d["model"] == label])
        parts.append(f"{display_name(label)}'s loss goes from {surface.centre:.3g} at the trained weights to "
                     f"{surface.edge:.3g} on average at the edge, with {surface.minima} local "
                     f"minim{'um' if surface.minima == 1 else 'a'} on the grid")
    return (f"On a ±{span:g} square around the trained weights ({grid}×{grid} points, two filter-normalised random "
            "directions): " + "; ".join(parts) + ".")


CHARTS: dict[str, ChartSpec] = {
    "errors": ChartSpec(
        "Training error (dashed) and test error (solid)",
        lambda t, x, s: charts.error_figure(t.steps, t.evals, x, s, diverged=t.diverged, planned=t.planned),
        "Dashed: training error on each batch (running mean); solid: test error on a fixed sample of test images, "
        "the last point on the whole test subset. Degradation: the deeper plain net (darker red) trains *worse* "
        "than the shallow one; the deeper residual net (darker blue) does not.",
        _errors_summary, reads=("steps", "evals", "models")),
    "loss": ChartSpec(
        "Training loss", lambda t, x, s: charts.metric_figure(t.steps, "loss", x, s, smooth=True,
                                                               diverged=t.diverged, planned=t.planned),
        "Log scale, running mean. A flat deep-plain curve means optimisation is stuck, not overfitting.",
        _loss_summary),
    "lr": ChartSpec("Learning rate", lambda t, x, s: charts.lr_figure(t.steps, x, s, planned=t.planned),
                    "The schedule every model shares: warm-up, then constant, step or cosine.", _lr_summary,
                    reads=("steps",)),
    "test_err": ChartSpec("Test error", lambda t, x, s: charts.metric_figure(t.evals, "test_err", x, s),
                          "Test error at every evaluation (a fixed sample; the last point: the whole test subset).",
                          _test_summary, needs="evals", reads=("evals",)),
    "depth": ChartSpec("Final training error against depth",
                       lambda t, x, s: charts.depth_sweep_figure(_finals(t), "batch_train_err", s),
                       "One line per family over this run's models: plain nets rise with depth, residual nets do "
                       "not.", _depth_summary, reads=("steps", "evals", "models")),
    "gradients": ChartSpec(
        "Gradient norm per layer and iteration", lambda t, x, s: charts.probe_heatmap(t.probes, "grad_norm", scale=s),
        "Rows are layers from input (bottom) to output (top), columns are iterations; one log colour scale for all "
        "panels.", lambda t: profile_summary(t.probes, "grad_norm", "Gradient norm"), needs="probes",
        reads=("probes",)),
    "gradient_profile": ChartSpec(
        "Gradient norm per layer at the latest probe",
        lambda t, x, s: charts.layer_profile(t.probes, "grad_norm", scale=s),
        "Gradient L2 norm of every layer: compare the early layers with the late ones, plain against residual.",
        lambda t: profile_summary(t.probes, "grad_norm", "Gradient norm"), needs="probes", reads=("probes",)),
    "responses": ChartSpec(
        "Layer response std (He et al. 2015 Fig. 7, top)",
        lambda t, x, s: charts.layer_profile(t.probes, "response_std", scale=s),
        "Std of each conv layer's response (its BN output, before the addition and ReLU) on a fixed batch, measured "
        "with that batch's own statistics as in training. He et al. 2015 (Fig. 7) found residual layers respond "
        "more weakly than plain ones. With batch statistics a response's std is its BN layer's learned scale γ and "
        "the spread of its shifts β: a layer far above 1 is one whose γ and β large early gradients pushed up (the "
        "first layers of a deep plain net), and the axis turns logarithmic when responses span decades. In a net "
        "that starts as the identity (zero-initialised branches) every second layer reads 0 until training grows "
        "its BN gain.", _response_summary, needs="probes",
        reads=("probes",)),
    "responses_sorted": ChartSpec(
        "Layer response std sorted by magnitude (Fig. 7, bottom)",
        lambda t, x, s: charts.layer_profile(t.probes, "response_std", sort=True, scale=s),
        "The same responses, each net's layers sorted from largest to smallest.", _response_summary,
        needs="probes", reads=("probes",)),
    "lesion": ChartSpec(
        "Test error with one block removed (Veit et al. 2016 Fig. 3)",
        lambda t, x, s: charts.lesion_figure(t.lesions, chance=t.chance, scale=s),
        "Residual nets degrade gracefully when a block is removed at test time; plain nets collapse to chance.",
        _lesion_summary, needs="lesions", reads=("lesions",)),
    "landscape_1d": ChartSpec(
        "Loss from the initial to the trained weights (Li et al. 2018)",
        lambda t, x, s: charts.landscape_1d_figure(t.landscape_1d, s),
        "The training loss at (1 − α)·initial + α·trained weights, on a fixed set of training images with batch "
        "statistics. A straight path that only falls means the net could have walked straight to its solution; a "
        "bump is a barrier the optimiser went around.", _landscape_1d_summary, needs="landscape_1d",
        reads=("landscape_1d",)),
    "landscape_2d": ChartSpec(
        "Loss surface around the trained weights (Li et al. 2018)",
        lambda t, x, s: charts.landscape_2d_figure(t.landscape_2d, s),
        "Contours of the training loss (log colour, one scale for all panels) on a plane through the trained weights "
        "(the cross) along two random directions, each filter scaled to the norm of the trained filter. Li et al. "
        "found deep plain nets' surfaces chaotic and residual nets' smooth and bowl-shaped.",
        _landscape_2d_summary, needs="landscape_2d", reads=("landscape_2d",)),
}


def has_data(spec: ChartSpec, tables: RunTables) -> bool:
    return len(getattr(tables, spec.needs)) > 0
