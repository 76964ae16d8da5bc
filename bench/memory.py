"""The memory model against measured peaks: predicted vs measured training memory of real lockstep steps.

For each configuration a fresh process builds the run's models (on the CPU, or the GPU with --device cuda), resets
its peak-memory counter (Linux `clear_refs`; CUDA's peak statistics), trains three lockstep steps with the trainer's
own step function, and reports the growth of its peak over what it held before training: activations, gradients,
optimiser state and transients. The prediction is `explorer.memory.predict`'s activations plus the states minus the
weights (which were already resident). The process runs under the workers' own allocator policy (glibc's dynamic
mmap threshold; `explorer.memory.return_freed_memory` after a run). Target: no prediction more than 25% below its
measured peak, nor more than 25% above it (45% for bf16 on the CPU, whose peaks vary from run to run).

    python -m bench.memory                 # the CPU table
    python -m bench.memory --device cuda   # on a GPU (bench/gpu_suite.py runs it)

`--worker-runs` measures a long-lived worker instead: a real `Worker` process trains five different runs one after
another (different nets, widths and batches), and its resident memory is read after each. Each allocator policy
runs in its own worker, side by side: ``trim`` (what workers do: glibc's dynamic mmap threshold during a run,
`explorer.memory.return_freed_memory` after it) and ``eager`` (the earlier policy: a fixed 128 KB mmap threshold set
at start, so every large block is mapped and unmapped). `--speed` times the bare training loop of the CPU demo's four
nets under each policy, alternating. Targets: memory after five runs within 10% of after the first; ``trim`` as fast
as the loop allows.

    python -m bench.memory --worker-runs [--speed]
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
    from explorer.memory import model_footprint, predict
    from explorer.models import build_model
    from explorer.step import TrainStep, make_optimizer

    config = Config(models=tuple(ModelConfig.parse(m) for m in models.split(",")),
                    data=DataConfig(subset=max(batch, 10), test_subset=10),
                    optim=OptimConfig(batch_size=batch, steps=3), device=device, precision=precision)
    policy = DevicePolicy.resolve(config)
    policy.apply()
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


WORKER_RUNS = [  # (models, batch): five different runs for one worker
    ("plain20,resnet20", 64), ("plain56-w0.5", 128), ("resnet32", 32), ("resnet29-bneck", 64), ("vgg11-w0.5", 64)]
POLICY_CODE = {  # what a child process runs before its work, per allocator policy
    "trim": "",
    "eager": "import ctypes, ctypes.util; ctypes.CDLL(ctypes.util.find_library('c')).mallopt(-3, 128 * 1024)",
}


def _vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def worker_rss(policy: str, folder: Path) -> list[int]:
    """A worker process under `policy` trains the `WORKER_RUNS` one after another: its VmRSS after each."""
    import os
    import time

    from explorer import jobs
    from explorer.config import Config
    from explorer.store import RunStore

    store_path = folder / f"{policy}.sqlite"
    code = (f"{POLICY_CODE[policy]}\nimport torch; torch.set_num_threads(1)\nfrom explorer.store import RunStore\n"
            f"from explorer.worker import Worker\nWorker(RunStore({str(store_path)!r}), 'cpu').serve(idle_exit=120)")
    env = {**os.environ, "EXPLORER_STORE": str(store_path), "EXPLORER_WORKERS": "0"}
    worker = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, env=env)
    store, sizes = RunStore(store_path), []
    try:
        for models, batch in WORKER_RUNS:
            config = Config.from_query({"models": models, "batch": str(batch), "steps": "40", "subset": "2000",
                                        "test": "500", "data": "synthetic", "threads": "1", "device": "cpu"})
            run_id = jobs.submit(store, config, "bench-memory", attach=False).run_id
            while not store.status(run_id).final:
                time.sleep(0.5)
            time.sleep(2)  # the worker is idle again: it has returned what the run freed
            sizes.append(_vm_rss(worker.pid))
            print(f"  {policy:5s} after {models:18s} batch {batch:4d}: {sizes[-1] / 1e6:7.1f} MB", flush=True)
    finally:
        worker.terminate()
        worker.wait(60)
    return sizes


def loop_speed(policy: str, steps: int = 80) -> float:
    """Images per second of the bare training loop of the CPU demo's four nets, in a fresh process under `policy`."""
    code = (f"{POLICY_CODE[policy]}\nimport json, torch; torch.set_num_threads(1)\n"
            "from bench.overhead import bare_loop, preset_slice\nfrom explorer.data import load_data\n"
            "from explorer.device import DevicePolicy\n"
            f"c = preset_slice(['plain20-w0.25', 'plain56-w0.25', 'resnet20-w0.25', 'resnet56-w0.25'], 'cpu', "
            f"'synthetic', {steps})\np = DevicePolicy.resolve(c); p.apply(); d = load_data(c.data)\n"
            "bare_loop(c, d, p)\n"
            f"print(json.dumps({steps} * c.optim.batch_size * 4 / bare_loop(c, d, p)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    return float(out.stdout.strip().splitlines()[-1])


def worker_main(speed: bool) -> None:
    import os
    import statistics
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    print(f"load {os.getloadavg()[0]:.1f}; a worker trains {len(WORKER_RUNS)} runs under each allocator policy")
    for policy in POLICY_CODE:
        sizes = worker_rss(policy, folder)
        print(f"{policy:5s}: after the first run {sizes[0] / 1e6:.0f} MB, after the last {sizes[-1] / 1e6:.0f} MB "
              f"({sizes[-1] / sizes[0] - 1:+.1%}; target within ±10%), largest {max(sizes) / 1e6:.0f} MB")
    if speed:
        rates: dict[str, list[float]] = {policy: [] for policy in POLICY_CODE}
        for _ in range(3):
            for policy in POLICY_CODE:
                rates[policy].append(loop_speed(policy))
        for policy, values in rates.items():
            print(f"bare loop under {policy:5s}: median {statistics.median(values):.0f} images/s "
                  f"({', '.join(f'{v:.0f}' for v in values)})")
        print(f"eager / trim: {statistics.median(rates['eager']) / statistics.median(rates['trim']):.2f}x")
    print(f"load {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--worker-runs", action="store_true", help="a worker's memory across five runs, per policy")
    parser.add_argument("--speed", action="store_true", help="with --worker-runs: the bare loop under each policy")
    args = parser.parse_args()
    if args.worker_runs:
        worker_main(args.speed)
        return
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
