"""Commands about what can be trained: `describe` (a configuration's layer and block tables) and `presets`."""

from __future__ import annotations

import argparse
import json

from explorer.cli.common import Commands
from explorer.cli.flags import add_config_flags, config_from_args


def cmd_describe(args: argparse.Namespace) -> None:
    from explorer.models import describe_config

    models = config_from_args(args).models
    descriptions = [describe_config(m) for m in models]
    if args.json:
        payload = [d.to_dict() for d in descriptions]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return
    for model, description in zip(models, descriptions):
        print(f"{model.label}\n{description.table()}\n")


def cmd_presets(args: argparse.Namespace) -> None:
    from explorer.presets import PRESETS

    for key, preset in PRESETS.items():
        print(f"{key:20s} {preset.title}")


def register(commands: Commands) -> None:
    describe = commands.add_parser("describe", help="print the layer and block table of a configuration")
    add_config_flags(describe)
    describe.add_argument("--json", action="store_true")
    describe.set_defaults(run=cmd_describe)

    presets = commands.add_parser("presets", help="list the paper-experiment presets")
    presets.set_defaults(run=cmd_presets)
