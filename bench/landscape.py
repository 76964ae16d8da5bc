"""Times a loss-surface slice (`explorer.landscape`) against its target: a 21×21 slice of ResNet-20 on 1,000
training images within 2 minutes on this project's 2-core CPU.

Trains the models a few steps on the synthetic set (the slice's cost does not depend on how trained the weights
are), prices the slice with the cost model, computes it without a budget, and prints the machine's load average
before and after (the machine is shared: the load says how much of the 2 cores the slice had), the estimate, the
total, the median wall and CPU seconds per point (with one thread, CPU seconds approximate an idle machine's wall
time), and the miss against the target. ``--precision fp32`` times the alternative
to the policy's bf16.

    python -m bench.landscape                                   # the target: 21x21, resnet20, 1,000 images
    python -m bench.landscape --models plain20,resnet20 --kind 1d
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from explorer import jobs, landscape
from explorer.config import Config, DataConfig, ModelConfig, OptimConfig
from explorer.store import RunStore
from explorer.worker import Worker

TARGET_S = 120.0


def trained_run(store: RunStore, models: list[str], steps: int, images: int, precision: str) -> str:
    config = Config(models=tuple(ModelConfig.parse(m) for m in models),
                    data=DataConfig(source="synthetic", subset=max(images, 64), test_subset=100),
                    optim=OptimConfig(batch_size=32, steps=steps), probe_every=0, eval_every=steps, eval_images=100,
                    device="cpu", precision=precision)
    run_id = jobs.submit(store, config, jobs.CLI_OWNER_KEY, attach=False).run_id
    Worker(store, "cpu").run_one(run_id)
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20")
    parser.add_argument("--kind", default="2d", choices=landscape.KINDS)
    parser.add_argument("--grid", type=int, default=21)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10, help="training steps before the slice")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-landscape-") as folder:
        store = RunStore(Path(folder) / "store.sqlite")
        run_id = trained_run(store, models, args.steps, args.images, args.precision)
        spec = landscape.SliceSpec(args.kind, tuple(models), grid=args.grid, images=args.images)
        stamps: list[tuple[float, float]] = []  # (wall, this process's CPU seconds) after each point
        load_before = os.getloadavg()
        def stamp(done: int, total: int) -> None:
            stamps.append((time.perf_counter(), time.process_time()))

        result = landscape.compute(store, run_id, spec, budget_s=None, threads=args.threads, progress=stamp)
        load_after = os.getloadavg()
    per_point = statistics.median(b[0] - a[0] for a, b in zip(stamps, stamps[1:]))
    cpu_per_point = statistics.median(b[1] - a[1] for a, b in zip(stamps, stamps[1:]))
    figures = {
        "slice": f"{args.kind} {args.grid} x {len(models)} models ({','.join(models)}), {result.images} images",
        "device": result.device, "threads": args.threads, "precision": result.precision, "points": len(stamps),
        "estimate_s": round(result.estimate_s, 1), "seconds": round(result.seconds, 1),
        "median_s_per_point": round(per_point, 3), "median_cpu_s_per_point": round(cpu_per_point, 3),
        "target_s": TARGET_S,
        "over_target": round(result.seconds / TARGET_S, 2),
        "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in load_after],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
