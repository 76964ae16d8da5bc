"""Commands that study trained runs or reproduce the papers: `reproduce` and `record` (presets judged, reported and
recorded), `landscape` (loss-surface slices), `tensorboard` and `figures` (static images of every chart)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from explorer.cli.common import Commands, UsageError, parse_budget, say, writable_folder
from explorer.cli.follow import train_here
from explorer.store import RunStore

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from explorer.device import DevicePolicy
    from explorer.landscape import Landscape, SliceSpec

DEVICES = ["auto", "cpu", "cuda"]


def _trainer(args: argparse.Namespace) -> Callable:
    """How a preset's run trains: here, printing its progress, on the --data-dir data."""
    return partial(train_here, report=say, data_dir=args.data_dir)


def cmd_reproduce(args: argparse.Namespace) -> None:
    from explorer.reproduce import preset_named, recorded_folder, reproduce, write_bundle

    preset_named(args.preset)
    if args.record and args.tiny:
        raise UsageError("a --tiny run checks the path and measures nothing: record a real run (drop --tiny)")
    if args.out:
        writable_folder(Path(args.out).parent, "--out")
    if args.record:
        writable_folder(recorded_folder(args.device), "working directory for --record")
    store, budget = RunStore(args.store), parse_budget(args.budget)
    result = reproduce(args.preset, budget_s=budget, data_source=args.data, out=args.out, store=store,
                       device=args.device, train=_trainer(args), data_dir=args.data_dir, tiny=args.tiny)
    verdict = result.verdict
    say((f"{verdict.figure}; prediction {'held' if verdict.held else 'did not hold'}\n"
         if verdict.held is not None else f"{verdict.figure}\n") + f"report: {result.report_path}\n")
    if args.record:
        say(f"recorded in {write_bundle(store, result, recorded_folder(args.device) / args.preset, budget)}\n")
    print(result.run_id)


def cmd_record(args: argparse.Namespace) -> None:
    from explorer.presets import PRESETS
    from explorer.reproduce import preset_named, record

    keys = args.presets or list(PRESETS)
    for key in keys:
        preset_named(key)
    if args.out_dir:
        writable_folder(args.out_dir, "--out-dir")
    record(keys, out_dir=args.out_dir, budget_s=parse_budget(args.budget), data_source=args.data,
           store=RunStore(args.store), device=args.device, train=_trainer(args), data_dir=args.data_dir)


def cmd_landscape(args: argparse.Namespace) -> None:
    from explorer import landscape
    from explorer.ui import figures

    store = RunStore(args.store)
    config = store.config(args.run_id)
    models = tuple(m.strip() for m in (args.models or ",".join(config.labels)).split(",") if m.strip())
    budget = parse_budget(args.budget) if args.budget is not None else landscape.DEFAULT_BUDGET_S
    try:
        kinds = landscape.KINDS if args.kind == "both" else (args.kind,)
        specs = [landscape.SliceSpec(kind, models, grid=args.grid, images=args.images, span=args.span, seed=args.seed)
                 for kind in kinds]
        policy = landscape.resolve_policy(config, args.device, args.threads)
        results = [_slice(store, args, spec, policy, budget) for spec in specs]
    except landscape.LandscapeError as error:
        raise UsageError(str(error)) from None
    tables = figures.RunTables.read(store, args.run_id)
    for done in results:
        tables = replace(tables, **{f"landscape_{done.spec.kind}": done.frame})
    for done in results:
        chart = figures.CHARTS[f"landscape_{done.spec.kind}"]
        print(chart.summary(tables))
        print(done.path)
        if args.out is not None:
            out = args.out if len(results) == 1 else args.out.with_name(f"{args.out.stem}-{done.spec.kind}"
                                                                          f"{args.out.suffix}")
            _write_figure(chart.build(tables, "epoch", 1.0), out)
            print(out)


def _slice(store: RunStore, args: argparse.Namespace, spec: "SliceSpec", policy: "DevicePolicy",
           budget: float | None) -> "Landscape":
    """The stored slice `spec` of the run, computed first (priced, then within `budget`) when it is not stored."""
    from explorer import landscape
    from explorer.estimate import format_seconds

    done = landscape.read(store, args.run_id, spec)
    if done is not None:
        return done
    config = store.config(args.run_id)
    estimate = landscape.estimate_seconds(store, args.run_id, spec, policy.device.type, policy.precision)
    say(f"{spec.kind} slice of {', '.join(spec.models)}: {spec.points} points each on "
        f"{landscape.images_used(config, spec):,} images; estimate about {format_seconds(estimate)} on {policy.name}, "
        f"{policy.precision} (budget {format_seconds(budget)})\n")
    done = landscape.compute(store, args.run_id, spec, budget_s=budget, device=args.device, threads=args.threads,
                             progress=_points_progress(spec.kind), data_dir=args.data_dir)
    say(("\n" if sys.stderr.isatty() else "") +
        f"{spec.kind}: {done.seconds:.1f} s, {done.seconds_per_point:.3f} s a point\n")
    return done


def _points_progress(kind: str) -> Callable[[int, int], None]:
    """A terminal redraws one line per point; a log gets a line every tenth of the points."""
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        if tty:
            say(f"\r{kind}: {done}/{total} points")
        elif done == total or done % max(1, total // 10) == 0:
            say(f"{kind}: {done}/{total} points\n")
    return report


def _write_figure(fig: "Figure", out: Path) -> None:
    """`fig` as a standalone HTML page, or a PNG or SVG image (Kaleido), by the file's suffix."""
    from explorer.ui import charts
    from explorer.ui.static import StaticExportError, figure_image

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
    from explorer.export_tb import ExportError, export_tensorboard

    started = time.perf_counter()
    try:
        folder = export_tensorboard(RunStore(args.store), args.run_id, args.logdir)
    except ExportError as error:
        raise UsageError(str(error)) from None
    say(f"exported in {time.perf_counter() - started:.1f} s; view with: tensorboard --logdir {args.logdir}\n")
    print(folder)


def cmd_figures(args: argparse.Namespace) -> None:
    from explorer.ui.static import ImageOptions, StaticExportError, export_charts

    started = time.perf_counter()
    try:
        options = ImageOptions(args.format, args.width, args.height, args.scale)
        written = export_charts(RunStore(args.store), args.run_id, args.out, options, font_scale=args.font_scale)
    except StaticExportError as error:
        raise UsageError(str(error)) from None
    for chart in written:
        say(f"{chart.path} ({chart.seconds:.2f} s)\n")
    say(f"{len(written)} charts in {time.perf_counter() - started:.1f} s, browser start included; summaries in "
        f"{args.out / 'summaries.txt'}\n")
    print(args.out)


def _add_presets(commands: Commands) -> None:
    reproduce = commands.add_parser("reproduce", help="run a preset and write an HTML report")
    reproduce.add_argument("preset")
    reproduce.add_argument("--budget", default=None, help="seconds of training")
    reproduce.add_argument("--data", default="synthetic", help="synthetic, cifar10 or a data root's name")
    reproduce.add_argument("--device", default="auto", choices=DEVICES)
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
    record.add_argument("--device", default="auto", choices=DEVICES)
    record.add_argument("--out-dir", type=Path, default=None, help="default assets/recorded/cpu or .../gpu")
    record.set_defaults(run=cmd_record)


def _add_landscape(commands: Commands) -> None:
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
    land.add_argument("--device", default="auto", choices=DEVICES)
    land.add_argument("--threads", type=int, default=None, help="CPU threads (default: the run's setting; 0: all "
                      "cores; on a busy machine 1 can be faster)")
    land.add_argument("--out", type=Path, default=None, help="also draw the figure: FILE.html, .png or .svg "
                      "(with --kind both: FILE-1d and FILE-2d)")
    land.set_defaults(run=cmd_landscape)


def _add_exports(commands: Commands) -> None:
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


def register(commands: Commands) -> None:
    _add_presets(commands)
    _add_landscape(commands)
    _add_exports(commands)
