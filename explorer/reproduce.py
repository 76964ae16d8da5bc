"""Headless reproduction: run a preset to the end, judge its prediction, write the report; record runs as bundles.

    reproduce("degradation", budget_s=90, data_source="cifar10", out=Path("report.html"), store=RunStore())
    reproduce("table6", data_source="cifar10", device="cuda")   # He et al. 2015 Table 6, about 3.5 min on an H200

A preset's run is submitted like any other job (`explorer.jobs.submit`) and trained by a local worker in this
process. `record` reproduces several presets and exports each run as a compact bundle (metrics only, Parquet) under
``assets/recorded/<cpu|gpu>/<preset>/``, with ``verdict.json`` beside it: the verdict, the budget, the hardware and
the code version, so the app replays the run with the facts that qualify it. A `tiny` run (two steps on a few
images) checks a preset's whole path, report and bundle included, in seconds; it measures nothing.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from . import jobs
from .config import Config, ConfigError
from .estimate import Estimate
from .presets import PRESETS, Preset
from .sizing import device_kind
from .states import RunState
from .store import RunStore
from .verdicts import Verdict
from .worker import Worker

REPORTS_DIR = Path("reports")
RECORDED_DIR = Path("assets") / "recorded"
TINY_IMAGES, TINY_TEST_IMAGES, TINY_BATCH = 64, 32, 16


class ReproduceError(RuntimeError):
    """A preset's run did not finish; the message carries the reason."""


@dataclass(frozen=True)
class ReproduceResult:
    run_id: str
    verdict: Verdict
    report_path: Path | None
    estimate: Estimate


def preset_named(key: str) -> Preset:
    if key not in PRESETS:
        raise ConfigError(f"unknown preset {str(key)[:40]!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[key]


def train_locally(store: RunStore, run_id: str, data_dir: str | os.PathLike | None = None) -> RunState:
    """Train a submitted run in this process (a one-run worker)."""
    Worker(store, store.config(run_id).device, data_dir=data_dir).run_one(run_id)
    return store.status(run_id)


def preset_config(preset: Preset, store: RunStore, budget_s: float | None, device: str, data_source: str) -> Config:
    """The preset's run for `device`, fitted to the budget as this store's calibration of that device prices it."""
    kind = device_kind(device)
    unbudgeted = preset.config(None, kind, data_source)
    calibration = jobs.calibration(store, kind, jobs.precision_on(unbudgeted, kind))
    return preset.config(budget_s, kind, data_source, calibration)


def tiny_run(config: Config, steps: int = 2) -> Config:
    """`config` cut to `steps` steps on `TINY_IMAGES` training and `TINY_TEST_IMAGES` test images of its data, with
    an evaluation and a probe: a check that the run's path works, end to end."""
    data = replace(config.data, subset=TINY_IMAGES, test_subset=TINY_TEST_IMAGES)
    optim = replace(config.optim, batch_size=TINY_BATCH, steps=steps, warmup_epochs=0.0)
    return replace(config, data=data, optim=optim, eval_every=steps, probe_every=steps, eval_images=TINY_TEST_IMAGES)


def recorded_folder(device: str, out_dir: str | Path | None = None) -> Path:
    """Where recorded runs of `device` go: `out_dir`, by default assets/recorded/<cpu|gpu>."""
    return Path(out_dir) if out_dir is not None else RECORDED_DIR / ("gpu" if device_kind(device) == "cuda" else "cpu")


def reproduce(preset_key: str, *, budget_s: float | None = None, data_source: str = "synthetic",
              out: str | Path | None = None, store: RunStore | None = None, device: str = "auto",
              config: Config | None = None, train: Callable[[RunStore, str], RunState] | None = None,
              report: bool = True, data_dir: str | os.PathLike | None = None, tiny: bool = False) -> ReproduceResult:
    """Run a preset (at most `budget_s` seconds of training), its after-training study, judge its prediction and
    write the HTML report to `out` (default ``reports/<preset>.html``). `config` replaces the preset's own sizing;
    `tiny` cuts the run to `tiny_run`'s; `train` trains the submitted run (default `train_locally`); `data_dir`
    replaces the operator's data directory."""
    preset = preset_named(preset_key)
    store = store or RunStore()
    config = config or preset_config(preset, store, budget_s, device, data_source)
    if tiny:
        config = tiny_run(config)
    submission = jobs.submit(store, config, jobs.CLI_OWNER_KEY, preset=preset.key, budget_s=budget_s, attach=False,
                             data_dir=data_dir)
    state = train(store, submission.run_id) if train else train_locally(store, submission.run_id, data_dir)
    if state not in (RunState.FINISHED, RunState.DIVERGED):
        error = store.run(submission.run_id)["error"]
        raise ReproduceError(f"preset {preset.key} ended {state} in run {submission.run_id}" +
                             (f": {error}" if error else ""))
    verdict = preset.evaluate(store, submission.run_id)
    path = None
    if report:
        from .ui.report import write_report  # a view: only reports need plotly

        path = write_report(store, submission.run_id, preset, verdict,
                            Path(out or REPORTS_DIR / f"{preset.key}.html"), submission.estimate)
    return ReproduceResult(run_id=submission.run_id, verdict=verdict, report_path=path,
                           estimate=submission.estimate)


def record(preset_keys: Iterable[str], out_dir: str | Path | None = None, budget_s: float | None = None,
           data_source: str = "cifar10", store: RunStore | None = None, device: str = "auto",
           reports_dir: str | Path = REPORTS_DIR / "recorded",
           train: Callable[[RunStore, str], RunState] | None = None, data_dir: str | os.PathLike | None = None
           ) -> list[ReproduceResult]:
    """Reproduce each preset and export its run to ``out_dir/<preset>/`` (default assets/recorded/<cpu|gpu>), with
    ``verdict.json``; the HTML reports, a few MB each with plotly.js inlined, go to `reports_dir`."""
    keys = list(preset_keys)
    for key in keys:
        preset_named(key)  # fail before hours of training, not after
    store = store or RunStore()
    kind = device_kind(device)
    folder = recorded_folder(kind, out_dir)
    results = []
    for key in keys:
        result = reproduce(key, budget_s=budget_s, data_source=data_source, out=Path(reports_dir) / f"{key}.html",
                           store=store, device=kind, train=train, data_dir=data_dir)
        results.append(result)
        write_bundle(store, result, folder / key, budget_s)
    return results


def write_bundle(store: RunStore, result: ReproduceResult, folder: Path, budget_s: float | None) -> Path:
    """The run as a bundle in `folder`, with its verdict and the facts that qualify it in ``verdict.json``."""
    bundle = store.export_bundle(result.run_id, folder)
    run = store.run(result.run_id)
    summary = {"preset": run["preset"], "run_id": result.run_id, "budget_s": budget_s,
               "data_source": run["data_source"], "device": run["device"], "torch_version": run["torch_version"],
               "code_version": run["code_version"], "created": run["created"],
               "machine": f"{platform.machine()}, {platform.system()}", **asdict(result.verdict),
               "estimate_s": result.estimate.seconds}
    (bundle / "verdict.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return bundle
