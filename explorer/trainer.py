"""Lockstep instrumented trainer: several models, identical batches, every step recorded, resumable bit for bit.

All models of a run see exactly the same batches in the same order with the same augmentation, so a plain and a
residual twin at several depths differ only in their architecture. Each step records loss, batch training error
and learning rate; each evaluation the error on fixed samples of the training and test subsets (``eval_images``
each, about 25 times per run, so test error is a curve; the last evaluation scores the whole test subset); each
probe step the per-layer gradient norm, weight norm, update-to-weight ratio and response std on a fixed probe
batch. Response std follows He et al. 2015 Fig. 7 with batch statistics: BatchNorm normalises the probe batch by
its own statistics, as in training, and its running statistics are left untouched (eval-mode statistics lag weights
that grow fast early in training and inflate the responses by orders of magnitude).

Nothing inside a step waits for the device: losses, errors, probes and evaluations stay device tensors until a
flush (about once a second), which reads them in one transfer and writes them to the run's sink (the store, or a
remote writer) in one transaction, with the run's progress. A model whose loss is non-finite or above
`loss_bound` is marked diverged at that step and dropped, its later rows discarded; its twins go on, and the run
ends `diverged` when every model has.

The trainer checkpoints models, optimisers and the step (the data position: an epoch's batches are a pure function
of the seed) every ``checkpoint_seconds``, on pause and on stop. `run(resume=True)` continues from the checkpoint
and writes exactly the records an uninterrupted run would have written (wall times aside). Controls (`pause`,
`resume`, `stop`) are thread-safe and act between models of a lockstep step.

In every record `step` is the 0-based index of the last update it covers (an evaluation after the k-th update
has step k-1), `epoch` the epochs completed, and `wall` the seconds of training so far, pauses excluded.
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch
from torch import nn

from .checkpoints import Checkpoint
from .config import Config
from .data import BatchStream, ImageData, eval_batches
from .device import DevicePolicy
from .models import ExplorerNet, LayerInfo, build_model
from .states import ModelState, RunState
from .step import TrainStep, learning_rate, lockstep_steps, loss_and_error, make_optimizer

PROBE_IMAGES = 64  # enough for a stable std per layer; its forward costs ~2% at probes every 10 steps
FINAL_TRAIN_IMAGES = 1000  # the last evaluation scores this many training images (and the whole test subset)
FLUSH_SECONDS = 1.0
EVAL_BATCH = 500


def loss_bound(num_classes: int) -> float:
    """A loss this high has diverged: 50 times that of guessing uniformly (115 for ten classes)."""
    return 50 * math.log(num_classes)


class TrainingError(RuntimeError):
    """Training could not go on (out of memory, say); the message says what to change."""


class RunSink(Protocol):
    """Where a trainer writes (`explorer.store.RunStore`, or a writer on a Ray head)."""

    def append(self, run_id: str, **rows: list[dict]) -> None: ...
    def set_status(self, run_id: str, status: RunState, error: str = "") -> None: ...
    def set_model_status(self, run_id: str, model: str, status: ModelState,
                         diverged_step: int | None = None) -> None: ...
    def set_progress(self, run_id: str, progress: "Progress") -> None: ...
    def truncate_after(self, run_id: str, step: int) -> None: ...


@dataclass(frozen=True)
class Progress:
    """A run's live state as the trainer last published it (a copy: callers never see it change)."""

    state: RunState
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    images_per_s: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    device: str = ""
    data_source: str = ""
    gpu_memory_bytes: int | None = None
    diverged: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "state": str(self.state)})

    @classmethod
    def from_json(cls, text: str | None, state: RunState) -> "Progress":
        """The stored progress, with the store's `state` (which outlives the trainer's last word). Malformed text
        gives a blank progress and a `RuntimeWarning` (once per text: callers poll it every second)."""
        try:
            raw = json.loads(text) if text else {}
            if not isinstance(raw, dict):
                raise TypeError(f"a JSON {type(raw).__name__}, not an object")
            known = {f for f in cls.__dataclass_fields__}
            values = {k: v for k, v in raw.items() if k in known and k != "state"}
            values["diverged"] = tuple(values.get("diverged", ()))
            return cls(state=state, **values)
        except (TypeError, ValueError) as error:
            warnings.warn(f"stored progress {str(text)[:80]!r} is malformed ({error}): showing a blank progress",
                          RuntimeWarning, stacklevel=2)
            return cls(state=state)


class Probe:
    """Per-layer gradient norm, weight norm, update-to-weight ratio and response std of one model."""

    def __init__(self, model: ExplorerNet, policy: DevicePolicy):
        self.model, self.policy = model, policy
        self.layers: list[LayerInfo] = model.layers()
        self.weights = [info.module.weight for info in self.layers]

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
        """Std of each layer's response on `x` with batch statistics, running statistics untouched."""
        stds: list[torch.Tensor] = []
        hooks = [info.response.register_forward_hook(lambda m, i, out: stds.append(out.float().std()))
                 for info in self.layers]
        try:
            with batch_statistics(self.model), self.policy.autocast():
                self.model(x)
        finally:
            for hook in hooks:
                hook.remove()
        return torch.stack(stds)


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Train-mode BatchNorm that normalises by the batch's own statistics without updating the running ones."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was_training = model.training
    tracked = [m.track_running_stats for m in norms]
    model.train()
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, flag in zip(norms, tracked):
            m.track_running_stats = flag
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, policy: DevicePolicy) -> torch.Tensor:
    """[mean loss, error %] without augmentation, in eval mode, as a device tensor (read it later)."""
    model.eval()
    sums = torch.zeros(2, device=policy.device)
    for xb, yb in eval_batches(x, y, EVAL_BATCH, policy.device, channels_last=policy.channels_last):
        with policy.autocast():
            logits = model(xb)
        loss, error = loss_and_error(logits, yb)
        sums += torch.stack([loss, error]) * len(yb)
    model.train()
    return sums / len(y)


class Trainer:
    """Trains `config`'s models in lockstep for the stored run `run_id` (see the module docstring)."""

    def __init__(self, config: Config, sink: RunSink, run_id: str, data: ImageData, policy: DevicePolicy, *,
                 max_seconds: float | None = None, checkpoint_path: Path | None = None,
                 checkpoint_seconds: float = 30.0, after: Callable[["Trainer"], None] | None = None):
        """`data` must already be on `policy.device` or on the CPU; `after` runs once the run finished (a preset's
        lesion study, say), with the trained models."""
        self.config, self.sink, self.run_id, self.data, self.policy = config, sink, run_id, data, policy
        self.max_seconds = max_seconds
        self.checkpoint_path, self.checkpoint_seconds = checkpoint_path, checkpoint_seconds
        self.after = after
        self.models: dict[str, ExplorerNet] = {}
        self._lock = threading.Lock()
        self._progress = Progress(state=RunState.CLAIMED, device=policy.name, data_source=data.source)
        self._resume = threading.Event()
        self._resume.set()
        self._stop = threading.Event()

    # --- control (thread-safe) ---------------------------------------------------------------
    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    def stop(self) -> None:
        self._stop.set()
        self._resume.set()

    def progress(self) -> Progress:
        with self._lock:
            return self._progress

    @property
    def state(self) -> RunState:
        return self.progress().state

    def _publish(self, **changes: Any) -> Progress:
        with self._lock:
            self._progress = replace(self._progress, **changes)
            return self._progress

    def _set_state(self, state: RunState, error: str = "") -> None:
        self.sink.set_progress(self.run_id, self._publish(state=state))
        self.sink.set_status(self.run_id, state, error=error)

    # --- the run ------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> RunState:
        """Train in the caller's thread until the run ends; returns its final state. Raises `TrainingError` (and
        records the run as failed) when training cannot go on."""
        try:
            state = self._train(resume)
        except torch.OutOfMemoryError:
            message = (f"out of memory on {self.policy.name} with {len(self.config.models)} models at batch "
                       f"{self.config.optim.batch_size}: use a smaller batch, fewer or shallower models")
            self._set_state(RunState.FAILED, message)
            raise TrainingError(message) from None
        except Exception as error:
            self._set_state(RunState.FAILED, f"{type(error).__name__}: {error}")
            raise
        return state

    def _build(self) -> None:
        self.policy.apply()
        for model_cfg in self.config.models:
            model = build_model(model_cfg, num_classes=len(self.data.classes), seed=self.config.seed)
            self.models[model_cfg.label] = self.policy.to_device(model)

    def _train(self, resume: bool) -> RunState:
        cfg, optim, policy = self.config, self.config.optim, self.policy
        self._build()
        optimizers = {label: make_optimizer(model, optim, policy) for label, model in self.models.items()}
        steps: dict[str, TrainStep] = lockstep_steps(self.models, optimizers, policy)
        probes = {label: Probe(model, policy) for label, model in self.models.items()}
        stream = BatchStream(self.data, optim.batch_size, cfg.data.augment, policy.device, seed=cfg.seed,
                             channels_last=policy.channels_last)
        total_steps, steps_per_epoch = cfg.run_steps()
        assert steps_per_epoch == stream.steps_per_epoch, "Config.run_steps and BatchStream disagree"
        samples = _EvalSamples(self.data, cfg, policy)
        recorder = _Recorder(self, loss_bound(len(self.data.classes)))

        start, wall_before = 0, 0.0
        checkpoint = Checkpoint.load(self.checkpoint_path) if resume and self.checkpoint_path else None
        if checkpoint is not None:
            for label, model in self.models.items():
                model.load_state_dict(checkpoint.models[label])
                optimizers[label].load_state_dict(checkpoint.optimizers[label])
            recorder.restore(checkpoint.active, checkpoint.diverged)
            start, wall_before = checkpoint.step + 1, checkpoint.wall
        if resume:
            self.sink.truncate_after(self.run_id, start - 1)  # rows written after the checkpoint come again
        self._publish(total_steps=total_steps, step=start, epoch=start / steps_per_epoch, elapsed_s=wall_before)
        self._set_state(RunState.RUNNING)

        eval_every = cfg.evaluation_interval()
        clock = _Clock(wall_before)
        last_checkpoint = time.perf_counter()
        done = start - 1  # the last step every active model completed
        for step, (x, y) in enumerate(stream.run(total_steps, start), start=start):
            if not self._resume.is_set():
                self._pause(recorder, clock, optimizers, done)
            if self._stop.is_set() or not recorder.active:
                break
            lr = learning_rate(step, total_steps, steps_per_epoch, optim)
            probing = cfg.probe_every > 0 and step % cfg.probe_every == 0
            scalars, streams = [], []
            for label in recorder.active:
                if self._stop.is_set():
                    break  # Stop acts between models too: deep lockstep steps can take seconds
                train_step, probe = steps[label], probes[label]
                streams.append(train_step.stream)
                with policy.side_stream(train_step.stream):
                    scalars.append(train_step.forward_backward(x, y))
                    if probing:
                        grad_norms, weight_norms, before = probe.before_step()
                    train_step.update(lr)
                    if probing:
                        table = torch.stack([grad_norms, weight_norms, probe.update_ratio(weight_norms, before),
                                             probe.response_std(samples.probe_x)], 1)
                        recorder.probes(label, step, table)
            policy.join(streams)
            if len(scalars) < len(recorder.active):
                break  # stopped mid-step: that step is not recorded (a resumed run trains it again)
            done = step
            epoch = (step + 1) / steps_per_epoch
            elapsed = clock.elapsed()
            recorder.steps(step, epoch, lr, elapsed, torch.stack(scalars))
            budget_spent = self.max_seconds is not None and elapsed >= self.max_seconds
            last = step + 1 == total_steps or budget_spent
            if (step + 1) % eval_every == 0 or last:
                recorder.flush()  # drops models that diverged before their evaluation
                for label in recorder.active:
                    recorder.evaluation(label, step, epoch, elapsed, *samples.score(self.models[label], final=last))
            if recorder.due() or step == start:
                recorder.flush()  # the first step is flushed at once: the first chart point comes fast
            if self.checkpoint_path and time.perf_counter() - last_checkpoint > self.checkpoint_seconds:
                recorder.flush()
                self._checkpoint(recorder, clock, optimizers, done)
                last_checkpoint = time.perf_counter()
            if budget_spent:
                break  # the budget ends the run like its last step, evaluation included
        recorder.flush()
        if not recorder.active:
            final = RunState.DIVERGED
        elif self._stop.is_set():
            final = RunState.STOPPED
        else:
            final = RunState.FINISHED
        model_state = ModelState.STOPPED if final is RunState.STOPPED else ModelState.FINISHED
        for label in recorder.active:
            self.sink.set_model_status(self.run_id, label, model_state)
        if self.checkpoint_path and final is not RunState.DIVERGED:
            self._checkpoint(recorder, clock, optimizers, done)
        if final is RunState.FINISHED and self.after is not None:
            self.after(self)  # while the run is still running: its worker keeps the lease, its writes land
        self._set_state(final)
        return final

    def _pause(self, recorder: "_Recorder", clock: "_Clock", optimizers: dict, done: int) -> None:
        recorder.flush()
        if self.checkpoint_path:
            self._checkpoint(recorder, clock, optimizers, done)
        self._set_state(RunState.PAUSED)
        paused = time.perf_counter()
        self._resume.wait()
        clock.exclude(time.perf_counter() - paused)  # wall time counts training, not pauses
        if not self._stop.is_set():
            self._set_state(RunState.RUNNING)

    def _checkpoint(self, recorder: "_Recorder", clock: "_Clock", optimizers: dict, step: int) -> None:
        Checkpoint(step=step, wall=clock.elapsed(), active=list(recorder.active), diverged=dict(recorder.diverged),
                   models={label: model.state_dict() for label, model in self.models.items()},
                   optimizers={label: opt.state_dict() for label, opt in optimizers.items()},
                   ).save(self.checkpoint_path)

    def publish_progress(self, step: int, epoch: float, elapsed: float, images_per_s: float, diverged: list[str]) -> None:
        """Called by the recorder after each flush: the sink stores the progress, so every page shows the same."""
        total = self._progress.total_steps
        rate = images_per_s or self._progress.images_per_s
        eta = (total - step) * self.config.optim.batch_size / rate if rate > 0 else None
        progress = self._publish(step=step, epoch=epoch, elapsed_s=elapsed, images_per_s=rate, eta_s=eta,
                                 diverged=tuple(diverged), gpu_memory_bytes=self.policy.memory_in_use())
        self.sink.set_progress(self.run_id, progress)


class _Clock:
    """Seconds of training so far: wall time since start, plus what earlier sessions trained, minus pauses."""

    def __init__(self, before: float):
        self.started = time.perf_counter() - before

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def exclude(self, seconds: float) -> None:
        self.started += seconds


class _EvalSamples:
    """The fixed images every evaluation scores, held on the device: `eval_images` of the training subset and of
    the test subset (the last evaluation scores `FINAL_TRAIN_IMAGES` and the whole test subset), and the probe
    batch."""

    def __init__(self, data: ImageData, cfg: Config, policy: DevicePolicy):
        self.policy = policy
        generator = torch.Generator().manual_seed(cfg.seed)
        train = torch.randperm(len(data.train_y), generator=generator).to(data.train_y.device)
        test = torch.randperm(len(data.test_y), generator=generator).to(data.test_y.device)
        n_train, n_final = min(cfg.eval_images, len(train)), min(max(cfg.eval_images, FINAL_TRAIN_IMAGES), len(train))
        self.train = [(data.train_x[train[:n]], data.train_y[train[:n]]) for n in (n_train, n_final)]
        n_test = min(cfg.eval_images, len(test))
        self.test = [(data.test_x[test[:n_test]], data.test_y[test[:n_test]]), (data.test_x, data.test_y)]
        probe_x, _ = next(eval_batches(data.train_x[train[:PROBE_IMAGES]], data.train_y[train[:PROBE_IMAGES]],
                                       PROBE_IMAGES, policy.device, channels_last=policy.channels_last))
        self.probe_x = probe_x

    def score(self, model: nn.Module, final: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
        """[loss, error] on the training sample and on the test sample, and how many test images were scored."""
        (train_x, train_y), (test_x, test_y) = self.train[final], self.test[final]
        return evaluate(model, train_x, train_y, self.policy), evaluate(model, test_x, test_y, self.policy), len(test_y)


class _Recorder:
    """Buffers a trainer's records as device tensors and writes them to its sink about once a second.

    Divergence is detected at a flush, so a diverged model is dropped at most `FLUSH_SECONDS` after its first bad
    step; its rows from that step on (steps and probes) are discarded and its status says at which step.
    """

    def __init__(self, trainer: Trainer, bound: float):
        self.trainer, self.bound = trainer, bound
        self.active = list(trainer.models)
        self.diverged: dict[str, int] = {}
        self.pending_steps: list[tuple[int, float, float, float, list[str], torch.Tensor]] = []
        self.pending_probes: list[tuple[str, int, torch.Tensor]] = []
        self.pending_evals: list[tuple[str, int, float, float, torch.Tensor, torch.Tensor, int]] = []
        self.last_flush = time.perf_counter()
        self.images = 0

    def restore(self, active: list[str], diverged: dict[str, int]) -> None:
        self.active = [label for label in self.trainer.models if label in active]
        self.diverged = dict(diverged)

    def steps(self, step: int, epoch: float, lr: float, wall: float, loss_and_error: torch.Tensor) -> None:
        self.pending_steps.append((step, epoch, lr, wall, list(self.active), loss_and_error))
        self.images += self.trainer.config.optim.batch_size

    def probes(self, label: str, step: int, table: torch.Tensor) -> None:
        self.pending_probes.append((label, step, table))

    def evaluation(self, label: str, step: int, epoch: float, wall: float, train: torch.Tensor, test: torch.Tensor,
                   test_images: int) -> None:
        self.pending_evals.append((label, step, epoch, wall, train, test, test_images))

    def due(self) -> bool:
        return time.perf_counter() - self.last_flush > FLUSH_SECONDS

    def flush(self) -> None:
        trainer = self.trainer
        values = torch.stack([v for *_, v in self.pending_steps]).cpu().tolist() if self.pending_steps else []
        rows: dict[str, list[dict]] = {"steps": [], "evals": [], "probes": []}
        for (step, epoch, lr, wall, labels, _), per_model in zip(self.pending_steps, values):
            for label, (loss, err) in zip(labels, per_model):
                if label not in self.active:
                    continue
                if not math.isfinite(loss) or loss > self.bound:
                    self._diverge(label, step)
                    continue
                rows["steps"].append(dict(model=label, step=step, epoch=epoch, loss=loss, train_err=err, lr=lr,
                                          wall=wall))
        for label, step, table in self.pending_probes:
            if label in self.active or step < self.diverged.get(label, step + 1):
                rows["probes"] += [
                    dict(model=label, step=step, layer=i, layer_name=info.name, grad_norm=g, weight_norm=w,
                         update_ratio=r, response_std=s)
                    for i, (info, (g, w, r, s)) in enumerate(zip(trainer.models[label].layers(), table.cpu().tolist()))
                ]
        for label, step, epoch, wall, train, test, images in self.pending_evals:
            (train_loss, train_err), (test_loss, test_err) = train.tolist(), test.tolist()
            rows["evals"].append(dict(model=label, step=step, epoch=epoch, train_loss=train_loss, train_err=train_err,
                                      test_loss=test_loss, test_err=test_err, test_images=images, wall=wall))
        elapsed = time.perf_counter() - self.last_flush
        last = self.pending_steps[-1] if self.pending_steps else None
        for pending in (self.pending_steps, self.pending_probes, self.pending_evals):
            pending.clear()
        trainer.sink.append(trainer.run_id, **rows)
        if last is not None:
            step, epoch, _, wall, *_ = last
            trainer.publish_progress(step + 1, epoch, wall, self.images / max(elapsed, 1e-9), list(self.diverged))
        self.images = 0
        self.last_flush = time.perf_counter()

    def _diverge(self, label: str, step: int) -> None:
        self.active.remove(label)
        self.diverged[label] = step
        self.trainer.sink.set_model_status(self.trainer.run_id, label, ModelState.DIVERGED, diverged_step=step)
