"""The papers' experiments as presets: a configuration, what to watch, a prediction, and a verdict from the records.

Each `Preset` states its prediction before the run and, afterwards, `evaluate` reads the run's records from the
store and says with numbers whether the prediction held on this run (`Verdict`). Presets are sized per device:

- CPU: 1,000 training images without augmentation, batch 64, bf16 autocast, SGD lr 0.1 with a linear warm-up over
  1 epoch then cosine to zero over 15 epochs: sized with bench/degradation.py so the classic demo shows degradation
  within about a minute on two cores. Without a warm-up ResNet-56's loss jumps in the first steps (He et al. 2015
  §4.2 warm up their 110-layer net at lr 0.01 for the same reason). On a CPU residual nets also start with
  zero-initialised branches: measured with bench/degradation.py, a standard-init ResNet-56 is still
  at ~87% training error after 100 s (it needs ~20 epochs to start), while a zero-init one learns from its first
  steps, as fast as ResNet-20 (He et al. 2016; Goyal et al. 2017). Presets about initialisation opt out.
- GPU: the full 50,000 training images with pad-and-crop and flip augmentation (He et al. 2015 §4.2), 40 epochs.

With a time budget the epochs (or steps) shrink to fit, measured by `explorer.estimate` on this machine, and the
trainer stops at the budget in any case. Evaluations and probes are spaced so that each costs at most a tenth
(evaluations) or a twentieth (probes) of the training compute.

How verdicts read errors (percent): "training error" is the last evaluation's error on the fixed sample of the
training subset, without augmentation and in eval mode (the mean of the last steps' batch errors when no
evaluation ran); "test error" is the last evaluation's test error. Differences up to `MARGIN` points count as
equal: a margin for run-to-run noise, a guess rather than a measured spread over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch

from .charts import final_numbers
from .config import Config, ModelConfig
from .estimate import FORWARD_SHARE, estimate_seconds
from .lesion import BASELINE_BLOCK, lesion_errors
from .models import describe_config, inception_cost
from .store import RunStore
from .trainer import EVAL_TRAIN_IMAGES, PROBE_IMAGES, Trainer

MARGIN = 2.0  # points of error within which two nets count as equal
LEARNED = 10.0  # a net this many points below chance has learned something
EVAL_SHARE = 0.1  # evaluations cost at most this share of the training compute
PROBE_SHARE = 0.05  # probes likewise
MAX_EVALS, MAX_PROBES = 50, 200
BUDGET_SHARE = 0.9  # a budgeted run is sized to end before the budget cuts it, final evaluation included

# Run settings in the app's URL keys (config.QUERY_KEYS), so a preset reads like the link that reproduces it.
DEVICE_SETTINGS: dict[str, dict[str, str]] = {
    "cpu": {"subset": "1000", "test": "1000", "augment": "0", "batch": "64", "lr": "0.1", "schedule": "cosine",
            "warmup": "1", "epochs": "15", "bf16": "1"},
    "cuda": {"subset": "50000", "test": "10000", "augment": "1", "batch": "128", "lr": "0.1",
             "schedule": "cosine", "warmup": "1", "epochs": "40"},
}


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
    finals: pd.DataFrame  # charts.final_numbers, indexed by model; train_err falls back to the batch error
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
def _degradation(r: RunRecords) -> Verdict:
    (plain_a, *_, plain_b), (res_a, *_, res_b) = r.labels(family="plain"), r.labels(family="resnet")
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


def _depth_sweep(r: RunRecords) -> Verdict:
    curves = {family: r.errors(r.labels(family=family)) for family in ("plain", "resnet")}
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


def _shortcut_options(r: RunRecords) -> Verdict:
    plain = r.labels(family="plain")[0]
    options = {opt: r.labels(family="resnet", shortcut=opt)[0] for opt in ("A", "B", "C")}
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


def _bottleneck(r: RunRecords) -> Verdict:
    basic = r.labels(block="basic")[0]
    same_depth, equal_cost = r.labels(block="bottleneck")  # shallow to deep: equal depth first
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


def _preact(r: RunRecords) -> Verdict:
    original, preact = r.labels(order="original")[0], r.labels(order="preact")[0]
    errors = r.errors([original, preact], "test")
    if verdict := r.no_verdict(errors):
        return verdict
    gap = errors[preact] - errors[original]
    return Verdict(held=gap <= MARGIN, figure=f"{preact} minus {original} test error: {_points(gap)}",
                   details={"test_error": errors, "gap": gap})


def gradient_spread(probes: pd.DataFrame, label: str, edge: int = 3) -> pd.Series:
    """Per probe step, log10 of the mean gradient norm of the first `edge` weighted layers over that of the last
    `edge` conv layers (the classifier left out): 0 when gradients are even through depth, ±3 when the early
    layers get a thousand times more (or less)."""
    rows = probes[(probes["model"] == label) & ~probes["layer_name"].str.startswith("classifier")]
    def ratio(step: pd.DataFrame) -> float:
        norms = step.sort_values("layer")["grad_norm"].to_numpy()
        return float(np.log10(norms[:edge].mean() / norms[-edge:].mean()))
    return rows.groupby("step").apply(ratio, include_groups=False)


def _no_batchnorm(r: RunRecords) -> Verdict:
    plain = r.labels(family="plain")[-1]
    residuals = r.labels(family="resnet")
    trained = [label for label in residuals if r.finals.at[label, "status"] != "diverged"]
    diverged = [label for label in residuals if label not in trained]
    if not trained:
        return Verdict(None, f"no verdict: every residual net diverged ({', '.join(diverged)})",
                       {"diverged": diverged})
    residual = trained[0]
    spreads = {label: gradient_spread(r.probes, label) for label in (plain, residual)}
    if any(s.empty for s in spreads.values()):
        return Verdict(None, "no verdict: no gradient probes were recorded", {"diverged": diverged})
    worst = {label: float(s.abs().max()) for label, s in spreads.items()}
    return Verdict(
        held=worst[plain] >= worst[residual] + 1,
        figure=f"largest early/late gradient-norm ratio over the run: {plain} 10^{worst[plain]:.1f}, "
               f"{residual} 10^{worst[residual]:.1f}" + (f"; diverged: {', '.join(diverged)}" if diverged else ""),
        details={"log10_gradient_ratio_max": worst, "diverged": diverged,
                 "training_error": r.errors([plain, *trained]),
                 "log10_gradient_ratio": {label: s.round(3).to_dict() for label, s in spreads.items()}},
    )


def _zero_init(r: RunRecords) -> Verdict:
    standard = r.labels(zero_init_residual=False)[0]
    zeroed = r.labels(zero_init_residual=True)[0]
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


def _shortcut_ablation(r: RunRecords) -> Verdict:
    identity = r.labels(shortcut_variant="identity", shortcut="A")[0]
    variants = [label for label in r.labels() if label != identity]
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


def _lesion(r: RunRecords) -> Verdict:
    if r.lesions.empty:
        return Verdict(None, "no verdict: the lesion study has not run", {})
    plain, residual = r.labels(family="plain")[-1], r.labels(family="resnet")[-1]
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


def _response_std(r: RunRecords) -> Verdict:
    plain, residual = r.labels(family="plain"), r.labels(family="resnet")
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


def _vgg(r: RunRecords) -> Verdict:
    vgg, residual = r.labels(family="vgg")[0], r.labels(family="resnet")[0]
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


def _very_deep(r: RunRecords) -> Verdict:
    outcome = {}
    for label in r.labels():
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


def _inception(r: RunRecords) -> Verdict:
    basic, inception = r.labels(block="basic")[0], r.labels(block="inception")[0]
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


def _study_lesions(trainer: Trainer, store: RunStore) -> None:
    """Remove each block of each trained model in turn and store its test error (Veit et al. 2016)."""
    diverged = set(trainer.progress().diverged)
    rows = [dict(model=label, **row) for label, model in trainer.models.items() if label not in diverged
            for row in lesion_errors(model, trainer.data, trainer.device)]
    store.append(trainer.run_id, lesions=rows)


# --- presets -------------------------------------------------------------------------------------------------------
def device_kind(device: str | torch.device) -> str:
    """``cpu`` or ``cuda``: the kind of device a preset is sized for (``auto`` picks what this machine has)."""
    if str(device) == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


@dataclass(frozen=True)
class Preset:
    """A paper experiment: a configuration factory, what to watch, a prediction and its verdict.

    ``settings`` and ``cpu``/``cuda`` are URL-key overrides (config.QUERY_KEYS, plus ``models``) applied on every
    device and on one device; ``charts`` names the report's figures (see explorer.report.CHARTS).
    """

    key: str
    title: str
    paper: str
    watch: str
    prediction: str
    judge: Callable[[RunRecords], Verdict]
    settings: Mapping[str, str]
    cpu: Mapping[str, str] = field(default_factory=dict)
    cuda: Mapping[str, str] = field(default_factory=dict)
    charts: tuple[str, ...] = ("errors", "loss")
    after: Callable[[Trainer, RunStore], None] | None = None
    zero_init_on_cpu: bool = True  # residual nets start zero-initialised on a CPU (module docstring)

    def config(self, budget_s: float | None = None, device: str | torch.device = "auto",
               data_source: str = "synthetic") -> Config:
        """The run for `device` (auto, cpu or cuda) on `data_source`; with `budget_s`, shortened to fit it as timed
        on this machine (only when this machine has that device)."""
        kind = device_kind(device)
        config = self._sized(kind, data_source, 1.0)
        if budget_s is not None and (kind == "cpu" or torch.cuda.is_available()):
            seconds = estimate_seconds(config, kind).seconds
            if seconds > BUDGET_SHARE * budget_s:
                config = self._sized(kind, data_source, BUDGET_SHARE * budget_s / seconds)
        return config

    def _sized(self, kind: str, data_source: str, fraction: float) -> Config:
        """The configuration with its run shortened to `fraction` of its epochs (or steps), warm-up alike."""
        query = {**DEVICE_SETTINGS[kind], **self.settings, **getattr(self, kind), "data": data_source,
                 "device": kind, "name": self.title}
        config = Config.from_query(query)
        optim = config.optim
        if fraction < 1 and optim.steps:
            optim = replace(optim, steps=max(2, int(optim.steps * fraction)))
        elif fraction < 1:
            warmup = max(optim.warmup_epochs * fraction, min(optim.warmup_epochs, 1.0))
            optim = replace(optim, epochs=max(1.0, round(optim.epochs * fraction, 1)), warmup_epochs=round(warmup, 2))
        config = replace(config, optim=optim)
        if kind == "cpu" and self.zero_init_on_cpu:
            config = replace(config, models=tuple(replace(m, zero_init_residual=m.residual) if m.residual else m
                                                  for m in config.models))
        total, _ = config.run_steps()
        batch = min(optim.batch_size, config.data.subset)
        eval_images = min(EVAL_TRAIN_IMAGES, config.data.subset) + config.data.test_subset
        eval_every = max(math.ceil(FORWARD_SHARE * eval_images / (EVAL_SHARE * batch)), total // MAX_EVALS)
        probe_every = max(math.ceil(FORWARD_SHARE * PROBE_IMAGES / (PROBE_SHARE * batch)), total // MAX_PROBES)
        return replace(config, eval_every=eval_every, probe_every=probe_every)

    def evaluate(self, store: RunStore, run_id: str) -> Verdict:
        records = RunRecords.load(store, run_id)
        try:
            return self.judge(records)
        except (IndexError, ValueError):  # a judge unpacks the models it compares
            return Verdict(None, f"no verdict: run {run_id} lacks the models this prediction compares "
                                 f"(it has {', '.join(records.config.labels)})", {})

    def after_training(self, trainer: Trainer, store: RunStore) -> None:
        if self.after is not None:
            self.after(trainer, store)


_PRESETS = (
    Preset(
        key="degradation",
        title="Degradation: deeper plain nets train worse",
        paper="He et al. 2015, Fig. 1 and Fig. 6",
        watch="The dashed training-error curves. The 56-layer plain net stays above the 20-layer one: its training "
              "error is higher, so this is not overfitting. With shortcuts the order flips: ResNet-56 ends at or "
              "below ResNet-20. On a CPU the residual nets start with zero-initialised branches (each block is the "
              "identity at step 0) so that ResNet-56 learns within a minute; see the identity-at-init preset.",
        prediction=f"plain-56 ends with a training error more than {MARGIN:g} points above plain-20's; ResNet-56 "
                   f"ends at or below ResNet-20's (at most {MARGIN:g} points above).",
        judge=_degradation,
        settings={"models": "plain20,plain56,resnet20,resnet56"},
        charts=("errors", "loss", "gradients"),
    ),
    Preset(
        key="depth-sweep",
        title="Depth sweep: final training error against depth",
        paper="He et al. 2015, Fig. 6 and Table 6",
        watch="Final training error against depth, one line per family, all nets trained in lockstep on the same "
              "batches. The plain line climbs with depth; the residual line stays flat or falls.",
        prediction=f"The deepest plain net ends more than {MARGIN:g} points above plain-20 in training error; the "
                   f"deepest ResNet ends at most {MARGIN:g} points above ResNet-20.",
        judge=_depth_sweep,
        settings={"models": "plain20,plain32,plain44,plain56,resnet20,resnet32,resnet44,resnet56"},
        cuda={"models": "plain20,plain32,plain44,plain56,plain110,resnet20,resnet32,resnet44,resnet56,resnet110"},
        charts=("depth", "errors"),
    ),
    Preset(
        key="shortcuts",
        title="Shortcut options A, B and C",
        paper="He et al. 2015, §3.3 and Table 3",
        watch="Four 56-layer nets: plain, and residual with zero-padding shortcuts (A), projections where the shape "
              "changes (B) and projections on every shortcut (C). In the paper C is slightly ahead of B and B of A, "
              "by fractions of a point, while all three are far ahead of the plain net. At this scale the order of "
              "A, B and C is within noise; the gap to the plain net is not.",
        prediction=f"All three residual nets end more than {MARGIN:g} points below the plain net's test error "
                   "(the order of A, B and C is reported, not predicted).",
        judge=_shortcut_options,
        settings={"models": "plain56,resnet56,resnet56-B,resnet56-C"},
        charts=("errors", "test_err"),
    ),
    Preset(
        key="bottleneck",
        title="Basic vs bottleneck blocks, at equal depth and at equal cost",
        paper="He et al. 2015, §4.1 and Fig. 5; He et al. 2016, Table 3 (ResNet-110 vs ResNet-164)",
        watch="Three residual nets: basic blocks (two 3x3 convs), bottleneck blocks (1x1 reduce, 3x3, 1x1 expand "
              "by 4) at the same depth, and a deeper bottleneck net of about the basic net's multiply-adds (cost "
              "table in the report). Bottlenecks buy depth at equal cost: in the paper the 164-layer bottleneck "
              "net beats the 110-layer basic one at equal parameters (5.93% vs 6.61%).",
        prediction=f"The equal-cost bottleneck net ends at or below the basic net's test error (at most "
                   f"{MARGIN:g} points above).",
        judge=_bottleneck,
        settings={"models": "resnet56,resnet56-bneck,resnet83-bneck"},
        cuda={"models": "resnet110,resnet110-bneck,resnet164-bneck"},
        charts=("errors", "test_err"),
    ),
    Preset(
        key="preact",
        title="Original vs pre-activation residual units",
        paper="He et al. 2016, Fig. 4 and Table 3",
        watch="Two residual nets that differ only in the order inside each unit: conv-BN-ReLU with a ReLU after "
              "the addition (original), or BN-ReLU-conv with nothing after the addition (pre-activation). Honestly: "
              "at this depth the difference is small (the paper: 6.61% vs 6.37% test error at 110 layers) and a "
              "short run cannot resolve it; the gain grows with depth (ResNet-1001).",
        prediction=f"The pre-activation net ends at most {MARGIN:g} points above the original's test error (the "
                   "paper: 0.24 points below at 110 layers).",
        judge=_preact,
        settings={"models": "resnet56,resnet56-pre"},
        cuda={"models": "resnet110,resnet110-pre"},
        charts=("errors", "test_err"),
    ),
    Preset(
        key="no-bn",
        title="Without BatchNorm: gradients through depth",
        paper="He et al. 2015, §4.1; Zhang et al. 2019 (Fixup)",
        watch="Plain and residual 56-layer nets without BatchNorm; the gradient heatmap (layer by iteration, log "
              "scale) shows whether the early layers' gradients stay comparable to the last layers'. Kaiming "
              "init keeps the plain net's backward signal even at step 0, so watch what training does to it. "
              "Without BN a residual sum's variance doubles with every block, so the standard ResNet-56 blows up "
              "within a few steps; its twin with zero-initialised branches starts as the identity and trains, and "
              "is the residual net compared when the standard one diverges.",
        prediction="In the plain net the early layers' gradient norms drift at least ten times further from the "
                   "last layers' than in the residual net.",
        judge=_no_batchnorm,
        settings={"models": "plain56-nobn,resnet56-nobn,resnet56-nobn-zi", "lr": "0.01"},
        charts=("gradients", "gradient_profile", "errors"),
        zero_init_on_cpu=False,
    ),
    Preset(
        key="zero-init",
        title="Identity at init: zero-initialised residual branches",
        paper="Goyal et al. 2017, §5.1; He et al. 2015, §4.2 (warm-up)",
        watch="Both nets start at lr 0.1 without warm-up. Zeroing the last BN gain of every residual branch makes "
              "every block the identity at step 0, so the 56-layer net starts as a shallow one. Watch the loss in "
              "the first iterations: the standard net's jumps, the zero-initialised one's falls from the start.",
        prediction="Over the first 10% of iterations the zero-initialised net's mean training loss is below the "
                   "standard net's.",
        judge=_zero_init,
        settings={"models": "resnet56,resnet56-zi", "warmup": "0"},
        charts=("loss", "errors"),
        zero_init_on_cpu=False,
    ),
    Preset(
        key="shortcut-ablation",
        title="Shortcut ablation: identity vs scaling, 1x1 conv and gating",
        paper="He et al. 2016, §3 and Table 1",
        watch="Residual nets that differ only in the shortcut: identity, constant scaling by 0.5, a 1x1 conv on "
              "every shortcut (option C) and exclusive gating. Whatever sits on the shortcut multiplies along the "
              "path through all blocks and hampers optimisation; the paper (110 layers): identity 6.61%, scaling "
              "12.35%, 1x1 conv 12.22%, gating 8.70% test error.",
        prediction=f"Identity ends with the lowest test error: no other shortcut beats it by more than "
                   f"{MARGIN:g} points.",
        judge=_shortcut_ablation,
        settings={"models": "resnet56,resnet56-scaled,resnet56-C,resnet56-gated"},
        cuda={"models": "resnet110,resnet110-scaled,resnet110-C,resnet110-gated"},
        charts=("errors", "test_err"),
    ),
    Preset(
        key="lesion",
        title="Lesion study: remove one block at test time",
        paper="Veit et al. 2016, Fig. 3",
        watch="After training, each block is removed in turn and the test set scored again. Without a block the "
              "residual net still has the shortcut and loses a few points, more at the blocks that downsample; the "
              "plain net has no other path and falls to about chance.",
        prediction="Removing one block (not a downsampling one) costs the residual net less than a quarter of the "
                   "way from its error to chance (median); the plain net loses more than half of that way.",
        judge=_lesion,
        settings={"models": "plain20,resnet20"},
        cuda={"models": "plain56,resnet56"},
        charts=("lesion", "errors"),
        after=_study_lesions,
    ),
    Preset(
        key="response-std",
        title="Layer responses: residual functions stay small",
        paper="He et al. 2015, §4.2 and Fig. 7",
        watch="The std of every layer's response (its BN output, before the ReLU or the addition) on a fixed batch "
              "at the end of training. Residual nets respond less than their plain twins, and the deeper ResNet "
              "less still: each residual function stays a small correction to the identity.",
        prediction="At each depth the ResNet's mean response std is below the plain net's, and ResNet-56's is "
                   "below ResNet-20's.",
        judge=_response_std,
        settings={"models": "plain20,plain56,resnet20,resnet56"},
        charts=("responses", "responses_sorted", "errors"),
    ),
    Preset(
        key="vgg",
        title="VGG-style plain net vs ResNet",
        paper="He et al. 2015, Fig. 3; Simonyan & Zisserman 2015",
        watch="VGG-19 (16 3x3 convs and 3 fully connected layers, with BN, adapted to 32x32) against ResNet-20 of "
              "about the same depth. VGG spends 10x the multiply-adds and 76x the parameters.",
        prediction=f"ResNet-20 ends at or below VGG-19's test error (at most {MARGIN:g} points above).",
        judge=_vgg,
        settings={"models": "vgg19,resnet20"},
        charts=("errors", "test_err"),
    ),
    Preset(
        key="very-deep",
        title="Very deep: ResNet-110 and ResNet-1202",
        paper="He et al. 2015, §4.2 and Table 6",
        watch="An estimate of time and memory comes first. Both nets build and train a few iterations at lr 0.01, "
              "the paper's warm-up rate for its deepest nets: 19.4 million parameters in 1202 layers still train. "
              "In the paper ResNet-1202 reaches a training error like ResNet-110's but a worse test error (7.93% vs "
              "6.43%): overfitting, not degradation.",
        prediction="Both nets train without diverging, and each one's mean loss over its last third of iterations "
                   "is below its first iteration's.",
        judge=_very_deep,
        settings={"models": "resnet110,resnet1202", "lr": "0.01", "schedule": "constant", "warmup": "0"},
        cpu={"steps": "10", "batch": "32", "subset": "500", "test": "200"},
        cuda={"steps": "200"},
        charts=("loss",),
    ),
    Preset(
        key="inception",
        title="Inception-style blocks in a ResNet",
        paper="Szegedy et al. 2014, §4 and Fig. 2",
        watch="Each block runs 1x1, 3x3, 5x5 and pooling branches side by side and concatenates them; 1x1 "
              "reductions in front of the 3x3 and 5x5 convs keep it cheap. The report's cost table compares the net "
              "with the basic ResNet-56, and its modules with naive ones (no reductions).",
        prediction=f"The Inception-block ResNet-56 at width 2, with less than half the basic ResNet-56's "
                   f"multiply-adds, ends at most {MARGIN:g} points above its test error.",
        judge=_inception,
        settings={"models": "resnet56,resnet56-incep-w2"},
        charts=("errors", "test_err"),
    ),
)

PRESETS: dict[str, Preset] = {preset.key: preset for preset in _PRESETS}
