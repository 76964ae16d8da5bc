"""Headless reproduction: run a preset to the end, judge its prediction, write the report; record runs as bundles.

    reproduce("degradation", budget_s=90, data_source="cifar10", out=Path("report.html"), store=RunStore())

`record` reproduces several presets and exports each run as a compact bundle (metrics only, Parquet) for the
app's "Recorded runs", with the verdict beside it. Run it on the best hardware at hand; the bundle carries its
configuration, device, data source, code version and dates, and ``verdict.json`` the budget it ran under.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from .config import Config, ConfigError
from .estimate import Estimate, estimate_seconds
from .presets import PRESETS, Preset, Verdict, device_kind
from .report import write_report
from .store import RunStore
from .trainer import Progress, Trainer

REPORTS_DIR = Path("reports")
POLL_SECONDS = 0.5


class ReproduceError(RuntimeError):
    """A preset's run failed while training; the message carries the trainer's error."""


@dataclass(frozen=True)
class ReproduceResult:
    run_id: str
    verdict: Verdict
    report_path: Path | None
    estimate: Estimate | None


def preset_named(key: str) -> Preset:
    if key not in PRESETS:
        raise ConfigError(f"unknown preset {key!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[key]


def reproduce(preset_key: str, *, budget_s: float | None = None, data_source: str = "synthetic",
              out: str | Path | None = None, store: RunStore | None = None,
              progress: Callable[[Progress], None] | None = None, device: str = "auto",
              config: Config | None = None) -> ReproduceResult:
    """Run a preset synchronously (at most `budget_s` seconds of training), run its after-training study, judge
    its prediction and write the HTML report to `out` (default ``reports/<preset>.html``).

    `config` replaces the preset's own sizing (a smaller run, or one edited in the app); `progress` receives the
    trainer's progress about twice a second.
    """
    preset = preset_named(preset_key)
    store = store or RunStore()
    config = config or preset.config(budget_s, device, data_source)
    local = device_kind(config.device) == "cpu" or torch.cuda.is_available()
    estimate = estimate_seconds(config, config.device) if local else None
    trainer = Trainer(config, store, preset=preset.key, max_seconds=budget_s)
    run_id = trainer.start()
    trainer.watch(progress or (lambda _: None), POLL_SECONDS)
    if trainer.state == "failed":
        raise ReproduceError(f"preset {preset.key} failed in run {run_id}: {trainer.error}")
    preset.after_training(trainer, store)
    verdict = preset.evaluate(store, run_id)
    report = write_report(store, run_id, preset, verdict, Path(out or REPORTS_DIR / f"{preset.key}.html"), estimate)
    return ReproduceResult(run_id=run_id, verdict=verdict, report_path=report, estimate=estimate)


def record(preset_keys: Iterable[str], out_dir: str | Path = Path("assets/recorded"), budget_s: float | None = None,
           data_source: str = "cifar10", store: RunStore | None = None,
           reports_dir: str | Path = REPORTS_DIR / "recorded",
           progress: Callable[[Progress], None] | None = None) -> list[ReproduceResult]:
    """Reproduce each preset and export its run to ``out_dir/<preset>/`` (a store bundle plus ``verdict.json``);
    the HTML reports, a few MB each with plotly.js inlined, go to `reports_dir` instead."""
    keys = list(preset_keys)
    for key in keys:
        preset_named(key)  # fail before hours of training, not after
    store = store or RunStore()
    results = []
    for key in keys:
        result = reproduce(key, budget_s=budget_s, data_source=data_source, out=Path(reports_dir) / f"{key}.html",
                           store=store, progress=progress)
        bundle = store.export_bundle(result.run_id, Path(out_dir) / key)
        summary = {"preset": key, "run_id": result.run_id, "budget_s": budget_s, "data_source": data_source,
                   **asdict(result.verdict),
                   "estimate": asdict(result.estimate) if result.estimate else None}
        (bundle / "verdict.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
        results.append(result)
    return results
