"""Overhead of the instrumented lockstep trainer against a bare PyTorch loop, measured side by side.

Both train the same freshly built models on the same batches (one BatchStream, same seed) with the same
optimiser; the trainer also records every step, probes every `--probe` steps and writes to a SQLite store about
once a second. Both are timed from the first step to the end of the last (model building and the trainer's final
evaluation are outside the loop for both). Rounds alternate bare/trainer so drift in machine load hits both; the medians are printed.
Target: trainer/bare images/s >= 0.95 on CPU with probes every 10 steps.

    python -m bench.overhead --models plain20,resnet20 --steps 60 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from explorer.config import Config, DataConfig, ModelConfig, OptimConfig
from explorer.data import BatchStream, load_data
from explorer.models import build_model
from explorer.store import RunStore
from explorer.trainer import Trainer, _batches, make_optimizer, resolve_device


def bare_loop(config: Config, data, device: torch.device) -> float:
    """Seconds for the run's steps with nothing but forward, backward and optimiser step."""
    models = [build_model(m, num_classes=len(data.classes), seed=config.seed).to(device, memory_format=torch.channels_last)
              for m in config.models]
    optimizers = [make_optimizer(m, config.optim) for m in models]
    stream = BatchStream(data, config.optim.batch_size, config.data.augment, device, seed=config.seed,
                         channels_last=True)
    started = time.perf_counter()
    for x, y in _batches(stream, config.optim.steps):
        for model, optimizer in zip(models, optimizers):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def trainer_loop(config: Config, data, store: RunStore) -> float:
    """Seconds the trainer's loop took for the same steps: its own wall clock at the last step, which counts every
    record, probe and store write of the loop but not building the models or the final evaluation."""
    run_id = Trainer(config, store, data=data).run()
    return float(store.steps(run_id).wall.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="plain20,resnet20")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--probe", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", default="synthetic")
    args = parser.parse_args()

    config = Config(
        models=tuple(ModelConfig.parse(m) for m in args.models.split(",")),
        data=DataConfig(source=args.data, subset=max(1000, args.batch * 4), test_subset=100),
        optim=OptimConfig(batch_size=args.batch, steps=args.steps, schedule="constant", lr=0.05),
        device=args.device, probe_every=args.probe, eval_every=args.steps,
    )
    device = resolve_device(config.device)
    data = load_data(config.data)
    images = args.steps * args.batch
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, models {args.models}, "
          f"{args.steps} steps x batch {args.batch}, probes every {args.probe} steps, data {data.source}")
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "bench.sqlite")
        bare_loop(config, data, device)  # warm-up: allocator, kernels, thread pool
        ratios, bare_rates, trainer_rates = [], [], []
        for round_index in range(args.rounds):
            bare = images / bare_loop(config, data, device)
            instrumented = images / trainer_loop(config, data, store)
            bare_rates.append(bare)
            trainer_rates.append(instrumented)
            ratios.append(instrumented / bare)
            print(f"round {round_index + 1}: bare {bare:7.1f} img/s  trainer {instrumented:7.1f} img/s  "
                  f"ratio {instrumented / bare:.3f}")
    print(f"median: bare {statistics.median(bare_rates):.1f} img/s, trainer {statistics.median(trainer_rates):.1f} "
          f"img/s, ratio {statistics.median(ratios):.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
