"""Commands on runs: `train` (here, or through the queue), `worker`, `runs`, `control`, `resume`, `export` and
`weights`."""

from __future__ import annotations

import argparse
from pathlib import Path

from explorer.cli.common import Commands, owner_key, parse_budget, say
from explorer.cli.flags import add_config_flags, config_from_args
from explorer.cli.follow import follow, run_config, train_here
from explorer.states import Control
from explorer.store import RunStore

OWNER_KEY_HELP = "the run's owner key (default: this machine's command line)"


def cmd_train(args: argparse.Namespace) -> None:
    config = config_from_args(args)
    print(run_config(RunStore(args.store), config, args, preset=args.preset or "",
                     budget_s=parse_budget(args.budget)))


def cmd_worker(args: argparse.Namespace) -> None:
    from explorer.worker import Worker, clean_interrupts

    worker = Worker(RunStore(args.store), args.device, data_dir=args.data_dir)
    say(f"worker {worker.worker_id} on {worker.device}: waiting for runs (Ctrl-C stops)\n")
    with clean_interrupts(worker):
        try:
            worker.serve(idle_exit=args.idle_exit, parent_pid=args.parent)
        except KeyboardInterrupt:
            pass


def cmd_runs(args: argparse.Namespace) -> None:
    from explorer import jobs

    store = RunStore(args.store)
    jobs.reap(store)
    runs = store.runs()
    columns = ["run_id", "name", "preset", "status", "created", "device", "data_source"]
    if args.json:
        print(runs[columns + ["error", "sweep_id"]].to_json(orient="records", date_format="iso"))
    elif runs.empty:
        print("no runs yet: start one with python -m explorer train")
    else:
        print(runs[columns].fillna("").to_string(index=False))


def cmd_control(args: argparse.Namespace) -> None:
    from explorer import jobs

    action = Control(args.action if args.action != "resume" else "run")
    jobs.request(RunStore(args.store), args.run_id, args.key or owner_key(), action)
    print(f"run {args.run_id}: {args.action} requested")


def cmd_resume(args: argparse.Namespace) -> None:
    from explorer import jobs

    store = RunStore(args.store)
    jobs.reap(store)
    jobs.requeue(store, args.run_id, args.key or owner_key())
    if args.queue:
        if args.wait:
            follow(store, args.run_id, say)
    else:
        train_here(store, args.run_id, say, args.data_dir)
    print(args.run_id)


def cmd_export(args: argparse.Namespace) -> None:
    RunStore(args.store).export(args.run_id, args.out, args.format)
    print(args.out)


def cmd_weights(args: argparse.Namespace) -> None:
    from explorer.checkpoints import export_weights

    export_weights(RunStore(args.store), args.run_id, args.out)
    print(args.out)


def _add_queue_flags(parser: argparse.ArgumentParser, here: str) -> None:
    parser.add_argument("--queue", action="store_true", help=f"leave {here} to the workers instead of training here")
    parser.add_argument("--wait", action="store_true", help="with --queue: follow the run until it ends")


def register(commands: Commands) -> None:
    train = commands.add_parser("train", help="train models in lockstep and store every record")
    add_config_flags(train)
    train.add_argument("--budget", default=None, help="stop after this many seconds of training")
    _add_queue_flags(train, "the run")
    train.add_argument("--attach", action="store_true", help="join an identical queued, running or finished run "
                       "instead of training again")
    train.set_defaults(run=cmd_train)

    worker = commands.add_parser("worker", help="claim queued runs and train them until stopped")
    worker.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    worker.add_argument("--idle-exit", type=float, default=None, help="exit after this many idle seconds")
    worker.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)
    worker.set_defaults(run=cmd_worker)

    runs = commands.add_parser("runs", help="list stored runs")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(run=cmd_runs)

    control = commands.add_parser("control", help="pause, resume or stop a training run")
    control.add_argument("run_id")
    control.add_argument("action", choices=["pause", "resume", "stop"])
    control.add_argument("--key", default=None, help=OWNER_KEY_HELP)
    control.set_defaults(run=cmd_control)

    resume = commands.add_parser("resume", help="continue a stopped or interrupted run from its checkpoint")
    resume.add_argument("run_id")
    resume.add_argument("--key", default=None, help=OWNER_KEY_HELP)
    _add_queue_flags(resume, "it")
    resume.set_defaults(run=cmd_resume)

    export = commands.add_parser("export", help="export a run's metrics")
    export.add_argument("run_id")
    export.add_argument("--format", choices=["csv", "parquet"], default="csv")
    export.add_argument("--out", type=Path, required=True)
    export.set_defaults(run=cmd_export)

    weights = commands.add_parser("weights", help="save a run's trained weights (state_dict per model)")
    weights.add_argument("run_id")
    weights.add_argument("--out", type=Path, required=True)
    weights.set_defaults(run=cmd_weights)
