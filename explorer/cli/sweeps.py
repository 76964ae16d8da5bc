"""Sweep commands (`explorer.sweep`): `sweep` (a grid of one-model runs over seeds, on this machine's queue or on
Ray), `sweep-status`, `sweep-export` and `sweep-stop`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.cli.common import Commands, RunFailed, UsageError, owner_key, parse_budget, say
from explorer.cli.flags import add_config_flags, config_from_args, flag, query_of
from explorer.states import RunState
from explorer.store import RunStore

if TYPE_CHECKING:
    from explorer.sweep import SweepSpec, SweepStatus


def sweep_spec(args: argparse.Namespace) -> SweepSpec:
    """The sweep the flags describe: every model they name (comma lists build the grid) times --seeds seeds, with
    the run settings of the flags; probes stay off unless --probe asks (a sweep keeps what its curves need)."""
    from explorer.sizing import device_kind, sized
    from explorer.sweep import SweepSpec

    config = config_from_args(args)
    if args.sized:  # the presets' sizing of the device (explorer.sizing), then the flags
        config = sized({**query_of(args), "models": ",".join(config.labels)}, device_kind(config.device),
                       config.data.source, config.name)
    if flag(args, "probe") is None:
        config = replace(config, probe_every=0)
    name = config.name or f"sweep of {', '.join(config.labels)}"
    return SweepSpec(name[:100], base=replace(config, name=""), seeds=args.seeds, budget_s=parse_budget(args.budget))


def _report_sweep(status: SweepStatus) -> None:
    say(status.line() + "\n")


def cmd_sweep(args: argparse.Namespace) -> None:
    from explorer import sweep
    from explorer.estimate import format_seconds

    store = RunStore(args.store)
    spec = sweep_spec(args)
    if args.dry_run:
        costs = sweep.estimates(store, spec)
        for config, cost in costs:
            print(f"{config.models[0].label:24s} seed {config.seed:<6d} {cost.summary()}")
        print(f"{len(costs)} members, about {format_seconds(sum(c.seconds for _, c in costs))} of training in all")
        return
    options = sweep.RayOptions(num_cpus=args.cpus, num_gpus=args.gpus, max_retries=args.retries)
    sweep_id = sweep.start(store, spec, owner_key(), backend=args.backend, ray_address=args.ray_address,
                           ray_options=options, data_dir=args.data_dir)
    started = sweep.status(store, sweep_id)
    print(sweep_id, flush=True)
    say(f"sweep {sweep_id}: {started.members} members on {args.backend}; about "
        f"{format_seconds(started.estimate_s)} of training in all\n")
    local_instance = args.backend == "ray" and args.ray_address is None  # it ends with this process
    if not (args.wait or args.record or local_instance):
        say(f"follow it with python -m explorer sweep-status {sweep_id}\n")
        return
    try:
        if args.backend == "local":
            _train_sweep_here(store, sweep_id, args.data_dir)
        final = sweep.wait(store, sweep_id, _report_sweep)
    except KeyboardInterrupt:
        where = "dies with this process's Ray instance" if local_instance else "goes on"
        say(f"\nsweep {sweep_id} {where}; stop it with python -m explorer sweep-stop {sweep_id}\n")
        raise SystemExit(130) from None
    if args.record:
        say(f"recorded in {sweep.record(store, sweep_id, args.record)}\n")
    if final.state is RunState.FAILED:
        raise RunFailed(final.line())


def _train_sweep_here(store: RunStore, sweep_id: str, data_dir: Path | None) -> None:
    """Train the sweep's queued members in this process; Ctrl-C stops the current one cleanly and exits 130."""
    from explorer import sweep
    from explorer.worker import Worker, clean_interrupts

    worker = Worker(store, sweep.spec_of(store, sweep_id).base.device, data_dir=data_dir)
    with clean_interrupts(worker):
        sweep.train_here(store, sweep_id, worker, _report_sweep)
    if worker.stopping:
        say(f"sweep {sweep_id}: its member here stopped; the others stay queued for the workers "
            f"(python -m explorer sweep-stop {sweep_id} cancels them)\n")
        raise SystemExit(130)


def cmd_sweep_status(args: argparse.Namespace) -> None:
    from explorer import sweep

    store = RunStore(args.store)
    ids = [args.sweep_id] if args.sweep_id else sweep.sweep_ids(store)
    statuses = [sweep.status(store, sweep_id) for sweep_id in ids]
    if args.json:
        print(json.dumps([{**asdict(s), "state": str(s.state), "members": s.members} for s in statuses]))
    elif not statuses:
        print("no sweeps yet: start one with python -m explorer sweep")
    for status in statuses if not args.json else ():
        print(status.line())
    if args.sweep_id and not args.json:
        table = sweep.summary(store, args.sweep_id)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}") if len(table) else "no records yet")


def cmd_sweep_export(args: argparse.Namespace) -> None:
    from explorer import sweep

    suffix = args.out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise UsageError(f"--out {str(args.out)[:80]} must end in .csv or .parquet")
    store = RunStore(args.store)
    table = sweep.summary(store, args.sweep_id) if args.summary else sweep.table(store, args.sweep_id)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False) if suffix == ".csv" else table.to_parquet(args.out, index=False)
    except OSError as error:
        raise UsageError(f"cannot write {args.out} ({error.strerror or error}): choose a writable file path") from None
    print(args.out)


def cmd_sweep_stop(args: argparse.Namespace) -> None:
    from explorer import sweep

    asked = sweep.stop(RunStore(args.store), args.sweep_id, args.key or owner_key())
    print(f"sweep {args.sweep_id}: stop requested for {asked} members")


def _add_sweep(commands: Commands) -> None:
    sweep = commands.add_parser("sweep", help="train a grid of one-model runs over seeds (locally or on Ray)")
    add_config_flags(sweep)
    sweep.add_argument("--seeds", type=int, default=1, help="seeds per model (seed, seed+1, ...)")
    sweep.add_argument("--budget", default=None, help="stop each member after this many seconds of training")
    sweep.add_argument("--backend", choices=["local", "ray"], default="local",
                       help="local: this machine's queue and workers; ray: one Ray task per member")
    sweep.add_argument("--ray-address", default=None, help="the Ray cluster (auto or HOST:PORT; run this on its "
                       "head node); default: a local Ray instance that lives as long as this command")
    sweep.add_argument("--cpus", type=float, default=1.0, help="with --backend ray: CPUs per member")
    sweep.add_argument("--gpus", type=float, default=0.0, help="with --backend ray: GPUs per member (0.25 packs "
                       "four members on a GPU)")
    sweep.add_argument("--retries", type=int, default=1, help="with --backend ray: retries of a member whose "
                       "worker process died")
    sweep.add_argument("--sized", action="store_true", help="start from the device's recipe (explorer.sizing: "
                       "CPU_SETTINGS or GPU_SETTINGS); flags override it")
    sweep.add_argument("--wait", action="store_true", help="see the sweep through (local: train its members here)")
    sweep.add_argument("--record", type=Path, default=None, metavar="DIR", help="then export it to DIR as run "
                       "bundles and sweep.json (implies --wait)")
    sweep.add_argument("--dry-run", action="store_true", help="print the members and their estimates, start nothing")
    sweep.set_defaults(run=cmd_sweep)


def register(commands: Commands) -> None:
    _add_sweep(commands)

    status = commands.add_parser("sweep-status", help="a sweep's state and summary (no id: every sweep)")
    status.add_argument("sweep_id", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_sweep_status)

    export = commands.add_parser("sweep-export", help="a sweep's tidy table (one row per member and metric)")
    export.add_argument("sweep_id")
    export.add_argument("--out", type=Path, required=True, help="a .csv or .parquet file")
    export.add_argument("--summary", action="store_true", help="mean, sd, min, max over seeds instead")
    export.set_defaults(run=cmd_sweep_export)

    stop = commands.add_parser("sweep-stop", help="stop a sweep: cancel waiting members, stop training ones")
    stop.add_argument("sweep_id")
    stop.add_argument("--key", default=None, help="the sweep's owner key (default: this machine's command line)")
    stop.set_defaults(run=cmd_sweep_stop)
