"""Block types: what one residual block computes, declared as a class and registered by name.

As torchvision passes `BasicBlock` or `Bottleneck` to its ResNet, a net here is built from a block *type*: a class
that declares everything the rest of the explorer asks about a block, so that nothing tests block names:

- ``name``: how a configuration writes it (``bottleneck``); ``label``: its token in a model label (``bneck``);
- ``layers``: weighted layers on its longest path, which gives the depth rule depth = 3·layers·n + 2 (6n+2 for
  basic blocks, 9n+2 for bottlenecks; He et al. 2015 §4.2 and Fig. 5); ``deepest``: the deepest net offered;
- ``expansion``: the block's output channels per stage width (4 for bottlenecks);
- ``paths``: its residual branch F as plain data, parallel paths of `Conv` and `Pool` layers whose outputs are
  concatenated (one path for a chain), from which the net's plan (`explorer.plan`: shapes, parameters,
  multiply-adds, saved activations), its diagrams and its PyTorch modules are all made;
- ``glyph``: the branch in one line of paper notation, as the diagrams write it (``3×3 → 3×3``);
- ``memory_factor``: peak activation memory per byte the plan says autograd saves, relative to the built-ins;
- ``build``: its `torch.nn.Module`, by default the generic `explorer.models.Block` made from the plan.

This package imports no PyTorch: the web server validates, prices and draws any net without it. Every module in
this folder is imported below, so a new block type is one file here (and its test): a `BlockType` subclass
decorated with `register`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torch import nn

    from ..plan import BlockPlan


class ModelError(ValueError):
    """A model cannot be built or used as asked; the message says what to change."""


class BlockTypeError(TypeError):
    """A block type is declared inconsistently; the message says what to fix in its class."""


@dataclass(frozen=True)
class Conv:
    """One convolution of a branch: padding kernel // 2, so a stride-1 conv keeps the map's size."""

    in_ch: int
    out_ch: int
    kernel: int
    stride: int = 1
    groups: int = 1


@dataclass(frozen=True)
class Pool:
    """A max pool inside a branch (GoogLeNet's pool path)."""

    kernel: int
    stride: int
    padding: int = 0


Path = tuple["Conv | Pool", ...]


def conv_macs(in_ch: int, out_ch: int, kernel: int, h: int, w: int, groups: int = 1) -> int:
    """Multiply-adds of a k x k convolution producing an out_ch x h x w map: k·k·(in/groups)·out·h·w."""
    return kernel * kernel * (in_ch // groups) * out_ch * h * w


class BlockType:
    """A kind of block. Subclasses set the class attributes and `paths`; see the package docstring."""

    name: ClassVar[str]
    label: ClassVar[str]  # "" only for the default block, which a label never names
    layers: ClassVar[int]
    deepest: ClassVar[int]
    expansion: ClassVar[int] = 1
    memory_factor: ClassVar[float] = 1.0
    summary: ClassVar[str] = ""  # one line for people: what it is and where it comes from

    @classmethod
    def paths(cls, in_ch: int, out_ch: int, stride: int) -> tuple[Path, ...]:
        """The branch F of a block from `in_ch` to `out_ch` channels at `stride`: parallel paths whose outputs are
        concatenated along channels. The last conv of each path writes F's output (zeroed by zero-init)."""
        raise NotImplementedError

    @classmethod
    def glyph(cls) -> str:
        """The branch in paper notation, paths separated by |: ``1×1 → 3×3 → 1×1``."""
        return " | ".join(" → ".join("pool" if isinstance(layer, Pool) else f"{layer.kernel}×{layer.kernel}"
                                     for layer in path) for path in cls.paths(16, 16, 1))

    @classmethod
    def depth_rule(cls) -> str:
        return f"{3 * cls.layers}n+2"

    @classmethod
    def depth(cls, n: int) -> int:
        """The depth of a CIFAR net with n blocks per stage: the stem, three stages and the classifier."""
        return 3 * cls.layers * n + 2

    @classmethod
    def build(cls, plan: "BlockPlan") -> "nn.Module":
        """The block's module; the generic one reads the plan, so its layers are the declared paths."""
        from ..models import Block

        return Block(plan)


class VGGUnit(BlockType):
    """One 3x3 conv of a VGG stage (Simonyan & Zisserman 2015): the unit a VGG net stacks. Not a block type a
    configuration chooses (VGG nets have no ``block`` option), so it is not registered."""

    name = "vgg"
    label = ""
    layers = 1
    deepest = 19

    @classmethod
    def paths(cls, in_ch: int, out_ch: int, stride: int) -> tuple[Path, ...]:
        return ((Conv(in_ch, out_ch, 3, stride),),)


_REGISTRY: dict[str, type[BlockType]] = {}
DEFAULT_BLOCK = "basic"


def register(block: type[BlockType]) -> type[BlockType]:
    """Class decorator: make `block` a choice of every configuration (form, URL, CLI, JSON), checking that its
    declaration holds together."""
    for attribute in ("name", "label", "layers", "deepest"):
        if not hasattr(block, attribute):
            raise BlockTypeError(f"block type {block.__name__} does not set {attribute}")
    taken = {other.label: other.name for other in _REGISTRY.values() if other.name != block.name}
    if block.label in taken or (block.label == "") != (block.name == DEFAULT_BLOCK):
        raise BlockTypeError(f"block type {block.name!r}: label {block.label!r} is taken or empty; give it a short "
                             f"token of its own (taken: {', '.join(sorted(taken))})")
    longest = max(sum(isinstance(layer, Conv) for layer in path) for path in block.paths(16, 16 * block.expansion, 1))
    if longest != block.layers:
        raise BlockTypeError(f"block type {block.name!r} declares {block.layers} layers but its longest path has "
                             f"{longest} convs: make them agree (the depth rule counts that path)")
    if block.depth((block.deepest - 2) // (3 * block.layers)) != block.deepest:
        raise BlockTypeError(f"block type {block.name!r}: deepest {block.deepest} is not {block.depth_rule()}")
    _REGISTRY[block.name] = block
    return block


def unregister(name: str) -> None:
    """Withdraw the block type called `name` (a plug-in's, or a test's); the built-ins stay."""
    _REGISTRY.pop(name, None)


def block_type(name: str) -> type[BlockType]:
    """The registered block type called `name` (`names` lists them)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"block {name!r} is not one of {', '.join(_REGISTRY)}") from None


def names() -> tuple[str, ...]:
    """Every registered block type's name, the default first."""
    return tuple(sorted(_REGISTRY, key=lambda name: name != DEFAULT_BLOCK))


def by_label(token: str) -> type[BlockType] | None:
    """The block type whose label token is `token`, if any."""
    return next((block for block in _REGISTRY.values() if block.label and block.label == token), None)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
