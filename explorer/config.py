"""One validated run configuration, from URL or CLI flags to the run store.

A run trains one or several models in lockstep on the same batches. `Config` holds the shared data,
optimisation and device settings and a tuple of `ModelConfig`s. Every model has a compact label
(``resnet56``, ``plain20``, ``resnet110-B-pre``, ``vgg16``) that is both its legend name and its
encoding in a URL, so a shared link reproduces a run exactly:

    ?models=plain20,plain56,resnet20,resnet56&data=synthetic&subset=2000&epochs=30&lr=0.1

Validation raises `ConfigError` with a message that says what to change.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Literal, Mapping
from urllib.parse import parse_qsl, urlencode

Family = Literal["plain", "resnet", "vgg"]
Block = Literal["basic", "bottleneck", "inception"]
Shortcut = Literal["A", "B", "C"]
ShortcutVariant = Literal["identity", "scaled", "gated"]
Order = Literal["original", "preact"]
Init = Literal["kaiming", "xavier"]
Optimizer = Literal["sgd", "adam"]
Schedule = Literal["constant", "step", "cosine"]
Device = Literal["auto", "cpu", "cuda"]

FAMILIES: tuple[str, ...] = ("plain", "resnet", "vgg")
BLOCKS: tuple[str, ...] = ("basic", "bottleneck", "inception")
SHORTCUTS: tuple[str, ...] = ("A", "B", "C")
SHORTCUT_VARIANTS: tuple[str, ...] = ("identity", "scaled", "gated")
ORDERS: tuple[str, ...] = ("original", "preact")
INITS: tuple[str, ...] = ("kaiming", "xavier")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
SCHEDULES: tuple[str, ...] = ("constant", "step", "cosine")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
VGG_DEPTHS: tuple[int, ...] = (11, 13, 16, 19)
WIDTHS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


class ConfigError(ValueError):
    """A configuration value is invalid; the message says what to change."""


def _choice(name: str, value: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(allowed)}")


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise ConfigError(f"{name} {value} is out of range: use a value from {low} to {high}")


def layers_per_block(block: str) -> int:
    """Weighted layers on the longest path of one block: 2 (basic, inception) or 3 (bottleneck)."""
    return 3 if block == "bottleneck" else 2


def blocks_per_stage(family: str, depth: int, block: str) -> int:
    """n in depth = 6n+2 (basic) or 9n+2 (bottleneck), He et al. 2015 §4.2."""
    if family == "vgg":
        return 0
    return (depth - 2) // (3 * layers_per_block(block))


def valid_depths(family: str, block: str = "basic", up_to: int = 1202) -> list[int]:
    if family == "vgg":
        return list(VGG_DEPTHS)
    step = 3 * layers_per_block(block)
    return list(range(step + 2, up_to + 1, step))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one network. Defaults are the paper's CIFAR-10 ResNet-20 with option A."""

    family: Family = "resnet"
    depth: int = 20
    width: float = 1.0
    block: Block = "basic"
    shortcut: Shortcut = "A"
    shortcut_variant: ShortcutVariant = "identity"
    order: Order = "original"
    batchnorm: bool = True
    init: Init = "kaiming"
    zero_init_residual: bool = False

    def __post_init__(self) -> None:
        _choice("family", self.family, FAMILIES)
        _choice("block", self.block, BLOCKS)
        _choice("shortcut", self.shortcut, SHORTCUTS)
        _choice("shortcut_variant", self.shortcut_variant, SHORTCUT_VARIANTS)
        _choice("order", self.order, ORDERS)
        _choice("init", self.init, INITS)
        if self.width not in WIDTHS:
            raise ConfigError(f"width {self.width:g} is not one of {', '.join(f'{w:g}' for w in WIDTHS)}")
        if not isinstance(self.depth, int) or isinstance(self.depth, bool):
            raise ConfigError(f"depth {self.depth!r} is not an integer")
        if self.family == "vgg":
            if self.depth not in VGG_DEPTHS:
                raise ConfigError(f"depth {self.depth} is not a VGG configuration: use 11, 13, 16 or 19")
            return
        unit = 3 * layers_per_block(self.block)
        rule = f"{unit}n+2"
        if self.depth < unit + 2 or (self.depth - 2) % unit:
            lower = max(unit + 2, (self.depth - 2) // unit * unit + 2)
            upper = lower + unit if lower < self.depth else lower
            hint = f"try {lower} or {upper}" if lower != upper else f"try {lower}"
            raise ConfigError(f"depth {self.depth} is not {rule} for {self.block} blocks: {hint}")
        if self.depth > 1202 * (layers_per_block(self.block) // 2 + 1):
            raise ConfigError(f"depth {self.depth} is too deep: the largest supported net is about 1202 layers")

    @property
    def residual(self) -> bool:
        return self.family == "resnet"

    @property
    def label(self) -> str:
        """Compact name, e.g. ``resnet56``, ``plain20-B-pre-nobn``; `parse` inverts it."""
        parts = [f"{self.family}{self.depth}"]
        defaults = ModelConfig()
        for key, (token_of, _) in _LABEL_TOKENS.items():
            value = getattr(self, key)
            if value != getattr(defaults, key):
                parts.append(token_of(value))
        return "-".join(parts)

    @classmethod
    def parse(cls, label: str) -> "ModelConfig":
        head, *tokens = label.strip().split("-")
        match = re.fullmatch(r"(plain|resnet|vgg)(\d+)", head)
        if not match:
            raise ConfigError(f"model {label!r} must start with plain, resnet or vgg and a depth, e.g. resnet56")
        values: dict[str, Any] = {"family": match[1], "depth": int(match[2])}
        for token in tokens:
            for key, (_, value_of) in _LABEL_TOKENS.items():
                value = value_of(token)
                if value is not None:
                    values[key] = value
                    break
            else:
                raise ConfigError(
                    f"model {label!r}: unknown option {token!r}; options are A/B/C, bneck, incep, pre, nobn,"
                    " xavier, zi, scaled, gated, w<width>"
                )
        return cls(**values)


def _flag_token(token: str, value: Any) -> tuple:
    return (lambda v: token, lambda t: value if t == token else None)


def _width_of(token: str) -> float | None:
    match = re.fullmatch(r"w(\d+(?:\.\d+)?)", token)
    return float(match[1]) if match else None


_LABEL_TOKENS: dict[str, tuple] = {
    "block": (lambda v: {"bottleneck": "bneck", "inception": "incep"}[v],
              lambda t: {"bneck": "bottleneck", "incep": "inception"}.get(t)),
    "shortcut": (lambda v: v, lambda t: t if t in SHORTCUTS else None),
    "shortcut_variant": (lambda v: v, lambda t: t if t in ("scaled", "gated") else None),
    "order": _flag_token("pre", "preact"),
    "batchnorm": _flag_token("nobn", False),
    "init": _flag_token("xavier", "xavier"),
    "zero_init_residual": _flag_token("zi", True),
    "width": (lambda v: f"w{v:g}", _width_of),
}


@dataclass(frozen=True)
class DataConfig:
    """Which images: ``source`` is ``synthetic``, ``cifar10`` or a path to a data directory."""

    source: str = "synthetic"
    subset: int = 5000
    test_subset: int = 2000
    classes: tuple[str, ...] = ()
    augment: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.source:
            raise ConfigError("data source is empty: use synthetic, cifar10 or a path to a data directory")
        if self.subset < 10:
            raise ConfigError(f"subset {self.subset} is too small: use at least 10 training images")
        if self.test_subset < 10:
            raise ConfigError(f"test_subset {self.test_subset} is too small: use at least 10 test images")
        if self.source in ("synthetic", "cifar10"):
            unknown = [c for c in self.classes if c not in CIFAR10_CLASSES]
            if unknown:
                raise ConfigError(
                    f"unknown class {unknown[0]!r}: choose from {', '.join(CIFAR10_CLASSES)}"
                )
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
        _in_range("lr", self.lr, 1e-6, 100.0)
        _in_range("momentum", self.momentum, 0.0, 0.999)
        _in_range("weight_decay", self.weight_decay, 0.0, 0.1)
        _in_range("batch_size", self.batch_size, 1, 4096)
        _in_range("warmup_epochs", self.warmup_epochs, 0.0, 1000.0)
        _in_range("epochs", self.epochs, 0.0, 10000.0)
        _in_range("steps", self.steps, 0, 10_000_000)
        if self.epochs == 0 and self.steps == 0:
            raise ConfigError("nothing to train: set epochs or steps above 0")


@dataclass(frozen=True)
class Config:
    """A run: the models trained in lockstep and everything they share."""

    models: tuple[ModelConfig, ...] = (ModelConfig(),)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    device: Device = "auto"
    threads: int = 0
    bf16: bool = False
    probe_every: int = 10
    eval_every: int = 0
    seed: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("no model to train: name at least one, e.g. resnet20")
        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"model {_first_repeat(labels)} is listed twice: list each model once")
        if len(self.models) > 16:
            raise ConfigError(f"{len(self.models)} models in one run is too many: use at most 16")
        _choice("device", self.device, DEVICES)
        _in_range("threads", self.threads, 0, 256)
        _in_range("probe_every", self.probe_every, 0, 1_000_000)
        _in_range("eval_every", self.eval_every, 0, 1_000_000)

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    def run_steps(self) -> tuple[int, int]:
        """(total steps, steps per epoch) as the trainer counts them: full batches over the training subset."""
        per_epoch = max(1, self.data.subset // self.optim.batch_size)
        return self.optim.steps or max(1, math.ceil(self.optim.epochs * per_epoch)), per_epoch

    # --- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Config":
        raw = dict(raw)
        try:
            models = tuple(
                ModelConfig.parse(m) if isinstance(m, str) else _build(ModelConfig, m)
                for m in raw.pop("models", [{}])
            )
            data = _build(DataConfig, raw.pop("data", {}))
            optim = _build(OptimConfig, raw.pop("optim", {}))
            return _build(cls, raw, models=models, data=data, optim=optim)
        except TypeError as error:
            raise ConfigError(f"malformed configuration: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> "Config":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"configuration is not valid JSON: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError("configuration JSON must be an object")
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

        The key ``run`` (a run id the app keeps in its URL) is not part of the configuration and is ignored.
        """
        if isinstance(query, str):
            query = dict(parse_qsl(query.lstrip("?")))
        unknown = sorted(set(query) - set(QUERY_KEYS) - {"models", "run"})
        if unknown:
            raise ConfigError(f"unknown URL parameter {unknown[0]!r}: known ones are models, {', '.join(QUERY_KEYS)}")
        config = base or DEFAULT_CONFIG
        if "models" in query:
            labels = [x for x in str(query["models"]).split(",") if x]
            config = replace(config, models=tuple(ModelConfig.parse(x) for x in labels))
        for key, (path, kind) in QUERY_KEYS.items():
            if key in query:
                config = _set_path(config, path, _parse(key, str(query[key]), kind))
        return config


def _first_repeat(items: list[str]) -> str:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return ""


def _build(cls: type, raw: Mapping[str, Any], **fixed: Any) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field {unknown[0]!r}: known ones are {', '.join(sorted(names))}")
    values = {**raw, **fixed}
    if cls is DataConfig and "classes" in values:
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
    "bf16": (("bf16",), bool),
    "probe": (("probe_every",), int),
    "eval": (("eval_every",), int),
    "seed": (("seed",), int),
    "name": (("name",), str),
}


def _get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _set_path(obj: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return replace(obj, **{path[0]: value})
    return replace(obj, **{path[0]: _set_path(getattr(obj, path[0]), path[1:], value)})


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _parse(key: str, text: str, kind: type) -> Any:
    if kind is bool:
        if text.lower() not in ("0", "1", "true", "false"):
            raise ConfigError(f"URL parameter {key}={text!r} must be 0 or 1")
        return text.lower() in ("1", "true")
    if kind is tuple:
        return tuple(x for x in text.split(",") if x)
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"URL parameter {key}={text!r} is not a valid {kind.__name__}") from None


def model_grid(**options: Iterable[Any]) -> tuple[ModelConfig, ...]:
    """The cross product of architecture options, e.g. ``model_grid(family=["plain", "resnet"], depth=[20, 56])``.

    VGG rows ignore residual-only options. Order follows the arguments, last varying fastest.
    """
    keys = list(options)
    models = []
    for values in itertools.product(*(list(options[k]) for k in keys)):
        model = ModelConfig(**dict(zip(keys, values)))
        if model not in models:
            models.append(model)
    return tuple(models)


DEFAULT_CONFIG = Config()
