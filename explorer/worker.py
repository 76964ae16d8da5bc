"""A worker process: claims runs from the store's queue and trains them, one at a time, on its device.

    python -m explorer worker [--device auto|cpu|cuda] [--store PATH]

The app starts the embedded default itself (`explorer.pool`); on a GPU server or a cluster, start one per GPU
(``CUDA_VISIBLE_DEVICES=i``). A worker keeps the images of its last data source resident on its device between
jobs, renews the lease of the run it trains every second and applies the owner's controls within that second,
checkpoints the run every EXPLORER_CHECKPOINT_SECONDS, and, when the queue is empty, times a few reference steps
so that estimates of this machine are measured, not guessed (`explorer.estimate`). Ctrl-C or SIGTERM stops the run
cleanly (resumable); a second Ctrl-C exits at once. A worker that dies without a word (kill -9, out of memory)
leaves its run to be marked interrupted when its lease lapses, with every flushed record kept.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterator

import torch

from . import jobs
from .checkpoints import checkpoint_path
from .config import Config, DataConfig
from .data import ImageData, load_data, load_full
from .device import DevicePolicy, calibrated_precisions, resolve_device
from .estimate import calibrate
from .memory import check, return_freed_memory
from .settings import settings
from .states import Control, ModelState, RunState
from .store import RunStore, utc_now
from .trainer import Progress, Trainer

POLL_SECONDS = 0.2  # an idle worker looks at the queue this often: a click starts training within it
RENEW_SECONDS = 1.0
PAUSE_LIMIT_SECONDS = 600.0  # a run paused this long is stopped (resumable), so it frees its worker
CALIBRATION_DAYS = 7
CALIBRATE_AFTER_IDLE_SECONDS = 10.0  # a fresh worker takes the first click's run before it times anything


class DataCache:
    """The images of the last source a worker trained on, resident on its device, so later jobs skip loading."""

    def __init__(self, device: torch.device, data_dir: str | os.PathLike | None = None):
        self.device = device
        self.data_dir = data_dir  # None: the operator's data directory
        self._full: tuple[str, ImageData] | None = None

    def load(self, cfg: DataConfig, progress: Callable[[float, str], None] | None = None) -> ImageData:
        if cfg.source == "synthetic":
            return load_data(cfg).to(self.device)
        if self._full is None or self._full[0] != cfg.source:
            self._full = None  # free the old set before loading the next
            full = load_full(cfg.source, self.data_dir, progress=progress)
            self._full = (cfg.source, full.to(self.device))
        return load_data(cfg, full=self._full[1])


class LeaseLost(RuntimeError):
    """The worker's lease on its run lapsed (the run was reaped, or another worker holds it): stop at once."""


class _LeasedSink:
    """The store as the trainer sees it, while this worker holds the run's lease: once the lease is lost (the run
    was reaped as interrupted, e.g. after the machine stalled), every write raises `LeaseLost`, which ends the
    trainer before it saves another checkpoint: a late worker never overwrites what the store concluded, and never
    leaves a checkpoint ahead of the records the store kept (a resumed run would skip the steps between)."""

    def __init__(self, store: RunStore):
        self.store = store
        self.lost = threading.Event()

    def _write(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self.lost.is_set():
            raise LeaseLost("this worker's lease on the run lapsed: the run was reaped or taken over")
        method(*args, **kwargs)

    def append(self, run_id: str, **rows: list[dict]) -> None:
        self._write(self.store.append, run_id, **rows)

    def set_status(self, run_id: str, status: RunState, error: str = "") -> None:
        self._write(self.store.set_status, run_id, status, error=error)

    def set_model_status(self, run_id: str, model: str, status: ModelState, diverged_step: int | None = None) -> None:
        self._write(self.store.set_model_status, run_id, model, status, diverged_step=diverged_step)

    def set_progress(self, run_id: str, progress: Progress) -> None:
        self._write(self.store.set_progress, run_id, progress)

    def truncate_after(self, run_id: str, step: int) -> None:
        self._write(self.store.truncate_after, run_id, step)


class Worker:
    def __init__(self, store: RunStore, device: str = "auto", worker_id: str | None = None,
                 data_dir: str | os.PathLike | None = None):
        self.store = store
        self.device = resolve_device(device)
        self.kind = self.device.type
        self.worker_id = worker_id or f"w-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.data = DataCache(self.device, data_dir)
        self.trainer: Trainer | None = None
        self._stopping = threading.Event()
        self._heard = 0.0  # monotonic time of the last heartbeat sent while calibrating

    # --- one run --------------------------------------------------------------------------------
    def train(self, run_id: str, resume: bool = False) -> RunState:
        """Train a run this worker has claimed, renewing its lease from the start (loading data can take a while);
        returns its final state."""
        sink = _LeasedSink(self.store)
        with self._renewing(run_id, sink):
            try:
                return self._train(run_id, resume, sink)
            except LeaseLost:
                return RunState.INTERRUPTED  # as the store says: the run is another worker's or resumable

    def _train(self, run_id: str, resume: bool, sink: _LeasedSink) -> RunState:
        store = self.store
        row = store.run(run_id)
        try:
            config = store.config(run_id)
            policy, data = prepare(config, self.device, self.data)
            store.set_run_facts(run_id, device=policy.name, data_source=data.source,
                                hostname=socket.gethostname(), torch_version=torch.__version__)
        except Exception as error:  # a run that cannot start fails with its reason; the worker goes on
            sink.set_status(run_id, RunState.FAILED, error=_reason(error))
            return RunState.FAILED
        self.trainer = Trainer(config, sink, run_id, data, policy, max_seconds=row["budget_s"],
                               checkpoint_path=checkpoint_path(store, run_id),
                               checkpoint_seconds=settings().checkpoint_seconds,
                               after=_after_training(row["preset"]))
        if self._stopping.is_set():
            self.trainer.stop()
        try:
            return self.trainer.run(resume=resume)
        except LeaseLost:
            raise
        except Exception:
            return RunState.FAILED  # the trainer recorded the failure and its reason
        finally:
            self.trainer = None

    @contextmanager
    def _renewing(self, run_id: str, sink: _LeasedSink) -> Iterator[None]:
        """Renew the lease every second in a thread and pass the owner's controls to the trainer."""
        done = threading.Event()

        def renew() -> None:
            paused_since: float | None = None
            while not done.wait(RENEW_SECONDS):
                trainer = self.trainer
                control = jobs.renew(self.store, run_id, self.worker_id)
                if control is None:
                    sink.lost.set()
                if trainer is None:
                    continue
                if control is None or control is Control.STOP or self._stopping.is_set():
                    trainer.stop()
                elif control is Control.PAUSE:
                    trainer.pause()
                    paused_since = paused_since or time.monotonic()
                    if time.monotonic() - paused_since > PAUSE_LIMIT_SECONDS:
                        trainer.stop()
                else:
                    trainer.resume()
                    paused_since = None

        thread = threading.Thread(target=renew, name=f"lease-{run_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop the current run cleanly (it stays resumable) and take no more."""
        self._stopping.set()
        if self.trainer is not None:
            self.trainer.stop()

    # --- the loop -------------------------------------------------------------------------------
    def run_one(self, run_id: str | None = None) -> tuple[str, RunState] | None:
        """Claim the next queued run (or `run_id`) and train it; None when there was nothing to claim."""
        claimed = jobs.claim(self.store, self.worker_id, self.kind, run_id)
        if claimed is None:
            return None
        claimed_id, resume = claimed
        try:
            return claimed_id, self.train(claimed_id, resume)
        finally:
            jobs.worker_idle(self.store, self.worker_id)
            return_freed_memory()

    def study_one(self) -> str | None:
        """Take the oldest study queued for this device (a finished run's loss-surface slices) and compute it,
        renewing its lease as the points come; None when none waits."""
        from .landscape import LandscapeError, SliceSpec, compute

        study = self.store.claim_study(self.worker_id, self.kind, jobs.STUDY_LEASE_SECONDS)
        if study is None:
            return None
        study_id = study["study_id"]

        def renew(done: int, total: int) -> None:
            if not self.store.renew_study(study_id, self.worker_id, jobs.STUDY_LEASE_SECONDS):
                raise LandscapeError("this worker's lease on the study lapsed")

        try:
            compute(self.store, study["run_id"], SliceSpec.from_json(study["spec"]),
                    budget_s=settings().max_job_seconds, device=self.kind, progress=renew, data_dir=self.data.data_dir)
            self.store.end_study(study_id, RunState.FINISHED)
        except Exception as error:  # a study that cannot finish fails with its reason; the worker goes on
            self.store.end_study(study_id, RunState.FAILED, error=_reason(error))
        finally:
            return_freed_memory()
        return study_id

    def serve(self, idle_exit: float | None = None, parent_pid: int | None = None) -> None:
        """Claim and train runs until stopped (or idle for `idle_exit` seconds, or the parent process is gone)."""
        jobs.register_worker(self.store, self.worker_id, self.kind, DevicePolicy.resolve(Config(
            device=self.kind)).name, os.getpid())
        idle_since = time.monotonic()
        try:
            while not self._stopping.is_set():
                if parent_pid is not None and os.getppid() != parent_pid:
                    break
                jobs.reap(self.store)
                if self.run_one() is not None or self.study_one() is not None:
                    idle_since = time.monotonic()
                    continue
                jobs.worker_idle(self.store, self.worker_id)
                idle = time.monotonic() - idle_since
                if idle > CALIBRATE_AFTER_IDLE_SECONDS and self._calibration_due():
                    self._calibrate()
                    continue
                if idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                    break
                self._stopping.wait(POLL_SECONDS)
        finally:
            jobs.unregister_worker(self.store, self.worker_id)

    # --- calibration ------------------------------------------------------------------------------
    def _precisions(self) -> tuple[str, ...]:
        return calibrated_precisions(self.kind)

    def _calibration_targets(self) -> list[DevicePolicy]:
        """What this worker times for the estimates: each precision it computes in and, on a CPU, one thread and
        all of them (runs ask for either: the CPU demo trains on one thread and leaves the other to the server)."""
        threads = (1, 0) if self.kind == "cpu" else (0,)
        return [DevicePolicy.resolve(Config(device=self.kind, precision=precision, threads=n))
                for precision in self._precisions() for n in threads]

    def _calibration_due(self) -> bool:
        recent = utc_now(ago=timedelta(days=CALIBRATION_DAYS))
        measured = {(row["device"], row["precision"]) for row in self.store.calibration_rows()
                    if (row["machine"], row["torch_version"]) == (socket.gethostname(), torch.__version__)
                    and row["measured"] > recent}
        due = False
        for policy in self._calibration_targets():
            policy.apply()  # its name says its thread count
            due = due or (policy.name, policy.precision) not in measured
        return due

    def _give_way(self) -> bool:
        """Asked between calibration steps: whether a run waits. Also renews this worker's heartbeat, at most once
        a second: a calibration lasts minutes, and the registry forgets a worker silent for longer than
        `jobs.WORKER_STALE_SECONDS` (it then trained on, but `live_workers` no longer counted it)."""
        if time.monotonic() - self._heard > 1.0:
            jobs.worker_idle(self.store, self.worker_id)
            self._heard = time.monotonic()
        return jobs.has_waiting(self.store, self.kind)

    def _calibrate(self) -> None:
        """Time this device for estimates, giving way at once to a run that arrives meanwhile."""
        for policy in self._calibration_targets():
            calibration = calibrate(policy, interrupted=self._give_way)
            if calibration is None:
                return
            self.store.save_calibration(calibration.to_row())


def prepare(config: Config, device: torch.device, data: DataCache) -> tuple[DevicePolicy, ImageData]:
    """What a run needs before its first step on `device`: its device policy (``auto`` resolved to `device`),
    the memory check against that device, and its images from `data`. Raises what refuses the run."""
    policy = DevicePolicy.resolve(_on_device(config, device.type))
    memory = torch.cuda.get_device_properties(device).total_memory if policy.cuda else None
    check(config, device.type, policy.precision, device_memory=memory)
    return policy, data.load(config.data)


def _on_device(config: Config, kind: str) -> Config:
    """`config` with ``auto`` resolved to this worker's device."""
    from dataclasses import replace

    return config if config.device == kind else replace(config, device=kind)


def _reason(error: Exception) -> str:
    return str(error) if type(error).__name__.endswith("Error") and str(error) else f"{type(error).__name__}: {error}"


def _after_training(preset: str) -> Callable[[Trainer], None] | None:
    from .presets import PRESETS

    return PRESETS[preset].after_training if preset in PRESETS else None


@contextmanager
def clean_interrupts(worker: Worker) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the current run cleanly (checkpointed, resumable); a second Ctrl-C exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        if worker.stopping:
            raise KeyboardInterrupt
        worker.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
