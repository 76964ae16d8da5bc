"""Every GPU check in one prepared script: CUDA tests, calibration, memory model, lockstep variants, trainer overhead,
the classic degradation figure at full scale, and recorded full-scale runs, in at most `--budget` seconds.

GPU time comes in short leases on bare machines (PyTorch present, no internet), so this runs everything in one
command from the repository root and writes what it measures and records under $OUT (or `--out`):

    python bench/gpu_suite.py                      # on the GPU machine: ~7 min
    python bench/gpu_suite.py --device cpu --tiny  # here: the same code on tiny inputs, under 2 minutes

Sections, each time-boxed and isolated (a failure is logged and the suite goes on):
 1. environment and data: unpack the CIFAR-10 tarball carried in `.gpu/` and decode it once (all cores);
 2. the CUDA-marked tests (tests/test_cuda.py);
 3. calibration of this GPU for estimates (explorer.estimate.calibrate), bf16 and fp32;
 4. the memory model against measured peaks (bench/memory.py's measurement, in this process);
 5. lockstep variants of the classic demo's step: eager, CUDA graphs, CUDA graphs with one stream per model;
    the fastest becomes the policy for the sections after it;
 6. per-model throughput of the trainer against a bare loop of the same step (target ratio ≥ 0.95);
 7. the classic demo at full scale (50,000 images, augmentation, standard init) through the job path, and when the
    criterion first holds (plain-56 ≥ plain-20 + 10 points of training error and ResNet-56 ≤ ResNet-20 + 2);
 8. the depth sweep (plain and ResNet 20/32/44/56) at full scale, recorded;
 9. torch.compile against CUDA graphs on one model, if time is left.
Files written: suite.log (everything printed), results.json (every figure), bundles.tar.gz (the recorded runs,
to unpack into assets/recorded/gpu/).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

CLASSIC = ["plain20", "plain56", "resnet20", "resnet56"]
SWEEP = [f"{family}{depth}" for family in ("plain", "resnet") for depth in (20, 32, 44, 56)]
PLAIN_GAP, RESIDUAL_GAP = 10.0, 2.0


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
            stream.flush()
        return len(text)


class Suite:
    def __init__(self, out: Path, budget: float, tiny: bool, device: str, work: Path):
        self.out, self.tiny, self.device, self.work = out, tiny, device, work
        self.deadline = time.monotonic() + budget
        self.results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "tiny": tiny,
                                        "device": device, "sections": {}}
        self.bundles = work / "bundles"
        self.classic_epochs, self.sweep_epochs, self.classic_rate = 30.0, 30.0, None
        self.only: set[str] | None = None
        self.pytest_k: str | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def section(self, name: str, run: Callable[[float], Any], cap: float, reserve: float = 0.0) -> Any:
        """Run one section with at most `cap` seconds (and never into `reserve` seconds kept for later ones)."""
        if self.only is not None and name not in self.only:
            return None
        if self.only is not None:  # a chosen subset shares the whole budget, in order
            cap, reserve = float("inf"), 10.0 * (len(self.only) - len(self.results["sections"]) - 1)
        allowed = min(cap, self.remaining() - reserve)
        print(f"\n=== {name} (up to {allowed:.0f} s) ===", flush=True)
        if allowed < 5:
            print("skipped: out of time")
            self.results["sections"][name] = {"skipped": "out of time"}
            return None
        started = time.monotonic()
        try:
            value = run(allowed)
            self.results["sections"][name] = {"seconds": round(time.monotonic() - started, 1), "result": value}
            return value
        except Exception as error:
            traceback.print_exc()
            self.results["sections"][name] = {"seconds": round(time.monotonic() - started, 1),
                                              "error": f"{type(error).__name__}: {error}"}
            return None
        finally:
            self.save()

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, default=str))


# --- sections ---------------------------------------------------------------------------------------------------
def environment(suite: Suite) -> Callable[[float], Any]:
    def run(_: float) -> dict:
        info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                "cpus": os.cpu_count(), "host": platform.node()}
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 1e9, 1),
                        multiprocessors=props.multi_processor_count)
        info["installed"] = install_missing_wheels()
        print(json.dumps(info, indent=2))
        return info
    return run


def install_missing_wheels() -> list[str]:
    """Install plotly (and what it needs) from wheels carried in .whl/ when the machine lacks it."""
    wheels = sorted((REPO / ".whl").glob("*.whl"))
    if importlib.util.find_spec("plotly") is not None or not wheels:
        return []
    target = Path(tempfile.gettempdir()) / "explorer-site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                    str(target), *map(str, wheels)], check=True)
    sys.path.insert(0, str(target))
    return [w.name for w in wheels]


def data_section(suite: Suite) -> Callable[[float], Any]:
    def run(_: float) -> dict:
        from explorer.data import load_full

        if suite.tiny:
            return {"source": "synthetic (tiny)"}
        tarball = REPO / ".gpu" / "cifar10-jpg.tar.gz"
        target = Path(os.environ["EXPLORER_DATA_DIR"])
        started = time.monotonic()
        with tarfile.open(tarball) as archive:
            archive.extractall(target, filter="data")
        unpacked = time.monotonic() - started
        full = load_full("cifar10")
        loaded = time.monotonic() - started - unpacked
        started = time.monotonic()
        load_full("cifar10")
        warm = time.monotonic() - started
        result = {"source": full.source, "train_images": len(full.train_y), "unpack_s": round(unpacked, 1),
                  "first_load_s": round(loaded, 1), "warm_load_s": round(warm, 2)}
        print(result)
        return result
    return run


def cuda_tests(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> dict:
        command = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-q", "-p", "no:cacheprovider", "-rs"]
        if suite.pytest_k:
            command += ["-k", suite.pytest_k]
        try:
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=allowed)
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as expired:
            output, code = f"{expired.stdout or ''}\ntimed out after {allowed:.0f} s", -1
        print(output[-4000:])
        return {"exit_code": code, "summary": output.strip().splitlines()[-1] if output.strip() else ""}
    return run


def calibration_section(suite: Suite) -> Callable[[float], Any]:
    def run(_: float) -> dict:
        from explorer.config import Config
        from explorer.device import DevicePolicy
        from explorer.estimate import calibrate
        from explorer.store import RunStore

        store, found = RunStore(), {}
        for precision in ("bf16", "fp32"):
            calibration = calibrate(DevicePolicy.resolve(Config(device=suite.device, precision=precision)),
                                    timed_steps=2 if suite.tiny else 5)
            store.save_calibration(calibration.to_row())
            found[precision] = calibration.to_row()
            print(precision, {k: found[precision][k] for k in ("step_s", "layer_s", "gmac_s")})
        return found
    return run


def memory_section(suite: Suite) -> Callable[[float], Any]:
    def run(_: float) -> list:
        from bench.memory import measure

        configs = [("resnet20", 128, "bf16"), ("resnet56,plain56", 128, "bf16"), ("resnet110", 128, "bf16"),
                   ("resnet56-bneck", 64, "bf16"), ("resnet56", 512, "bf16"), ("resnet56", 128, "fp32"),
                   ("resnet110", 256, "fp32")]
        if suite.tiny:
            configs = [("resnet8", 16, "fp32"), ("plain8", 16, "bf16")]
        rows = []
        for models, batch, precision in configs:
            row = measure(models, batch, precision, suite.device)
            row["error"] = round(row["predicted"] / max(row["measured"], 1) - 1, 3)
            rows.append(row)
            print(f"{models:20s} batch {batch:4d} {precision}: measured {row['measured'] / 1e6:8.1f} MB, predicted "
                  f"{row['predicted'] / 1e6:8.1f} MB ({row['error']:+.1%}), fitted factor {row['fitted_factor']:.2f}")
            if suite.device == "cuda":
                torch.cuda.empty_cache()
        return rows
    return run


TINY_DATA = {"subset": 96, "test_subset": 32}


def sliced(models: list[str], suite: Suite, steps: int):
    """The degradation preset's sizing for `models` on the suite's device (tiny: a few synthetic images)."""
    from bench.overhead import preset_slice

    config = preset_slice(models, suite.device, "synthetic" if suite.tiny else "cifar10", steps)
    if suite.tiny:
        config = replace(config, data=replace(config.data, **TINY_DATA),
                         optim=replace(config.optim, batch_size=16), eval_images=32)
    return config


def data_for(config, suite: Suite):
    from explorer.data import load_data
    from explorer.device import DevicePolicy

    return load_data(config.data).to(DevicePolicy.resolve(config).device)


def variants_section(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> dict:
        from bench.overhead import bare_loop
        from explorer.device import DevicePolicy

        steps = 4 if suite.tiny else 150
        models = ["plain8", "resnet8"] if suite.tiny else CLASSIC
        config = sliced(models, suite, steps)
        data = data_for(config, suite)
        rates = {}
        variants = {"eager": dict(cuda_graphs=False, streams=False), "graphs": dict(cuda_graphs=True, streams=False),
                    "graphs+streams": dict(cuda_graphs=True, streams=True)}
        for name, switches in variants.items():
            try:
                policy = DevicePolicy.resolve(config, **switches)
                policy.apply()
                bare_loop(replace(config, optim=replace(config.optim, steps=3)), data, policy)  # warm-up, capture
                seconds = [bare_loop(config, data, policy) for _ in range(1 if suite.tiny else 2)]
            except Exception:
                traceback.print_exc()
                continue
            rates[name] = round(steps * config.optim.batch_size / statistics.median(seconds), 1)
            print(f"{name:15s} {rates[name]:9.0f} lockstep img/s ({len(models)} models, batch "
                  f"{config.optim.batch_size})")
        best = max(rates, key=rates.get)
        os.environ["EXPLORER_CUDA_GRAPHS"] = "0" if best == "eager" else "1"
        os.environ["EXPLORER_CUDA_STREAMS"] = "1" if best == "graphs+streams" else "0"
        print(f"fastest: {best}; the sections below use it")
        return {"lockstep_images_per_s": rates, "fastest": best, "models": models}
    return run


def overhead_section(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> list:
        from bench.overhead import compare
        from explorer.store import RunStore

        steps = 6 if suite.tiny else 1000
        models = ["plain8", "resnet8"] if suite.tiny else CLASSIC
        results = []
        store = RunStore()
        for model in models:
            config = sliced([model], suite, steps)
            comparison = compare(config, data_for(config, suite), 1, store)
            print(comparison.line(), flush=True)
            results.append({"model": model, "bare": comparison.bare, "trainer": comparison.trainer,
                            "ratio": round(comparison.ratio, 3), "probe_every": config.probe_every,
                            "eval_every": config.eval_every, "eval_images": config.eval_images})
        return results
    return run


def criterion(steps, per_epoch: int) -> dict:
    """When plain-56 first trails plain-20 by PLAIN_GAP points while ResNet-56 is within RESIDUAL_GAP of
    ResNet-20 (training error = mean batch error over the last epoch), and from when it keeps holding."""
    error = steps.pivot_table(index="step", columns="model", values="train_err").rolling(per_epoch).mean().dropna()
    walls = steps.groupby("step").wall.max()
    pairs = [("plain20", "plain56"), ("resnet20", "resnet56")]
    if error.empty or any(m not in error for pair in pairs for m in pair):
        return {"first_held_s": None}
    holds = ((error["plain56"] - error["plain20"] >= PLAIN_GAP)
             & (error["resnet56"] - error["resnet20"] <= RESIDUAL_GAP))
    first = holds.idxmax() if holds.any() else None
    tail = holds[::-1].cumprod()[::-1].astype(bool)
    held_from = tail.idxmax() if tail.any() else None
    last = error.iloc[-1]
    return {"first_held_s": None if first is None else round(float(walls[first]), 1),
            "first_held_epoch": None if first is None else round((first + 1) / per_epoch, 2),
            "held_from_s": None if held_from is None else round(float(walls[held_from]), 1),
            "final_train_err": {k: round(float(v), 1) for k, v in last.items()},
            "training_seconds": round(float(walls.max()), 1)}


def full_scale_run(suite: Suite, preset_key: str, models: list[str], epochs_cap: float, allowed: float,
                   rate_key: str) -> dict:
    """Train a preset at the GPU's full-scale sizing through the job path, for `epochs_cap` epochs or fewer if the
    measured lockstep throughput says they would not fit in `allowed` seconds; record it as a bundle."""
    from explorer.config import ModelConfig
    from explorer.presets import PRESETS
    from explorer.reproduce import reproduce, write_bundle
    from explorer.sizing import instrumented
    from explorer.store import RunStore

    preset = PRESETS[preset_key]
    config = preset.config(device=suite.device, data_source="synthetic" if suite.tiny else "cifar10")
    config = replace(config, models=tuple(ModelConfig.parse(m) for m in models))
    rate = suite.results.get(rate_key)  # lockstep images/s of these models, if measured
    if suite.tiny:
        config = replace(config, data=replace(config.data, **TINY_DATA),
                         optim=replace(config.optim, epochs=0, steps=8, batch_size=16))
    else:
        affordable = 0.75 * allowed * rate / config.data.subset if rate else epochs_cap
        epochs = max(1.0, min(epochs_cap, round(affordable, 1)))
        config = replace(config, optim=replace(config.optim, epochs=epochs))
    config = replace(instrumented(config), eval_images=32) if suite.tiny else instrumented(config)
    store = RunStore()
    result = reproduce(preset_key, config=config, store=store, report=False, budget_s=0.9 * allowed)
    folder = write_bundle(store, result, suite.bundles / preset_key, 0.9 * allowed)
    steps = store.steps(result.run_id)
    summary = {"run_id": result.run_id, "epochs": config.optim.epochs, "steps": int(steps.step.max()) + 1,
               "verdict": {"held": result.verdict.held, "figure": result.verdict.figure},
               "evaluations": int(store.evals(result.run_id).step.nunique()),
               "bundle": str(folder.relative_to(suite.bundles)),
               "images_per_s": round(float(steps.step.max() + 1) * config.optim.batch_size /
                                     max(float(steps.wall.max()), 1e-9), 1)}
    summary.update(criterion(steps, config.run_steps()[1]))
    print(json.dumps(summary, indent=2))
    return summary


def classic_section(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> dict:
        variants = suite.results["sections"].get("lockstep variants", {}).get("result") or {}
        rates = variants.get("lockstep_images_per_s", {})
        suite.results["classic_rate"] = max(rates.values()) if rates else suite.classic_rate
        return full_scale_run(suite, "degradation", CLASSIC if not suite.tiny else ["plain8", "resnet8"],
                              suite.classic_epochs, allowed, "classic_rate")
    return run


def sweep_section(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> dict:
        rate = suite.results.get("classic_rate")
        # eight nets cost about (20+32+44+56)*2 / (20+56)*2 = 2x the classic four per step
        suite.results["sweep_rate"] = rate / 2.0 if rate else None
        return full_scale_run(suite, "depth-sweep", SWEEP if not suite.tiny else ["plain8", "resnet8"],
                              suite.sweep_epochs, allowed, "sweep_rate")
    return run


COMPILE_PROBE = """
BATCH, STEPS = {batch}, {steps}
import time, torch, sys
sys.path.insert(0, {repo!r})
from explorer.config import Config, ModelConfig, OptimConfig
from explorer.device import DevicePolicy
from explorer.models import build_model
from explorer.step import make_optimizer, loss_and_error
policy = DevicePolicy.resolve(Config(device={device!r}), cuda_graphs=False)
model = policy.to_device(build_model(ModelConfig.parse("resnet20")))
opt = make_optimizer(model, OptimConfig(), policy)
compiled = torch.compile(model)
x = torch.randn(BATCH, 3, 32, 32, device=policy.device).contiguous(memory_format=torch.channels_last)
y = torch.randint(10, (BATCH,), device=policy.device)
def step():
    opt.zero_grad(set_to_none=True)
    with policy.autocast():
        loss, _ = loss_and_error(compiled(x), y)
    loss.backward(); opt.step()
t = time.perf_counter(); step(); step()
if policy.cuda: torch.cuda.synchronize()
compile_s = time.perf_counter() - t
t = time.perf_counter()
for _ in range(STEPS): step()
if policy.cuda: torch.cuda.synchronize()
print("COMPILE", compile_s, STEPS * BATCH / (time.perf_counter() - t))
"""


def compile_section(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> dict:
        code = COMPILE_PROBE.format(repo=str(REPO), device=suite.device, batch=8 if suite.tiny else 128,
                                    steps=2 if suite.tiny else 100)
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=allowed)
        except subprocess.TimeoutExpired:
            return {"error": f"compiling did not finish within {allowed:.0f} s"}
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("COMPILE")]
        if not line:
            print(done.stderr[-2000:])
            return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"}
        _, compile_s, rate = line[0].split()
        result = {"model": "resnet20", "batch": 8 if suite.tiny else 128, "compile_s": round(float(compile_s), 1),
                  "compiled_images_per_s": round(float(rate), 1)}
        print(result)
        return result
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="tiny inputs: checks the code, measures nothing")
    parser.add_argument("--out", type=Path, default=None, help="default $OUT, else out/gpu_suite")
    parser.add_argument("--budget", type=float, default=None, help="seconds in all (default 420; tiny 110)")
    parser.add_argument("--only", default=None, help="comma-separated section names to run (default: all)")
    parser.add_argument("--classic-epochs", type=float, default=30.0)
    parser.add_argument("--sweep-epochs", type=float, default=30.0)
    parser.add_argument("--classic-rate", type=float, default=None,
                        help="lockstep images/s of the classic demo, when its section does not run")
    parser.add_argument("--pytest-k", default=None, help="run only the CUDA tests matching this -k expression")
    args = parser.parse_args(argv)
    out = args.out or Path(os.environ.get("OUT") or REPO / "out" / "gpu_suite")
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget or (110.0 if args.tiny else 420.0)
    work = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    os.environ.update(EXPLORER_STORE=str(work / "runs" / "explorer.sqlite"), EXPLORER_DATA_DIR=str(work / "data"),
                      EXPLORER_CACHE_DIR=str(work / "cache"), EXPLORER_CHECKPOINT_SECONDS="60")
    suite = Suite(out, budget, args.tiny, args.device, work)
    suite.classic_epochs, suite.sweep_epochs, suite.classic_rate = (args.classic_epochs, args.sweep_epochs,
                                                                    args.classic_rate)
    suite.only = set(args.only.split(",")) if args.only else None
    suite.pytest_k = args.pytest_k
    log = open(out / "suite.log", "w")
    tiny = args.tiny
    with redirect_stdout(Tee(sys.__stdout__, log)):
        print(f"gpu suite: device {args.device}, budget {budget:.0f} s, tiny {tiny}, out {out}")
        suite.section("environment", environment(suite), cap=60)
        suite.section("data", data_section(suite), cap=90)
        suite.section("cuda tests", cuda_tests(suite), cap=30 if tiny else 75, reserve=0.55 * suite.remaining())
        suite.section("calibration", calibration_section(suite), cap=40, reserve=0.55 * suite.remaining())
        suite.section("memory model", memory_section(suite), cap=40, reserve=0.5 * suite.remaining())
        suite.section("lockstep variants", variants_section(suite), cap=45, reserve=0.45 * suite.remaining())
        suite.section("overhead", overhead_section(suite), cap=70, reserve=0.55 * suite.remaining())
        suite.section("classic demo", classic_section(suite), cap=150, reserve=0.4 * suite.remaining())
        suite.section("depth sweep", sweep_section(suite), cap=110, reserve=15)
        suite.section("compile", compile_section(suite), cap=80, reserve=5)
        if suite.bundles.exists():
            with tarfile.open(out / "bundles.tar.gz", "w:gz") as archive:
                archive.add(suite.bundles, arcname="gpu")
        summary = {name: ("error: " + s["error"]) if "error" in s else s.get("skipped") or f"{s['seconds']} s"
                   for name, s in suite.results["sections"].items()}
        print("\n=== summary ===")
        for name, line in summary.items():
            print(f"{name:20s} {line}")
        suite.save()
    log.close()
    failed = [name for name, s in suite.results["sections"].items() if "error" in s]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
