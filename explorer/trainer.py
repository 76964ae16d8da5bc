"""Lockstep instrumented trainer: several models, identical batches, every step recorded.

All models of a run see exactly the same batches in the same order with the same augmentation, so a plain and
a residual twin at several depths differ only in their architecture. Each step records loss, batch training
error and learning rate; each evaluation the error on a fixed sample of the training subset (no augmentation)
and on the test subset; each probe step the per-layer gradient norm, weight norm, update-to-weight ratio and
response std on a fixed probe batch (He et al. 2015, Fig. 7). Probes run as a few batched device ops per model
(`torch._foreach_norm`), and per-step scalars stay on the device until a flush, so instrumentation costs little
and never forces a device sync per layer.

A model whose loss becomes NaN or infinite is marked diverged and dropped; its twins go on. Training runs in a
background thread (`start`) or the caller's (`run`) and obeys `pause`, `resume` and `stop` between steps.

In every record `step` is the 0-based index of the last update it covers (an evaluation after the k-th update
has step k-1), `epoch` the epochs completed, and `wall` the seconds of training so far, pauses excluded.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import Config, ConfigError, OptimConfig
from .data import BatchStream, ImageData, eval_batches, load_data
from .models import ExplorerNet, build_model
from .store import RunStore

EVAL_TRAIN_IMAGES = 1000  # training-subset error is measured on a fixed sample of this many images
PROBE_IMAGES = 64  # enough for a stable std per layer; its forward costs ~2% at probes every 10 steps
FLUSH_SECONDS = 1.0
ACTIVE_STATES = ("loading", "running", "paused", "stopping")


@dataclass
class Progress:
    state: str
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    images_per_s: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    device: str = ""
    data_source: str = ""
    error: str = ""
    diverged: list[str] = field(default_factory=list)


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was requested but no CUDA GPU is available: use device auto or cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def learning_rate(step: int, total_steps: int, steps_per_epoch: int, optim: OptimConfig) -> float:
    """Linear warm-up from lr/10, then constant, step (/10 at 50% and 75%, He et al. 2015 §4.2) or cosine to 0."""
    warmup = round(optim.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return optim.lr * (0.1 + 0.9 * step / warmup)
    progress = (step - warmup) / max(1, total_steps - warmup)
    if optim.schedule == "cosine":
        return optim.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if optim.schedule == "step":
        return optim.lr * (0.1 ** ((progress >= 0.5) + (progress >= 0.75)))
    return optim.lr


def make_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    if optim.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)


class Probe:
    """Per-layer gradient norm, weight norm, update-to-weight ratio and response std of one model."""

    def __init__(self, model: ExplorerNet):
        self.layers = model.layers()
        self.weights = [info.module.weight for info in self.layers]
        self.model = model

    def before_step(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
        grad_norms = torch.stack(torch._foreach_norm(grads))
        weight_norms = torch.stack(torch._foreach_norm(self.weights))
        return grad_norms, weight_norms, [w.detach().clone() for w in self.weights]

    def update_ratio(self, weight_norms: torch.Tensor, before: list[torch.Tensor]) -> torch.Tensor:
        deltas = torch._foreach_sub([w.detach() for w in self.weights], before)
        return torch.stack(torch._foreach_norm(deltas)) / weight_norms.clamp_min(1e-12)

    @torch.no_grad()
    def response_std(self, x: torch.Tensor) -> torch.Tensor:
        stds: list[torch.Tensor] = []
        hooks = [info.response.register_forward_hook(lambda m, i, out: stds.append(out.float().std()))
                 for info in self.layers]
        was_training = self.model.training
        self.model.eval()
        try:
            self.model(x)
        finally:
            self.model.train(was_training)
            for hook in hooks:
                hook.remove()
        return torch.stack(stds)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             autocast: torch.autocast) -> tuple[float, float]:
    """Mean loss and error (%) without augmentation, in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    wrong = torch.zeros((), device=device)
    for xb, yb in eval_batches(x, y, 500, device, channels_last=True):
        with autocast:
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
        wrong += (logits.argmax(1) != yb).sum()
    model.train()
    n = len(y)
    return loss_sum.item() / n, 100.0 * wrong.item() / n


class Trainer:
    def __init__(self, config: Config, store: RunStore, *, preset: str = "", data: ImageData | None = None,
                 data_dir: str | Path | None = None, max_seconds: float | None = None,
                 after: Callable[["Trainer", RunStore], None] | None = None):
        """`after` runs in the training thread once the run finished (a preset's lesion study, say)."""
        self.config = config
        self.after = after
        self.store = store
        self.preset = preset
        self.data = data
        self.data_dir = data_dir
        self.max_seconds = max_seconds
        self.device = resolve_device(config.device)
        self.models: dict[str, ExplorerNet] = {}
        self.run_id: str | None = None
        self.state = "created"
        self.error = ""
        self._progress = Progress(state="created", device=device_name(self.device))
        self._resume = threading.Event()
        self._resume.set()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None

    # --- control ----------------------------------------------------------------------------
    def start(self) -> str:
        """Train in a background thread; returns once the run is stored (data loaded, models built)."""
        self._thread = threading.Thread(target=self._run_catching, name="explorer-trainer", daemon=True)
        self._thread.start()
        self._started.wait()
        if self.run_id is None:
            raise self._failure
        return self.run_id

    def run(self) -> str:
        """Train in the caller's thread until the end; returns the run id."""
        self._run_catching()
        if self.run_id is None:
            raise self._failure
        return self.run_id

    def pause(self) -> None:
        if self.state == "running":
            self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    def stop(self) -> None:
        self._stop.set()
        self._resume.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def watch(self, progress: Callable[[Progress], None], poll_seconds: float = 0.5) -> None:
        """Block until a started run ends, passing its progress to `progress` every `poll_seconds` and once at the
        end. Ctrl-C stops the run cleanly, then propagates."""
        try:
            while self.active:
                progress(self.progress())
                self.join(poll_seconds)
        except KeyboardInterrupt:
            self.stop()
            self.join()
            raise
        progress(self.progress())

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def progress(self) -> Progress:
        self._progress.state = self.state
        self._progress.error = self.error
        return self._progress

    def _set_state(self, state: str) -> None:
        self.state = state
        if self.run_id is not None:
            self.store.set_status(self.run_id, state, error=self.error)

    # --- the run ----------------------------------------------------------------------------
    def _run_catching(self) -> None:
        try:
            self._prepare()
        except Exception as error:  # reported to the caller of start()/run()
            self._failure = error
            self.state, self.error = "failed", str(error)
            self._started.set()
            return
        self._started.set()
        try:
            self._train()
            if self.after is not None and self.state == "finished":
                self.after(self, self.store)
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            self._set_state("failed")
            raise

    def _prepare(self) -> None:
        cfg = self.config
        self.state = "loading"
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self._progress.device = device_name(self.device)
        if self.data is None:
            self.data = load_data(cfg.data, self.data_dir)
        self._progress.data_source = self.data.source
        num_classes = len(self.data.classes)
        for model_cfg in cfg.models:
            model = build_model(model_cfg, num_classes=num_classes, seed=cfg.seed)
            self.models[model_cfg.label] = model.to(self.device, memory_format=torch.channels_last)
        self.run_id = self.store.create_run(
            cfg, device=device_name(self.device), data_source=self.data.source, preset=self.preset,
            models=[{"model": label, "idx": i, "params": sum(p.numel() for p in m.parameters())}
                    for i, (label, m) in enumerate(self.models.items())],
        )

    def _train(self) -> None:
        cfg, optim, device = self.config, self.config.optim, self.device
        stream = BatchStream(self.data, optim.batch_size, cfg.data.augment, device, seed=cfg.seed,
                             channels_last=True)
        total_steps, steps_per_epoch = cfg.run_steps()
        assert steps_per_epoch == stream.steps_per_epoch, "Config.run_steps and BatchStream disagree"
        eval_every = cfg.eval_every or stream.steps_per_epoch
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        sample = torch.randperm(len(self.data.train_y), generator=torch.Generator().manual_seed(cfg.seed))
        eval_x, eval_y = self.data.train_x[sample[:EVAL_TRAIN_IMAGES]], self.data.train_y[sample[:EVAL_TRAIN_IMAGES]]
        probe_x, _ = next(eval_batches(eval_x[:PROBE_IMAGES], eval_y[:PROBE_IMAGES], PROBE_IMAGES, device,
                                       channels_last=True))
        optimizers = {label: make_optimizer(model, optim) for label, model in self.models.items()}
        probes = {label: Probe(model) for label, model in self.models.items()}
        recorder = _Recorder(self)
        self._progress.total_steps = total_steps
        self._set_state("running")

        clock_start = time.perf_counter()
        for step, (x, y) in enumerate(_batches(stream, total_steps)):
            if self._stop.is_set() or not recorder.active:
                break
            if not self._resume.is_set():
                recorder.flush()
                self._set_state("paused")
                paused = time.perf_counter()
                self._resume.wait()
                clock_start += time.perf_counter() - paused  # wall time counts training, not pauses
                if self._stop.is_set():
                    break
                self._set_state("running")
            started = time.perf_counter()
            lr = learning_rate(step, total_steps, stream.steps_per_epoch, optim)
            probing = cfg.probe_every > 0 and step % cfg.probe_every == 0
            scalars = []
            for label in recorder.active:
                if self._stop.is_set():
                    break  # Stop acts between models too: deep lockstep steps can take seconds
                model, optimizer = self.models[label], optimizers[label]
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with autocast:
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if probing:
                    grad_norms, weight_norms, before = probes[label].before_step()
                optimizer.step()
                scalars.append(torch.stack([loss.detach(), (logits.argmax(1) != y).float().mean() * 100]))
                if probing:
                    ratio = probes[label].update_ratio(weight_norms, before)
                    response = probes[label].response_std(probe_x)
                    recorder.probes(label, step, probes[label].layers,
                                    torch.stack([grad_norms, weight_norms, ratio, response], 1))
            if len(scalars) < len(recorder.active):
                break  # stopped mid-step: that step is not recorded
            if device.type == "cuda" and (step % 50 == 0 or probing):
                torch.cuda.synchronize(device)
            step_seconds = time.perf_counter() - started
            elapsed = time.perf_counter() - clock_start
            epoch = (step + 1) / stream.steps_per_epoch
            recorder.steps(step, epoch, lr, elapsed, torch.stack(scalars))
            self._update_progress(step + 1, total_steps, epoch, step_seconds, elapsed)
            budget_spent = self.max_seconds is not None and elapsed >= self.max_seconds
            if (step + 1) % eval_every == 0 or step + 1 == total_steps or budget_spent:
                recorder.flush()  # drops models that diverged before their evaluation
                for label in recorder.active:
                    train_loss, train_err = evaluate(self.models[label], eval_x, eval_y, device, autocast)
                    test_loss, test_err = evaluate(self.models[label], self.data.test_x, self.data.test_y,
                                                   device, autocast)
                    recorder.rows["evals"].append(dict(
                        model=label, step=step, epoch=epoch, train_loss=train_loss, train_err=train_err,
                        test_loss=test_loss, test_err=test_err, wall=elapsed))
            recorder.flush_if_due()
            if budget_spent:
                break  # the budget ends the run like its last step, evaluation included
        recorder.flush()
        final = "stopped" if self._stop.is_set() else "finished"
        for label in recorder.active:
            self.store.set_model_status(self.run_id, label, final)
        self._set_state(final)

    def _update_progress(self, step: int, total_steps: int, epoch: float, step_seconds: float,
                         elapsed: float) -> None:
        p = self._progress
        rate = self.config.optim.batch_size / max(step_seconds, 1e-9)
        p.images_per_s = rate if p.images_per_s == 0 else 0.9 * p.images_per_s + 0.1 * rate
        p.step, p.epoch, p.elapsed_s = step, epoch, elapsed
        p.eta_s = (total_steps - step) * self.config.optim.batch_size / p.images_per_s


def _batches(stream: BatchStream, total_steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The stream's epochs back to back, cut at total_steps."""
    step = 0
    for epoch in itertools.count():
        for batch in stream.epoch(epoch):
            if step == total_steps:
                return
            yield batch
            step += 1


class _Recorder:
    """Buffers a trainer's records and writes them to the store in one transaction about once a second.

    Per-step scalars stay on the device until a flush: one transfer per flush instead of one sync per step.
    Divergence is detected there, so a diverged model is dropped at most FLUSH_SECONDS after its first bad step.
    """

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.active = list(trainer.models)
        self.pending: list[tuple[int, float, float, float, list[str], torch.Tensor]] = []
        self.rows: dict[str, list[dict]] = {"steps": [], "evals": [], "probes": []}
        self.last_flush = time.perf_counter()

    def steps(self, step: int, epoch: float, lr: float, wall: float, loss_and_error: torch.Tensor) -> None:
        self.pending.append((step, epoch, lr, wall, list(self.active), loss_and_error))

    def probes(self, label: str, step: int, layers: list, table: torch.Tensor) -> None:
        self.rows["probes"] += [
            dict(model=label, step=step, layer=info.index, layer_name=info.name, grad_norm=g, weight_norm=w,
                 update_ratio=r, response_std=s)
            for info, (g, w, r, s) in zip(layers, table.cpu().tolist())
        ]

    def flush_if_due(self) -> None:
        if time.perf_counter() - self.last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        trainer = self.trainer
        values = torch.stack([v for *_, v in self.pending]).cpu().tolist() if self.pending else []
        for (step, epoch, lr, wall, labels, _), per_model in zip(self.pending, values):
            for label, (loss, err) in zip(labels, per_model):
                if label not in self.active:
                    continue
                if not math.isfinite(loss):
                    self.active.remove(label)
                    trainer.store.set_model_status(trainer.run_id, label, "diverged", diverged_step=step)
                    trainer._progress.diverged.append(label)
                    continue
                self.rows["steps"].append(dict(model=label, step=step, epoch=epoch, loss=loss, train_err=err,
                                               lr=lr, wall=wall))
        self.pending.clear()
        trainer.store.append(trainer.run_id, **self.rows)
        for table in self.rows.values():
            table.clear()
        self.last_flush = time.perf_counter()
