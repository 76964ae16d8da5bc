"""The training step: one function for the trainer, the estimate and the benchmarks.

`TrainStep` runs one model's step in two halves so that probes can read the gradients in between:
`forward_backward(x, y)` (forward under the policy's autocast, cross-entropy, backward) and `update(lr)` (the
optimiser at this step's learning rate). On a GPU with ``policy.cuda_graphs`` the first half is captured once as a
CUDA graph and replayed (`GraphedBackward`): the inputs are copied into static buffers, and gradients land in static
tensors that the optimiser (fused SGD, one kernel) reads. Nothing in a step waits for the device: its loss and error
come back as a device tensor that the caller reads later, in bulk.

`lockstep_steps` gives every model of a lockstep run its step: with ``policy.batched_twins``, models of identical
parameter shapes (a plain net and its residual twin) share one batched forward and backward (explorer.twins); every
other model has a `TrainStep` of its own. `LockstepGraph` captures a whole lockstep step, every model's update
included, as one CUDA graph: the benchmarks measure it (bench/twins.py); the trainer does not use it, since its
probes read each model's gradients between backward and update.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Mapping, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import OptimConfig
from .device import DevicePolicy

GRAPH_WARMUP_STEPS = 3  # eager iterations on a side stream before capture, as PyTorch's CUDA graph docs require


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


def make_optimizer(model: nn.Module, optim: OptimConfig, policy: DevicePolicy) -> torch.optim.Optimizer:
    fused = policy.cuda  # one kernel for the whole update on a GPU
    if optim.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay, fused=fused or None)
    return torch.optim.SGD(model.parameters(), lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay,
                           fused=fused or None)


def loss_and_error(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy (in fp32) and the batch error in percent."""
    return F.cross_entropy(logits.float(), y), (logits.argmax(1) != y).float().mean() * 100


class StepError(ValueError):
    """A training step cannot be built as asked; the message says what to change."""


class GraphedBackward:
    """`run(x, y)`, a forward and backward that leaves gradients in ``.grad`` and returns a device tensor, captured
    as a CUDA graph at its first call and replayed after. Inputs are copied into static buffers; gradients and the
    result are static (each call returns a copy of the result, which the next replay overwrites).

    Capture needs warm-up iterations that run real forwards, which move BatchNorm's running statistics: `buffers`
    are put back, so capturing leaves the models as they were. `zero_grad` sets gradients to None before capture,
    so that they are allocated inside the graph. A `run` that cannot be captured (an op that syncs with the host,
    say) returns None from then on, with a warning: its caller trains eagerly."""

    def __init__(self, run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], zero_grad: Callable[[], None],
                 buffers: Callable[[], list[torch.Tensor]], policy: DevicePolicy):
        self.run, self.zero_grad, self.buffers, self.policy = run, zero_grad, buffers, policy
        self.failed = False
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # x, y, result

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        if self.failed:
            return None
        if self._graph is None:
            self._capture(x, y)
            if self.failed:
                return None
        static_x, static_y, result = self._static
        static_x.copy_(x)
        static_y.copy_(y)
        self._graph.replay()
        return result.clone()

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        saved = [b.clone() for b in self.buffers()]
        static_x, static_y = x.clone(), y.clone()
        try:
            self._graph, result = capture(lambda: self.run(static_x, static_y), self.zero_grad, self.policy)
            self._static = (static_x, static_y, result)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as error:
            warnings.warn(f"CUDA graph capture failed, training eagerly instead: {error}", stacklevel=4)
            self.failed = True
        finally:
            with torch.no_grad():
                for buffer, value in zip(self.buffers(), saved):
                    buffer.copy_(value)


def capture(work: Callable[[], torch.Tensor], zero_grad: Callable[[], None],
            policy: DevicePolicy) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """`work` run `GRAPH_WARMUP_STEPS` times on a side stream, then captured: the graph and its static result."""
    device = policy.device
    warmup = torch.cuda.Stream(device)
    warmup.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(warmup):
        for _ in range(GRAPH_WARMUP_STEPS):
            zero_grad()
            work()
    torch.cuda.current_stream(device).wait_stream(warmup)
    zero_grad()  # gradients are allocated inside the graph: static from now on
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        result = work()
    return graph, result


class Computation(Protocol):
    """What computes the forward and backward of one or more models: a `TrainStep`, or a twin group."""

    def eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Zero the gradients, then forward and backward eagerly; one [loss, error %] row per model."""
        ...


class TrainStep:
    """One model's training step under a device policy (see the module docstring)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, policy: DevicePolicy):
        self.model, self.optimizer, self.policy = model, optimizer, policy
        self.stream = policy.new_stream()
        self._graphed = (GraphedBackward(self._forward_backward, self._zero_grad, lambda: list(model.buffers()), policy)
                         if policy.cuda_graphs else None)

    @property
    def computation(self) -> tuple[Computation, int]:
        """What computes this model's forward and backward (this step, or a batched group) and its row there."""
        return self, 0

    def eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gradients of this batch in ``.grad``, computed eagerly; returns [[loss, error %]] on the device."""
        self._zero_grad()
        return self._forward_backward(x, y)[None]

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gradients of this batch in ``.grad``; returns [loss, error %] on the device."""
        if self._graphed is not None:
            scalars = self._graphed(x, y)
            if scalars is not None:
                return scalars
        return self.eager(x, y)[0]

    def update(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        scalars = self.forward_backward(x, y)
        self.update(lr)
        return scalars

    def _zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.policy.autocast():
            logits = self.model(x)
        loss, error = loss_and_error(logits, y)
        loss.backward()
        return torch.stack([loss.detach(), error])


def lockstep_steps(models: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer],
                   policy: DevicePolicy) -> dict[str, TrainStep]:
    """The step of every model of a lockstep run, in the order of `models`: batched twins where the policy says so
    (see the module docstring), else one `TrainStep` each."""
    if policy.batched_twins:
        from .twins import twin_steps  # twins builds on this module

        return twin_steps(models, optimizers, policy)
    return {label: TrainStep(model, optimizers[label], policy) for label, model in models.items()}


class LockstepGraph:
    """One CUDA graph over a whole lockstep step: every computation's forward and backward (a `TrainStep`'s, or a
    twin group's once for all its members), then every model's optimiser update, with the learning rate read from a
    device tensor. Capturing trains `GRAPH_WARMUP_STEPS` real steps first (they create the momentum buffers the
    graph updates), so it is for benchmarks, not for a recorded run."""

    def __init__(self, steps: Sequence[TrainStep], policy: DevicePolicy):
        if not policy.cuda:
            raise StepError("a CUDA graph needs a CUDA device: use a cuda policy, or call the steps themselves")
        self.steps, self.policy = list(steps), policy
        self.units = list(dict.fromkeys(step.computation[0] for step in self.steps))
        self.lr = torch.zeros((), device=policy.device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        """The step at learning rate `lr`; returns [[loss, error %] per step] on the device."""
        self.lr.fill_(lr)
        if self._graph is None:
            for step in self.steps:
                for group in step.optimizer.param_groups:
                    group["lr"] = self.lr  # fused SGD reads a tensor learning rate at every replay
            static_x, static_y = x.clone(), y.clone()
            graph, result = capture(lambda: self._step(static_x, static_y), self._zero_grad, self.policy)
            self._graph, self._static = graph, (static_x, static_y, result)
        static_x, static_y, result = self._static
        static_x.copy_(x)
        static_y.copy_(y)
        self._graph.replay()
        return result.clone()

    def _zero_grad(self) -> None:
        for step in self.steps:
            step.optimizer.zero_grad(set_to_none=True)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rows = {unit: unit.eager(x, y) for unit in self.units}
        for step in self.steps:
            step.optimizer.step()
        return torch.stack([rows[unit][row] for unit, row in (step.computation for step in self.steps)])
