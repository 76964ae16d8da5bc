"""One validated run configuration, from URL, CLI flags, JSON or Python to the run store.

A run trains one or several models in lockstep on the same batches. `Config` holds the shared data,
optimisation and device settings and a tuple of `ModelConfig`s. Every model has a compact label
(``resnet56``, ``plain20``, ``resnet110-B-pre``, ``vgg16``) that is both its encoding in a URL and its name on the
command line, so a shared link reproduces a run exactly; `ModelConfig.display_name` is what a student reads
("ResNet-56 (identity at start)").

    ?models=plain20,plain56,resnet20,resnet56&data=cifar10&subset=2000&epochs=30&lr=0.1

This module is the one validation layer: every field's type and range is checked here, whatever the source (a URL
and CLI flags arrive as text and are parsed by `Config.from_query`; JSON and Python values arrive typed and are
checked as they are). Anything invalid raises `ConfigError` with a message that says what to change; nothing else
escapes (a fuzz test feeds hostile values through every entry point).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Literal, Mapping
from urllib.parse import parse_qsl, urlencode

from .blocks import DEFAULT_BLOCK, BlockType, VGGUnit, block_type, by_label, names as block_names

Family = Literal["plain", "resnet", "vgg"]
Block = str  # the name of a registered block type (explorer.blocks)
Shortcut = Literal["A", "B", "C"]
ShortcutVariant = Literal["identity", "scaled", "gated"]
Order = Literal["original", "preact"]
Init = Literal["kaiming", "xavier"]
Optimizer = Literal["sgd", "adam"]
Schedule = Literal["constant", "step", "cosine"]
Device = Literal["auto", "cpu", "cuda"]
Precision = str  # one of PRECISIONS

FAMILIES: tuple[str, ...] = ("plain", "resnet", "vgg")
BLOCKS: tuple[str, ...] = block_names()  # the block types known at import; `block_names()` also lists later ones
SHORTCUTS: tuple[str, ...] = ("A", "B", "C")
SHORTCUT_VARIANTS: tuple[str, ...] = ("identity", "scaled", "gated")
ORDERS: tuple[str, ...] = ("original", "preact")
INITS: tuple[str, ...] = ("kaiming", "xavier")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
SCHEDULES: tuple[str, ...] = ("constant", "step", "cosine")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
# Each precision and the dtype autocast computes in (a torch dtype's name; None: plain fp32, no autocast). "auto"
# picks one per device: explorer.device.precision_on. Memory factors and default calibrations fall back to fp32's for
# a precision that has none fitted (explorer.memory, explorer.estimate).
AUTOCAST_DTYPES: dict[str, str | None] = {"fp32": None, "bf16": "bfloat16"}
PRECISIONS: tuple[str, ...] = ("auto", *AUTOCAST_DTYPES)
FAMILY_NAMES: dict[str, str] = {"plain": "Plain", "resnet": "ResNet", "vgg": "VGG"}
# What a family has none of, so the options that do not apply to it: a model that sets one contradicts itself
# (``vgg16-B`` asks for a shortcut on a net without shortcuts) and is refused.
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "plain": {"shortcut": "shortcuts", "shortcut_variant": "shortcuts", "zero_init_residual": "residual branches"},
    "vgg": {"block": "blocks", "shortcut": "shortcuts", "shortcut_variant": "shortcuts",
            "zero_init_residual": "residual branches"},
}
# Simonyan & Zisserman 2015 configurations A/B/D/E: convs per stage; depth counts them and the 3 linear layers
VGG_LAYOUTS: dict[int, tuple[int, ...]] = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3),
                                           19: (2, 2, 4, 4, 4)}
VGG_DEPTHS: tuple[int, ...] = tuple(VGG_LAYOUTS)
WIDTHS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
OFFERED_BLOCKS_PER_STAGE = 18  # depth sliders run to ResNet-110 (basic) and ResNet-164 (bottleneck), then the deepest
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
BUILTIN_SOURCES: tuple[str, ...] = ("synthetic", "cifar10")
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_SEED = 2**32 - 1
PROBE_IMAGES = 64  # probes run on a fixed batch this big: a stable std per layer, ~2% of the compute every 10 steps
FINAL_TRAIN_IMAGES = 1000  # the last evaluation scores this many training images (and the whole test subset)
MAX_IMAGES = 1_000_000  # a sanity bound; the memory check (explorer.memory) sets the real one per machine
MIN_IMAGES = 2  # per subset; the real bounds are the source's size (explorer.data.sources.source_sizes)
MAX_TEXT = 1000  # longest URL value or name accepted


class ConfigError(ValueError):
    """A configuration value is invalid; the message says what to change."""


# --- one check per kind of value ------------------------------------------------------------------------------
def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4,300-digit limit for printing
        text = "a number too long to print"
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value: int) -> str:
    """``1,234`` for a whole number, without failing on one too long to print."""
    return f"{value:,}" if value.bit_length() < 4000 else _shown(value)


def _choice(name: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name} {_shown(value)} is not one of {', '.join(allowed)}")


def _integer(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} {_shown(value)} is not a whole number: use one from {low:,} to {high:,}")
    if not low <= value <= high:
        raise ConfigError(f"{name} {_whole(value)} is out of range: use a whole number from {low:,} to {high:,}")


def _number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} {_shown(value)} is not a number: use one from {low:g} to {high:g}")
    if not low <= value <= high:  # exact for ints of any size; false for NaN
        shown = f"{value:g}" if isinstance(value, float) or abs(value) < 10**300 else _shown(value)
        raise ConfigError(f"{name} {shown} is out of range: use a number from {low:g} to {high:g}")


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} {_shown(value)} is not true or false")


def _text(name: str, value: Any, limit: int = 200) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{name} {_shown(value)} is not text")
    if len(value) > limit or any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in value):  # controls, lone surrogates
        raise ConfigError(f"{name} is too long or holds control characters: use at most {limit} plain characters")


# --- architecture ---------------------------------------------------------------------------------------------
def layers_per_block(block: str) -> int:
    """Weighted layers on the longest path of one block, as its type declares (2 basic, 3 bottleneck)."""
    return block_type(block).layers


def depth_rule(block: str) -> str:
    """``6n+2`` (basic and inception blocks) or ``9n+2`` (bottleneck), He et al. 2015 §4.2 and Fig. 5."""
    return block_type(block).depth_rule()


def depth_unit(family: str, block: str = DEFAULT_BLOCK) -> str:
    """What a depth must be, for people: the block's depth rule, or a VGG configuration."""
    return "VGG configuration" if family == "vgg" else depth_rule(block)


def blocks_per_stage(family: str, depth: int, block: str) -> int:
    """n in depth = 6n+2 (basic) or 9n+2 (bottleneck), He et al. 2015 §4.2; 0 for VGG, which has no blocks."""
    if family == "vgg":
        return 0
    return (depth - 2) // (3 * layers_per_block(block))


def depth_of(block: str, n: int) -> int:
    """The depth of a net of `block`s with n blocks per stage."""
    return block_type(block).depth(n)


def deepest(block: str) -> int:
    """The deepest net of `block`s offered: the papers' ResNet-1202 (He et al. 2015 §4.2) and bottleneck
    ResNet-1001 (He et al. 2016), as each block type declares."""
    return block_type(block).deepest


def valid_depths(family: str, block: str = DEFAULT_BLOCK, up_to: int | None = None) -> list[int]:
    if family == "vgg":
        return list(VGG_DEPTHS)
    kind = block_type(block)
    return list(range(kind.depth(1), min(up_to or kind.deepest, kind.deepest) + 1, 3 * kind.layers))


def depth_options(family: str, block: str = DEFAULT_BLOCK, extra: Iterable[int] = ()) -> list[int]:
    """Depths a slider offers: every depth of the block's rule up to `OFFERED_BLOCKS_PER_STAGE` blocks per stage,
    the deepest, and `extra` (the depths shown now); the VGG configurations for VGG."""
    if family == "vgg":
        return sorted({*VGG_DEPTHS, *extra})
    return sorted({*valid_depths(family, block, up_to=depth_of(block, OFFERED_BLOCKS_PER_STAGE)), deepest(block),
                   *extra})


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one network. Defaults are the paper's CIFAR-10 ResNet-20 with option A."""

    family: Family = "resnet"
    depth: int = 20  # weighted layers: 6n+2 with basic blocks, 9n+2 with bottlenecks, or a VGG configuration
    width: float = 1.0  # multiplier of the 16/32/64 filters of the stages
    block: Block = DEFAULT_BLOCK  # a registered block type (explorer.blocks)
    shortcut: Shortcut = "A"  # He et al. 2015 §3.3: A zero-pads, B projects where shapes change, C everywhere
    shortcut_variant: ShortcutVariant = "identity"  # He et al. 2016 Table 1
    order: Order = "original"  # preact: BN-ReLU-conv (He et al. 2016)
    batchnorm: bool = True
    init: Init = "kaiming"
    zero_init_residual: bool = False  # each residual branch starts at zero: every block is the identity at step 0

    def __post_init__(self) -> None:
        _choice("family", self.family, FAMILIES)
        _choice("block", self.block, block_names())
        _choice("shortcut", self.shortcut, SHORTCUTS)
        _choice("shortcut_variant", self.shortcut_variant, SHORTCUT_VARIANTS)
        _choice("order", self.order, ORDERS)
        _choice("init", self.init, INITS)
        _boolean("batchnorm", self.batchnorm)
        _boolean("zero_init_residual", self.zero_init_residual)
        for name, lacks in NOT_APPLICABLE.get(self.family, {}).items():
            if getattr(self, name) != _default(name):
                raise ConfigError(f"{name} {_shown(getattr(self, name))} does not apply to {FAMILY_NAMES[self.family]} "
                                  f"nets, which have no {lacks}: leave it at {_default(name)!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or self.width not in WIDTHS:
            raise ConfigError(f"width {_shown(self.width)} is not one of {', '.join(f'{w:g}' for w in WIDTHS)}")
        object.__setattr__(self, "width", float(self.width))
        if isinstance(self.depth, bool) or not isinstance(self.depth, int):
            raise ConfigError(f"depth {_shown(self.depth)} is not a whole number, e.g. 20 or 56")
        if self.family == "vgg":
            if self.depth not in VGG_DEPTHS:
                raise ConfigError(f"depth {_shown(self.depth)} is not a VGG configuration: use 11, 13, 16 or 19")
            return
        unit, most = 3 * layers_per_block(self.block), deepest(self.block)
        if self.depth > most:
            raise ConfigError(f"depth {_shown(self.depth)} is too deep: {self.block} nets have at most {most} "
                              "layers here (the papers' deepest)")
        if self.depth < unit + 2 or (self.depth - 2) % unit:
            lower = max(unit + 2, (self.depth - 2) // unit * unit + 2)
            upper = lower + unit if lower < self.depth and lower + unit <= most else lower
            hint = f"try {lower} or {upper}" if lower != upper else f"try {lower}"
            raise ConfigError(f"depth {_shown(self.depth)} is not {depth_rule(self.block)} for {self.block} blocks: "
                              f"{hint}")

    @property
    def residual(self) -> bool:
        return self.family == "resnet"

    def with_options(self, **changes: Any) -> "ModelConfig":
        """This model with `changes`, the options its (new) family has no use for back at their defaults: the plain
        twin of resnet56-B is plain56. Options a change gives that the family has no use for are dropped likewise."""
        family = changes.get("family", self.family)
        unused = NOT_APPLICABLE.get(family, {})
        return replace(self, **{name: _default(name) for name in unused},
                       **{key: value for key, value in changes.items() if key not in unused})

    @property
    def unit(self) -> type[BlockType]:
        """What the net stacks: its block type, or VGG's single conv."""
        return VGGUnit if self.family == "vgg" else block_type(self.block)

    @property
    def label(self) -> str:
        """Compact name, e.g. ``resnet56``, ``resnet20-B-pre-nobn``; `parse` inverts it."""
        parts = [f"{self.family}{self.depth}"]
        defaults = ModelConfig()
        for key, (token_of, _) in _LABEL_TOKENS.items():
            value = getattr(self, key)
            if value != getattr(defaults, key):
                parts.append(token_of(value))
        return "-".join(parts)

    @property
    def display_name(self) -> str:
        """The name a student reads: ``ResNet-56``, ``Plain-20``, ``ResNet-56 (identity at start)``."""
        head = f"{FAMILY_NAMES[self.family]}-{self.depth}"
        notes = []
        if self.block != DEFAULT_BLOCK:
            notes.append(self.block)
        if self.width != 1.0:
            notes.append(f"width {self.width:g}")
        if self.residual and self.shortcut != "A":
            notes.append(f"shortcut {self.shortcut}")
        if self.residual and self.shortcut_variant != "identity":
            notes.append(f"{self.shortcut_variant} shortcut")
        if self.order == "preact":
            notes.append("pre-activation")
        if not self.batchnorm:
            notes.append("no BatchNorm")
        if self.init != "kaiming":
            notes.append(f"{self.init} init")
        if self.zero_init_residual:
            notes.append("identity at start")
        return f"{head} ({', '.join(notes)})" if notes else head

    @classmethod
    def parse(cls, label: str) -> "ModelConfig":
        if not isinstance(label, str) or len(label) > 100:
            raise ConfigError(f"model {_shown(label)} is not a model label such as resnet56")
        head, *tokens = label.strip().split("-")
        match = re.fullmatch(r"(plain|resnet|vgg)(\d{1,5})", head)
        if not match:
            raise ConfigError(f"model {label!r} must start with plain, resnet or vgg and a depth, e.g. resnet56")
        values: dict[str, Any] = {"family": match[1], "depth": int(match[2])}
        given: dict[str, list[str]] = {}  # option -> the tokens that set it
        for token in tokens:
            for key, (_, value_of) in _LABEL_TOKENS.items():
                value = value_of(token)
                if value is not None:
                    values[key] = value
                    given.setdefault(key, []).append(token)
                    break
            else:
                blocks = ", ".join(block_type(name).label for name in block_names() if name != DEFAULT_BLOCK)
                raise ConfigError(f"model {label!r}: unknown option {token!r}; options are A/B/C, {blocks}, pre, "
                                  "nobn, xavier, zi, scaled, gated, w<width>")
        _refuse_contradictions(label, head, tokens, given)
        return cls(**values)


def _default(name: str) -> Any:
    return ModelConfig.__dataclass_fields__[name].default


OPTION_NAMES: dict[str, str] = {"block": "block", "shortcut": "shortcut option", "shortcut_variant": "shortcut variant",
                                "order": "pre-activation option", "batchnorm": "batch-norm option", "init": "init",
                                "zero_init_residual": "zero-init option", "width": "width"}


def _refuse_contradictions(label: str, head: str, tokens: list[str], given: dict[str, list[str]]) -> None:
    """A label that sets an option its family has no use for (``vgg16-B``) or sets one twice (``resnet20-B-C``)
    says two things at once: refuse it, naming the labels it may have meant."""
    family = re.match(r"[a-z]+", head)[0]
    unused = {key: NOT_APPLICABLE[family][key] for key in given if key in NOT_APPLICABLE.get(family, {})}
    if unused:
        dropped = [t for key in unused for t in given[key]]
        kept = [seen[0] for key, seen in given.items() if key not in unused]
        raise ConfigError(f"model {label!r}: {FAMILY_NAMES[family]} nets have no "
                          f"{' or '.join(dict.fromkeys(unused.values()))}, so {', '.join(map(repr, dropped))} "
                          f"{'does' if len(dropped) == 1 else 'do'} not apply: write {'-'.join([head, *kept])}")
    for key, seen in given.items():
        if len(seen) > 1:
            others = [t for t in tokens if t not in seen]
            choices = " or ".join(dict.fromkeys("-".join([head, *others, t]) for t in seen))
            raise ConfigError(f"model {label!r} gives the {OPTION_NAMES[key]} {len(seen)} times ({', '.join(seen)}): "
                              f"give it once, e.g. {choices}")


def display_name(label: str) -> str:
    """`ModelConfig.display_name` of a label; the label itself where it is not one."""
    try:
        return ModelConfig.parse(label).display_name
    except ConfigError:
        return label


def _flag_token(token: str, value: Any) -> tuple:
    return (lambda v: token, lambda t: value if t == token else None)


def _width_of(token: str) -> float | None:
    match = re.fullmatch(r"w(\d{1,3}(?:\.\d{1,3})?)", token)
    return float(match[1]) if match else None


_LABEL_TOKENS: dict[str, tuple] = {
    "block": (lambda v: block_type(v).label, lambda t: kind.name if (kind := by_label(t)) else None),
    "shortcut": (lambda v: v, lambda t: t if t in SHORTCUTS else None),
    "shortcut_variant": (lambda v: v, lambda t: t if t in ("scaled", "gated") else None),
    "order": _flag_token("pre", "preact"),
    "batchnorm": _flag_token("nobn", False),
    "init": _flag_token("xavier", "xavier"),
    "zero_init_residual": _flag_token("zi", True),
    "width": (lambda v: f"w{v:g}", _width_of),
}


# --- data, optimisation, the run --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """Which images. ``source`` is a name, never a path: ``synthetic`` (built in), ``cifar10`` (found in the data
    directory, else downloaded) or the name of a data root the operator configured (explorer.settings)."""

    source: str = "synthetic"
    subset: int = 5000  # training images, class-balanced
    test_subset: int = 2000  # test images, class-balanced; evaluated in full at the end of a run
    classes: tuple[str, ...] = ()  # class names to keep, in label order; empty: all
    augment: bool = True  # pad-4 random crop and horizontal flip (He et al. 2015 §4.2)
    seed: int = 0  # which subset

    def __post_init__(self) -> None:
        _text("data source", self.source, 64)
        if not SOURCE_NAME.fullmatch(self.source):
            raise ConfigError(f"data source {_shown(self.source)} is not a name: use synthetic, cifar10 or the name "
                              "of a configured data root (a run never names a server path)")
        _integer("subset", self.subset, MIN_IMAGES, MAX_IMAGES)
        _integer("test_subset", self.test_subset, MIN_IMAGES, MAX_IMAGES)
        _boolean("augment", self.augment)
        _integer("data seed", self.seed, 0, MAX_SEED)
        if not isinstance(self.classes, tuple) or len(self.classes) > 1000:
            raise ConfigError("classes must be a list of at most 1000 class names")
        for name in self.classes:
            _text("class name", name, 64)
            if "," in name or name != name.strip() or not name:
                raise ConfigError(f"class name {_shown(name)} has a comma or surrounding spaces, so no link can name "
                                  "it: rename that class folder")
        if self.source in BUILTIN_SOURCES:
            unknown = [c for c in self.classes if c not in CIFAR10_CLASSES]
            if unknown:
                raise ConfigError(f"unknown class {unknown[0]!r}: choose from {', '.join(CIFAR10_CLASSES)}")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError("classes are repeated: name each class once")
        if len(self.classes) == 1:
            raise ConfigError("one class cannot be learned: choose at least two classes, or none for all ten")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule. ``steps`` > 0 overrides ``epochs``. Warm-up is linear from lr/10."""

    optimizer: Optimizer = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    schedule: Schedule = "cosine"
    warmup_epochs: float = 0.0
    epochs: float = 30.0
    steps: int = 0

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _number("lr", self.lr, 1e-6, 100.0)
        _number("momentum", self.momentum, 0.0, 0.999)
        _number("weight_decay", self.weight_decay, 0.0, 0.1)
        _integer("batch_size", self.batch_size, 1, 4096)
        _number("warmup_epochs", self.warmup_epochs, 0.0, 1000.0)
        _number("epochs", self.epochs, 0.0, 10000.0)
        _integer("steps", self.steps, 0, 10_000_000)
        if self.epochs == 0 and self.steps == 0:
            raise ConfigError("nothing to train: set epochs or steps above 0")


def _legacy_bf16(value: Any, meanings: Mapping[Any, str]) -> str:
    """The precision an old configuration's ``bf16`` flag meant; anything but a yes or no is refused."""
    try:
        return meanings[value]
    except (KeyError, TypeError):
        raise ConfigError(f"bf16 {str(value)[:40]!r} is not a yes or no: write precision=bf16, fp32 or auto "
                          "instead") from None


@dataclass(frozen=True)
class Config:
    """A run: the models trained in lockstep and everything they share."""

    models: tuple[ModelConfig, ...] = (ModelConfig(),)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    device: Device = "auto"  # auto: the GPU when the worker has one
    threads: int = 0  # CPU threads (0: PyTorch's default)
    precision: Precision = "auto"  # auto: bf16 autocast where it is fast (explorer.device.precision_on), else fp32
    probe_every: int = 10  # per-layer probes every this many steps (0: never)
    eval_every: int = 0  # evaluate every this many steps (0: about 25 times per run)
    eval_images: int = 500  # images of the training and test subsets scored at each evaluation; the end scores all
    seed: int = 0  # weights and batch order
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.models, tuple) or not all(isinstance(m, ModelConfig) for m in self.models):
            raise ConfigError("models must be a list of model labels or model objects")
        if not self.models:
            raise ConfigError("no model to train: name at least one, e.g. resnet20")
        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"model {_first_repeat(labels)} is listed twice: list each model once")
        if len(self.models) > 16:
            raise ConfigError(f"{len(self.models)} models in one run is too many: use at most 16")
        if not isinstance(self.data, DataConfig) or not isinstance(self.optim, OptimConfig):
            raise ConfigError("data and optim must be objects of their own fields")
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        _integer("threads", self.threads, 0, 256)
        _integer("probe_every", self.probe_every, 0, 1_000_000)
        _integer("eval_every", self.eval_every, 0, 1_000_000)
        _integer("eval_images", self.eval_images, 10, MAX_IMAGES)
        _integer("seed", self.seed, 0, MAX_SEED)
        _text("name", self.name)
        object.__setattr__(self, "name", self.name.strip())  # as a link carries it

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    def run_steps(self) -> tuple[int, int]:
        """(total steps, steps per epoch) as the trainer counts them: full batches over the training subset."""
        per_epoch = max(1, self.data.subset // self.optim.batch_size)
        return self.optim.steps or max(1, math.ceil(self.optim.epochs * per_epoch)), per_epoch

    def evaluation_interval(self) -> int:
        """Steps between evaluations: `eval_every`, or about 25 evaluations over the run (so that every run draws a
        test-error curve, not a dot)."""
        total, _ = self.run_steps()
        return self.eval_every or max(1, total // 25)

    def fingerprint(self) -> str:
        """What makes two runs the same experiment: everything but the name."""
        body = json.dumps(replace(self, name="").to_dict(), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    # --- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, raw: Any) -> "Config":
        if not isinstance(raw, Mapping):
            raise ConfigError("a configuration must be an object of fields (models, data, optim, ...)")
        raw = dict(raw)
        if "bf16" in raw and "precision" not in raw:  # written by versions before `precision`
            raw["precision"] = _legacy_bf16(raw.pop("bf16"), {True: "bf16", False: "fp32"})
        models_raw = raw.pop("models", [{}])
        if not isinstance(models_raw, (list, tuple)):
            raise ConfigError("models must be a list of model labels or model objects")
        models = tuple(ModelConfig.parse(m) if isinstance(m, str) else _build(ModelConfig, m) for m in models_raw)
        data = _build(DataConfig, raw.pop("data", {}))
        optim = _build(OptimConfig, raw.pop("optim", {}))
        return _build(cls, raw, models=models, data=data, optim=optim)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Config":
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError("the configuration file is not UTF-8 text: save it as UTF-8 JSON") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"configuration is not valid JSON: {error}") from None
        except ValueError:  # json refuses ints past Python's 4,300-digit limit
            raise ConfigError("configuration holds a number too long to read: write numbers of a few digits") from None
        except RecursionError:
            raise ConfigError("configuration JSON is nested too deeply: write a flat object of fields") from None
        return cls.from_dict(raw)

    # --- URL query string -------------------------------------------------------------------
    def to_query(self) -> dict[str, str]:
        """Only the values that differ from the defaults, as flat string pairs."""
        query = {"models": ",".join(self.labels)}
        for key, (path, _) in QUERY_KEYS.items():
            value = _get_path(self, path)
            if value != _get_path(DEFAULT_CONFIG, path):
                query[key] = _format(value)
        return query

    def to_query_string(self) -> str:
        return urlencode(self.to_query(), safe=",")

    @classmethod
    def from_query(cls, query: Mapping[str, str] | str, base: "Config | None" = None) -> "Config":
        """Parse a URL query (string or mapping); keys it lacks keep their value in ``base`` (or the default).

        The app's own keys (`APP_KEYS`: the run id, an owner key, ...) are not part of the configuration and are
        ignored; any other unknown key is an error.
        """
        if isinstance(query, str):
            query = dict(parse_qsl(query.lstrip("?")))
        if not isinstance(query, Mapping):
            raise ConfigError("a URL query must be key=value pairs")
        query = dict(query)
        if "bf16" in query and "precision" not in query:  # links written before `precision`
            query["precision"] = _legacy_bf16(str(query["bf16"]).lower(), {"1": "bf16", "true": "bf16", "0": "fp32",
                                                                           "false": "fp32"})
        query.pop("bf16", None)
        unknown = sorted(str(k) for k in set(query) - set(QUERY_KEYS) - {"models", *APP_KEYS})
        if unknown:
            raise ConfigError(f"unknown URL parameter {_shown(unknown[0])}: known ones are models, "
                              f"{', '.join(QUERY_KEYS)}")
        changes: dict[tuple[str, ...], Any] = {}
        if "models" in query:
            text = _query_value("models", query["models"])
            labels = [x.strip() for x in text.split(",") if x.strip()]
            if not labels:
                raise ConfigError("models is empty: name at least one model, e.g. models=plain20,resnet20")
            changes[("models",)] = tuple(ModelConfig.parse(x) for x in labels)
        for key, (path, kind) in QUERY_KEYS.items():
            if key in query:
                changes[path] = _parse(key, _query_value(key, query[key]), kind)
        return _set_paths(base or DEFAULT_CONFIG, changes)

    @classmethod
    def from_query_keeping(cls, query: Mapping[str, str]) -> tuple["Config", dict[str, str]]:
        """`from_query` of every field of `query` that parses, and for each field that does not, what is wrong: a
        link with one bad field keeps the others. Fields are taken in order, so a field that contradicts an earlier
        one is the one reported."""
        good: dict[str, str] = {}
        bad: dict[str, str] = {}
        for key, value in dict(query).items():
            try:
                cls.from_query({**good, key: value})
            except ConfigError as error:
                bad[str(key)] = str(error)
            else:
                good[key] = value
        return cls.from_query(good), bad


APP_KEYS: tuple[str, ...] = ("run", "key")  # URL keys of the app that are not configuration


def _query_value(key: str, value: Any) -> str:
    text = str(value)
    if len(text) > MAX_TEXT:
        raise ConfigError(f"URL parameter {key} is {len(text):,} characters long: use at most {MAX_TEXT:,}")
    return text


def _first_repeat(items: list[str]) -> str:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return ""


def _build(cls: type, raw: Any, **fixed: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{cls.__name__} must be an object of fields, not {_shown(raw)}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(str(k) for k in set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field {_shown(unknown[0])}: known ones are "
                          f"{', '.join(sorted(names))}")
    values = {**raw, **fixed}
    if cls is DataConfig and "classes" in values:
        if not isinstance(values["classes"], (list, tuple)):
            raise ConfigError("classes must be a list of class names")
        values["classes"] = tuple(values["classes"])
    return cls(**values)


# URL key -> (attribute path, type). Short keys keep shared links readable.
QUERY_KEYS: dict[str, tuple[tuple[str, ...], type]] = {
    "data": (("data", "source"), str),
    "subset": (("data", "subset"), int),
    "test": (("data", "test_subset"), int),
    "classes": (("data", "classes"), tuple),
    "augment": (("data", "augment"), bool),
    "data_seed": (("data", "seed"), int),
    "opt": (("optim", "optimizer"), str),
    "lr": (("optim", "lr"), float),
    "momentum": (("optim", "momentum"), float),
    "wd": (("optim", "weight_decay"), float),
    "batch": (("optim", "batch_size"), int),
    "schedule": (("optim", "schedule"), str),
    "warmup": (("optim", "warmup_epochs"), float),
    "epochs": (("optim", "epochs"), float),
    "steps": (("optim", "steps"), int),
    "device": (("device",), str),
    "threads": (("threads",), int),
    "precision": (("precision",), str),
    "probe": (("probe_every",), int),
    "eval": (("eval_every",), int),
    "eval_images": (("eval_images",), int),
    "seed": (("seed",), int),
    "name": (("name",), str),
}


def _get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _set_paths(obj: Any, changes: Mapping[tuple[str, ...], Any]) -> Any:
    """`obj` with every (attribute path -> value) change made at once, so that fields checked together (epochs and
    steps, a source and its classes) are checked in their final combination, not one change at a time."""
    direct = {path[0]: value for path, value in changes.items() if len(path) == 1}
    nested: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in changes.items():
        if len(path) > 1:
            nested.setdefault(path[0], {})[path[1:]] = value
    for name, inner in nested.items():
        direct[name] = _set_paths(getattr(obj, name), inner)
    return replace(obj, **direct) if direct else obj


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float):  # the shortest text that reads back as the same float: a link reproduces a run
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def _parse(key: str, text: str, kind: type) -> Any:
    text = text.strip()
    if kind is bool:
        if text.lower() not in ("0", "1", "true", "false"):
            raise ConfigError(f"URL parameter {key}={_shown(text)} must be 0 or 1")
        return text.lower() in ("1", "true")
    if kind is tuple:
        return tuple(x.strip() for x in text.split(",") if x.strip())
    if kind is int:
        if not re.fullmatch(r"[+-]?[0-9]+", text):  # ASCII digits only: int() would take any script's
            raise ConfigError(f"URL parameter {key}={_shown(text)} is not a whole number")
        if len(text.lstrip("+-")) > 19:
            raise ConfigError(f"URL parameter {key}={_shown(text)} is out of range: use a whole number of at most "
                              "19 digits")
        return int(text)
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"URL parameter {key}={_shown(text)} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"URL parameter {key}={_shown(text)} is not a finite number")
        return value
    return text


def model_grid(**options: Iterable[Any]) -> tuple[ModelConfig, ...]:
    """The cross product of architecture options, e.g. ``model_grid(family=["plain", "resnet"], depth=[20, 56])``.

    Order follows the arguments, last varying fastest. Options apply where the family has a use for them
    (``family=["plain", "resnet"], shortcut=["B"]`` gives plain20 and resnet20-B); an option that applies to no model
    of the grid, or an empty list of values, is an error, not a silent no-op or an empty grid.
    """
    keys = list(options)
    lists = {key: list(options[key]) for key in keys}
    empty = [key for key, values in lists.items() if not values]
    if empty:
        raise ConfigError(f"{empty[0]} is empty: give at least one value")
    models, applied = [], set()
    for values in itertools.product(*(lists[k] for k in keys)):
        chosen = dict(zip(keys, values))
        family = chosen.get("family", _default("family"))
        applied.update((key, repr(value)) for key, value in chosen.items() if key not in NOT_APPLICABLE.get(family, {}))
        model = ModelConfig().with_options(**chosen)
        if model not in models:
            models.append(model)
    for key in keys:
        for value in lists[key]:
            if (key, repr(value)) not in applied and key in ModelConfig.__dataclass_fields__ and value != _default(key):
                families = sorted({m.family for m in models})
                lacks = " or ".join(dict.fromkeys(NOT_APPLICABLE[f][key] for f in families))
                raise ConfigError(f"{key} {_shown(value)} applies to none of these models: "
                                  f"{' and '.join(FAMILY_NAMES[f] for f in families)} nets have no {lacks}")
    return tuple(models)


DEFAULT_CONFIG = Config()
