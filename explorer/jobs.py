"""The process-wide registry of training jobs, so a browser reload or a second tab re-attaches to its run.

A preset's after-training study (the lesion study) runs in the job's thread when its training ends.
One job trains at a time: the machine's cores (or its GPU) are shared by every viewer of the app, and a second
run would only slow the first. Finished jobs stay registered (their trained models feed the lesion study) until
`KEEP_FINISHED` newer ones replace them.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .config import Config
from .presets import PRESETS
from .store import RunStore
from .trainer import Trainer

KEEP_FINISHED = 4

_lock = threading.Lock()
_jobs: dict[str, Trainer] = {}


class JobBusy(RuntimeError):
    """Another job is still training; stop it or wait for it to finish."""


def start_job(config: Config, store: RunStore, *, preset: str = "", data_dir: str | Path | None = None,
              max_seconds: float | None = None) -> Trainer:
    with _lock:
        running = _active()
        if running is not None:
            raise JobBusy(f"run {running.run_id} is still training: stop it or wait for it to finish first")
        after = PRESETS[preset].after_training if preset in PRESETS else None
        trainer = Trainer(config, store, preset=preset, data_dir=data_dir, max_seconds=max_seconds, after=after)
        _jobs[trainer.start()] = trainer
        for run_id in [r for r, job in _jobs.items() if not job.active][:-KEEP_FINISHED]:
            del _jobs[run_id]
        return trainer


def get_job(run_id: str) -> Trainer | None:
    return _jobs.get(run_id)


def active_job() -> Trainer | None:
    with _lock:
        return _active()


def _active() -> Trainer | None:
    return next((job for job in _jobs.values() if job.active), None)
