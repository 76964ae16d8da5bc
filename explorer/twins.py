"""Batched twins: lockstep models of identical parameter shapes trained as one computation (a speed option).

Plain-N and ResNet-N of one configuration have the same parameters, name for name and shape for shape: they differ
only by the shortcut addition (He et al. 2015 §3.2, Fig. 2). In a lockstep run they also see the same batch. A
`TwinGroup` stacks their parameters and buffers along a new first dimension and runs the forward and backward of
all of them as one `torch.vmap` over `torch.func.functional_call`: each convolution becomes one grouped convolution
over the stacked weights, each BatchNorm one normalisation of the models' channels side by side (batch statistics
per model, running statistics per model), the classifier one batched matmul. One template computes for all: a plain
net whose blocks get their shortcut back through a forward hook on each block's last layer, which adds
gate · shortcut(x), gate 1 for a residual member and 0 for a plain one. Both are exact in floating point
(F(x) + 0·s = F(x), and F(x) + s = s + F(x)), so a member computes what it would alone up to the summation order of
the batched kernels: tests/test_twins.py finds gradients within 1e-9 and weights within 1e-12 of the separate models'
over several steps in float64 (basic and bottleneck blocks, with and without BatchNorm give the same).

The members stay models: their parameters and buffers become views of the stacked tensors (by assigning ``.data``,
as `torch.nn.utils.vector_to_parameters` does) and their gradients views of the stacked gradient, so each model's own
optimiser, probes, evaluations and checkpoints work unchanged. Only forward and backward are batched: each
`TwinStep` returns its member's row of the group's result, computed once per batch.

Measured on the CPU (bench/twins.py, the classic demo's four nets, two twin pairs; 1 thread on 2 cores that other
jobs kept busy, load 4-9; medians of alternating rounds, lockstep images/s): at the CPU sizing (quarter width, batch
32, 5 rounds of 20 steps) separate 20.6, twins 23.9, 1.16x (per round 0.89-1.42); at full width and batch 128
(3 rounds of 3 steps) separate 9.7, twins 6.3, 0.65x (every round lost): batching pays where per-op overhead
dominates and loses where the CPU's grouped convolutions are slower than plain ones. Too noisy and too mixed to
turn on, so `DevicePolicy.batched_twins` stays off by default; bench/gpu_suite.py measures a GPU, prints both and
turns it on for the sections after it when it wins there.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from .config import ModelConfig
from .device import DevicePolicy
from .models import Block, ExplorerNet
from .step import GraphedBackward, TrainStep, loss_and_error


class TwinError(ValueError):
    """Models that cannot be batched together were grouped; the message says which."""


def twin_key(cfg: ModelConfig) -> ModelConfig | None:
    """The configuration that batched twins share (a residual net's, initialisation aside), or None for a net with
    no batched twin here: VGG, Inception and pre-activation blocks, and residual nets whose shortcuts carry weights
    or scale the sum (options B and C, scaled and gated shortcuts)."""
    if cfg.family == "vgg" or cfg.block == "inception" or cfg.order != "original":
        return None
    if cfg.residual and (cfg.shortcut != "A" or cfg.shortcut_variant != "identity"):
        return None
    # a plain net has no shortcut, so its shortcut settings change nothing; initialisation changes no shape
    return replace(cfg, family="resnet", shortcut="A", shortcut_variant="identity", init="kaiming",
                   zero_init_residual=False)


def twin_steps(models: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer],
               policy: DevicePolicy) -> dict[str, TrainStep]:
    """A step per model, in the order of `models`: twins (same `twin_key`) share a `TwinGroup`, others train alone."""
    groups: dict[object, list[str]] = {}
    for label, model in models.items():
        key = twin_key(model.config) if isinstance(model, ExplorerNet) else None
        groups.setdefault(("alone", label) if key is None else key, []).append(label)
    steps: dict[str, TrainStep] = {}
    for labels in groups.values():
        if len(labels) == 1:
            steps[labels[0]] = TrainStep(models[labels[0]], optimizers[labels[0]], policy)
            continue
        group = TwinGroup([models[label] for label in labels], policy)
        steps.update({label: TwinStep(group, i, optimizers[label]) for i, label in enumerate(labels)})
    return {label: steps[label] for label in models}


def _stacked(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The tensors along a new first dimension, each slice laid out as the first tensor is (a channels_last conv
    weight stays channels_last), so that slices handed back to the models keep their memory format."""
    first = tensors[0]
    dense = first.is_contiguous() or (first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last))
    if not dense:
        return torch.stack([t.detach().contiguous() for t in tensors])
    out = torch.empty_strided((len(tensors), *first.shape), (max(1, first.numel()), *first.stride()),
                              dtype=first.dtype, device=first.device)
    for i, tensor in enumerate(tensors):
        out[i].copy_(tensor.detach())
    return out


class GlobalMean(nn.Module):
    """Global average pooling as a mean over the map, as `nn.AdaptiveAvgPool2d(1)` computes it; vmap batches a mean
    natively, while adaptive pooling of a channels_last map falls back to a loop over the models."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class TwinGroup:
    """Forward and backward of `members` (models with one `twin_key`) as one batched computation (see the module
    docstring); on a GPU with ``policy.cuda_graphs`` captured as one CUDA graph."""

    def __init__(self, members: Sequence[ExplorerNet], policy: DevicePolicy):
        keys = {twin_key(m.config) for m in members}
        if len(keys) != 1 or None in keys:
            raise TwinError(f"{', '.join(m.config.label for m in members)} are not twins: batch only plain and "
                            "residual nets of one configuration (option A, identity shortcuts, original order)")
        first = members[0]
        self.members, self.policy = list(members), policy
        with torch.device("meta"):  # computes with the stacked tensors only; holds none of its own
            self.template = ExplorerNet(replace(keys.pop(), family="plain"), first.num_classes).train()
        self.template.pool = GlobalMean()
        self._gate: torch.Tensor | None = None
        self._inputs: dict[Block, torch.Tensor] = {}
        for block in self.template.blocks():
            block.register_forward_pre_hook(self._remember_input)
            block.final_layers()[-1].register_forward_hook(partial(self._add_shortcut, block))

        named = [(dict(m.named_parameters()), dict(m.named_buffers())) for m in self.members]
        with torch.no_grad():
            self.params = {name: _stacked([p[name] for p, _ in named]).requires_grad_() for name in named[0][0]}
            self.buffers = {name: _stacked([b[name] for _, b in named]) for name in named[0][1]}
            for i, (params, buffers) in enumerate(named):
                for name, parameter in params.items():
                    parameter.data = self.params[name].detach()[i]
                for name, buffer in buffers.items():
                    buffer.data = self.buffers[name][i]
        self.gates = torch.tensor([float(m.config.residual) for m in self.members], device=policy.device)
        self._graphed = (GraphedBackward(self._forward_backward, self._zero_grad, lambda: list(self.buffers.values()),
                                         policy) if policy.cuda_graphs else None)
        self._batch: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None
        self._taken: set[int] = set()

    def row(self, index: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Member `index`'s [loss, error %] on this batch; the group computes once per batch for all members (again
        when a member asks twice for one batch: a loop that reuses its input tensor)."""
        if x is not self._batch or index in self._taken:
            self._rows, self._batch, self._taken = self.run(x, y), x, set()
        self._taken.add(index)
        return self._rows[index]

    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Every member's gradients in its ``.grad``; one [loss, error %] row per member, on the device."""
        if self._graphed is not None:
            rows = self._graphed(x, y)
            if rows is not None:
                return rows
        return self.eager(x, y)

    def eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._zero_grad()
        return self._forward_backward(x, y)

    def _zero_grad(self) -> None:
        for stacked in self.params.values():
            stacked.grad = None
        for member in self.members:
            member.zero_grad(set_to_none=True)

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.policy.autocast():
            logits = torch.vmap(self._forward, in_dims=(0, 0, None, 0))(self.params, self.buffers, x, self.gates)
        loss, error = torch.vmap(loss_and_error, in_dims=(0, None))(logits, y)
        loss.sum().backward()  # each member's loss depends on its own slice only: its gradient is its own
        for i, member in enumerate(self.members):
            for name, parameter in member.named_parameters():
                parameter.grad = self.params[name].grad[i]
        return torch.stack([loss.detach(), error], 1)

    def _forward(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor,
                 gate: torch.Tensor) -> torch.Tensor:
        self._gate = gate
        try:
            return functional_call(self.template, (params, buffers), (x,))
        finally:
            self._gate = None
            self._inputs.clear()

    def _remember_input(self, block: Block, args: tuple[torch.Tensor, ...]) -> None:
        self._inputs[block] = args[0]

    def _add_shortcut(self, block: Block, layer: nn.Module, args: tuple[torch.Tensor, ...],
                      out: torch.Tensor) -> torch.Tensor:
        return out + self._gate.to(out.dtype) * block.skip(self._inputs[block])


class TwinStep(TrainStep):
    """One member of a `TwinGroup`: its forward and backward are its row of the group's; its update is its own."""

    def __init__(self, group: TwinGroup, index: int, optimizer: torch.optim.Optimizer):
        # the group captures and schedules the computation: a member's own step has no graph or stream
        super().__init__(group.members[index], optimizer, replace(group.policy, cuda_graphs=False, streams=False))
        self.group, self.index = group, index

    @property
    def computation(self) -> tuple[TwinGroup, int]:
        return self.group, self.index

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.group.row(self.index, x, y)
