"""Flags -> `Config`: the model flags (labels, or architecture lists that build every combination), the run
settings under the app's URL keys (config.QUERY_KEYS, so a shared link and a command line say the same thing), a
JSON configuration file and a preset."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from explorer.cli.common import UsageError
from explorer.config import (BLOCKS, FAMILIES, INITS, ORDERS, QUERY_KEYS, SHORTCUT_VARIANTS, SHORTCUTS, Config,
                             ConfigError, ModelConfig, model_grid)

CONFIG_FILE_LIMIT = 1_000_000  # bytes
ARCH_FLAGS: dict[str, tuple[str, type]] = {  # flag -> (ModelConfig field, parser of one item)
    "family": ("family", str), "depth": ("depth", int), "width": ("width", float), "block": ("block", str),
    "shortcut": ("shortcut", str), "variant": ("shortcut_variant", str), "order": ("order", str),
    "init": ("init", str),
}
ARCH_CHOICES = {"family": FAMILIES, "block": BLOCKS, "shortcut": SHORTCUTS, "variant": SHORTCUT_VARIANTS,
                "order": ORDERS, "init": INITS}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models (comma lists build every combination)")
    group.add_argument("--models", help="model labels, e.g. plain20,resnet56,resnet110-B-pre")
    for flag, (field_name, _) in ARCH_FLAGS.items():
        choices = ARCH_CHOICES.get(flag)
        group.add_argument(f"--{flag}", help=f"{field_name}" + (f" ({'|'.join(choices)})" if choices else ""))
    group.add_argument("--no-bn", action="store_true", help="no BatchNorm layers")
    group.add_argument("--zero-init", action="store_true", help="zero-init the last BN gain of each residual branch")
    shared = parser.add_argument_group("run settings (the app's URL keys)")
    for key, (path, kind) in QUERY_KEYS.items():
        shared.add_argument(f"--{key.replace('_', '-')}", dest=f"q_{key}", metavar=kind.__name__.upper(),
                            help=".".join(path))
    parser.add_argument("--config", type=Path, help="a JSON configuration file; flags override it")
    parser.add_argument("--preset", help="a preset name (python -m explorer presets lists them)")


def read_config_file(path: Path) -> Config:
    try:
        with path.open("rb") as file:
            text = file.read(CONFIG_FILE_LIMIT + 1)  # not stat(): /dev/zero has no size and no end
    except OSError as error:
        raise UsageError(f"cannot read configuration file {str(path)[:200]}: {error.strerror or error}") from None
    if len(text) > CONFIG_FILE_LIMIT:
        raise UsageError(f"configuration file {str(path)[:200]} is over {CONFIG_FILE_LIMIT:,} bytes: give a JSON "
                         "object of a run's fields")
    return Config.from_json(text)


def flag(args: argparse.Namespace, key: str) -> str | None:
    """The run-settings flag of URL key `key`, as typed (None when not given)."""
    return getattr(args, f"q_{key}", None)


def query_of(args: argparse.Namespace) -> dict[str, str]:
    """The run-settings flags given, as a URL query."""
    return {key: value for key in QUERY_KEYS if (value := flag(args, key)) is not None}


def config_from_args(args: argparse.Namespace) -> Config:
    base = Config()
    if args.config:
        base = read_config_file(args.config)
    if getattr(args, "preset", None) is not None:  # an empty --preset is a mistake, not "no preset"
        from explorer.reproduce import preset_named

        base = preset_named(args.preset).config(device=flag(args, "device") or "auto",
                                                data_source=flag(args, "data") or base.data.source)
    config = Config.from_query(query_of(args), base=base)
    models = _models_from_args(args)
    return replace(config, models=models) if models else config


def _models_from_args(args: argparse.Namespace) -> tuple[ModelConfig, ...]:
    if args.models is not None and not [x for x in args.models.split(",") if x.strip()]:
        raise ConfigError("--models is empty: name at least one model, e.g. --models plain20,resnet20")
    labelled = tuple(ModelConfig.parse(x.strip()) for x in (args.models or "").split(",") if x.strip())
    grid: dict[str, list] = {}
    for name, (field_name, item) in ARCH_FLAGS.items():
        value = getattr(args, name)
        if value is not None:
            try:
                grid[field_name] = [item(x.strip()) for x in value.split(",") if x.strip()]
            except ValueError:
                raise ConfigError(f"--{name} {value[:40]!r}: expected a comma list of {item.__name__} values") from None
            if not grid[field_name]:
                raise ConfigError(f"--{name} is empty: give at least one value")
    if args.no_bn:
        grid["batchnorm"] = [False]
    if args.zero_init:
        grid["zero_init_residual"] = [True]
    if labelled and grid:
        raise ConfigError("give either --models labels or architecture flags (--family, --depth, ...), not both")
    return labelled or (model_grid(**grid) if grid else ())
