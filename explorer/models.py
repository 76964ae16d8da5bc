"""Every network the explorer trains as PyTorch modules: CIFAR ResNets and their plain twins, VGG, and any
registered block type (basic, bottleneck, Inception, ...).

The modules are built from the net's plan (`explorer.plan`, which lays out He et al. 2015 §4.2's CIFAR nets and
VGG from the block types of `explorer.blocks`), so what the plan describes is what trains. A plain net is its
residual twin without the additions: the modules have the same names, and every tensor is initialised from a
generator seeded by (seed, tensor name), so twins built from one seed start from identical weights wherever they
share a tensor.

Options: shortcut A/B/C (He et al. 2015 §3.3), identity/scaled/gated shortcuts and pre-activation order
(He et al. 2016 Table 1 and Fig. 4), no batch norm, Kaiming or Xavier init, zero-init of the last gain of each
residual branch. `lesioned` removes one block at forward time (Veit et al. 2016). `describe_config` (from the plan)
gives layer and block tables with shapes, parameters and multiply-adds without building anything.
"""

from __future__ import annotations

import math
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ModelError, conv_macs
from .blocks.inception import InceptionCost, inception_cost, inception_reduce, inception_split
from .config import ModelConfig
from .plan import BlockPlan, LayerPlan, ModelDescription, NetPlan, PoolPlan, describe_config, plan_net, scaled_width

GATE_BIAS = -6.0  # He et al. 2016 Table 1: exclusive gating fails for b_g initialised at 0 to -5, trains at -6
IMAGE_SIZE = 32
__all__ = ["InceptionCost", "ModelDescription", "ModelError", "conv_macs", "describe_config", "inception_cost",
           "inception_reduce", "inception_split", "scaled_width"]  # torch-free, from the plan and the block types


def option_a(x: torch.Tensor, out_ch: int, stride: int) -> torch.Tensor:
    """Parameter-free shortcut (option A): subsample by the stride, then zero-pad the new channels."""
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    extra = out_ch - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra > 0 else x


# --- layers and blocks -----------------------------------------------------------------------------------------
class ConvLayer(nn.Module):
    """One weighted layer of the plan (`explorer.plan.LayerPlan`): post-activation conv → BN → ReLU (He et al. 2015)
    or pre-activation BN → ReLU → conv (He et al. 2016). With ``activate`` False the ReLU is left out (post) or the
    layer is a bare conv (pre). Convs carry a bias only when there is no batch norm."""

    def __init__(self, plan: LayerPlan):
        super().__init__()
        c = plan.conv
        self.preact, self.activate = plan.preact, plan.activate
        self.conv = nn.Conv2d(c.in_ch, c.out_ch, c.kernel, c.stride, c.kernel // 2, groups=c.groups, bias=plan.bias)
        self.bn = nn.BatchNorm2d(plan.bn_channels) if plan.bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            if self.activate:
                x = F.relu(self.bn(x) if self.bn is not None else x)
            return self.conv(x)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activate else x

    @property
    def response(self) -> nn.Module:
        """The module whose output is this layer's response (He et al. 2015 Fig. 7): the BN after the conv."""
        return self.bn if self.bn is not None and not self.preact else self.conv

    @property
    def output_gain(self) -> torch.Tensor:
        """The tensor whose zeroing makes the layer output zero while gradients still reach it."""
        return self.response.weight


def _part(plan: LayerPlan | PoolPlan) -> nn.Module:
    if isinstance(plan, LayerPlan):
        return ConvLayer(plan)
    return nn.MaxPool2d(plan.pool.kernel, plan.pool.stride, plan.pool.padding)


class Block(nn.Module):
    """A lesionable unit computing y = merge(shortcut(x), F(x)) (residual) or y = F(x) (plain twin), built from its
    plan: F is the block type's paths (`explorer.blocks`), one chain named ``layer1``, ``layer2``, ... or parallel
    paths ``branch1``, ``branch2``, ... concatenated along channels; then the shortcut projection and the gate.

    Post-activation adds a ReLU after the merge. Pre-activation starts with a BN-ReLU shared by the branch and, in
    blocks that change shape, by the shortcut (He et al. 2016, the units that increase dimensions); its projections
    are then bare 1x1 convs.
    """

    def __init__(self, plan: BlockPlan):
        super().__init__()
        self.plan = plan
        self.kind, self.path_depth = plan.kind, plan.path_depth
        self.in_ch, self.out_ch, self.stride = plan.in_ch, plan.out_ch, plan.stride
        self.residual, self.preact, self.changes_shape = plan.residual, plan.preact, plan.changes_shape
        self.shortcut_option, self.variant = plan.shortcut_option, plan.variant
        self.removed = False
        self.pre_bn = nn.BatchNorm2d(plan.in_ch) if plan.pre_bn else None
        self.paths: list[list[nn.Module]] = [[_part(part) for part in path] for path in plan.paths]
        if len(self.paths) == 1:
            for i, module in enumerate(self.paths[0], 1):
                self.add_module(f"layer{i}", module)
        else:
            for i, path in enumerate(self.paths, 1):
                self.add_module(f"branch{i}", path[0] if len(path) == 1 else nn.Sequential(*path))
        self.shortcut = ConvLayer(plan.shortcut) if plan.shortcut is not None else None
        gate = plan.gate
        self.gate = nn.Conv2d(gate.in_ch, gate.out_ch, 1, gate.stride) if gate is not None else None

    @property
    def shortcut_name(self) -> str:
        return self.plan.shortcut_name

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        ends = []
        for path in self.paths:
            y = x
            for module in path:
                y = module(y)
            ends.append(y)
        return ends[0] if len(ends) == 1 else torch.cat(ends, 1)

    def final_layers(self) -> list[ConvLayer]:
        """The layers whose outputs form F(x) (zeroed by zero_init_residual): the last of each path."""
        return [[m for m in path if isinstance(m, ConvLayer)][-1] for path in self.paths]

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) if self.shortcut is not None else option_a(x, self.out_ch, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = F.relu(self.pre_bn(x) if self.pre_bn is not None else x) if self.preact else x
        residual = None if self.removed else self.branch(inner)
        if self.residual:
            out = self._merge(self.skip(inner if self.changes_shape else x), residual, inner)
        else:
            out = residual if residual is not None else option_a(x, self.out_ch, self.stride)
        return out if self.preact else F.relu(out)

    def _merge(self, skip: torch.Tensor, residual: torch.Tensor | None, inner: torch.Tensor) -> torch.Tensor:
        """He et al. 2016 Fig. 2: identity (a), constant scaling 0.5/0.5 (b), exclusive gating (c)."""
        if self.gate is not None:
            gate = torch.sigmoid(self.gate(inner))
            return (1 - gate) * skip if residual is None else (1 - gate) * skip + gate * residual
        if residual is None:
            return 0.5 * skip if self.variant == "scaled" else skip
        return 0.5 * (skip + residual) if self.variant == "scaled" else skip + residual


# --- the network -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerInfo:
    """One conv or linear weight in forward order. ``block`` indexes `ExplorerNet.blocks()` (None for stem and
    head); ``stage`` is 0 for the stem, 1.. for the stages and one more for the head."""

    index: int
    name: str
    module: nn.Module
    response: nn.Module
    kind: str  # conv3x3, conv1x1, conv5x5, projection, gate, linear
    stage: int
    block: int | None


class ExplorerNet(nn.Module):
    """stem → stages → (final BN-ReLU when pre-activated) → global average pool → classifier, built from the
    net's plan (`explorer.plan.plan_net`), each block by its type's `build`.

    A pre-activated net's stem is a bare conv: the first block's BN-ReLU follows it (He et al. 2016 appendix).
    CIFAR nets end in one linear layer. VGG keeps its three fully connected layers (so depth counts convs plus
    linears) but with 512·width hidden units instead of 4096, as is usual on CIFAR.
    """

    def __init__(self, config: ModelConfig, num_classes: int = 10):
        super().__init__()
        plan = plan_net(config, num_classes)
        self.config, self.num_classes = config, num_classes
        self.stem = ConvLayer(plan.stem)
        self.num_stages = len(plan.stages)
        for stage in plan.stages:
            modules = [block.type.build(block) for block in stage.blocks]
            if stage.pool is not None:
                modules.append(_part(stage.pool))
            self.add_module(f"stage{stage.index}", nn.Sequential(*modules))
        self.final_bn = nn.BatchNorm2d(plan.features) if plan.final_bn else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        head: list[nn.Module] = []
        for in_features, out_features in plan.linears:
            head += [nn.ReLU()] if head else []
            head.append(nn.Linear(in_features, out_features))
        self.classifier = nn.Sequential(*head)

    @property
    def plan(self) -> NetPlan:
        return plan_net(self.config, self.num_classes)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"stage{s}") for s in range(1, self.num_stages + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages():
            x = stage(x)
        if self.config.order == "preact":
            x = F.relu(self.final_bn(x) if self.final_bn is not None else x)
        return self.classifier(torch.flatten(self.pool(x), 1))

    def named_blocks(self) -> list[tuple[str, Block]]:
        return [(name, m) for name, m in self.named_modules() if isinstance(m, Block)]

    def blocks(self) -> list[Block]:
        """The lesionable blocks in forward order (not the stem or the head)."""
        return [m for _, m in self.named_blocks()]

    @property
    def depth(self) -> int:
        """Weighted layers on the longest path: the stem, every block's path and the classifier's linears."""
        linears = sum(isinstance(m, nn.Linear) for m in self.classifier)
        return 1 + sum(block.path_depth for block in self.blocks()) + linears

    def layers(self) -> list[LayerInfo]:
        """Every conv and linear weight in forward order; a block's shortcut projection and gate follow its branch."""
        block_index = {name: i for i, (name, _) in enumerate(self.named_blocks())}
        responses = {m.conv: m.response for m in self.modules() if isinstance(m, ConvLayer)}
        infos = []
        for name, module in self.named_modules():
            if not isinstance(module, (nn.Conv2d, nn.Linear)):
                continue
            parts = name.split(".")
            if parts[0].startswith("stage"):
                stage, block = int(parts[0][len("stage"):]), block_index[".".join(parts[:2])]
            else:
                stage, block = (0 if parts[0] == "stem" else self.num_stages + 1), None
            if isinstance(module, nn.Linear):
                kind = "linear"
            elif ".shortcut." in name:
                kind = "projection"
            elif name.endswith(".gate"):
                kind = "gate"
            else:
                kind = f"conv{module.kernel_size[0]}x{module.kernel_size[1]}"
            infos.append(LayerInfo(len(infos), name, module, responses.get(module, module), kind, stage, block))
        return infos

    def describe(self) -> ModelDescription:
        return describe_config(self.config, self.num_classes)


# --- initialisation --------------------------------------------------------------------------------------------
def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def _init_tensor(module: nn.Module, kind: str, tensor: torch.Tensor, cfg: ModelConfig, g: torch.Generator) -> None:
    if isinstance(module, nn.Conv2d) and kind == "weight":
        if cfg.init == "kaiming":  # He et al. 2015 "Delving deep", fan_out as in torchvision
            nn.init.kaiming_normal_(tensor, mode="fan_out", nonlinearity="relu", generator=g)
        else:
            nn.init.xavier_normal_(tensor, generator=g)
    elif isinstance(module, nn.Linear):  # PyTorch's default: U(±1/sqrt(fan_in)) for weight and bias
        bound = 1 / math.sqrt(module.in_features)
        nn.init.uniform_(tensor, -bound, bound, generator=g)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.constant_(tensor, 1.0 if kind == "weight" else 0.0)
    elif isinstance(module, nn.Conv2d):
        nn.init.zeros_(tensor)
    else:
        raise TypeError(f"no initialisation rule for {type(module).__name__}.{kind}")


def init_weights(model: ExplorerNet, seed: int = 0) -> ExplorerNet:
    """Fill every tensor from a generator seeded by (seed, its qualified name), so twins share their values."""
    cfg = model.config
    with torch.no_grad():
        for module_name, module in model.named_modules():
            for kind, tensor in module.named_parameters(recurse=False):
                name = f"{module_name}.{kind}" if module_name else kind
                _init_tensor(module, kind, tensor, cfg, _generator(seed, name))
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
        for block in model.blocks():
            if block.gate is not None:
                block.gate.bias.fill_(GATE_BIAS)
            if block.residual and cfg.zero_init_residual:  # Goyal et al. 2017: each residual block starts as identity
                for layer in block.final_layers():
                    layer.output_gain.zero_()
    return model


def build_model(cfg: ModelConfig, num_classes: int = 10, seed: int = 0) -> ExplorerNet:
    """The network of ``cfg`` on the CPU, initialised per tensor from ``seed`` (see `init_weights`)."""
    with torch.device("meta"):  # skip PyTorch's own initialisation: every tensor is filled once below
        model = ExplorerNet(cfg, num_classes)
    return init_weights(model.to_empty(device="cpu"), seed)


@contextmanager
def lesioned(model: ExplorerNet, k: int) -> Iterator[ExplorerNet]:
    """Remove block k at forward time (Veit et al. 2016). A residual block keeps only its shortcut term (scaled or
    gated as usual, then the post-addition ReLU of the original order); a plain block becomes the parameter-free
    option-A mapping of its input."""
    blocks = model.blocks()
    if not 0 <= k < len(blocks):
        raise ModelError(f"block {k} does not exist: {model.config.label} has blocks 0 to {len(blocks) - 1}")
    blocks[k].removed = True
    try:
        yield model
    finally:
        blocks[k].removed = False
