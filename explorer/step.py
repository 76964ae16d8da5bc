"""The training step: one function for the trainer, the estimate and the benchmarks.

`TrainStep` runs one model's step in two halves so that probes can read the gradients in between:
`forward_backward(x, y)` (forward under the policy's autocast, cross-entropy, backward) and `update(lr)` (the
optimiser at this step's learning rate). On a GPU with ``policy.cuda_graphs`` the first half is captured once as a
CUDA graph and replayed: the inputs are copied into static buffers, and gradients land in static tensors that the
optimiser (fused SGD, one kernel) reads. Nothing in a step waits for the device: its loss and error come back as a
device tensor that the caller reads later, in bulk.
"""

from __future__ import annotations

import math
import warnings

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


class TrainStep:
    """One model's training step under a device policy (see the module docstring)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, policy: DevicePolicy):
        self.model, self.optimizer, self.policy = model, optimizer, policy
        self.stream = policy.new_stream()
        self.graphs = policy.cuda_graphs  # off for good if this model cannot be captured
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # x, y, [loss, error]

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.policy.autocast():
            logits = self.model(x)
        loss, error = loss_and_error(logits, y)
        loss.backward()
        return torch.stack([loss.detach(), error])

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gradients of this batch in ``.grad``; returns [loss, error %] on the device."""
        if self._graph is None and self.graphs:
            self._capture(x, y)
        if not self.graphs:
            self.optimizer.zero_grad(set_to_none=True)
            return self._eager(x, y)
        static_x, static_y, scalars = self._static
        static_x.copy_(x)
        static_y.copy_(y)
        self._graph.replay()
        return scalars.clone()  # the next replay overwrites the static output

    def update(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        scalars = self.forward_backward(x, y)
        self.update(lr)
        return scalars

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Capture forward and backward as a CUDA graph. The warm-up iterations it needs run real forwards, which
        move BatchNorm's running statistics: they are put back, so capturing leaves the model as it was. A model
        that cannot be captured (an op that syncs with the host, say) trains eagerly, with a warning."""
        buffers = {name: b.clone() for name, b in self.model.named_buffers()}
        static_x, static_y = x.clone(), y.clone()
        try:
            warmup = torch.cuda.Stream(self.policy.device)
            warmup.wait_stream(torch.cuda.current_stream(self.policy.device))
            with torch.cuda.stream(warmup):
                for _ in range(GRAPH_WARMUP_STEPS):
                    self.optimizer.zero_grad(set_to_none=True)
                    self._eager(static_x, static_y)
            torch.cuda.current_stream(self.policy.device).wait_stream(warmup)
            self.optimizer.zero_grad(set_to_none=True)  # gradients are allocated inside the graph: static from now on
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                scalars = self._eager(static_x, static_y)
            self._graph, self._static = graph, (static_x, static_y, scalars)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as error:
            warnings.warn(f"CUDA graph capture failed, training eagerly instead: {error}", stacklevel=3)
            self.graphs = False
        finally:
            with torch.no_grad():
                for name, buffer in self.model.named_buffers():
                    buffer.copy_(buffers[name])
