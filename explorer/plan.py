"""The architecture as data: every layer of a net with its shapes, parameters, multiply-adds and the activations that
autograd saves for the backward pass, worked out from a `ModelConfig` without PyTorch.

One plan serves everything that asks about a net: `explorer.models` builds its modules from it (so module names,
and with them checkpoints and the per-tensor seeded initialisation, follow the plan), `describe_config` gives its
layer and block tables, the memory model (`explorer.memory`) its saved bytes, the estimate (`explorer.estimate`) its
layers and multiply-adds, and the diagrams (`explorer.diagram`) their nodes. The web server answers "what is this
net, what will it cost, will it fit?" from the plan alone, so it never loads PyTorch; tests/test_plan.py checks the
plan against the real modules (parameters per layer, traced shapes, saved bytes) over a wide grid of configurations.

The CIFAR nets follow He et al. 2015 §4.2: a 3x3 stem, three stages of n blocks at 16/32/64 filters (times the
width), stride 2 at the first block of stages 2 and 3, global average pooling and one linear layer. A block's branch
is its type's paths (`explorer.blocks`); a residual block adds its shortcut: identity, option A (subsample and
zero-pad), or a 1x1 projection (option B where the shape changes, C everywhere; He et al. 2015 §3.3), merged by
addition, constant scaling or an exclusive gate (He et al. 2016 Table 1). VGG (Simonyan & Zisserman 2015 configs
A/B/D/E) stacks 3x3 convs with a 2x2 max pool after each stage and keeps its three fully connected layers.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .blocks import BlockType, Conv, ModelError, Pool, conv_macs
from .config import VGG_LAYOUTS, ModelConfig, blocks_per_stage

if TYPE_CHECKING:
    from collections.abc import Iterator

IMAGE_SIZE = 32
IMAGE_SHAPE = (3, IMAGE_SIZE, IMAGE_SIZE)
CIFAR_WIDTHS = (16, 32, 64)
VGG_WIDTHS = (64, 128, 256, 512, 512)
FLOAT_BYTES = 4  # activations are traced in fp32; the memory model scales them per precision
INDEX_BYTES = 8  # max pooling saves int64 indices
BN_STATISTICS = 4  # batch norm saves running mean and variance and the batch's mean and inverse std, C floats each
Shape = tuple[int, ...]


def scaled_width(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _conv_shape(conv: Conv, shape: Shape) -> Shape:
    if shape[0] != conv.in_ch:
        raise ModelError(f"a {conv.kernel}x{conv.kernel} conv expects {conv.in_ch} channels, its input has {shape[0]}")
    pad = conv.kernel // 2
    return (conv.out_ch, *((side + 2 * pad - conv.kernel) // conv.stride + 1 for side in shape[1:]))


def _pool_shape(pool: Pool, shape: Shape) -> Shape:
    return (shape[0], *((side + 2 * pool.padding - pool.kernel) // pool.stride + 1 for side in shape[1:]))


# --- the plan's parts -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerPlan:
    """One weighted layer (`explorer.models.ConvLayer`): conv → BN → ReLU, or BN → ReLU → conv pre-activated
    (He et al. 2016). Without ``activate`` the ReLU is left out (post) or the layer is a bare conv (pre)."""

    name: str  # the module's name in the net: stem, stage2.0.layer1, stage1.0.branch2.1, stage3.0.shortcut
    conv: Conv
    bias: bool  # convs carry a bias only in nets without batch norm
    bn: bool
    preact: bool
    activate: bool
    in_shape: Shape
    out_shape: Shape

    @property
    def bn_channels(self) -> int:
        return self.conv.in_ch if self.preact else self.conv.out_ch

    @property
    def conv_params(self) -> int:
        c = self.conv
        return c.out_ch * (c.in_ch // c.groups) * c.kernel * c.kernel + (c.out_ch if self.bias else 0)

    @property
    def params(self) -> int:
        return self.conv_params + (2 * self.bn_channels if self.bn else 0)

    @property
    def macs(self) -> int:
        c = self.conv
        return conv_macs(c.in_ch, c.out_ch, c.kernel, self.out_shape[1], self.out_shape[2], c.groups)


@dataclass(frozen=True)
class PoolPlan:
    """A max pool: inside a branch, or closing a VGG stage."""

    name: str
    pool: Pool
    in_shape: Shape
    out_shape: Shape


@dataclass(frozen=True)
class BlockPlan:
    """One lesionable block: y = merge(shortcut(x), F(x)) when residual, y = F(x) in a plain twin, followed by a ReLU
    in the original order. Pre-activated blocks start with a BN-ReLU shared by the branch and, where the shape
    changes, by the shortcut (He et al. 2016); their projections are then bare 1x1 convs."""

    name: str  # stage2.0
    index: int  # in the net's blocks, forward order
    stage: int
    type: type[BlockType]
    in_shape: Shape
    out_shape: Shape
    stride: int
    residual: bool
    preact: bool
    pre_bn: bool
    variant: str  # identity, scaled or gated merge
    shortcut_option: str
    paths: tuple[tuple[LayerPlan | PoolPlan, ...], ...]  # concatenated along channels when there are several
    shortcut: LayerPlan | None  # the 1x1 projection (options B and C)
    gate: Conv | None  # the 1x1 conv (with bias) of an exclusive gate

    @property
    def kind(self) -> str:
        return self.type.name

    @property
    def in_ch(self) -> int:
        return self.in_shape[0]

    @property
    def out_ch(self) -> int:
        return self.out_shape[0]

    @property
    def changes_shape(self) -> bool:
        return self.stride != 1 or self.in_ch != self.out_ch

    @property
    def path_depth(self) -> int:
        """Weighted layers on the longest path."""
        return max(sum(isinstance(part, LayerPlan) for part in path) for path in self.paths)

    @property
    def shortcut_name(self) -> str:
        if not self.residual:
            return "none"
        if self.shortcut is not None:
            return f"{self.shortcut_option}: 1x1 conv"
        return "A: subsample+zero-pad" if self.changes_shape else "identity"

    @property
    def gate_params(self) -> int:
        return self.gate.in_ch * self.gate.out_ch + self.gate.out_ch if self.gate is not None else 0

    @property
    def gate_macs(self) -> int:
        g = self.gate
        return conv_macs(g.in_ch, g.out_ch, 1, *self.out_shape[1:]) if g is not None else 0

    def layers(self) -> list[LayerPlan]:
        """The block's conv layers in module order: the branch path by path, then the shortcut projection."""
        convs = [part for path in self.paths for part in path if isinstance(part, LayerPlan)]
        return convs + ([self.shortcut] if self.shortcut is not None else [])

    @property
    def params(self) -> int:
        return (2 * self.in_ch if self.pre_bn else 0) + sum(layer.params for layer in self.layers()) + self.gate_params

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers()) + self.gate_macs


@dataclass(frozen=True)
class StagePlan:
    index: int  # 1, 2, ...
    blocks: tuple[BlockPlan, ...]
    pool: PoolPlan | None  # VGG's 2x2 max pool at the end of the stage

    @property
    def out_shape(self) -> Shape:
        return self.pool.out_shape if self.pool is not None else self.blocks[-1].out_shape


@dataclass(frozen=True)
class NetPlan:
    """stem → stages → (final BN-ReLU when pre-activated) → global average pool → classifier."""

    config: ModelConfig
    num_classes: int
    stem: LayerPlan
    stages: tuple[StagePlan, ...]
    final_bn: bool
    linears: tuple[tuple[int, int], ...]  # (in, out) features of the classifier's linear layers, ReLU between them

    @property
    def memory_factor(self) -> float:
        return self.config.unit.memory_factor

    def blocks(self) -> list[BlockPlan]:
        return [block for stage in self.stages for block in stage.blocks]

    @property
    def features(self) -> int:
        return self.stages[-1].out_shape[0]

    @property
    def depth(self) -> int:
        """Weighted layers on the longest path: the stem, every block's path and the classifier's linears."""
        return 1 + sum(block.path_depth for block in self.blocks()) + len(self.linears)

    @property
    def head_params(self) -> int:
        return (2 * self.features if self.final_bn else 0) + sum(i * o + o for i, o in self.linears)

    @property
    def params(self) -> int:
        return self.stem.params + sum(block.params for block in self.blocks()) + self.head_params

    @property
    def macs(self) -> int:
        """Multiply-adds of convs and linears per 32x32 image."""
        return self.stem.macs + sum(block.macs for block in self.blocks()) + sum(i * o for i, o in self.linears)

    def saved_bytes(self) -> int:
        """Bytes autograd saves for the backward pass of one image in fp32 (what `explorer.memory` charges per image
        before its fitted factors), each tensor counted once however many ops save it."""
        return _Tape().net(self)

    def describe(self) -> ModelDescription:
        return _describe(self)


# --- making a plan ----------------------------------------------------------------------------------------------
class _Planner:
    """Lays out one net's layers in module order, tracking the shape that flows between them."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.preact = cfg.order == "preact"

    def layer(self, name: str, conv: Conv, shape: Shape, *, activate: bool) -> LayerPlan:
        bn = self.cfg.batchnorm and (activate or not self.preact)
        return LayerPlan(name, conv, not self.cfg.batchnorm, bn, self.preact, activate, shape, _conv_shape(conv, shape))

    def path(self, prefix: str, parts: tuple[Conv | Pool, ...], shape: Shape) -> tuple[LayerPlan | PoolPlan, ...]:
        """A chain of layers ending where the block merges: post-activation convs all but the last get a ReLU;
        pre-activation convs all but the first (fed the block's BN-ReLU) get BN-ReLU. `prefix` names each part
        by its place: ``layer1``.. for a block's only path, ``branch2.0``.. for a path among several."""
        convs = sum(isinstance(part, Conv) for part in parts)
        planned: list[LayerPlan | PoolPlan] = []
        seen = 0
        for i, part in enumerate(parts):
            name = prefix.format(i=i, n=i + 1)
            if isinstance(part, Pool):
                planned.append(PoolPlan(name, part, shape, _pool_shape(part, shape)))
            else:
                activate = seen > 0 if self.preact else seen < convs - 1
                planned.append(self.layer(name, part, shape, activate=activate))
                seen += 1
            shape = planned[-1].out_shape
        return tuple(planned)

    def block(self, kind: type[BlockType], name: str, index: int, stage: int, shape: Shape, out_ch: int,
              stride: int) -> BlockPlan:
        cfg, in_ch = self.cfg, shape[0]
        declared = kind.paths(in_ch, out_ch, stride)
        if len(declared) == 1:
            paths = (self.path(f"{name}.layer{{n}}", declared[0], shape),)
        else:
            paths = tuple(self.path(f"{name}.branch{p}" + (".{i}" if len(parts) > 1 else ""), parts, shape)
                          for p, parts in enumerate(declared, 1))
        ends = [path[-1].out_shape for path in paths]
        out_shape = (sum(end[0] for end in ends), *ends[0][1:])
        if any(end[1:] != out_shape[1:] for end in ends) or out_shape[0] != out_ch:
            raise ModelError(f"block type {kind.name!r}: its paths give {' + '.join(str(e) for e in ends)} for "
                             f"{out_ch} channels at stride {stride}: make the paths concatenate to that")
        changes_shape = stride != 1 or in_ch != out_ch
        project = cfg.residual and (cfg.shortcut == "C" or (cfg.shortcut == "B" and changes_shape))
        shortcut = self.layer(f"{name}.shortcut", Conv(in_ch, out_ch, 1, stride), shape, activate=False) \
            if project else None
        gated = cfg.residual and cfg.shortcut_variant == "gated"
        return BlockPlan(name=name, index=index, stage=stage, type=kind, in_shape=shape, out_shape=out_shape,
                         stride=stride, residual=cfg.residual, preact=self.preact,
                         pre_bn=self.preact and cfg.batchnorm, variant=cfg.shortcut_variant,
                         shortcut_option=cfg.shortcut, paths=paths, shortcut=shortcut,
                         gate=Conv(in_ch, out_ch, 1, stride) if gated else None)

    def cifar(self) -> tuple[LayerPlan, list[StagePlan]]:
        cfg = self.cfg
        kind = cfg.unit
        n = blocks_per_stage(cfg.family, cfg.depth, cfg.block)
        stem = self.layer("stem", Conv(3, scaled_width(CIFAR_WIDTHS[0], cfg.width), 3), IMAGE_SHAPE,
                          activate=not self.preact)
        shape, stages, index = stem.out_shape, [], 0
        for s, channels in enumerate(CIFAR_WIDTHS, 1):
            blocks = []
            for b in range(n):
                stride = 2 if s > 1 and b == 0 else 1
                blocks.append(self.block(kind, f"stage{s}.{b}", index, s, shape,
                                         scaled_width(channels, cfg.width) * kind.expansion, stride))
                shape, index = blocks[-1].out_shape, index + 1
            stages.append(StagePlan(s, tuple(blocks), None))
        return stem, stages

    def vgg(self) -> tuple[LayerPlan, list[StagePlan]]:
        """Simonyan & Zisserman 2015 on 32x32 inputs: five 2x2 max pools bring the map to 1x1."""
        widths = [scaled_width(c, self.cfg.width) for c in VGG_WIDTHS]
        stem = self.layer("stem", Conv(3, widths[0], 3), IMAGE_SHAPE, activate=not self.preact)
        shape, stages, index = stem.out_shape, [], 0
        for s, (count, out_ch) in enumerate(zip(VGG_LAYOUTS[self.cfg.depth], widths), 1):
            blocks = []
            for b in range(count - (s == 1)):  # the stem is the first conv of stage 1
                blocks.append(self.block(self.cfg.unit, f"stage{s}.{b}", index, s, shape, out_ch, 1))
                shape, index = blocks[-1].out_shape, index + 1
            pool = PoolPlan(f"stage{s}.{len(blocks)}", Pool(2, 2), shape, _pool_shape(Pool(2, 2), shape))
            stages.append(StagePlan(s, tuple(blocks), pool))
            shape = pool.out_shape
        return stem, stages


def plan_net(cfg: ModelConfig, num_classes: int = 10) -> NetPlan:
    """The plan of `cfg`'s net with `num_classes` outputs (memoised: plans are immutable)."""
    return _plan_net(cfg, num_classes)  # positional, so that every way of calling hits the same cache entry


@functools.lru_cache(maxsize=32)  # a ResNet-1202 plan is about a megabyte; the server keeps a few
def _plan_net(cfg: ModelConfig, num_classes: int) -> NetPlan:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ModelError(f"num_classes {num_classes} is too few: a classifier needs at least 2 classes")
    planner = _Planner(cfg)
    vgg = cfg.family == "vgg"
    stem, stages = planner.vgg() if vgg else planner.cifar()
    features = stages[-1].out_shape[0]
    # VGG keeps its three fully connected layers, with 512·width hidden units instead of 4096 as usual on CIFAR
    widths = (features, features, features, num_classes) if vgg else (features, num_classes)
    return NetPlan(cfg, num_classes, stem, tuple(stages), planner.preact and cfg.batchnorm,
                   tuple(zip(widths, widths[1:])))


# --- saved activations ------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Tensor:
    """A tensor of one forward pass, by identity: an op that returns a new tensor returns a new `_Tensor`."""

    shape: Shape
    itemsize: int = FLOAT_BYTES

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


class _Tape:
    """Replays a net's forward pass (`explorer.models`) op by op, recording which tensors autograd saves for the
    backward pass as PyTorch's saved-tensor hooks see them: convs and linears save their input (weights are
    parameters, not activations, but a linear saves its transposed weight, a view), batch norm its input and four
    per-channel statistics, ReLU and sigmoid their output, max pooling its input and int64 indices, products of two
    tensors both factors; additions, scalings, concatenation, padding, views and global average pooling save
    nothing."""

    def __init__(self) -> None:
        self.saved: dict[int, int] = {}
        self._alive: list[_Tensor] = []  # keeps ids unique while the tape lives

    def save(self, *tensors: _Tensor) -> None:
        for tensor in tensors:
            self._alive.append(tensor)
            self.saved[id(tensor)] = tensor.nbytes

    def new(self, shape: Shape, itemsize: int = FLOAT_BYTES) -> _Tensor:
        return _Tensor(tuple(shape), itemsize)

    # ops
    def conv(self, x: _Tensor, shape: Shape) -> _Tensor:
        self.save(x)
        return self.new(shape)

    def batchnorm(self, x: _Tensor) -> _Tensor:
        self.save(x, *(self.new((x.shape[0],)) for _ in range(BN_STATISTICS)))
        return self.new(x.shape)

    def relu(self, x: _Tensor) -> _Tensor:
        """ReLU or sigmoid: both save their output."""
        y = self.new(x.shape)
        self.save(y)
        return y

    sigmoid = relu

    def layer(self, layer: LayerPlan, x: _Tensor) -> _Tensor:
        if layer.preact:
            if layer.activate:
                x = self.relu(self.batchnorm(x) if layer.bn else x)
            return self.conv(x, layer.out_shape)
        x = self.conv(x, layer.out_shape)
        if layer.bn:
            x = self.batchnorm(x)
        return self.relu(x) if layer.activate else x

    def max_pool(self, pool: PoolPlan, x: _Tensor) -> _Tensor:
        self.save(x, self.new(pool.out_shape, INDEX_BYTES))
        return self.new(pool.out_shape)

    def option_a(self, x: _Tensor, out_ch: int, stride: int) -> _Tensor:
        if stride > 1:
            x = self.new((x.shape[0], *(-(-side // stride) for side in x.shape[1:])))  # a strided view
        return self.new((out_ch, *x.shape[1:])) if out_ch > x.shape[0] else x

    def block(self, block: BlockPlan, x: _Tensor) -> _Tensor:
        inner = (self.relu(self.batchnorm(x) if block.pre_bn else x)) if block.preact else x
        ends = []
        for path in block.paths:
            y = inner
            for part in path:
                y = self.layer(part, y) if isinstance(part, LayerPlan) else self.max_pool(part, y)
            ends.append(y)
        residual = ends[0] if len(ends) == 1 else self.new(block.out_shape)
        if not block.residual:
            out = residual
        else:
            source = inner if block.changes_shape else x
            skip = self.layer(block.shortcut, source) if block.shortcut is not None else \
                self.option_a(source, block.out_ch, block.stride)
            if block.gate is not None:
                gate = self.sigmoid(self.conv(inner, block.out_shape))
                closed = self.new(block.out_shape)  # 1 - g
                self.save(closed, skip, gate, residual)  # (1 - g) · skip + g · F
            out = self.new(block.out_shape)
        return out if block.preact else self.relu(out)

    def net(self, plan: NetPlan) -> int:
        x = self.layer(plan.stem, self.new(IMAGE_SHAPE))
        for stage in plan.stages:
            for block in stage.blocks:
                x = self.block(block, x)
            if stage.pool is not None:
                x = self.max_pool(stage.pool, x)
        if plan.config.order == "preact":
            x = self.relu(self.batchnorm(x) if plan.final_bn else x)
        x = self.new((plan.features,))  # global average pooling and flatten: a new tensor, nothing saved
        for i, (in_features, out_features) in enumerate(plan.linears):
            if i:
                x = self.relu(x)
            self.save(x, self.new((in_features, out_features)))
            x = self.new((out_features,))
        return sum(self.saved.values())


# --- the description ----------------------------------------------------------------------------------------------
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
        return asdict(self)

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


def _conv_row(layer: LayerPlan, kind: str) -> dict[str, Any]:
    c = layer.conv
    return dict(name=f"{layer.name}.conv", kind=kind, in_ch=c.in_ch, out_ch=c.out_ch, kernel=c.kernel,
                stride=c.stride, out_shape=list(layer.out_shape), params=layer.conv_params, macs=layer.macs)


def _block_rows(block: BlockPlan) -> Iterator[dict[str, Any]]:
    for layer in block.layers():
        kind = "projection" if layer is block.shortcut else f"conv{layer.conv.kernel}x{layer.conv.kernel}"
        yield _conv_row(layer, kind)
    if block.gate is not None:
        g = block.gate
        yield dict(name=f"{block.name}.gate", kind="gate", in_ch=g.in_ch, out_ch=g.out_ch, kernel=1, stride=g.stride,
                   out_shape=list(block.out_shape), params=block.gate_params, macs=block.gate_macs)


def _describe(plan: NetPlan) -> ModelDescription:
    head_stage = len(plan.stages) + 1
    parts: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [(
        dict(name="stem", stage=0, block=None, kind="stem", in_shape=list(IMAGE_SHAPE),
             out_shape=list(plan.stem.out_shape), shortcut="none", params=plan.stem.params),
        [dict(_conv_row(plan.stem, f"conv{plan.stem.conv.kernel}x{plan.stem.conv.kernel}"), stage=0, block=None)])]
    for block in plan.blocks():
        rows = [dict(row, stage=block.stage, block=block.index) for row in _block_rows(block)]
        parts.append((dict(name=block.name, stage=block.stage, block=block.index, kind=block.kind,
                           in_shape=list(block.in_shape), out_shape=list(block.out_shape),
                           shortcut=block.shortcut_name, params=block.params), rows))
    linears = [dict(name=f"classifier.{2 * i}", kind="linear", in_ch=i_f, out_ch=o_f, kernel=None, stride=None,
                    out_shape=[o_f], params=i_f * o_f + o_f, macs=i_f * o_f, stage=head_stage, block=None)
               for i, (i_f, o_f) in enumerate(plan.linears)]
    parts.append((dict(name="head", stage=head_stage, block=None, kind="head",
                       in_shape=list(plan.stages[-1].out_shape), out_shape=[plan.num_classes], shortcut="none",
                       params=plan.head_params), linears))

    layer_rows = [{"index": i, **{key: row[key] for key in _LAYER_KEYS}}
                  for i, row in enumerate(itertools.chain.from_iterable(rows for _, rows in parts))]
    block_rows = [{"index": i, **{key: part[key] for key in _BLOCK_KEYS[:7]},
                   "layers": [row["name"] for row in rows], "params": part["params"],
                   "macs": sum(row["macs"] for row in rows)} for i, (part, rows) in enumerate(parts)]
    return ModelDescription(label=plan.config.label, depth=plan.depth, params=plan.params,
                            macs=sum(row["macs"] for row in layer_rows), layers=layer_rows, blocks=block_rows)


_LAYER_KEYS = ("name", "kind", "in_ch", "out_ch", "kernel", "stride", "out_shape", "params", "macs", "stage", "block")
_BLOCK_KEYS = ("name", "stage", "block", "kind", "in_shape", "out_shape", "shortcut", "layers", "params", "macs")


def describe_config(cfg: ModelConfig, num_classes: int = 10) -> ModelDescription:
    """Shapes, parameters and multiply-adds of `cfg`'s network, from its plan (arithmetic, no weights)."""
    return plan_net(cfg, num_classes).describe()
