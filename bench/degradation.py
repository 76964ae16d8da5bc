"""Time to degradation: how soon the lockstep trainer shows the degradation problem, and its fix, on real data.

Trains plain-20, plain-56, ResNet-20 and ResNet-56 in lockstep on identical batches (the app's classic demo,
He et al. 2015 Fig. 1 and Fig. 6) and times three criteria on the training error, i.e. the mean batch training
error over the last epoch (a rolling window of steps_per_epoch steps, as in the paper's training curves; free to
compute, so the time resolution is one step):

    (a) the plain half        plain-56  >= plain-20 + 10 points  (depth hurts the plain net)
    (b) the equal-depth half  ResNet-56 <= plain-56 - 10 points  (shortcuts fix the 56-layer net)
    (c) the paper's claim     ResNet-56 <= ResNet-20 + 2 points  (with shortcuts, depth no longer hurts),
                              counted once ResNet-56 is 10 points below chance (at chance all four are "equal")

and (a+b), both halves at once, and (a+b+c), all three. For each criterion it prints when it *first held* and
when it *held from then on* (to the end of the run): a criterion that flickers is not a demo. Times are the
trainer's `wall` column (seconds of training, evaluations and probes included, data loading and model building
excluded) with the epoch beside them; the epoch at which a criterion holds does not depend on machine load, the
seconds do.

Targets on a 2-core CPU, for 3 seeds, with the paper's standard initialisation and with zero-initialised residual
branches (each block's last BN gain starts at 0, Goyal et al. 2017): (a) and (b) hold from 60 s on at the latest;
(c) as early as possible (report the time).

The defaults are the CPU recipe measured with this script: width 0.25 (4/8/16 channels), 1,000 training images
without augmentation, batch 32, lr 0.05 with a 1-epoch warm-up from lr/10, cosine to 0 over 20 epochs (620 steps),
bf16. Seeds 0..N-1 run one after another, one training process at a time; the seed sets model init and batch
order, the training subset is the same for every seed (`--data-seed`). `--init both` runs each seed twice,
standard init and zero-init. Medians over seeds are printed per init; a criterion that never held (or no longer
holds at the end) counts as infinitely late.

Timings on a shared machine are noisy: every run prints the 1-minute load average before and after, and its
"cpu share" (process CPU time / (run time x torch threads)); below ~0.9 other work slowed it. With 2 torch threads
on 2 busy cores the small ops of these nets can slow down tenfold or more (threads wait for each other at every
op); `--threads 1` keeps a measurement of epochs usable on a busy machine.

    python -m bench.degradation --data-dir ~/.cache/cifar --seeds 3 --init both          # the recipe, 3 seeds
    python -m bench.degradation --data-dir ~/.cache/cifar --curves                        # one run, with curves
    python -m bench.degradation --data-dir ~/.cache/cifar --preset-defaults --budget 90   # what the app ships

Without `--preset-defaults` the flags below set the run; with it, the degradation preset's own CPU/GPU sizing is
used (flags then only set seeds, init and budget).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from explorer import jobs
from explorer.config import Config, DataConfig, ModelConfig, OptimConfig, model_grid
from explorer.data import load_data
from explorer.device import DevicePolicy
from explorer.store import RunStore
from explorer.trainer import Trainer

GAP = 10.0  # points: the two halves of the classic result
EQUAL = 2.0  # points: ResNet-56 "no worse than" ResNet-20
LEARNED = 80.0  # (c) counts once ResNet-56 is below this: 10 points under chance, as in the presets' verdicts
CRITERIA = {
    "a": ("plain-56 >= plain-20 + 10", lambda e: e.plain56 - e.plain20 >= GAP),
    "b": ("ResNet-56 <= plain-56 - 10", lambda e: e.plain56 - e.resnet56 >= GAP),
    "c": ("ResNet-56 <= ResNet-20 + 2", lambda e: (e.resnet56 - e.resnet20 <= EQUAL) & (e.resnet56 <= LEARNED)),
}
CRITERIA["a+b"] = ("(a) and (b)", lambda e: CRITERIA["a"][1](e) & CRITERIA["b"][1](e))
CRITERIA["a+b+c"] = ("all three", lambda e: CRITERIA["a+b"][1](e) & CRITERIA["c"][1](e))
NETS = ("plain20", "plain56", "resnet20", "resnet56")


@dataclass
class Timing:
    """When a criterion first held and from when on it held to the end of the run: (seconds, epochs) or None."""

    first: tuple[float, float] | None
    held_from: tuple[float, float] | None

    @staticmethod
    def text(point: tuple[float, float] | None) -> str:
        return f"{point[0]:6.1f} s (ep {point[1]:5.2f})" if point else f"{'never':>19}"


def training_error(steps: pd.DataFrame, window: int) -> pd.DataFrame:
    """Per step: each net's mean batch error over the last `window` steps, and the step's wall time and epoch."""
    base = {label: f"{m.family}{m.depth}" for label in steps.model.unique() for m in [ModelConfig.parse(label)]}
    named = steps.assign(model=steps.model.map(base))
    error = named.pivot_table(index="step", columns="model", values="train_err").rolling(window).mean()
    clock = named.groupby("step")[["wall", "epoch"]].max()
    error = error.reindex(columns=list(NETS)).dropna(how="all")  # a diverged net: NaN, so no criterion holds
    return error.join(clock, how="inner")


def timing(error: pd.DataFrame, holds: pd.Series) -> Timing:
    def at(step: int) -> tuple[float, float]:
        return float(error.at[step, "wall"]), float(error.at[step, "epoch"])

    if not holds.any():
        return Timing(None, None)
    first = at(holds.idxmax())
    if not holds.iloc[-1]:
        return Timing(first, None)
    failing = holds.index[~holds.to_numpy()]
    since = holds.index[0] if len(failing) == 0 else holds.index[holds.index > failing[-1]][0]
    return Timing(first, at(since))


@dataclass
class Result:
    seed: int
    init: str
    timings: dict[str, Timing]
    final: dict[str, float]  # last epoch's training error per net
    wall: float
    epochs: float
    images_per_s: float  # lockstep images per second (each through all four nets)
    load: tuple[float, float]  # 1-minute load average before and after
    cpu_share: float  # this process's CPU time / (run time x torch threads): below ~0.9, other work slowed it
    lines: list[str]


def build_config(args: argparse.Namespace, seed: int, zero_init: bool) -> Config:
    if args.preset_defaults:
        from explorer.presets import PRESETS

        config = PRESETS["degradation"].config(device="auto", data_source=args.data)
        models = tuple(replace(m, zero_init_residual=zero_init) if m.residual else m for m in config.models)
        return replace(config, models=models, seed=seed)
    plain = model_grid(family=["plain"], depth=[20, 56], width=[args.width])
    residual = model_grid(family=["resnet"], depth=[20, 56], width=[args.width], zero_init_residual=[zero_init])
    return Config(
        models=plain + residual,
        data=DataConfig(source=args.data, subset=args.subset, test_subset=args.test_subset, augment=args.augment,
                        seed=args.data_seed),
        optim=OptimConfig(lr=args.lr, batch_size=args.batch, warmup_epochs=args.warmup, epochs=args.epochs,
                          schedule=args.schedule),
        precision="bf16" if args.bf16 else "fp32", probe_every=args.probe_every, eval_every=args.eval_every,
        threads=args.threads, seed=seed,
    )


def run_once(config: Config, data, budget: float, init: str) -> Result:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "bench.sqlite")
        run_id = jobs.submit(store, config, "bench", attach=False).run_id
        jobs.claim(store, "bench", "cpu", run_id)  # a run is trained once claimed (explorer.states)
        trainer = Trainer(config, store, run_id, data, DevicePolicy.resolve(config), max_seconds=budget)
        cpu, clock = time.process_time(), time.perf_counter()
        trainer.run()
        cpu_share = (time.process_time() - cpu) / ((time.perf_counter() - clock) * torch.get_num_threads())
        steps = store.steps(run_id)
        diverged = sorted(set(config.labels) - set(steps[steps.step == steps.step.max()].model))
    load_after = os.getloadavg()[0]
    _, window = config.run_steps()
    error = training_error(steps, window)
    timings = {key: timing(error, test(error)) for key, (_, test) in CRITERIA.items()}
    last = error.iloc[-1] if len(error) else pd.Series(dtype=float)
    n_steps = int(steps.step.max()) + 1
    wall = float(steps.wall.max())
    lines = [
        f"{row.wall:7.1f} s  ep {row.epoch:5.2f}  " + "  ".join(f"{n} {row[n]:5.1f}" for n in NETS)
        + f"  (a) {row.plain56 - row.plain20:+5.1f}  (b) {row.plain56 - row.resnet56:+5.1f}"
          f"  (c) {row.resnet56 - row.resnet20:+5.1f}"
        for _, row in error.iloc[::max(1, window // 2)].iterrows()
    ]
    if diverged:
        lines.append(f"diverged: {', '.join(diverged)}")
    return Result(seed=config.seed, init=init, timings=timings, final={n: float(last.get(n, math.nan)) for n in NETS},
                  wall=wall, epochs=n_steps / window, images_per_s=n_steps * config.optim.batch_size / wall,
                  load=(load_before, load_after), cpu_share=cpu_share, lines=lines)


def report(result: Result) -> str:
    head = (f"seed {result.seed} init {result.init}: {result.wall:.1f} s, {result.epochs:.2f} epochs, "
            f"{result.images_per_s:.0f} img/s, load {result.load[0]:.2f} -> {result.load[1]:.2f}, "
            f"cpu share {result.cpu_share:.2f}; final "
            + ", ".join(f"{n} {v:.1f}" for n, v in result.final.items()))
    rows = []
    for key, (name, _) in CRITERIA.items():
        t = result.timings[key]
        since = Timing.text(t.held_from) if t.held_from or not t.first else f"{'not at the end':>19}"
        rows.append(f"  {'(' + key + ')':7s} {name:27s} first held {Timing.text(t.first)}   held from {since}")
    return "\n".join([head, *rows])


def median_point(points: list[tuple[float, float] | None]) -> str:
    """Median of (seconds, epochs) with a missing point as infinitely late."""
    seconds = statistics.median(p[0] if p else math.inf for p in points)
    epochs = statistics.median(p[1] if p else math.inf for p in points)
    return "never" if math.isinf(seconds) else f"{seconds:6.1f} s (ep {epochs:5.2f})"


def summary(results: list[Result], init: str) -> str:
    mine = [r for r in results if r.init == init]
    rows = [f"median of {len(mine)} seed(s), init {init}: "
            f"{statistics.median(r.wall for r in mine):.1f} s, {statistics.median(r.epochs for r in mine):.2f} "
            f"epochs, {statistics.median(r.images_per_s for r in mine):.0f} img/s; final "
            + ", ".join(f"{n} {statistics.median(r.final[n] for r in mine):.1f}" for n in NETS)]
    for key, (name, _) in CRITERIA.items():
        first = median_point([r.timings[key].first for r in mine])
        since = median_point([r.timings[key].held_from for r in mine])
        rows.append(f"  {'(' + key + ')':7s} {name:27s} first held {first:>19}   held from {since:>19}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training per run (a hard cut)")
    parser.add_argument("--subset", type=int, default=1000)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--data-seed", type=int, default=0, help="which training subset (same for every seed)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--warmup", type=float, default=1.0, help="epochs of linear warm-up from lr/10")
    parser.add_argument("--epochs", type=float, default=20.0, help="schedule length (the budget may cut it)")
    parser.add_argument("--schedule", choices=("constant", "step", "cosine"), default="cosine")
    parser.add_argument("--width", type=float, default=0.25, choices=(0.25, 0.5, 1.0, 2.0, 4.0))
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--probe-every", type=int, default=10, help="steps between probes; 0: none")
    parser.add_argument("--eval-every", type=int, default=1_000_000, help="steps between evaluations (one at the end)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    parser.add_argument("--init", choices=("standard", "zero", "both"), default="standard",
                        help="residual branches: the paper's standard init, zero-init, or one run of each")
    parser.add_argument("--zero-init", dest="init", action="store_const", const="zero", help="same as --init zero")
    parser.add_argument("--standard-init", dest="init", action="store_const", const="standard",
                        help="same as --init standard")
    parser.add_argument("--seeds", type=int, default=1, help="run seeds 0..N-1 one after another")
    parser.add_argument("--first-seed", type=int, default=0, help="start the seeds here")
    parser.add_argument("--curves", action="store_true", help="print the training errors every half epoch")
    parser.add_argument("--preset-defaults", action="store_true", help="use the degradation preset's sizing")
    args = parser.parse_args()
    if args.data_dir:
        os.environ["EXPLORER_DATA_DIR"] = str(args.data_dir.expanduser())

    inits = ("standard", "zero") if args.init == "both" else (args.init,)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    first = build_config(args, seeds[0], inits[0] == "zero")
    started = time.perf_counter()
    data = load_data(first.data)
    print(f"data {data.source}: {len(data.train_y)} training images, loaded in {time.perf_counter() - started:.1f} s")
    print(f"config: {first.to_query_string()}  (budget {args.budget:g} s)")
    results = []
    for seed in seeds:
        for init in inits:
            result = run_once(build_config(args, seed, init == "zero"), data, args.budget, init)
            results.append(result)
            if args.curves:
                print("\n".join(result.lines))
            print(report(result), flush=True)
    if len(seeds) > 1:
        for init in inits:
            print(summary(results, init))


if __name__ == "__main__":
    main()
