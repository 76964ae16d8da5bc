"""Command line: describe nets, train them (here or through the queue), run workers, list, control and export runs,
reproduce the papers' findings headlessly.

    python -m explorer describe --family resnet --depth 56 --json
    python -m explorer train --family plain,resnet --depth 20,56 --data synthetic --epochs 5
    python -m explorer train --preset degradation --data cifar10 --queue --wait
    python -m explorer worker
    python -m explorer runs
    python -m explorer control RUN_ID pause|resume|stop
    python -m explorer resume RUN_ID
    python -m explorer export RUN_ID --format parquet --out run.parquet
    python -m explorer weights RUN_ID --out weights.pt
    python -m explorer reproduce degradation --budget 90 --data cifar10 --out report.html
    python -m explorer landscape RUN_ID --kind 2d --grid 21 --images 1000 --budget 300 --out slice.png
    python -m explorer tensorboard RUN_ID --logdir tb
    python -m explorer figures RUN_ID --out figures --format svg
    python -m explorer sweep --family plain,resnet --depth 20,32,44,56 --seeds 3 --wait [--backend ray]
    python -m explorer sweep-status SWEEP_ID
    python -m explorer sweep-export SWEEP_ID --out table.csv

`train`, `reproduce` and `record` submit jobs exactly as the app does (`explorer.jobs.submit`); by default this
process then trains its job itself (a local worker), with `--queue` it leaves it to the running workers and, with
`--wait`, follows its progress. Configuration flags mirror the app's URL keys (config.QUERY_KEYS), so a shared link
and a command line say the same thing. Bad input exits with code 2 and one line on stderr; a run that fails or
diverges exits 1; Ctrl-C stops the run cleanly (resumable) and exits 130. `--data-dir` is handed to whatever reads
data (the submission's checks, this process's worker, the Ray tasks), never through the environment.

One module per job: `common` (exit-code exceptions, output, shared flags), `flags` (flags -> `Config`), `follow`
(submit, train here or follow the queue), and the command groups, each registering its own commands: `nets`
(describe, presets), `runs` (train, worker, runs, control, resume, export, weights), `studies` (reproduce, record,
landscape, tensorboard, figures) and `sweeps` (sweep, sweep-status, sweep-export, sweep-stop).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from explorer.cli import nets, runs, studies, sweeps
from explorer.cli.common import Interrupted, Parser, RunFailed, UsageError, parse_budget, usage_errors
from explorer.cli.flags import ARCH_FLAGS, config_from_args, read_config_file
from explorer.cli.follow import follow, run_config, train_here

__all__ = ["ARCH_FLAGS", "Interrupted", "RunFailed", "UsageError", "build_parser", "config_from_args", "follow",
           "main", "parse_budget", "read_config_file", "run_config", "train_here"]

COMMAND_GROUPS = (nets, runs, studies, sweeps)


def build_parser() -> Parser:
    parser = Parser(prog="python -m explorer", description="ResNet Explorer: plain vs residual nets, headless.")
    parser.add_argument("--store", type=Path, default=None, help="run store (default $EXPLORER_STORE or "
                        "./runs/explorer.sqlite)")
    parser.add_argument("--data-dir", type=Path, default=None, help="data directory (default $EXPLORER_DATA_DIR "
                        "or ./data)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except usage_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RunFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Interrupted as stopped:
        print(f"stopped: resume with python -m explorer resume {stopped}", file=sys.stderr)
        return 130
    return 0
