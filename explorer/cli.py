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
diverges exits 1; Ctrl-C stops the run cleanly (resumable) and exits 130.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .config import (BLOCKS, FAMILIES, INITS, ORDERS, QUERY_KEYS, SHORTCUT_VARIANTS, SHORTCUTS, Config,
                     ConfigError, ModelConfig, model_grid)
from .data import DataError
from .memory import ResourceError
from .settings import SettingsError
from .states import Control, RunState
from .store import RunStore, StoreError

if TYPE_CHECKING:
    from .sweep import SweepSpec, SweepStatus

CONFIG_FILE_LIMIT = 1_000_000  # bytes


class UsageError(Exception):
    """Bad command-line input; main() prints it on one line and exits 2."""


class RunFailed(Exception):
    """The run ended failed or diverged; main() prints why and exits 1."""


class Interrupted(Exception):
    """Ctrl-C stopped the run cleanly; main() says how to resume it and exits 130."""


def usage_errors() -> tuple[type[Exception], ...]:
    from .jobs import JobRefused

    return (UsageError, ConfigError, DataError, StoreError, ResourceError, SettingsError, JobRefused)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


ARCH_FLAGS: dict[str, tuple[str, type]] = {  # flag -> (ModelConfig field, parser of one item)
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


def config_from_args(args: argparse.Namespace) -> Config:
    base = Config()
    if args.config:
        base = read_config_file(args.config)
    if getattr(args, "preset", None) is not None:  # an empty --preset is a mistake, not "no preset"
        base = _preset(args.preset).config(device=_flag(args, "device") or "auto",
                                           data_source=_flag(args, "data") or base.data.source)
    query = {key: value for key in QUERY_KEYS if (value := _flag(args, key)) is not None}
    config = Config.from_query(query, base=base)
    models = _models_from_args(args)
    return replace(config, models=models) if models else config


def _flag(args: argparse.Namespace, key: str) -> str | None:
    return getattr(args, f"q_{key}", None)


def _models_from_args(args: argparse.Namespace) -> tuple[ModelConfig, ...]:
    if args.models is not None and not [x for x in args.models.split(",") if x.strip()]:
        raise ConfigError("--models is empty: name at least one model, e.g. --models plain20,resnet20")
    labelled = tuple(ModelConfig.parse(x.strip()) for x in (args.models or "").split(",") if x.strip())
    grid: dict[str, list] = {}
    for flag, (field_name, item) in ARCH_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            try:
                grid[field_name] = [item(x.strip()) for x in value.split(",") if x.strip()]
            except ValueError:
                raise ConfigError(f"--{flag} {value[:40]!r}: expected a comma list of {item.__name__} values") from None
            if not grid[field_name]:
                raise ConfigError(f"--{flag} is empty: give at least one value")
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
        raise ConfigError(f"unknown preset {key[:40]!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[key]


def _budget(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        budget = float(value)
    except ValueError:
        raise UsageError(f"--budget {value[:40]!r} is not a number of seconds") from None
    if not math.isfinite(budget) or budget <= 0 or budget > 1e7:
        raise UsageError(f"--budget {value[:40]!r} must be a positive number of seconds")
    return budget


# --- training through the queue ----------------------------------------------------------------------------------
def train_here(store: RunStore, run_id: str, report: Callable[[str], None]) -> RunState:
    """Train a submitted run in this process as a local worker, printing its progress; Ctrl-C stops it cleanly."""
    from .worker import Worker, clean_interrupts

    worker = Worker(store, store.config(run_id).device)
    with clean_interrupts(worker), _following(store, run_id, report):
        worker.run_one(run_id)
    return _finish(store, run_id, interrupted=worker.stopping)


def _train_printing(store: RunStore, run_id: str) -> RunState:
    return train_here(store, run_id, _stderr)


def follow(store: RunStore, run_id: str, report: Callable[[str], None]) -> RunState:
    """Wait for a queued run to end (trained by a worker), printing its progress; Ctrl-C leaves it running."""
    from . import jobs

    done = threading.Event()
    try:
        with _following(store, run_id, report, done):
            while not store.status(run_id).final:
                jobs.reap(store)
                done.wait(0.5)
    except KeyboardInterrupt:
        report(f"\nrun {run_id} goes on in its worker; stop it with python -m explorer control {run_id} stop")
        raise Interrupted(run_id) from None
    return _finish(store, run_id)


def _finish(store: RunStore, run_id: str, interrupted: bool = False) -> RunState:
    row = store.run(run_id)
    state = RunState(row["status"])
    if state in (RunState.FAILED, RunState.DIVERGED):
        reason = row["error"] or "every model's loss became non-finite or exploded: lower the learning rate"
        raise RunFailed(f"run {run_id} {state}: {reason}")
    if interrupted and state is RunState.STOPPED:
        raise Interrupted(run_id)
    return state


class _following:
    """Print a run's progress from the store every half second in a thread (its trainer may be in this thread)."""

    def __init__(self, store: RunStore, run_id: str, report: Callable[[str], None],
                 done: threading.Event | None = None):
        self.store, self.run_id, self.report = store, run_id, report
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.tty = sys.stderr.isatty()
        self.last_line = ""

    def _loop(self) -> None:
        from .trainer import Progress

        ticks = 0
        while not self.done.wait(0.5):
            row = self.store.run(self.run_id)
            line = _progress_line(Progress.from_json(row["progress"], RunState(row["status"])))
            ticks += 1
            if self.tty:
                self.report("\r" + line)
            elif line != self.last_line and ticks % 10 == 0:  # a log file gets a line every 5 s, not redraws
                self.report(line + "\n")
            self.last_line = line

    def __enter__(self) -> "_following":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        from .trainer import Progress

        row = self.store.run(self.run_id)
        self.report(("\r" if self.tty else "") + _progress_line(
            Progress.from_json(row["progress"], RunState(row["status"]))) + "\n")


def _progress_line(p) -> str:
    width = 30
    done = p.step / max(1, p.total_steps)
    bar = "#" * round(width * done) + "-" * (width - round(width * done))
    eta = f"eta {p.eta_s:4.0f}s" if p.eta_s is not None and p.state is RunState.RUNNING else str(p.state)
    diverged = f" diverged: {','.join(p.diverged)}" if p.diverged else ""
    return (f"[{bar}] step {p.step}/{p.total_steps} epoch {p.epoch:.1f} {p.images_per_s:6.0f} img/s "
            f"{eta}{diverged}")


def _stderr(text: str) -> None:
    print(text, end="", file=sys.stderr, flush=True)


def _owner_key() -> str:
    from .jobs import CLI_OWNER_KEY

    return os.environ.get("EXPLORER_OWNER_KEY") or CLI_OWNER_KEY


def run_config(store: RunStore, config: Config, args: argparse.Namespace, preset: str = "",
               budget_s: float | None = None) -> str:
    """Submit `config` and train it here, or leave it to the workers (``--queue``) and optionally wait."""
    from . import jobs

    submission = jobs.submit(store, config, _owner_key(), preset=preset, budget_s=budget_s,
                             attach=getattr(args, "attach", False))
    run_id = submission.run_id
    _stderr(f"run {run_id}: {', '.join(config.labels)} on {config.data.source}; {submission.estimate.summary()}\n")
    if getattr(args, "queue", False):
        if args.wait:
            follow(store, run_id, _stderr)
        return run_id
    if submission.attached:
        _stderr(f"an identical run exists: following {run_id}\n")
        follow(store, run_id, _stderr)
    else:
        train_here(store, run_id, _stderr)
    return run_id


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
    config = config_from_args(args)
    print(run_config(RunStore(args.store), config, args, preset=args.preset or "", budget_s=_budget(args.budget)))


def cmd_worker(args: argparse.Namespace) -> None:
    from .worker import Worker, clean_interrupts

    worker = Worker(RunStore(args.store), args.device)
    _stderr(f"worker {worker.worker_id} on {worker.device}: waiting for runs (Ctrl-C stops)\n")
    with clean_interrupts(worker):
        try:
            worker.serve(idle_exit=args.idle_exit, parent_pid=args.parent)
        except KeyboardInterrupt:
            pass


def cmd_runs(args: argparse.Namespace) -> None:
    from . import jobs

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
    from . import jobs

    store = RunStore(args.store)
    jobs.request(store, args.run_id, args.key or _owner_key(), Control(args.action if args.action != "resume"
                                                                        else "run"))
    print(f"run {args.run_id}: {args.action} requested")


def cmd_resume(args: argparse.Namespace) -> None:
    from . import jobs

    store = RunStore(args.store)
    jobs.reap(store)
    jobs.requeue(store, args.run_id, args.key or _owner_key())
    if args.queue:
        if args.wait:
            follow(store, args.run_id, _stderr)
    else:
        train_here(store, args.run_id, _stderr)
    print(args.run_id)


def cmd_export(args: argparse.Namespace) -> None:
    RunStore(args.store).export(args.run_id, args.out, args.format)
    print(args.out)


def cmd_weights(args: argparse.Namespace) -> None:
    from .checkpoints import export_weights

    store = RunStore(args.store)
    export_weights(store, args.run_id, args.out)
    print(args.out)


def cmd_presets(args: argparse.Namespace) -> None:
    from .presets import PRESETS

    for key, preset in PRESETS.items():
        print(f"{key:20s} {preset.title}")


def _writable_folder(folder: str | Path, flag: str) -> None:
    """Refuse an output folder that cannot be created or written before hours of training, not after."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UsageError(f"cannot write into {str(folder)[:200]} ({error.strerror or error}): choose a writable "
                         f"{flag}") from None


def cmd_reproduce(args: argparse.Namespace) -> None:
    from .reproduce import recorded_folder, reproduce, write_bundle

    _preset(args.preset)
    if args.record and args.tiny:
        raise UsageError("a --tiny run checks the path and measures nothing: record a real run (drop --tiny)")
    if args.out:
        _writable_folder(Path(args.out).parent, "--out")
    if args.record:
        _writable_folder(recorded_folder(args.device), "working directory for --record")
    store, budget = RunStore(args.store), _budget(args.budget)
    result = reproduce(args.preset, budget_s=budget, data_source=args.data, out=args.out, store=store,
                       device=args.device, train=_train_printing, tiny=args.tiny)
    verdict = result.verdict
    _stderr((f"{verdict.figure}; prediction {'held' if verdict.held else 'did not hold'}\n"
             if verdict.held is not None else f"{verdict.figure}\n") + f"report: {result.report_path}\n")
    if args.record:
        _stderr(f"recorded in {write_bundle(store, result, recorded_folder(args.device) / args.preset, budget)}\n")
    print(result.run_id)


def cmd_record(args: argparse.Namespace) -> None:
    from .presets import PRESETS
    from .reproduce import record

    keys = args.presets or list(PRESETS)
    for key in keys:
        _preset(key)
    if args.out_dir:
        _writable_folder(args.out_dir, "--out-dir")
    record(keys, out_dir=args.out_dir, budget_s=_budget(args.budget), data_source=args.data,
           store=RunStore(args.store), device=args.device, train=_train_printing)


# --- beyond the training curves: loss landscapes, TensorBoard, static images ------------------------------------
def cmd_landscape(args: argparse.Namespace) -> None:
    from . import landscape
    from .estimate import format_seconds
    from .ui import figures

    store = RunStore(args.store)
    config = store.config(args.run_id)
    models = tuple(m.strip() for m in (args.models or ",".join(config.labels)).split(",") if m.strip())
    budget = _budget(args.budget) if args.budget is not None else landscape.DEFAULT_BUDGET_S
    results = []
    try:
        specs = [landscape.SliceSpec(kind, models, grid=args.grid, images=args.images, span=args.span, seed=args.seed)
                 for kind in (landscape.KINDS if args.kind == "both" else (args.kind,))]
        policy = landscape.resolve_policy(config, args.device, args.threads)
        for spec in specs:
            done = landscape.read(store, args.run_id, spec)
            if done is None:
                estimate = landscape.estimate_seconds(store, args.run_id, spec, policy)
                _stderr(f"{spec.kind} slice of {', '.join(models)}: {spec.points} points each on "
                        f"{landscape.images_used(config, spec):,} images; estimate about {format_seconds(estimate)} "
                        f"on {policy.name}, {policy.precision} (budget {format_seconds(budget)})\n")
                done = landscape.compute(store, args.run_id, spec, budget_s=budget, device=args.device,
                                         threads=args.threads, progress=_points_progress(spec.kind))
                _stderr(("\n" if sys.stderr.isatty() else "") +
                        f"{spec.kind}: {done.seconds:.1f} s, {done.seconds_per_point:.3f} s a point\n")
            results.append(done)
    except landscape.LandscapeError as error:
        raise UsageError(str(error)) from None
    tables = figures.RunTables.read(store, args.run_id)
    for done in results:
        tables = replace(tables, **{f"landscape_{done.spec.kind}": done.frame})
    for done in results:
        spec = figures.CHARTS[f"landscape_{done.spec.kind}"]
        print(spec.summary(tables))
        print(done.path)
        if args.out is not None:
            out = args.out if len(results) == 1 else args.out.with_name(f"{args.out.stem}-{done.spec.kind}"
                                                                          f"{args.out.suffix}")
            _write_figure(spec.build(tables, "epoch", 1.0), out)
            print(out)


def _points_progress(kind: str) -> Callable[[int, int], None]:
    """A terminal redraws one line per point; a log gets a line every tenth of the points."""
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        if tty:
            _stderr(f"\r{kind}: {done}/{total} points")
        elif done == total or done % max(1, total // 10) == 0:
            _stderr(f"{kind}: {done}/{total} points\n")
    return report


def _write_figure(fig, out: Path) -> None:
    """`fig` as a standalone HTML page, or a PNG or SVG image (Kaleido), by the file's suffix."""
    from .ui import charts
    from .ui.static import StaticExportError, figure_image

    suffix = out.suffix.lower().lstrip(".")
    try:
        if suffix == "html":
            data = charts.figure_html(fig).encode()
        elif suffix in ("png", "svg"):
            data = figure_image(fig, suffix)
        else:
            raise UsageError(f"--out {out.name[:60]}: end the file name in .html, .png or .svg")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    except StaticExportError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write {out} ({error.strerror or error}): choose a writable --out") from None


def cmd_tensorboard(args: argparse.Namespace) -> None:
    import time

    from .export_tb import ExportError, export_tensorboard

    started = time.perf_counter()
    try:
        folder = export_tensorboard(RunStore(args.store), args.run_id, args.logdir)
    except ExportError as error:
        raise UsageError(str(error)) from None
    _stderr(f"exported in {time.perf_counter() - started:.1f} s; view with: tensorboard --logdir {args.logdir}\n")
    print(folder)


def cmd_figures(args: argparse.Namespace) -> None:
    import time

    from .ui.static import ImageOptions, StaticExportError, export_charts

    started = time.perf_counter()
    try:
        options = ImageOptions(args.format, args.width, args.height, args.scale)
        written = export_charts(RunStore(args.store), args.run_id, args.out, options, font_scale=args.font_scale)
    except StaticExportError as error:
        raise UsageError(str(error)) from None
    for chart in written:
        _stderr(f"{chart.path} ({chart.seconds:.2f} s)\n")
    _stderr(f"{len(written)} charts in {time.perf_counter() - started:.1f} s, browser start included; summaries in "
            f"{args.out / 'summaries.txt'}\n")
    print(args.out)


# --- sweeps (explorer.sweep) -------------------------------------------------------------------------------------
def _sweep_spec(args: argparse.Namespace) -> SweepSpec:
    """The sweep the flags describe: every model they name (comma lists build the grid) times --seeds seeds, with
    the run settings of the flags; probes stay off unless --probe asks (a sweep keeps what its curves need)."""
    from .sizing import device_kind, sized
    from .sweep import SweepSpec

    config = config_from_args(args)
    if args.sized:  # the presets' sizing of the device (explorer.sizing), then the flags
        query = {k: v for k in QUERY_KEYS if (v := _flag(args, k)) is not None}
        config = sized({**query, "models": ",".join(config.labels)}, device_kind(config.device), config.data.source,
                       config.name)
    if _flag(args, "probe") is None:
        config = replace(config, probe_every=0)
    name = config.name or f"sweep of {', '.join(config.labels)}"
    return SweepSpec(name[:100], base=replace(config, name=""), seeds=args.seeds, budget_s=_budget(args.budget))


def _report_sweep(status: SweepStatus) -> None:
    _stderr(status.line() + "\n")


def cmd_sweep(args: argparse.Namespace) -> None:
    from . import sweep
    from .estimate import format_seconds

    store = RunStore(args.store)
    spec = _sweep_spec(args)
    if args.dry_run:
        costs = sweep.estimates(store, spec)
        for config, cost in costs:
            print(f"{config.models[0].label:24s} seed {config.seed:<6d} {cost.summary()}")
        print(f"{len(costs)} members, about {format_seconds(sum(c.seconds for _, c in costs))} of training in all")
        return
    options = sweep.RayOptions(num_cpus=args.cpus, num_gpus=args.gpus, max_retries=args.retries)
    sweep_id = sweep.start(store, spec, _owner_key(), backend=args.backend, ray_address=args.ray_address,
                           ray_options=options)
    started = sweep.status(store, sweep_id)
    print(sweep_id, flush=True)
    _stderr(f"sweep {sweep_id}: {started.members} members on {args.backend}; about "
            f"{format_seconds(started.estimate_s)} of training in all\n")
    local_instance = args.backend == "ray" and args.ray_address is None  # it ends with this process
    if not (args.wait or args.record or local_instance):
        _stderr(f"follow it with python -m explorer sweep-status {sweep_id}\n")
        return
    try:
        if args.backend == "local":
            _train_sweep_here(store, sweep_id)
        final = sweep.wait(store, sweep_id, _report_sweep)
    except KeyboardInterrupt:
        where = "dies with this process's Ray instance" if local_instance else "goes on"
        _stderr(f"\nsweep {sweep_id} {where}; stop it with python -m explorer sweep-stop {sweep_id}\n")
        raise SystemExit(130) from None
    if args.record:
        _stderr(f"recorded in {sweep.record(store, sweep_id, args.record)}\n")
    if final.state is RunState.FAILED:
        raise RunFailed(final.line())


def _train_sweep_here(store: RunStore, sweep_id: str) -> None:
    """Train the sweep's queued members in this process; Ctrl-C stops the current one cleanly and exits 130."""
    from . import sweep
    from .worker import Worker, clean_interrupts

    worker = Worker(store, sweep.spec_of(store, sweep_id).base.device)
    with clean_interrupts(worker):
        sweep.train_here(store, sweep_id, worker, _report_sweep)
    if worker.stopping:
        _stderr(f"sweep {sweep_id}: its member here stopped; the others stay queued for the workers "
                f"(python -m explorer sweep-stop {sweep_id} cancels them)\n")
        raise SystemExit(130)


def cmd_sweep_status(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from . import sweep

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
    from . import sweep

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
    from . import sweep

    asked = sweep.stop(RunStore(args.store), args.sweep_id, args.key or _owner_key())
    print(f"sweep {args.sweep_id}: stop requested for {asked} members")


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
    train.add_argument("--budget", default=None, help="stop after this many seconds of training")
    train.add_argument("--queue", action="store_true", help="leave the run to the workers instead of training here")
    train.add_argument("--wait", action="store_true", help="with --queue: follow the run until it ends")
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
    control.add_argument("--key", default=None, help="the run's owner key (default: this machine's command line)")
    control.set_defaults(run=cmd_control)

    resume = commands.add_parser("resume", help="continue a stopped or interrupted run from its checkpoint")
    resume.add_argument("run_id")
    resume.add_argument("--key", default=None, help="the run's owner key (default: this machine's command line)")
    resume.add_argument("--queue", action="store_true", help="leave it to the workers instead of training here")
    resume.add_argument("--wait", action="store_true", help="with --queue: follow the run until it ends")
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

    presets = commands.add_parser("presets", help="list the paper-experiment presets")
    presets.set_defaults(run=cmd_presets)

    reproduce = commands.add_parser("reproduce", help="run a preset and write an HTML report")
    reproduce.add_argument("preset")
    reproduce.add_argument("--budget", default=None, help="seconds of training")
    reproduce.add_argument("--data", default="synthetic", help="synthetic, cifar10 or a data root's name")
    reproduce.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    reproduce.add_argument("--out", type=Path, default=None, help="report path (default reports/PRESET.html)")
    reproduce.add_argument("--record", action="store_true", help="also export the run as a bundle under "
                           "assets/recorded/<cpu|gpu>/PRESET, as the app replays it")
    reproduce.add_argument("--tiny", action="store_true", help="two steps on 64 images: checks the path, measures "
                           "nothing")
    reproduce.set_defaults(run=cmd_reproduce)

    record = commands.add_parser("record", help="regenerate the recorded runs under assets/recorded")
    record.add_argument("presets", nargs="*", help="preset names (default: all)")
    record.add_argument("--budget", default=None, help="seconds of training per preset")
    record.add_argument("--data", default="cifar10")
    record.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    record.add_argument("--out-dir", type=Path, default=None, help="default assets/recorded/cpu or .../gpu")
    record.set_defaults(run=cmd_record)

    land = commands.add_parser("landscape", help="loss-surface slices of a trained run (Li et al. 2018), "
                               "priced first and stored beside the run store")
    land.add_argument("run_id")
    land.add_argument("--models", default=None, help="model labels of the run (default: all of them)")
    land.add_argument("--kind", choices=["1d", "2d", "both"], default="both",
                      help="1d: from the initial to the trained weights; 2d: a plane around the trained weights")
    land.add_argument("--grid", type=int, default=21, help="points per axis (odd for 2d)")
    land.add_argument("--images", type=int, default=1000, help="training images the loss is measured on")
    land.add_argument("--span", type=float, default=1.0, help="2d: each axis spans [-SPAN, SPAN] in "
                      "filter-normalised units")
    land.add_argument("--seed", type=int, default=0, help="seed of the 2d directions")
    land.add_argument("--budget", default=None, help="seconds each slice may take (default 600); over it the "
                      "slice is refused with the estimate")
    land.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    land.add_argument("--threads", type=int, default=None, help="CPU threads (default: the run's setting; 0: all "
                      "cores; on a busy machine 1 can be faster)")
    land.add_argument("--out", type=Path, default=None, help="also draw the figure: FILE.html, .png or .svg "
                      "(with --kind both: FILE-1d and FILE-2d)")
    land.set_defaults(run=cmd_landscape)

    board = commands.add_parser("tensorboard", help="export a run as TensorBoard event files (needs tensorboard)")
    board.add_argument("run_id")
    board.add_argument("--logdir", type=Path, required=True, help="folder to write (then: tensorboard --logdir DIR)")
    board.set_defaults(run=cmd_tensorboard)

    images = commands.add_parser("figures", help="every chart of a run as PNG or SVG, with their summaries "
                                 "(needs kaleido and Chrome or Chromium)")
    images.add_argument("run_id")
    images.add_argument("--out", type=Path, required=True, help="folder to write")
    images.add_argument("--format", choices=["png", "svg"], default="png")
    images.add_argument("--width", type=int, default=1600, help="layout pixels")
    images.add_argument("--height", type=int, default=900, help="layout pixels")
    images.add_argument("--scale", type=float, default=2.0, help="image pixels per layout pixel (PNG)")
    images.add_argument("--font-scale", type=float, default=1.6, help="fonts relative to the screen size")
    images.set_defaults(run=cmd_figures)

    sweep = commands.add_parser("sweep", help="train a grid of one-model runs over seeds (locally or on Ray)")
    _add_config_flags(sweep)
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

    sweep_status = commands.add_parser("sweep-status", help="a sweep's state and summary (no id: every sweep)")
    sweep_status.add_argument("sweep_id", nargs="?")
    sweep_status.add_argument("--json", action="store_true")
    sweep_status.set_defaults(run=cmd_sweep_status)

    sweep_export = commands.add_parser("sweep-export", help="a sweep's tidy table (one row per member and metric)")
    sweep_export.add_argument("sweep_id")
    sweep_export.add_argument("--out", type=Path, required=True, help="a .csv or .parquet file")
    sweep_export.add_argument("--summary", action="store_true", help="mean, sd, min, max over seeds instead")
    sweep_export.set_defaults(run=cmd_sweep_export)

    sweep_stop = commands.add_parser("sweep-stop", help="stop a sweep: cancel waiting members, stop training ones")
    sweep_stop.add_argument("sweep_id")
    sweep_stop.add_argument("--key", default=None, help="the sweep's owner key (default: this machine's command line)")
    sweep_stop.set_defaults(run=cmd_sweep_stop)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.data_dir is not None:
            os.environ["EXPLORER_DATA_DIR"] = str(args.data_dir)
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
