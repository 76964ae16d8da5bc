"""Overhead of the instrumented lockstep trainer against a bare loop of the same training step, side by side.

Both train freshly built models on the same batches (one `BatchStream`, same seed) with the trainer's own step
function (`explorer.step.lockstep_steps`: the same autocast, memory format, CUDA graphs and fused optimiser), so the
difference is what the trainer adds: probes, evaluations, recording and the store writer. The configuration is the
degradation preset as users run it on the device (its data, batch, precision, and the probe and evaluation spacing
sized for the whole run), cut to `--steps` steps. Both are timed from the first step to the end of the last
(model building and the final evaluation are outside both). Rounds alternate bare/trainer so drift in machine load
hits both; medians are printed. Target: trainer/bare images/s ≥ 0.95.

    python -m bench.overhead --models plain20,resnet20 --steps 60 --rounds 3          # CPU
    python -m bench.overhead --per-model --device cuda --data cifar10 --steps 1000    # bench/gpu_suite.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from explorer import jobs
from explorer.config import Config, ModelConfig
from explorer.data import BatchStream, ImageData, load_data
from explorer.device import DevicePolicy
from explorer.models import build_model
from explorer.presets import PRESETS
from explorer.step import learning_rate, lockstep_steps, make_optimizer
from explorer.store import RunStore
from explorer.trainer import Trainer


def preset_slice(models: list[str], device: str, data_source: str, steps: int) -> Config:
    """The degradation preset on `device` with these models, cut to `steps` steps but instrumented as the whole
    run is (probe and evaluation spacing unchanged)."""
    config = PRESETS["degradation"].config(device=device, data_source=data_source)
    return replace(config, models=tuple(ModelConfig.parse(m) for m in models),
                   optim=replace(config.optim, steps=steps))


def bare_loop(config: Config, data: ImageData, policy: DevicePolicy) -> float:
    """Seconds for the run's steps with nothing but the training step."""
    models = {m.label: policy.to_device(build_model(m, num_classes=len(data.classes), seed=config.seed))
              for m in config.models}
    steps = list(lockstep_steps(models, {label: make_optimizer(m, config.optim, policy) for label, m in models.items()},
                                policy).values())
    stream = BatchStream(data, config.optim.batch_size, config.data.augment, policy.device, seed=config.seed,
                         channels_last=policy.channels_last)
    total, per_epoch = config.run_steps()
    _synchronize(policy)
    started = time.perf_counter()
    for i, (x, y) in enumerate(stream.run(total)):
        lr = learning_rate(i, total, per_epoch, config.optim)
        for step in steps:
            step(x, y, lr)
    _synchronize(policy)
    return time.perf_counter() - started


def trainer_loop(config: Config, data: ImageData, policy: DevicePolicy, store: RunStore) -> float:
    """Seconds the trainer's loop took for the same steps: its own wall clock at the last step, which counts every
    record, probe, evaluation and store write of the loop but not building the models or the final evaluation."""
    run_id = jobs.submit(store, config, "bench", attach=False).run_id
    jobs.claim(store, "bench", policy.device.type, run_id)  # a run is trained once claimed (explorer.states)
    Trainer(config, store, run_id, data, policy).run()
    return float(store.steps(run_id).wall.max())


def _synchronize(policy: DevicePolicy) -> None:
    if policy.cuda:
        torch.cuda.synchronize(policy.device)


@dataclass
class Comparison:
    models: str
    bare: list[float]  # images per second of each round
    trainer: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(t / b for t, b in zip(self.trainer, self.bare))

    def line(self) -> str:
        return (f"{self.models:28s} bare {statistics.median(self.bare):9.0f} img/s  trainer "
                f"{statistics.median(self.trainer):9.0f} img/s  ratio {self.ratio:.3f} "
                f"(rounds {', '.join(f'{t / b:.3f}' for t, b in zip(self.trainer, self.bare))})")


def compare(config: Config, data: ImageData, rounds: int, store: RunStore) -> Comparison:
    policy = DevicePolicy.resolve(config)
    policy.apply()
    images = config.optim.steps * config.optim.batch_size * len(config.models)
    warmup = replace(config, optim=replace(config.optim, steps=min(20, config.optim.steps)))
    bare_loop(warmup, data, policy)
    # the trainer's probe and evaluation batches have shapes of their own, which cuDNN tunes once per process: a
    # one-off cost that a short timed run would count as overhead of every step
    trainer_loop(replace(warmup, probe_every=2, eval_every=10), data, policy, store)
    result = Comparison(",".join(config.labels), [], [])
    for _ in range(rounds):
        result.bare.append(images / bare_loop(config, data, policy))
        result.trainer.append(images / trainer_loop(config, data, policy, store))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="plain20,resnet20")
    parser.add_argument("--per-model", action="store_true", help="each model alone (plain/resnet 20/56 by default)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", default="synthetic")
    args = parser.parse_args()

    groups = ([[m] for m in (args.models if args.models != "plain20,resnet20" else
                             "plain20,plain56,resnet20,resnet56").split(",")] if args.per_model
              else [args.models.split(",")])
    configs = [preset_slice(g, args.device, args.data, args.steps) for g in groups]
    data = load_data(configs[0].data).to(DevicePolicy.resolve(configs[0]).device)
    first = configs[0]
    print(f"device {DevicePolicy.resolve(first).name}, torch {torch.__version__}, {args.steps} steps x batch "
          f"{first.optim.batch_size}, precision {DevicePolicy.resolve(first).precision}, probes every "
          f"{first.probe_every} steps, evaluations every {first.eval_every} steps on {first.eval_images} images, "
          f"data {data.source} ({len(data.train_y)} images)")
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "bench.sqlite")
        results = [compare(config, data, args.rounds, store) for config in configs]
    for result in results:
        print(result.line())
    print(f"median ratio {statistics.median(r.ratio for r in results):.3f} (target ≥ 0.95)")


if __name__ == "__main__":
    main()
