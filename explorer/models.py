"""Every network the explorer trains: CIFAR ResNets and their plain twins, VGG, bottleneck and Inception blocks.

The CIFAR nets follow He et al. 2015 §4.2: a 3x3 stem, three stages of n blocks at 16/32/64 filters (times the
width), stride 2 at the first block of stages 2 and 3, global average pooling and one linear layer, so
depth = 6n+2 with basic blocks and 9n+2 with bottlenecks. A plain net is its residual twin without the additions:
the modules have the same names, and every tensor is initialised from a generator seeded by (seed, tensor name),
so twins built from one seed start from identical weights wherever they share a tensor.

Options: shortcut A/B/C (He et al. 2015 §3.3), identity/scaled/gated shortcuts and pre-activation order
(He et al. 2016 Table 1 and Fig. 4), no batch norm, Kaiming or Xavier init, zero-init of the last gain of each
residual branch. `lesioned` removes one block at forward time (Veit et al. 2016). `describe_config` gives layer and
block tables with shapes, parameters and multiply-adds without building real weights.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, blocks_per_stage, depth_of

CIFAR_WIDTHS = (16, 32, 64)
VGG_WIDTHS = (64, 128, 256, 512, 512)
VGG_LAYOUTS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}  # configs A/B/D/E
BOTTLENECK_EXPANSION = 4
GATE_BIAS = -6.0  # He et al. 2016 Table 1: exclusive gating fails for b_g initialised at 0 to -5, trains at -6
IMAGE_SIZE = 32


class ModelError(ValueError):
    """A model cannot be built or used as asked; the message says what to change."""


def scaled_width(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def option_a(x: torch.Tensor, out_ch: int, stride: int) -> torch.Tensor:
    """Parameter-free shortcut (option A): subsample by the stride, then zero-pad the new channels."""
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    extra = out_ch - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra > 0 else x


# --- layers and blocks -----------------------------------------------------------------------------------------
class ConvLayer(nn.Module):
    """One weighted layer, post-activation conv → BN → ReLU (He et al. 2015) or pre-activation BN → ReLU → conv
    (He et al. 2016). With ``activate`` False the ReLU is left out (post) or the layer is a bare conv (pre).
    Convs carry a bias only when there is no batch norm."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, *, batchnorm: bool = True,
                 preact: bool = False, activate: bool = True):
        super().__init__()
        self.preact, self.activate = preact, activate
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=not batchnorm)
        has_bn = batchnorm and (activate or not preact)
        self.bn = nn.BatchNorm2d(in_ch if preact else out_ch) if has_bn else None

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


def _path(shapes: list[tuple[int, int, int, int]], cfg: ModelConfig) -> list[ConvLayer]:
    """A chain of (in, out, kernel, stride) layers ending in a residual addition: post-activation layers all
    but the last get a ReLU; pre-activation layers all but the first (fed the block's BN-ReLU) get BN-ReLU."""
    preact = cfg.order == "preact"
    return [ConvLayer(cin, cout, k, s, batchnorm=cfg.batchnorm, preact=preact,
                      activate=i > 0 if preact else i < len(shapes) - 1)
            for i, (cin, cout, k, s) in enumerate(shapes)]


class Block(nn.Module):
    """A lesionable unit computing y = merge(shortcut(x), F(x)) (residual) or y = F(x) (plain twin).

    Post-activation adds a ReLU after the merge. Pre-activation starts with a BN-ReLU shared by the branch and, in
    blocks that change shape, by the shortcut (He et al. 2016, the units that increase dimensions); its projections
    are then bare 1x1 convs. Subclasses build the branch, then call `_add_shortcut` so that `ExplorerNet.layers`
    lists the shortcut after the branch.
    """

    kind = ""
    path_depth = 0  # weighted layers on the longest path

    def __init__(self, in_ch: int, out_ch: int, stride: int, cfg: ModelConfig):
        super().__init__()
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.residual = cfg.residual
        self.preact = cfg.order == "preact"
        self.shortcut_option = cfg.shortcut
        self.variant = cfg.shortcut_variant
        self.removed = False
        self.pre_bn = nn.BatchNorm2d(in_ch) if self.preact and cfg.batchnorm else None

    def _add_shortcut(self, cfg: ModelConfig) -> None:
        project = self.residual and (cfg.shortcut == "C" or (cfg.shortcut == "B" and self.changes_shape))
        self.shortcut = (ConvLayer(self.in_ch, self.out_ch, 1, self.stride, batchnorm=cfg.batchnorm,
                                   preact=self.preact, activate=False) if project else None)
        gated = self.residual and cfg.shortcut_variant == "gated"
        self.gate = nn.Conv2d(self.in_ch, self.out_ch, 1, self.stride) if gated else None

    @property
    def changes_shape(self) -> bool:
        return self.stride != 1 or self.in_ch != self.out_ch

    @property
    def shortcut_name(self) -> str:
        if not self.residual:
            return "none"
        if self.shortcut is not None:
            return f"{self.shortcut_option}: 1x1 conv"
        return "A: subsample+zero-pad" if self.changes_shape else "identity"

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def final_layers(self) -> list[ConvLayer]:
        """The layers whose outputs form F(x) (zeroed by zero_init_residual)."""
        raise NotImplementedError

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


class ChainBlock(Block):
    """Layers in sequence: basic (3x3, 3x3), bottleneck (1x1, 3x3, 1x1 with 4x expansion; He et al. 2015 Fig. 5,
    stride on the 3x3 as in torchvision) or one VGG 3x3 conv."""

    def __init__(self, kind: str, in_ch: int, out_ch: int, stride: int, cfg: ModelConfig):
        super().__init__(in_ch, out_ch, stride, cfg)
        self.kind = kind
        if kind == "bottleneck":
            mid = out_ch // BOTTLENECK_EXPANSION
            shapes = [(in_ch, mid, 1, 1), (mid, mid, 3, stride), (mid, out_ch, 1, 1)]
        elif kind == "basic":
            shapes = [(in_ch, out_ch, 3, stride), (out_ch, out_ch, 3, 1)]
        else:
            shapes = [(in_ch, out_ch, 3, stride)]
        self.path_depth = len(shapes)
        for i, layer in enumerate(_path(shapes, cfg), 1):
            self.add_module(f"layer{i}", layer)
        self._add_shortcut(cfg)

    def _layers(self) -> list[ConvLayer]:
        return [getattr(self, f"layer{i}") for i in range(1, self.path_depth + 1)]

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self._layers():
            x = layer(x)
        return x

    def final_layers(self) -> list[ConvLayer]:
        return self._layers()[-1:]


def inception_split(out_ch: int) -> tuple[int, int, int, int]:
    """Output channels of the 1x1, 3x3, 5x5 and pool branches: a quarter each, the 1x1 takes the remainder."""
    if out_ch < 4:
        raise ModelError(f"an Inception block needs at least 4 channels, not {out_ch}: use a larger width")
    quarter = out_ch // 4
    return out_ch - 3 * quarter, quarter, quarter, quarter


def inception_reduce(branch_ch: int) -> int:
    """Channels of the 1x1 reduction before a 3x3 or 5x5 conv: half its output (GoogLeNet 3a: 16 → 32 for 5x5)."""
    return max(1, branch_ch // 2)


class InceptionBlock(Block):
    """GoogLeNet module with dimension reductions (Szegedy et al. 2014 Fig. 2b), two layers deep: 1x1; 1x1 → 3x3;
    1x1 → 5x5; 3x3 max pool → 1x1, concatenated to the block width. Stride-2 blocks stride the spatial convs,
    the lone 1x1 and the pool."""

    kind = "inception"
    path_depth = 2

    def __init__(self, in_ch: int, out_ch: int, stride: int, cfg: ModelConfig):
        super().__init__(in_ch, out_ch, stride, cfg)
        c1, c3, c5, cp = inception_split(out_ch)
        r3, r5 = inception_reduce(c3), inception_reduce(c5)
        self.branch1 = _path([(in_ch, c1, 1, stride)], cfg)[0]
        self.branch2 = nn.Sequential(*_path([(in_ch, r3, 1, 1), (r3, c3, 3, stride)], cfg))
        self.branch3 = nn.Sequential(*_path([(in_ch, r5, 1, 1), (r5, c5, 5, stride)], cfg))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride, 1), *_path([(in_ch, cp, 1, 1)], cfg))
        self._add_shortcut(cfg)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)

    def final_layers(self) -> list[ConvLayer]:
        return [self.branch1, self.branch2[-1], self.branch3[-1], self.branch4[-1]]


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


def _cifar_body(cfg: ModelConfig) -> tuple[ConvLayer, list[nn.Sequential], int]:
    n = blocks_per_stage(cfg.family, cfg.depth, cfg.block)
    expansion = BOTTLENECK_EXPANSION if cfg.block == "bottleneck" else 1
    preact = cfg.order == "preact"
    in_ch = scaled_width(CIFAR_WIDTHS[0], cfg.width)
    stem = ConvLayer(3, in_ch, 3, batchnorm=cfg.batchnorm, preact=preact, activate=not preact)
    stages = []
    for s, channels in enumerate(CIFAR_WIDTHS):
        out_ch = scaled_width(channels, cfg.width) * expansion
        blocks = []
        for b in range(n):
            stride = 2 if s > 0 and b == 0 else 1
            if cfg.block == "inception":
                blocks.append(InceptionBlock(in_ch, out_ch, stride, cfg))
            else:
                blocks.append(ChainBlock(cfg.block, in_ch, out_ch, stride, cfg))
            in_ch = out_ch
        stages.append(nn.Sequential(*blocks))
    return stem, stages, in_ch


def _vgg_body(cfg: ModelConfig) -> tuple[ConvLayer, list[nn.Sequential], int]:
    """Simonyan & Zisserman 2015 configs A/B/D/E on 32x32 inputs: five 2x2 max pools bring the map to 1x1."""
    preact = cfg.order == "preact"
    widths = [scaled_width(c, cfg.width) for c in VGG_WIDTHS]
    stem = ConvLayer(3, widths[0], 3, batchnorm=cfg.batchnorm, preact=preact, activate=not preact)
    in_ch, stages = widths[0], []
    for s, (count, out_ch) in enumerate(zip(VGG_LAYOUTS[cfg.depth], widths)):
        blocks = []
        for _ in range(count - (s == 0)):  # the stem is the first conv of stage 1
            blocks.append(ChainBlock("vgg", in_ch, out_ch, 1, cfg))
            in_ch = out_ch
        stages.append(nn.Sequential(*blocks, nn.MaxPool2d(2)))
    return stem, stages, in_ch


class ExplorerNet(nn.Module):
    """stem → stages → (final BN-ReLU when pre-activated) → global average pool → classifier.

    A pre-activated net's stem is a bare conv: the first block's BN-ReLU follows it (He et al. 2016 appendix).
    CIFAR nets end in one linear layer. VGG keeps its three fully connected layers (so depth counts convs plus
    linears) but with 512·width hidden units instead of 4096, as is usual on CIFAR.
    """

    def __init__(self, config: ModelConfig, num_classes: int = 10):
        super().__init__()
        if num_classes < 2:
            raise ModelError(f"num_classes {num_classes} is too few: a classifier needs at least 2 classes")
        self.config, self.num_classes = config, num_classes
        body = _vgg_body if config.family == "vgg" else _cifar_body
        self.stem, stages, features = body(config)
        self.num_stages = len(stages)
        for s, stage in enumerate(stages, 1):
            self.add_module(f"stage{s}", stage)
        preact = config.order == "preact"
        self.final_bn = nn.BatchNorm2d(features) if preact and config.batchnorm else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        if config.family == "vgg":
            self.classifier = nn.Sequential(nn.Linear(features, features), nn.ReLU(), nn.Linear(features, features),
                                            nn.ReLU(), nn.Linear(features, num_classes))
        else:
            self.classifier = nn.Sequential(nn.Linear(features, num_classes))

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


def linear_in_blocks(cfg: ModelConfig, measure: Callable[[ModelConfig], tuple[int, ...]]) -> tuple[int, ...]:
    """`measure` of a net, for a deep CIFAR net taken from its twins with two and three blocks per stage: every block
    after the first of a stage is the same, so counts such as layers, multiply-adds, parameters and saved activations
    grow exactly linearly with the blocks per stage, and ResNet-1202 is priced without being built."""
    n = blocks_per_stage(cfg.family, cfg.depth, cfg.block)
    if cfg.family == "vgg" or n <= 3:
        return measure(cfg)
    two, three = (measure(dataclasses.replace(cfg, depth=depth_of(cfg.block, k))) for k in (2, 3))
    return tuple(b + (n - 3) * (b - a) for a, b in zip(two, three))


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


# --- cost arithmetic and description ---------------------------------------------------------------------------
def conv_macs(in_ch: int, out_ch: int, kernel: int, h: int, w: int, groups: int = 1) -> int:
    """Multiply-adds of a k x k convolution producing an out_ch x h x w map: k·k·(in/groups)·out·h·w."""
    return kernel * kernel * (in_ch // groups) * out_ch * h * w


@dataclass(frozen=True)
class InceptionCost:
    """Multiply-adds per branch of an Inception module, naive (3x3 and 5x5 straight on the input) and with 1x1
    reductions before them (Szegedy et al. 2014 Fig. 2a vs 2b). Both keep the pool branch's 1x1 projection so that
    the outputs have the same width."""

    naive: dict[str, int]
    bottleneck: dict[str, int]

    @property
    def naive_total(self) -> int:
        return sum(self.naive.values())

    @property
    def bottleneck_total(self) -> int:
        return sum(self.bottleneck.values())


def inception_cost(in_ch: int, out_ch: int, hw: int, reduce_ch: int | None = None) -> InceptionCost:
    """Cost of one Inception module with the explorer's branch split on an hw x hw output map; ``reduce_ch``
    overrides the width of both 1x1 reductions."""
    c1, c3, c5, cp = inception_split(out_ch)
    r3 = reduce_ch or inception_reduce(c3)
    r5 = reduce_ch or inception_reduce(c5)
    shared = {"1x1": conv_macs(in_ch, c1, 1, hw, hw), "pool proj": conv_macs(in_ch, cp, 1, hw, hw)}
    naive = {"3x3": conv_macs(in_ch, c3, 3, hw, hw), "5x5": conv_macs(in_ch, c5, 5, hw, hw)}
    reduced = {"3x3": conv_macs(in_ch, r3, 1, hw, hw) + conv_macs(r3, c3, 3, hw, hw),
               "5x5": conv_macs(in_ch, r5, 1, hw, hw) + conv_macs(r5, c5, 5, hw, hw)}
    return InceptionCost(naive={**shared, **naive}, bottleneck={**shared, **reduced})


@dataclass(frozen=True)
class ModelDescription:
    """Layer rows (index, name, kind, in_ch, out_ch, kernel, stride, out_shape, params, macs, stage, block) and
    block rows (index, name, stage, block, kind, in_shape, out_shape, shortcut, layers, params, macs), the stem and
    head included. Layer params exclude batch norm; block params include everything in the block. MACs count convs
    and linears only."""

    label: str
    depth: int
    params: int
    macs: int
    layers: list[dict[str, Any]]
    blocks: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def table(self) -> str:
        header = ("#", "name", "kind", "in", "out", "shortcut", "params", "MACs")
        rows = [header] + [(str(r["index"]), r["name"], r["kind"], _shape(r["in_shape"]), _shape(r["out_shape"]),
                            r["shortcut"], f"{r['params']:,}", f"{r['macs']:,}") for r in self.blocks]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.rjust(w) if i in (0, 6, 7) else cell.ljust(w) for i, (cell, w)
                           in enumerate(zip(row, widths))).rstrip() for row in rows]
        lines.append(f"{self.label}: {self.depth} weighted layers, {self.params:,} parameters, "
                     f"{self.macs / 1e6:,.1f} M multiply-adds per 32x32 image")
        return "\n".join(lines)


def _shape(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _trace_shapes(model: ExplorerNet, modules: list[nn.Module]) -> dict[nn.Module, tuple[list[int], list[int]]]:
    """Input and output shapes (batch dimension dropped) of ``modules`` in one forward of an empty batch of 32x32
    images. Moves a meta ``model`` to uninitialised CPU memory, which stays untouched (so uncommitted): with zero
    images every op is a shape computation, far faster than meta tensors' Python kernels."""
    model.to_empty(device="cpu")
    shapes = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        shapes[module] = (list(inputs[0].shape[1:]), list(output.shape[1:]))

    handles = [m.register_forward_hook(record) for m in modules]
    with torch.no_grad():
        model(torch.empty(0, 3, IMAGE_SIZE, IMAGE_SIZE))
    for handle in handles:
        handle.remove()
    return shapes


def _layer_row(info: LayerInfo, out_shape: list[int]) -> dict[str, Any]:
    module = info.module
    if isinstance(module, nn.Linear):
        in_ch, out_ch, kernel, stride = module.in_features, module.out_features, None, None
        macs = in_ch * out_ch
    else:
        in_ch, out_ch = module.in_channels, module.out_channels
        kernel, stride = module.kernel_size[0], module.stride[0]
        macs = conv_macs(in_ch, out_ch, kernel, out_shape[1], out_shape[2], module.groups)
    return dict(index=info.index, name=info.name, kind=info.kind, in_ch=in_ch, out_ch=out_ch, kernel=kernel,
                stride=stride, out_shape=out_shape, params=_numel(module), macs=macs, stage=info.stage,
                block=info.block)


def describe_config(cfg: ModelConfig, num_classes: int = 10) -> ModelDescription:
    """Shapes, parameters and multiply-adds of ``cfg``'s network, without initialising weights (fast for 1202)."""
    with torch.device("meta"):
        model = ExplorerNet(cfg, num_classes).eval()
    layers, named_blocks = model.layers(), model.named_blocks()
    head_stage, last_stage, total = model.num_stages + 1, model.stages()[-1], _numel(model)
    parts = [dict(name="stem", stage=0, block=None, kind="stem", shortcut="none", params=_numel(model.stem))]
    parts += [dict(name=name, stage=int(name.split(".")[0][len("stage"):]), block=i, kind=block.kind,
                   shortcut=block.shortcut_name, params=_numel(block)) for i, (name, block) in enumerate(named_blocks)]
    parts.append(dict(name="head", stage=head_stage, block=None, kind="head", shortcut="none",
                      params=total - sum(part["params"] for part in parts)))  # final BN and classifier

    units = [model.stem, *(block for _, block in named_blocks)]
    shapes = _trace_shapes(model, [info.module for info in layers] + units + [last_stage])
    for part, unit in zip(parts, units):
        part["in_shape"], part["out_shape"] = shapes[unit]
    parts[-1]["in_shape"], parts[-1]["out_shape"] = shapes[last_stage][1], [num_classes]

    layer_rows = [_layer_row(info, shapes[info.module][1]) for info in layers]
    for part in parts:
        part["layers"], part["macs"] = [], 0
    for row in layer_rows:
        part = parts[0 if row["stage"] == 0 else -1 if row["stage"] == head_stage else row["block"] + 1]
        part["layers"].append(row["name"])
        part["macs"] += row["macs"]
    keys = ("name", "stage", "block", "kind", "in_shape", "out_shape", "shortcut", "layers", "params", "macs")
    block_rows = [{"index": i, **{key: part[key] for key in keys}} for i, part in enumerate(parts)]
    return ModelDescription(label=cfg.label, depth=model.depth, params=total,
                            macs=sum(row["macs"] for row in layer_rows), layers=layer_rows, blocks=block_rows)
