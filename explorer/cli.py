"""Command line: describe, train, list and export runs, reproduce the papers' findings headlessly.

    python -m explorer describe --family resnet --depth 56 --json
    python -m explorer train --family plain,resnet --depth 20,56 --data synthetic --epochs 5
    python -m explorer train --preset degradation --data cifar10
    python -m explorer runs
    python -m explorer export RUN_ID --format parquet --out run.parquet
    python -m explorer reproduce degradation --budget 90 --data cifar10 --out report.html

Configuration flags mirror the app's URL keys (config.QUERY_KEYS), so a shared link and a command line say the
same thing. Bad input exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from .config import (BLOCKS, FAMILIES, INITS, ORDERS, QUERY_KEYS, SHORTCUT_VARIANTS, SHORTCUTS, Config,
                     ConfigError, ModelConfig, model_grid)
from .data import DataError
from .store import RunStore, StoreError

USAGE_ERRORS = (ConfigError, DataError, StoreError, FileNotFoundError, IsADirectoryError)


class UsageError(Exception):
    """Bad command-line input; main() prints it on one line and exits 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


ARCH_FLAGS: dict[str, tuple[str, object]] = {  # flag -> (ModelConfig field, parser of one item)
    "family": ("family", str), "depth": ("depth", int), "width": ("width", float), "block": ("block", str),
    "shortcut": ("shortcut", str), "variant": ("shortcut_variant", str), "order": ("order", str),
    "init": ("init", str),
}
ARCH_CHOICES = {"family": FAMILIES, "block": BLOCKS, "shortcut": SHORTCUTS, "variant": SHORTCUT_VARIANTS,
                "order": ORDERS, "init": INITS}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
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


def config_from_args(args: argparse.Namespace) -> Config:
    base = Config()
    if args.config:
        base = Config.from_json(args.config.read_text())
    if getattr(args, "preset", None):
        base = _preset(args.preset).config(budget_s=None, device=_flag(args, "device") or "auto",
                                           data_source=_flag(args, "data") or base.data.source)
    query = {key: value for key in QUERY_KEYS if (value := _flag(args, key)) is not None}
    config = Config.from_query(query, base=base)
    models = _models_from_args(args)
    return replace(config, models=models) if models else config


def _flag(args: argparse.Namespace, key: str) -> str | None:
    return getattr(args, f"q_{key}", None)


def _models_from_args(args: argparse.Namespace) -> tuple[ModelConfig, ...]:
    labelled = tuple(ModelConfig.parse(x) for x in (args.models or "").split(",") if x)
    grid: dict[str, list] = {}
    for flag, (field_name, item) in ARCH_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            try:
                grid[field_name] = [item(x) for x in value.split(",") if x]
            except ValueError:
                raise ConfigError(f"--{flag} {value!r}: expected a comma list of {item.__name__} values") from None
    if args.no_bn:
        grid["batchnorm"] = [False]
    if args.zero_init:
        grid["zero_init_residual"] = [True]
    if labelled and grid:
        raise ConfigError("give either --models labels or architecture flags (--family, --depth, ...), not both")
    return labelled or (model_grid(**grid) if grid else ())


def _preset(key: str):
    from .presets import PRESETS

    if key not in PRESETS:
        raise ConfigError(f"unknown preset {key!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[key]


# --- commands ---------------------------------------------------------------------------------
def cmd_describe(args: argparse.Namespace) -> None:
    from .models import describe_config

    models = config_from_args(args).models
    descriptions = [describe_config(m) for m in models]
    if args.json:
        payload = [d.to_dict() for d in descriptions]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return
    for model, description in zip(models, descriptions):
        print(f"{model.label}\n{description.table()}\n")


def cmd_train(args: argparse.Namespace) -> None:
    from .trainer import Trainer

    config = config_from_args(args)
    store = RunStore(args.store)
    trainer = Trainer(config, store, preset=args.preset or "", max_seconds=args.budget)
    run_id = trainer.start()
    print(f"run {run_id}: {', '.join(config.labels)} on {trainer.progress().data_source}", file=sys.stderr)
    try:
        trainer.watch(_progress_line)
    except KeyboardInterrupt:
        pass  # the run is stopped and stored; its id is still printed
    _progress_line(trainer.progress(), final=True)
    if trainer.state == "failed":
        raise RuntimeError(trainer.error)
    print(run_id)


def _progress_line(p, final: bool = False) -> None:
    width = 30
    done = p.step / max(1, p.total_steps)
    bar = "#" * round(width * done) + "-" * (width - round(width * done))
    eta = f"eta {p.eta_s:4.0f}s" if p.eta_s is not None and not final else p.state
    diverged = f" diverged: {','.join(p.diverged)}" if p.diverged else ""
    line = (f"\r[{bar}] step {p.step}/{p.total_steps} epoch {p.epoch:.1f} {p.images_per_s:6.0f} img/s "
            f"{eta}{diverged}")
    print(line, end="\n" if final else "", file=sys.stderr, flush=True)


def cmd_runs(args: argparse.Namespace) -> None:
    runs = RunStore(args.store).runs()
    if args.json:
        print(runs.drop(columns=["config"]).to_json(orient="records", date_format="iso"))
    elif runs.empty:
        print("no runs yet: start one with python -m explorer train")
    else:
        print(runs[["run_id", "name", "preset", "status", "created", "device", "data_source"]].to_string(index=False))


def cmd_export(args: argparse.Namespace) -> None:
    RunStore(args.store).export(args.run_id, args.out, args.format)
    print(args.out)


def cmd_presets(args: argparse.Namespace) -> None:
    from .presets import PRESETS

    for key, preset in PRESETS.items():
        print(f"{key:20s} {preset.title}")


def cmd_reproduce(args: argparse.Namespace) -> None:
    from .reproduce import reproduce

    _preset(args.preset)
    result = reproduce(args.preset, budget_s=args.budget, data_source=args.data, out=args.out,
                       store=RunStore(args.store), progress=_progress_line)
    print(file=sys.stderr)
    print(f"{result.verdict.figure}; prediction {'held' if result.verdict.held else 'did not hold'}"
          if result.verdict.held is not None else result.verdict.figure, file=sys.stderr)
    print(f"report: {result.report_path}", file=sys.stderr)
    print(result.run_id)


def cmd_record(args: argparse.Namespace) -> None:
    from .presets import PRESETS
    from .reproduce import record

    keys = args.presets or list(PRESETS)
    for key in keys:
        _preset(key)
    record(keys, out_dir=args.out_dir, budget_s=args.budget, data_source=args.data, store=RunStore(args.store),
           progress=_progress_line)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m explorer", description="ResNet Explorer: plain vs residual nets, headless.")
    parser.add_argument("--store", type=Path, default=None, help="run store (default $EXPLORER_STORE or "
                        "./runs/explorer.sqlite)")
    parser.add_argument("--data-dir", type=Path, default=None, help="data directory (default $EXPLORER_DATA_DIR "
                        "or ./data)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    describe = commands.add_parser("describe", help="print the layer and block table of a configuration")
    _add_config_flags(describe)
    describe.add_argument("--json", action="store_true")
    describe.set_defaults(run=cmd_describe)

    train = commands.add_parser("train", help="train models in lockstep and store every record")
    _add_config_flags(train)
    train.add_argument("--budget", type=float, default=None, help="stop after this many seconds of training")
    train.set_defaults(run=cmd_train)

    runs = commands.add_parser("runs", help="list stored runs")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(run=cmd_runs)

    export = commands.add_parser("export", help="export a run's metrics")
    export.add_argument("run_id")
    export.add_argument("--format", choices=["csv", "parquet"], default="csv")
    export.add_argument("--out", type=Path, required=True)
    export.set_defaults(run=cmd_export)

    presets = commands.add_parser("presets", help="list the paper-experiment presets")
    presets.set_defaults(run=cmd_presets)

    reproduce = commands.add_parser("reproduce", help="run a preset and write an HTML report")
    reproduce.add_argument("preset")
    reproduce.add_argument("--budget", type=float, default=None, help="seconds of training")
    reproduce.add_argument("--data", default="synthetic", help="synthetic, cifar10 or a data directory")
    reproduce.add_argument("--out", type=Path, default=None, help="report path (default reports/PRESET.html)")
    reproduce.set_defaults(run=cmd_reproduce)

    record = commands.add_parser("record", help="regenerate the recorded runs under assets/recorded")
    record.add_argument("presets", nargs="*", help="preset names (default: all)")
    record.add_argument("--budget", type=float, default=None, help="seconds of training per preset")
    record.add_argument("--data", default="cifar10")
    record.add_argument("--out-dir", type=Path, default=Path("assets/recorded"))
    record.set_defaults(run=cmd_record)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.data_dir is not None:
            os.environ["EXPLORER_DATA_DIR"] = str(args.data_dir)
        args.run(args)
    except (UsageError, *USAGE_ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
