"""Verdicts: whether a preset's prediction held on a run, read from the run's records, with the numbers.

A judge reads `RunRecords` (the configuration, the metric tables and per-model final numbers) and returns a
`Verdict`: held (True/False), or None when the run cannot tell (a compared model diverged, no net has learned yet).
A judge names the models it compares through `RunRecords.require`; a run that lacks them raises `MissingModels`,
which `judge` turns into a no-verdict, so a real bug in a judge is never mistaken for a missing model.

How verdicts read errors (percent): "training error" is the last evaluation's error on the fixed sample of the
training subset, without augmentation and in eval mode (the mean of the last steps' batch errors when no
evaluation ran); "test error" is the last evaluation's test error, on the whole test subset. Differences up to
`MARGIN` points count as equal.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .config import Config, ModelConfig, display_name
from .lesion import BASELINE_BLOCK
from .metrics import final_numbers
from .models import describe_config, inception_cost
from .paper import TABLE6_MARGIN, TABLE6_TEST_IMAGES, TABLE6_TRAIN_IMAGES, table6_error
from .store import RunStore

MARGIN = 2.0  # points of error within which two nets count as equal
LEARNED = 10.0  # a net this many points below chance has learned something


class MissingModels(LookupError):
    """The run lacks a model the prediction compares."""


@dataclass(frozen=True)
class Verdict:
    """Whether the prediction held (None: the run cannot tell, e.g. a model diverged), the measured figure in
    words, and the numbers behind it."""

    held: bool | None
    figure: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecords:
    """What a verdict reads: the run's configuration and records, with per-model final numbers."""

    config: Config
    finals: pd.DataFrame  # metrics.final_numbers, indexed by model; train_err falls back to the batch error
    steps: pd.DataFrame
    evals: pd.DataFrame
    probes: pd.DataFrame
    lesions: pd.DataFrame

    @classmethod
    def load(cls, store: RunStore, run_id: str) -> "RunRecords":
        steps, evals = store.steps(run_id), store.evals(run_id)
        finals = final_numbers(steps, evals, store.models(run_id))
        finals["train_err"] = finals["train_err"].fillna(finals["batch_train_err"])
        return cls(config=store.config(run_id), finals=finals.set_index("model"), steps=steps, evals=evals,
                   probes=store.probes(run_id), lesions=store.lesions(run_id))

    def labels(self, **fields: Any) -> list[str]:
        """Labels of the run's models whose ModelConfig matches `fields`, shallow to deep."""
        models = [m for m in self.config.models if all(getattr(m, k) == v for k, v in fields.items())]
        return [m.label for m in sorted(models, key=lambda m: m.depth)]

    def require(self, count: int = 1, **fields: Any) -> list[str]:
        """`labels`, raising `MissingModels` unless at least `count` models match: a judge names what it compares."""
        labels = self.labels(**fields)
        if len(labels) < count:
            wanted = ", ".join(f"{k}={v}" for k, v in fields.items()) or "any"
            raise MissingModels(f"needs {count} model(s) with {wanted}, the run has {', '.join(self.config.labels)}")
        return labels

    def error(self, label: str, split: str = "train") -> float | None:
        """Final error of a model that finished (None if it diverged or has no records)."""
        if label not in self.finals.index or self.finals.at[label, "status"] == "diverged":
            return None
        value = self.finals.at[label, f"{split}_err"]
        return None if pd.isna(value) else float(value)

    def errors(self, labels: list[str], split: str = "train") -> dict[str, float | None]:
        return {label: self.error(label, split) for label in labels}

    @property
    def chance(self) -> float:
        return 100.0 * (1 - 1 / (len(self.config.data.classes) or 10))

    def no_verdict(self, errors: Mapping[str, float | None], **details: Any) -> Verdict | None:
        """A no-verdict when a compared model diverged or has no records, or when none has learned anything yet
        (every error within `LEARNED` points of chance): a run too short to tell. `details` go with it."""
        if verdict := _missing(errors, **details):
            return verdict
        if min(errors.values()) > self.chance - LEARNED:
            return Verdict(None, f"no verdict: no net has learned yet ({_listing(errors)}; chance "
                                 f"{self.chance:.0f}%): give the run more time", {"errors": dict(errors), **details})
        return None


def _missing(errors: Mapping[str, Any], **details: Any) -> Verdict | None:
    """A no-verdict when a model the prediction needs diverged or has no records."""
    lost = [label for label, value in errors.items() if value is None]
    if not lost:
        return None
    return Verdict(None, f"no verdict: {', '.join(lost)} diverged or has no records",
                   {"errors": dict(errors), **details})


def _points(value: float) -> str:
    return f"{value:+.1f} points"


def _listing(errors: Mapping[str, float | None]) -> str:
    return ", ".join(f"{label} {value:.1f}%" for label, value in errors.items() if value is not None)


# --- verdicts ------------------------------------------------------------------------------------------------------
def degradation(r: RunRecords) -> Verdict:
    (plain_a, *_, plain_b), (res_a, *_, res_b) = r.require(2, family="plain"), r.require(2, family="resnet")
    errors = r.errors([plain_a, plain_b, res_a, res_b])
    if verdict := r.no_verdict(errors):
        return verdict
    plain_gap, res_gap = errors[plain_b] - errors[plain_a], errors[res_b] - errors[res_a]
    return Verdict(
        held=plain_gap > MARGIN and res_gap <= MARGIN,
        figure=f"{plain_b} minus {plain_a} training error: {_points(plain_gap)}; "
               f"{res_b} minus {res_a}: {_points(res_gap)}",
        details={"training_error": errors, "plain_gap": plain_gap, "residual_gap": res_gap},
    )


def depth_sweep(r: RunRecords) -> Verdict:
    curves = {family: r.errors(r.require(2, family=family)) for family in ("plain", "resnet")}
    if verdict := r.no_verdict({**curves["plain"], **curves["resnet"]}):
        return verdict
    rise = {family: list(c.values())[-1] - list(c.values())[0] for family, c in curves.items()}
    described = "; ".join(
        f"{family}: " + ", ".join(f"{ModelConfig.parse(label).depth} layers {value:.1f}%" for label, value in c.items())
        for family, c in curves.items())
    return Verdict(
        held=rise["plain"] > MARGIN and rise["resnet"] <= MARGIN,
        figure=f"training error from shallowest to deepest: plain {_points(rise['plain'])}, "
               f"residual {_points(rise['resnet'])} ({described})",
        details={"training_error": curves, "rise": rise},
    )


def shortcut_options(r: RunRecords) -> Verdict:
    plain = r.require(family="plain")[0]
    options = {opt: r.require(family="resnet", shortcut=opt)[0] for opt in ("A", "B", "C")}
    errors = r.errors([plain, *options.values()], "test")
    if verdict := r.no_verdict(errors):
        return verdict
    by_option = {opt: errors[label] for opt, label in options.items()}
    paper_order = by_option["C"] <= by_option["B"] <= by_option["A"]
    return Verdict(
        held=max(by_option.values()) < errors[plain] - MARGIN,
        figure=f"test error: {plain} {errors[plain]:.1f}%, A {by_option['A']:.1f}%, B {by_option['B']:.1f}%, "
               f"C {by_option['C']:.1f}% (the paper's order C ≤ B ≤ A: {'yes' if paper_order else 'no'})",
        details={"test_error": errors, "paper_order": paper_order},
    )


def _costs(labels: list[str]) -> dict[str, dict[str, int]]:
    costs = {}
    for label in labels:
        description = describe_config(ModelConfig.parse(label))
        costs[label] = {"depth": description.depth, "params": description.params, "macs": description.macs}
    return costs


def bottleneck(r: RunRecords) -> Verdict:
    basic = r.require(block="basic")[0]
    same_depth, equal_cost = r.require(2, block="bottleneck")[:2]  # shallow to deep: equal depth first
    errors = r.errors([basic, same_depth, equal_cost], "test")
    costs = _costs([basic, same_depth, equal_cost])
    if verdict := r.no_verdict(errors, costs=costs):
        return verdict
    gap = errors[equal_cost] - errors[basic]
    return Verdict(
        held=gap <= MARGIN,
        figure=f"{equal_cost} ({costs[equal_cost]['macs'] / 1e6:.0f} M multiply-adds) minus {basic} "
               f"({costs[basic]['macs'] / 1e6:.0f} M) test error: {_points(gap)}; "
               f"{same_depth} at equal depth: {errors[same_depth]:.1f}%",
        details={"test_error": errors, "costs": costs, "equal_cost_gap": gap},
    )


def preact(r: RunRecords) -> Verdict:
    original, preact = r.require(order="original")[0], r.require(order="preact")[0]
    errors = r.errors([original, preact], "test")
    if verdict := r.no_verdict(errors):
        return verdict
    gap = errors[preact] - errors[original]
    return Verdict(held=gap <= MARGIN, figure=f"{preact} minus {original} test error: {_points(gap)}",
                   details={"test_error": errors, "gap": gap})


def early_loss(steps: pd.DataFrame, label: str, window: int) -> float:
    """Mean training loss of a model over its first `window` iterations (infinite when none was finite)."""
    losses = steps.loc[(steps["model"] == label) & (steps["step"] < window), "loss"]
    losses = losses[np.isfinite(losses)]
    return float(losses.mean()) if len(losses) else math.inf


def no_batchnorm(r: RunRecords) -> Verdict:
    """Without BN the deep plain net does not train; the residual net started as the identity (zero-initialised
    branches, as in Fixup) does. The standard-init residual net is reported beside them."""
    plain = r.require(family="plain")[-1]
    standard = r.require(family="resnet", zero_init_residual=False)[-1]
    zeroed = r.require(family="resnet", zero_init_residual=True)[-1]
    window = max(5, math.ceil(0.1 * (r.steps["step"].max() + 1))) if len(r.steps) else 5
    early = {label: early_loss(r.steps, label, window) for label in (standard, zeroed, plain)}
    errors = r.errors([plain, zeroed, standard])
    if errors[plain] is None or errors[zeroed] is None:
        return Verdict(None, f"no verdict: {plain if errors[plain] is None else zeroed} diverged or has no records",
                       {"training_error": errors})
    stuck, learned = errors[plain] > r.chance - LEARNED, errors[zeroed] < r.chance - LEARNED

    def shown(value: float | None) -> str:
        return f"{value:.1f}%" if value is not None else "diverged"

    return Verdict(
        held=stuck and learned,
        figure=f"final training error: {plain} {shown(errors[plain])} (chance {r.chance:.0f}%), {zeroed} "
               f"{shown(errors[zeroed])}, {standard} {shown(errors[standard])}; mean loss "
               f"over the first {window} iterations: {standard} {early[standard]:.2f}, {zeroed} {early[zeroed]:.2f}",
        details={"early_window": window, "early_mean_loss": early, "training_error": errors},
    )


def zero_init(r: RunRecords) -> Verdict:
    standard = r.require(zero_init_residual=False)[0]
    zeroed = r.require(zero_init_residual=True)[0]
    steps = r.steps[r.steps["model"].isin([standard, zeroed])]
    if steps.empty:
        return Verdict(None, "no verdict: no steps were recorded", {})
    window = max(5, math.ceil(0.1 * (steps["step"].max() + 1)))
    early = steps[steps["step"] < window].groupby("model")["loss"]
    mean_loss, peak_loss = early.mean().to_dict(), early.max().to_dict()
    if any(label not in mean_loss or not math.isfinite(mean_loss[label]) for label in (standard, zeroed)):
        return Verdict(None, f"no verdict: a model has no finite loss in the first {window} iterations",
                       {"early_mean_loss": mean_loss})
    errors = r.errors([standard, zeroed])
    return Verdict(
        held=mean_loss[zeroed] < mean_loss[standard],
        figure=f"mean training loss over the first {window} iterations: {standard} {mean_loss[standard]:.2f}, "
               f"{zeroed} {mean_loss[zeroed]:.2f} (peaks {peak_loss[standard]:.2f} and {peak_loss[zeroed]:.2f})",
        details={"early_window": window, "early_mean_loss": mean_loss, "early_peak_loss": peak_loss,
                 "training_error": errors},
    )


def shortcut_ablation(r: RunRecords) -> Verdict:
    identity = r.require(shortcut_variant="identity", shortcut="A")[0]
    variants = [label for label in r.require(2) if label != identity]
    errors = r.errors([identity, *variants], "test")
    if verdict := r.no_verdict(errors):
        return verdict
    best_other = min(variants, key=lambda label: errors[label])
    return Verdict(
        held=errors[best_other] >= errors[identity] - MARGIN,
        figure=f"test error: {_listing(errors)}; best alternative {best_other} minus identity: "
               f"{_points(errors[best_other] - errors[identity])}",
        details={"test_error": errors, "training_error": r.errors([identity, *variants])},
    )


def downsampling_blocks(label: str) -> set[str]:
    """Names of the blocks that change the tensor shape (the first block of stages 2 and 3)."""
    return {row["name"] for row in describe_config(ModelConfig.parse(label)).blocks
            if row["block"] is not None and row["in_shape"] != row["out_shape"]}


def lesion(r: RunRecords) -> Verdict:
    if r.lesions.empty:
        return Verdict(None, "no verdict: the lesion study has not run", {})
    plain, residual = r.require(family="plain")[-1], r.require(family="resnet")[-1]
    chance = r.chance
    summary: dict[str, dict[str, float]] = {}
    for label in (plain, residual):
        rows = r.lesions[r.lesions["model"] == label]
        if rows.empty:
            return Verdict(None, f"no verdict: {label} has no lesion rows (it diverged?)", {})
        baseline = float(rows.loc[rows["block"] == BASELINE_BLOCK, "test_err"].iloc[0])
        lesioned = rows[(rows["block"] != BASELINE_BLOCK) & ~rows["block_name"].isin(downsampling_blocks(label))]
        median = float(lesioned["test_err"].median())
        summary[label] = {"baseline": baseline, "median_lesioned": median,
                          "damage": (median - baseline) / max(chance - baseline, 1e-9)}
    untrained = [label for label, numbers in summary.items() if numbers["baseline"] > chance - LEARNED]
    if untrained:
        return Verdict(None, f"no verdict: {', '.join(untrained)} has not learned yet (intact test error within "
                             f"{LEARNED:g} points of chance): give the run more time", summary)
    return Verdict(
        held=summary[residual]["damage"] < 0.25 and summary[plain]["damage"] > 0.5,
        figure=f"median test error after removing one block: {residual} {summary[residual]['median_lesioned']:.1f}% "
               f"(intact {summary[residual]['baseline']:.1f}%), {plain} {summary[plain]['median_lesioned']:.1f}% "
               f"(intact {summary[plain]['baseline']:.1f}%); chance {chance:.0f}%",
        details={"chance": chance, **summary},
    )


def mean_response_std(probes: pd.DataFrame, label: str) -> float | None:
    """Mean response std over the conv layers of a model at its last probe step (He et al. 2015 Fig. 7)."""
    rows = probes[(probes["model"] == label) & ~probes["layer_name"].str.startswith("classifier")]
    if rows.empty:
        return None
    return float(rows[rows["step"] == rows["step"].max()]["response_std"].mean())


def response_std(r: RunRecords) -> Verdict:
    plain, residual = r.require(family="plain"), r.require(family="resnet")
    stds = {label: mean_response_std(r.probes, label) for label in plain + residual}
    if verdict := _missing(stds):
        return verdict
    smaller = all(stds[res] < stds[pl] for pl, res in zip(plain, residual))
    deeper_smaller = stds[residual[-1]] < stds[residual[0]]
    return Verdict(
        held=smaller and deeper_smaller,
        figure="mean layer response std at the last probe: " + ", ".join(f"{k} {v:.3f}" for k, v in stds.items()),
        details={"mean_response_std": stds, "residual_smaller": smaller, "deeper_residual_smaller": deeper_smaller},
    )


def vgg(r: RunRecords) -> Verdict:
    vgg, residual = r.require(family="vgg")[0], r.require(family="resnet")[0]
    errors = r.errors([vgg, residual], "test")
    costs = _costs([vgg, residual])
    if verdict := r.no_verdict(errors, costs=costs):
        return verdict
    gap = errors[residual] - errors[vgg]
    ratio = costs[vgg]["macs"] / costs[residual]["macs"]
    return Verdict(
        held=gap <= MARGIN,
        figure=f"{residual} minus {vgg} test error: {_points(gap)}, at 1/{ratio:.0f} of the multiply-adds",
        details={"test_error": errors, "costs": costs, "gap": gap},
    )


def very_deep(r: RunRecords) -> Verdict:
    outcome = {}
    for label in r.require():
        losses = r.steps.loc[r.steps["model"] == label, "loss"].to_numpy()
        if r.finals.at[label, "status"] == "diverged" or len(losses) < 2 or not np.isfinite(losses).all():
            outcome[label] = None
        else:
            tail = losses[-max(1, len(losses) // 3):].mean()
            outcome[label] = {"first_loss": float(losses[0]), "final_loss": float(tail),
                              "steps": len(losses), "params": int(r.finals.at[label, "params"])}
    if verdict := _missing(outcome):
        return verdict
    return Verdict(
        held=all(o["final_loss"] < o["first_loss"] for o in outcome.values()),
        figure="; ".join(f"{label} ({o['params'] / 1e6:.1f} M parameters): loss {o['first_loss']:.2f} → "
                         f"{o['final_loss']:.2f} over {o['steps']} steps" for label, o in outcome.items()),
        details={"models": outcome},
    )


def inception_costs(label: str) -> dict[str, int]:
    """Multiply-adds of every Inception block of a net, naive and with 1x1 reductions (Szegedy et al. 2014)."""
    naive = reduced = 0
    for row in describe_config(ModelConfig.parse(label)).blocks:
        if row["kind"] == "inception":
            cost = inception_cost(row["in_shape"][0], row["out_shape"][0], row["out_shape"][1])
            naive, reduced = naive + cost.naive_total, reduced + cost.bottleneck_total
    return {"naive": naive, "reduced": reduced}


def inception(r: RunRecords) -> Verdict:
    basic, inception = r.require(block="basic")[0], r.require(block="inception")[0]
    errors = r.errors([basic, inception], "test")
    costs = _costs([basic, inception])
    modules = inception_costs(inception)
    if verdict := r.no_verdict(errors, costs=costs, inception_modules=modules):
        return verdict
    gap = errors[inception] - errors[basic]
    return Verdict(
        held=gap <= MARGIN,
        figure=f"{inception} minus {basic} test error: {_points(gap)}, at {costs[inception]['macs'] / 1e6:.0f} M vs "
               f"{costs[basic]['macs'] / 1e6:.0f} M multiply-adds; the 1x1 reductions make its modules "
               f"{modules['naive'] / modules['reduced']:.1f}x cheaper than naive ones",
        details={"test_error": errors, "costs": costs, "inception_modules": modules, "gap": gap},
    )


def table6(r: RunRecords) -> Verdict:
    """ResNet-20's and ResNet-56's test error against He et al. 2015 Table 6, each within `TABLE6_MARGIN` points of
    the paper's; a verdict only for the paper's nets trained and tested on all of CIFAR-10."""
    labels = [r.require(family="resnet", depth=depth)[0] for depth in (20, 56)]
    errors = r.errors(labels, "test")
    if verdict := _missing(errors):
        return verdict
    papers = {label: table6_error(label) for label in labels}
    compared = "; ".join(f"{label} {errors[label]:.2f}%" + (f" (paper {papers[label]:.2f}%, target ≤ "
                                                             f"{papers[label] + TABLE6_MARGIN:.2f}%)"
                                                             if papers[label] is not None else "") for label in labels)
    data = r.config.data
    details = {"test_error": errors, "paper": papers, "margin": TABLE6_MARGIN}
    if None in papers.values():
        return Verdict(None, f"no verdict: Table 6 is for the paper's full-width nets, not these (test error "
                             f"{compared})", details)
    if data.source != "cifar10" or data.subset < TABLE6_TRAIN_IMAGES or data.test_subset < TABLE6_TEST_IMAGES:
        return Verdict(None, f"no verdict: Table 6 trains on all {TABLE6_TRAIN_IMAGES:,} CIFAR-10 training images "
                             f"and tests on all {TABLE6_TEST_IMAGES:,}; this run used {data.subset:,} and "
                             f"{data.test_subset:,} of {data.source} (test error {compared})", details)
    return Verdict(held=all(errors[label] <= papers[label] + TABLE6_MARGIN for label in labels),
                   figure=f"test error {compared}", details=details)


Judge = Callable[[RunRecords], Verdict]


def judge(judge_fn: Judge, store: RunStore, run_id: str) -> Verdict:
    """`judge_fn` on the run's records; a run that lacks the models it compares gets a no-verdict saying so. The
    figure names models for people ("ResNet-56 (width 0.25)"); the details keep the labels."""
    records = RunRecords.load(store, run_id)
    try:
        verdict = judge_fn(records)
    except MissingModels as missing:
        return Verdict(None, f"no verdict: this prediction {missing}", {})
    return replace(verdict, figure=_named(verdict.figure, records.config.labels))


def _named(text: str, labels: list[str]) -> str:
    for label in sorted(labels, key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){re.escape(label)}(?![\w-])", display_name(label), text)
    return text
