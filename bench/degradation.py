"""Time to degradation: how soon the lockstep trainer shows the degradation problem, and its fix, on real data.

Trains plain-20, plain-56, ResNet-20 and ResNet-56 in lockstep (the app's classic demo) and prints, at every
half epoch, the training error (mean batch error over the last epoch) and the wall time. The criterion holds
when plain-56 is at least 10 points above plain-20 while ResNet-56 is within 5 points of ResNet-20: depth hurts
the plain net, and the shortcuts close the gap. Target: it first holds within 90 s on a 2-core CPU.

    python -m bench.degradation --data cifar10 --data-dir ~/.cache/cifar --budget 120

Without `--preset-defaults` the flags below set the run; with it, the degradation preset's own CPU/GPU sizing is
used, so this also checks what the app ships.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from explorer.config import Config, DataConfig, ModelConfig, OptimConfig, model_grid
from explorer.store import RunStore
from explorer.trainer import Trainer

PLAIN_GAP, RESIDUAL_GAP = 10.0, 5.0


def criterion_time(steps, window: int) -> tuple[float | None, list[str]]:
    """Wall time of the first step where the criterion holds, and printed lines every `window` steps.

    Training error here is the mean batch error over the last `window` steps (one epoch), as in the paper's
    training curves: free to compute, so the time resolution is one step.
    """
    base_name = {label: f"{m.family}{m.depth}" for label in steps.model.unique() for m in [ModelConfig.parse(label)]}
    named = steps.assign(model=steps.model.map(base_name))
    error = named.pivot_table(index="step", columns="model", values="train_err").rolling(window).mean().dropna()
    walls = named.groupby("step").wall.max()
    plain_gap = error["plain56"] - error["plain20"]
    residual_gap = error["resnet56"] - error["resnet20"]
    holds = (plain_gap >= PLAIN_GAP) & (residual_gap <= RESIDUAL_GAP)
    first = float(walls[holds.idxmax()]) if holds.any() else None
    lines = [
        f"{walls[step]:7.1f} s  step {step:5d}  " + "  ".join(f"{m} {error.at[step, m]:5.1f}" for m in error.columns)
        + f"  plain gap {plain_gap[step]:+5.1f}  residual gap {residual_gap[step]:+5.1f}"
        + ("  <- holds" if holds[step] else "")
        for step in error.index[::window // 2 or 1]
    ]
    return first, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of training")
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--epochs", type=float, default=30.0)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--zero-init", action="store_true", help="zero-init residual branches (resnets only)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset-defaults", action="store_true", help="use the degradation preset's sizing")
    args = parser.parse_args()
    if args.data_dir:
        os.environ["EXPLORER_DATA_DIR"] = str(args.data_dir.expanduser())

    if args.preset_defaults:
        from explorer.presets import PRESETS

        config = PRESETS["degradation"].config(budget_s=args.budget, device="auto", data_source=args.data)
    else:
        plain = model_grid(family=["plain"], depth=[20, 56])
        residual = model_grid(family=["resnet"], depth=[20, 56], zero_init_residual=[args.zero_init])
        config = Config(
            models=plain + residual,
            data=DataConfig(source=args.data, subset=args.subset, test_subset=1000, augment=args.augment),
            optim=OptimConfig(lr=args.lr, batch_size=args.batch, warmup_epochs=args.warmup, epochs=args.epochs),
            bf16=args.bf16, seed=args.seed, eval_every=1_000_000,  # one evaluation, at the end
        )
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "bench.sqlite")
        trainer = Trainer(config, store, max_seconds=args.budget)
        run_id = trainer.run()
        print(f"models {', '.join(config.labels)}; data {trainer.data.source}; device {trainer.progress().device}")
        print(f"config: {config.to_query_string()}")
        first, lines = criterion_time(store.steps(run_id), window=max(1, config.data.subset // config.optim.batch_size))
        print("\n".join(lines))
        print("final evaluation (test error %):", store.evals(run_id).set_index("model").test_err.round(1).to_dict())
    print(f"criterion (plain-56 >= plain-20 + {PLAIN_GAP:g}, ResNet-56 <= ResNet-20 + {RESIDUAL_GAP:g}) first held at: "
          + (f"{first:.1f} s" if first is not None else f"not within {args.budget:g} s"))


if __name__ == "__main__":
    main()
