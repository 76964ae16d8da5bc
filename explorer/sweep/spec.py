"""A sweep's specification: a named grid over configuration fields, expanded into members of one model and one seed.

    SweepSpec("Fig. 6", base=Config(...), grid={"family": ["plain", "resnet"], "depth": [20, 32, 44, 56]}, seeds=3)

`plan` gives the member configurations: every model of ``base``, with each combination of the grid's architecture
fields (`ModelConfig` fields: family, depth, shortcut, ...) and run settings (the URL keys of `config.QUERY_KEYS`:
lr, batch, epochs, ...), trained with ``seeds`` seeds (base.seed, base.seed + 1, ...), seeds varying fastest. Each
member is its own run with one model, so seeds differ between members, as in He et al. 2015, who report the best
and the mean ± std of 5 runs (Table 6). Run settings pass through `Config.from_query`, the one validation layer.
`RayOptions` is what each member asks of a Ray cluster.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Sequence

from ..config import QUERY_KEYS, Config, ConfigError, ModelConfig

MODEL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ModelConfig))
RUN_FIELDS: tuple[str, ...] = tuple(key for key in QUERY_KEYS if key not in ("seed", "name"))
MAX_MEMBERS = 1000
MAX_SEEDS = 100
MAX_NAME = 100


class SweepError(ConfigError):
    """A sweep cannot be planned, started or read as asked; the message says what to change."""


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep trains. ``budget_s`` caps each member's training seconds (None: no cap)."""

    name: str
    base: Config
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    seeds: int = 1
    budget_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > MAX_NAME \
                or any(ord(c) < 32 for c in self.name):
            raise SweepError(f"sweep name {str(self.name)[:40]!r} must be 1 to {MAX_NAME} plain characters")
        if not isinstance(self.base, Config):
            raise SweepError("a sweep's base must be a Config")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or not 1 <= self.seeds <= MAX_SEEDS:
            raise SweepError(f"seeds {self.seeds!r} is not a whole number from 1 to {MAX_SEEDS}")
        if self.budget_s is not None and (isinstance(self.budget_s, bool) or not isinstance(self.budget_s, (int, float))
                                          or not math.isfinite(self.budget_s) or not 0 < self.budget_s < 1e7):
            raise SweepError(f"budget {self.budget_s!r} is not a positive number of seconds")
        if not isinstance(self.grid, Mapping):
            raise SweepError("a sweep's grid must map field names to lists of values")
        grid = {}
        for key, values in self.grid.items():
            if key in ("seed", "seeds"):
                raise SweepError("seeds are not a grid field: give the number of seeds as seeds=N")
            if key not in MODEL_FIELDS and key not in RUN_FIELDS:
                raise SweepError(f"grid field {str(key)[:40]!r} is unknown: use model fields "
                                 f"({', '.join(MODEL_FIELDS)}) or run settings ({', '.join(RUN_FIELDS)})")
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise SweepError(f"grid field {key} must be a non-empty list of values")
            grid[key] = tuple(values)
        object.__setattr__(self, "grid", grid)
        count = len(self.base.models) * math.prod(len(v) for v in grid.values()) * self.seeds
        if count > MAX_MEMBERS:
            raise SweepError(f"this sweep has {count:,} members: use at most {MAX_MEMBERS:,} (fewer values or seeds)")

    @property
    def grid_fields(self) -> list[str]:
        """The grid's fields, in order: the columns that tell members apart besides model and seed."""
        return list(self.grid)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base.to_dict(), "grid": {k: list(v) for k, v in self.grid.items()},
                "seeds": self.seeds, "budget_s": self.budget_s}

    @classmethod
    def from_dict(cls, raw: Any) -> "SweepSpec":
        if not isinstance(raw, Mapping) or not {"name", "base"} <= set(raw):
            raise SweepError("a sweep specification must be an object with name, base, grid and seeds")
        return cls(name=raw["name"], base=Config.from_dict(raw["base"]), grid=raw.get("grid") or {},
                   seeds=raw.get("seeds", 1), budget_s=raw.get("budget_s"))


@dataclass(frozen=True)
class RayOptions:
    """Each member's Ray task: its resource request and how often it is retried when its worker process dies.
    A fractional ``num_gpus`` packs several small members on one GPU."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 1

    def __post_init__(self) -> None:
        for name, value, high in (("cpus", self.num_cpus, 1024), ("gpus", self.num_gpus, 64)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
                raise SweepError(f"{name} per member {value!r} is out of range: use a number from 0 to {high}")
        if self.num_cpus == 0 and self.num_gpus == 0:
            raise SweepError("a member needs some resource: give it cpus or gpus above 0")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or \
                not 0 <= self.max_retries <= 100:
            raise SweepError(f"retries {self.max_retries!r} is not a whole number from 0 to 100")


def _query_text(value: Any) -> str:
    """A grid value as the URL text `Config.from_query` parses."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def member_name(spec: SweepSpec, config: Config) -> str:
    return f"{spec.name}: {config.models[0].display_name}, seed {config.seed}"[:200]


def plan(spec: SweepSpec) -> list[Config]:
    """The member configurations, one model and one seed each: models outermost, then run settings, then seeds."""
    arch = {k: v for k, v in spec.grid.items() if k in MODEL_FIELDS}
    run = {k: v for k, v in spec.grid.items() if k not in MODEL_FIELDS}
    models = list(dict.fromkeys(model.with_options(**dict(zip(arch, values)))
                                for model in spec.base.models for values in itertools.product(*arch.values())))
    members = []
    for model in models:
        for values in itertools.product(*run.values()):
            query = {key: _query_text(value) for key, value in zip(run, values)}
            config = Config.from_query(query, base=replace(spec.base, models=(model,)))
            for i in range(spec.seeds):
                member = replace(config, seed=spec.base.seed + i)
                members.append(replace(member, name=member_name(spec, member)))
    return members


def field_value(config: Config, key: str) -> Any:
    """A member's value of grid field `key`."""
    if key in MODEL_FIELDS:
        return getattr(config.models[0], key)
    value: Any = config
    for name in QUERY_KEYS[key][0]:
        value = getattr(value, name)
    return value
