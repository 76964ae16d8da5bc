"""Time to degradation: how soon the lockstep trainer shows the degradation problem, and its fix, on real data.

Trains plain-20, plain-56, ResNet-20 and ResNet-56 in lockstep (the app's classic demo) and prints, at every
evaluation, the training error (training-subset sample, no augmentation) and the wall time. The criterion holds
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


def criterion_time(evals) -> tuple[float | None, list[str]]:
    """Wall time of the first evaluation where the criterion holds, and one printed line per evaluation."""
    base_name = {label: f"{m.family}{m.depth}" for label in evals.model.unique() for m in [ModelConfig.parse(label)]}
    wide = evals.assign(model=evals.model.map(base_name)).pivot_table(index="step", columns="model", values="train_err")
    walls = evals.groupby("step").wall.max()
    lines, first = [], None
    for step, row in wide.iterrows():
        plain_gap = row["plain56"] - row["plain20"]
        residual_gap = row["resnet56"] - row["resnet20"]
        holds = plain_gap >= PLAIN_GAP and residual_gap <= RESIDUAL_GAP
        if holds and first is None:
            first = float(walls[step])
        lines.append(f"{walls[step]:7.1f} s  step {step:5d}  " + "  ".join(f"{m} {row[m]:5.1f}" for m in wide.columns)
                     + f"  plain gap {plain_gap:+5.1f}  residual gap {residual_gap:+5.1f}" + ("  <- holds" if holds else ""))
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
    parser.add_argument("--evals-per-epoch", type=int, default=2)
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
            bf16=args.bf16, seed=args.seed, eval_every=max(1, args.subset // args.batch // args.evals_per_epoch),
        )
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "bench.sqlite")
        trainer = Trainer(config, store, max_seconds=args.budget)
        run_id = trainer.run()
        print(f"models {', '.join(config.labels)}; data {trainer.data.source}; device {trainer.progress().device}")
        print(f"config: {config.to_query_string()}")
        first, lines = criterion_time(store.evals(run_id))
        print("\n".join(lines))
    print(f"criterion (plain-56 >= plain-20 + {PLAIN_GAP:g}, ResNet-56 <= ResNet-20 + {RESIDUAL_GAP:g}) first held at: "
          + (f"{first:.1f} s" if first is not None else f"not within {args.budget:g} s"))


if __name__ == "__main__":
    main()
