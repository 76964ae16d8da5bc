"""Batched twins against separate models, side by side: lockstep images/s of the same training step, medians.

Every variant trains freshly built models on the same batches (one `BatchStream`, same seed) with the trainer's
step (`explorer.step.lockstep_steps`): "separate" gives each model its own step, "twins" batches plain-N with
ResNet-N (`explorer.twins`), and on a GPU "+graph" runs either as one CUDA graph over the whole lockstep step
(`LockstepGraph`, updates included). The first `--warmup` steps (graph capture included) are not timed. Rounds
alternate the variants so that drift in machine load hits all of them; the medians are printed.

    python -m bench.twins                                   # CPU: the classic demo at its CPU sizing
    python -m bench.twins --width 1 --batch 128 --steps 6   # CPU: full width
    python -m bench.twins --device cuda --data cifar10      # a GPU (bench/gpu_suite.py calls `compare`)
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from bench.overhead import preset_slice
from explorer.config import Config
from explorer.data import BatchStream, ImageData, load_data
from explorer.device import DevicePolicy
from explorer.models import build_model
from explorer.sizing import device_kind, narrowed
from explorer.step import LockstepGraph, learning_rate, lockstep_steps, make_optimizer

CLASSIC = ["plain20", "plain56", "resnet20", "resnet56"]


def variants(cuda: bool) -> dict[str, dict]:
    """name -> (batched twins, one graph over the whole step); whole-step graphs only on a GPU."""
    names = {"separate": dict(twins=False, whole_graph=False), "twins": dict(twins=True, whole_graph=False)}
    if cuda:
        names.update({"separate+graph": dict(twins=False, whole_graph=True),
                      "twins+graph": dict(twins=True, whole_graph=True)})
    return names


def images_per_s(config: Config, data: ImageData, twins: bool, whole_graph: bool, warmup: int = 2) -> float:
    """Lockstep images/s of `config`'s models over its steps after `warmup` untimed ones (one image counts once,
    however many models see it)."""
    policy = DevicePolicy.resolve(config, batched_twins=twins)
    policy.apply()
    models = {m.label: policy.to_device(build_model(m, num_classes=len(data.classes), seed=config.seed))
              for m in config.models}
    steps = lockstep_steps(models, {label: make_optimizer(m, config.optim, policy) for label, m in models.items()},
                           policy)
    graph = LockstepGraph(list(steps.values()), policy) if whole_graph else None
    stream = BatchStream(data, config.optim.batch_size, config.data.augment, policy.device, seed=config.seed,
                         channels_last=policy.channels_last)
    total, per_epoch = config.run_steps()
    started = 0.0
    for i, (x, y) in enumerate(stream.run(total + warmup)):
        if i == warmup:
            _synchronize(policy)
            started = time.perf_counter()
        lr = learning_rate(i, total + warmup, per_epoch, config.optim)
        if graph is not None:
            graph(x, y, lr)
        else:
            for step in steps.values():
                step(x, y, lr)
    _synchronize(policy)
    return total * config.optim.batch_size / (time.perf_counter() - started)


def _synchronize(policy: DevicePolicy) -> None:
    if policy.cuda:
        torch.cuda.synchronize(policy.device)


def compare(config: Config, data: ImageData, rounds: int, names: list[str] | None = None) -> dict[str, list[float]]:
    """images/s of each variant (all of this device's, or `names`) per round, the variants alternating; a variant
    that cannot run here (a step that cannot be captured, say) is reported and left out."""
    chosen = {name: v for name, v in variants(DevicePolicy.resolve(config).cuda).items() if not names or name in names}
    rates: dict[str, list[float]] = {name: [] for name in chosen}
    for _ in range(rounds):
        for name, switches in list(chosen.items()):
            try:
                rates[name].append(images_per_s(config, data, **switches))
            except (RuntimeError, ValueError) as error:
                print(f"{name}: failed, left out ({type(error).__name__}: {error})")
                del chosen[name], rates[name]
    return rates


def sized(models: list[str], device: str, data_source: str, steps: int, width: float | None = None,
          batch: int | None = None) -> Config:
    """The classic demo's sizing on `device` (bench/overhead.py's slice; a quarter of the width on a CPU, as the
    preset runs there), optionally at another width or batch."""
    config = preset_slice(models, device, data_source, steps)
    if width is None and device_kind(device) == "cpu":
        config = narrowed(config)
    elif width is not None:
        config = replace(config, models=tuple(replace(m, width=width) for m in config.models))
    if batch is not None:
        config = replace(config, optim=replace(config.optim, batch_size=batch))
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(CLASSIC))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=float, default=None, help="default: the device's sizing (0.25 on a CPU)")
    parser.add_argument("--batch", type=int, default=None, help="default: the device's sizing (32 on a CPU)")
    args = parser.parse_args()

    config = sized(args.models.split(","), args.device, args.data, args.steps, args.width, args.batch)
    policy = DevicePolicy.resolve(config)
    data = load_data(config.data).to(policy.device)
    print(f"device {policy.name}, torch {torch.__version__}, models {','.join(config.labels)}, batch "
          f"{config.optim.batch_size}, precision {policy.precision}, {args.steps} timed steps x {args.rounds} rounds")
    rates = compare(config, data, args.rounds)
    base = statistics.median(rates["separate"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:15s} {median:9.1f} lockstep img/s  ({median / base:.2f}x separate; rounds "
              f"{', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
