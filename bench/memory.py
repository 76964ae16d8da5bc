"""The memory model against measured peaks: predicted vs measured training memory of real lockstep steps.

For each configuration a fresh process builds the run's models (on the CPU, or the GPU with --device cuda), resets
its peak-memory counter (Linux `clear_refs`; CUDA's peak statistics), trains three lockstep steps with the trainer's
own step function, and reports the growth of its peak over what it held before training: activations, gradients,
optimiser state and transients. The prediction is `explorer.memory.predict`'s activations plus the states minus the
weights (which were already resident). Target: every configuration within 25%.

    python -m bench.memory                 # the CPU table
    python -m bench.memory --device cuda   # on a GPU (bench/gpu_suite.py runs it)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CONFIGS = [  # (models, batch, precision)
    ("resnet20", 128, "fp32"),
    ("plain56", 64, "fp32"),
    ("resnet56,plain56", 128, "fp32"),
    ("resnet110", 128, "fp32"),
    ("resnet56-bneck", 32, "fp32"),
    ("resnet56-pre-B", 64, "fp32"),
    ("resnet56-w2", 32, "fp32"),
    ("vgg16", 64, "fp32"),
    ("resnet56,plain56", 128, "bf16"),
    ("resnet110", 64, "bf16"),
    ("plain20-nobn", 128, "bf16"),
]


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(models: str, batch: int, precision: str, device: str) -> dict:
    """In this process: the peak-memory growth of three lockstep training steps (run it in a fresh process)."""
    import torch

    from explorer.config import Config, DataConfig, ModelConfig, OptimConfig
    from explorer.device import DevicePolicy
    from explorer.memory import model_footprint, predict, release_memory_eagerly
    from explorer.models import build_model
    from explorer.step import TrainStep, make_optimizer

    config = Config(models=tuple(ModelConfig.parse(m) for m in models.split(",")),
                    data=DataConfig(subset=max(batch, 10), test_subset=10),
                    optim=OptimConfig(batch_size=batch, steps=3), device=device, precision=precision)
    policy = DevicePolicy.resolve(config)
    policy.apply()
    release_memory_eagerly()
    nets = [policy.to_device(build_model(m, seed=0)) for m in config.models]
    steps = [TrainStep(net, make_optimizer(net, config.optim, policy), policy) for net in nets]
    x = torch.randn(batch, 3, 32, 32).to(policy.device, memory_format=torch.channels_last)
    y = torch.randint(10, (batch,)).to(policy.device)
    if policy.cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = _rss_bytes("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    for _ in range(3):
        for step in steps:
            step(x, y, 0.01)
    if policy.cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_bytes("VmHWM")
    estimate = predict(config, policy.device.type, policy.precision)
    weights = sum(model_footprint(m)[1] for m in config.models) * 4
    predicted = estimate.activations + estimate.states - weights
    saved = max(model_footprint(m)[0] for m in config.models) * batch
    return {"models": models, "batch": batch, "precision": policy.precision, "device": policy.device.type,
            "measured": peak - before, "predicted": predicted,
            "fitted_factor": (peak - before - (predicted - estimate.activations)) / saved}


def measure_in_subprocess(models: str, batch: int, precision: str, device: str = "cpu", threads: int = 2) -> dict:
    code = (f"import json, torch; torch.set_num_threads({threads}); from bench.memory import measure; "
            f"print(json.dumps(measure({models!r}, {batch}, {precision!r}, {device!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    print(f"{'models':22s} {'batch':>5s} {'prec':>5s} {'measured':>10s} {'predicted':>10s} {'error':>7s}  "
          "fitted factor")
    errors = []
    for models, batch, precision in CONFIGS:
        r = measure_in_subprocess(models, batch, precision, args.device)
        error = r["predicted"] / r["measured"] - 1
        errors.append(abs(error))
        print(f"{models:22s} {batch:5d} {r['precision']:>5s} {r['measured'] / 1e6:9.1f}M {r['predicted'] / 1e6:9.1f}M "
              f"{error:+7.1%}  {r['fitted_factor']:.2f}", flush=True)
    print(f"median |error| {sorted(errors)[len(errors) // 2]:.1%}, worst {max(errors):.1%} (target ≤ 25%)")


if __name__ == "__main__":
    main()
