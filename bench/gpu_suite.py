"""The GPU second pass in one prepared script: CUDA tests, overhead per model, the app's path on the GPU, the classic
demo's step (batched twins, one CUDA graph over the whole lockstep step, a larger batch), He et al. 2015 Table 6, the
classic demo at full scale, and the recordings, in at most `--budget` seconds (450 by default: one pass in 8 minutes).

GPU time comes in short leases on bare machines (PyTorch present; no streamlit or plotly; no network), so this runs
everything from the repository root in one command and writes what it measures and records under $OUT (or --out):

    python3 bench/gpu_suite.py                      # on the GPU machine: under 8 minutes
    python3 bench/gpu_suite.py --device cpu --tiny  # here: the same code on tiny inputs, well under a minute

Before the lease, in the repository root (both folders are git-ignored; name them in the run's `carry`):

    mkdir -p .gpu && cp ../shared/datasets/cifar10-jpg.tar.gz .gpu/       # CIFAR-10 as JPEGs, 19 MB
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux2014_x86_64 -d .whl plotly==7.1.0             # the pages' charts (needs narwhals: there)

With the device tool: run(command="PYTHONUNBUFFERED=1 python3 bench/gpu_suite.py", carry=[".gpu", ".whl"],
timeout_s=540); $OUT's four files come back. `--only table6` (say) reruns one section (with environment and data).

Sections run in order. Each has a cap, and keeps back the seconds the sections after it need: one that would overrun
what is left is skipped with a line saying so, one that fails is logged, and the suite goes on.
 1. environment: versions and the GPU; plotly installed from the carried wheels when missing;
 2. data: unpack CIFAR-10 (.gpu/) and decode it once;
 3. cuda tests: tests/test_cuda.py;
 4. calibration: this GPU's step costs for estimates (so the app's worker never calibrates while measured);
 5. lockstep variants: the classic demo's step with separate models and with batched twins, each with a CUDA graph
    per computation and with one graph over the whole lockstep step, at batch 128; the two best at `--large-batch`.
    The faster of separate and twins (per-computation graphs: what the trainer runs) is the policy from then on;
 6. overhead: trainer/bare images/s of each net of the classic demo (target ≥ 0.95);
 7. app path: a real `python -m explorer worker`, a job submitted with `jobs.submit` as the Lab does and stopped as
    its Stop button does, its records read with the pages' `RunTables.read`: first point after submit with a warm
    worker (target ≤ 2 s) and images/s;
 8. table6: `reproduce("table6")`, ResNet-20 and ResNet-56 in lockstep on all of CIFAR-10 (≤ 4 min) against Table 6;
 9. classic demo: the degradation preset at full scale, batch 128, and when its criterion first holds (≤ 10 s);
10. classic demo, large batch: the same at `--large-batch`, learning rate scaled linearly with a gradual warm-up
    (Goyal et al. 2017 §2.1-2.2), so the two runs' curves can be laid side by side;
11. memory model: predicted against measured peaks, if time is left.
Files: suite.log (everything printed), results.json (every figure), worker.log (the app path's worker), bundles.tar.gz
(the recorded runs, to unpack into assets/recorded/: gpu/table6, gpu/degradation-batch128 and
gpu/degradation-batch512; the two classic-demo runs are cut to the time they get, so they sit beside the 30-epoch
gpu/degradation of the first pass, which stays the app's reference run of that preset).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
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

from explorer.config import ModelConfig  # noqa: E402

CLASSIC = ["plain20", "plain56", "resnet20", "resnet56"]
TINY_CLASSIC = ["plain8-w0.25", "plain14-w0.25", "resnet8-w0.25", "resnet14-w0.25"]  # two twin pairs, shallow first
PLAIN_GAP, RESIDUAL_GAP = 10.0, 2.0
TARGETS = {"classic_30_epochs_s": 60.0, "criterion_s": 10.0, "trainer_over_bare": 0.95, "first_point_s": 2.0,
           "table6_s": 240.0}
TABLE6_RESERVE = 70.0  # seconds kept after Table 6 for the two classic-demo runs
STARTUP_S = 10.0  # a run's own start and end: data onto the GPU, graph capture, the final evaluation
APP_RUN_S = 15.0  # seconds the app path's job trains before it is stopped
PREREQUISITES = {"environment", "data"}  # sections that run whatever --only says


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
            stream.flush()
        return len(text)


class Suite:
    def __init__(self, out: Path, budget: float, tiny: bool, device: str, work: Path, large_batch: int):
        self.out, self.tiny, self.device, self.work, self.large_batch = out, tiny, device, work, large_batch
        self.deadline = time.monotonic() + budget
        self.results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "tiny": tiny,
                                        "device": device, "budget_s": budget, "sections": {}}
        self.bundles = work / "bundles"
        self.only: set[str] | None = None
        self.pytest_k: str | None = None
        self.classic_epochs = 30.0

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def section(self, name: str, run: Callable[[float], Any], cap: float, reserve: float = 0.0,
                minimum: float = 5.0) -> Any:
        """Run one section with at most `cap` seconds and never into the `reserve` kept for the sections after it;
        skip it, saying so, when that leaves less than the `minimum` it needs."""
        if self.only is not None and name not in self.only | PREREQUISITES:
            return None
        if self.only is not None:  # a chosen subset shares the whole budget, in order
            cap, reserve = math.inf, 10.0 * max(0, len(self.only - set(self.results["sections"]) - {name}))
        if self.tiny:
            reserve, minimum = 0.0, 1.0
        allowed = min(cap, self.remaining() - reserve)
        print(f"\n=== {name} (up to {allowed:.0f} s) ===", flush=True)
        if allowed < minimum:
            reason = (f"skipped: {self.remaining():.0f} s of the budget left, {reserve:.0f} s of it kept for the "
                      f"sections after this one; it needs at least {minimum:.0f} s")
            print(reason)
            self.results["sections"][name] = {"skipped": reason}
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

    def result(self, name: str) -> Any:
        """What an earlier section returned (None if it was skipped or failed)."""
        return self.results["sections"].get(name, {}).get("result")

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, default=str))


# --- environment, data, tests, calibration ------------------------------------------------------------------------
def environment(suite: Suite) -> Callable[[float], Any]:
    def run(_: float) -> dict:
        info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                "cpus": os.cpu_count(), "host": platform.node()}
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 1e9, 1),
                        multiprocessors=props.multi_processor_count)
        info["installed"] = install_missing_wheels()
        info["plotly"] = importlib.util.find_spec("plotly") is not None
        print(json.dumps(info, indent=2))
        return info
    return run


def install_missing_wheels() -> list[str]:
    """Install plotly (and what it needs) from wheels carried in .whl/ when the machine lacks it; the suite's
    subprocesses see it through PYTHONPATH."""
    wheels = sorted((REPO / ".whl").glob("*.whl"))
    if importlib.util.find_spec("plotly") is not None or not wheels:
        return []
    target = Path(tempfile.gettempdir()) / "explorer-site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                    str(target), *map(str, wheels)], check=True)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    importlib.invalidate_caches()
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
        result = {"source": full.source, "train_images": len(full.train_y), "unpack_s": round(unpacked, 1),
                  "first_load_s": round(loaded, 1)}
        print(result)
        return result
    return run


def cuda_tests(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> dict:
        command = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-q", "-p", "no:cacheprovider", "-rs",
                   "--durations=10"]
        if suite.pytest_k:
            command += ["-k", suite.pytest_k]
        try:
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=allowed)
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as expired:
            partial = expired.stdout or b""
            partial = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
            output, code = f"{partial}\ntimed out after {allowed:.0f} s", -1
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
        # a CPU without bf16 units runs bf16 many times slower than its default: time its default alone
        precisions = ("bf16", "fp32") if suite.device == "cuda" else (
            DevicePolicy.resolve(Config(device=suite.device)).precision,)
        for precision in precisions:
            calibration = calibrate(DevicePolicy.resolve(Config(device=suite.device, precision=precision)),
                                    timed_steps=1 if suite.tiny else 5)
            store.save_calibration(calibration.to_row())
            found[precision] = calibration.to_row()
            print(precision, {k: found[precision][k] for k in ("step_s", "layer_s", "gmac_s")})
        return found
    return run


# --- the classic demo's step --------------------------------------------------------------------------------------
def classic_models(suite: Suite) -> list[str]:
    return TINY_CLASSIC if suite.tiny else CLASSIC


def classic_config(suite: Suite, steps: int, batch: int | None = None):
    """The classic demo's step at the GPU's sizing (tiny: a few synthetic images at a quarter width)."""
    from bench.twins import sized
    from explorer.reproduce import tiny_run

    config = sized(classic_models(suite), suite.device, "synthetic" if suite.tiny else "cifar10", steps)
    config = tiny_run(config, steps) if suite.tiny else config
    return replace(config, optim=replace(config.optim, batch_size=batch)) if batch else config


def data_for(config, suite: Suite):
    from explorer.data import load_data
    from explorer.device import DevicePolicy

    return load_data(config.data).to(DevicePolicy.resolve(config).device)


def variants_section(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> dict:
        from bench.twins import compare

        steps = 3 if suite.tiny else 100
        config = classic_config(suite, steps)
        data = data_for(config, suite)
        rates = {name: round(values[0], 1) for name, values in compare(config, data, rounds=1).items() if values}
        for name, rate in rates.items():
            print(f"batch {config.optim.batch_size:5d} {name:15s} {rate:9.0f} lockstep img/s")
        best_two = sorted(rates, key=rates.get, reverse=True)[:2]
        large = classic_config(suite, max(2, steps // 4), batch=suite.large_batch)
        large_rates = {name: round(values[0], 1)
                       for name, values in compare(large, data, 1, best_two).items() if values}
        for name, rate in large_rates.items():
            print(f"batch {large.optim.batch_size:5d} {name:15s} {rate:9.0f} lockstep img/s")
        # the trainer runs a graph per computation (its probes read gradients between backward and update)
        twins = rates["twins"] > rates["separate"]
        os.environ["EXPLORER_BATCHED_TWINS"] = "1" if twins else "0"
        fastest = max(rates, key=rates.get)
        print(f"fastest at batch {config.optim.batch_size}: {fastest}; the trainer from here on: "
              f"{'twins' if twins else 'separate'} ({max(rates['twins'], rates['separate']):.0f} img/s)")
        return {"models": config.labels, "batch": config.optim.batch_size, "lockstep_images_per_s": rates,
                "large_batch": large.optim.batch_size, "large_batch_images_per_s": large_rates,
                "fastest": fastest, "trainer_layout": "twins" if twins else "separate"}
    return run


def overhead_section(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> list:
        from bench.overhead import compare
        from explorer.store import RunStore

        steps = 6 if suite.tiny else 400
        results = []
        store = RunStore()
        models = classic_models(suite)
        for model in models if not suite.tiny else models[::3]:  # tiny: the shallow plain net and the deep ResNet
            config = classic_config(suite, steps)  # probes and evaluations spaced as in the whole run
            config = replace(config, models=tuple(m for m in config.models if m.label == model))
            comparison = compare(config, data_for(config, suite), 1, store)
            print(comparison.line(), flush=True)
            results.append({"model": model, "bare": comparison.bare, "trainer": comparison.trainer,
                            "ratio": round(comparison.ratio, 3), "probe_every": config.probe_every,
                            "eval_every": config.eval_every, "eval_images": config.eval_images})
        return results
    return run


# --- the app's path -----------------------------------------------------------------------------------------------
def page_reader() -> tuple[Callable[[Any, str], Any], str]:
    """How the pages read a run's step records (`RunTables.read`), or the store's own reader where plotly is
    missing (no wheels carried); and its name."""
    try:
        from explorer.ui.figures import RunTables
    except ImportError:
        return (lambda store, run_id: store.steps(run_id)), "RunStore.steps (plotly missing)"
    return (lambda store, run_id: RunTables.read(store, run_id).steps), "RunTables.read"


def app_section(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> dict:
        from explorer import jobs
        from explorer.presets import PRESETS
        from explorer.reproduce import tiny_run
        from explorer.states import Control, RunState
        from explorer.store import RunStore

        store, key = RunStore(), jobs.new_owner_key()
        read_steps, reader = page_reader()
        config = PRESETS["degradation"].config(None, suite.device, "synthetic" if suite.tiny else "cifar10")
        if suite.tiny:
            config = tiny_run(replace(config, models=classic_config(suite, 2).models), steps=400)
        log = open(suite.out / "worker.log", "w")
        worker = subprocess.Popen([sys.executable, "-m", "explorer", "worker", "--device", suite.device,
                                   "--idle-exit", str(round(allowed))], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + allowed - 5
            _wait(lambda: jobs.live_workers(store), deadline, "the worker to register")
            # a first job warms the worker up (CUDA context, data on the GPU, cuDNN's choices), as a Lab's first
            # run would; the measured job comes after it
            warm = jobs.submit(store, replace(config, optim=replace(config.optim, steps=20 if not suite.tiny else 2)),
                               key).run_id
            _wait(lambda: store.status(warm).final, deadline, "the warm-up job")
            if store.status(warm) is not RunState.FINISHED:
                raise RuntimeError(f"the warm-up job ended {store.status(warm)}: {store.run(warm)['error']} "
                                   f"(worker.log has the worker's output)")
            submitted = time.monotonic()
            run_id = jobs.submit(store, config, key, preset="degradation").run_id  # as the Lab submits
            _wait(lambda: len(read_steps(store, run_id)) > 0, deadline, "the first point")
            first_point = time.monotonic() - submitted
            time.sleep(min(APP_RUN_S if not suite.tiny else 0.5, max(0.0, deadline - time.monotonic() - 5)))
            jobs.request(store, run_id, key, Control.STOP)  # the Lab's Stop button
            _wait(lambda: store.status(run_id).final, deadline, "the job to stop")
        finally:
            worker.terminate()  # SIGTERM: the worker stops cleanly
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            log.close()
        steps = read_steps(store, run_id)
        trained = int(steps.step.max()) + 1
        result = {"first_point_s": round(first_point, 2), "status": str(store.status(run_id)), "steps": trained,
                  "images_per_s": round(trained * config.optim.batch_size / max(float(steps.wall.max()), 1e-9), 1),
                  "reader": reader,
                  "warm_up_status": str(store.status(warm))}
        print(result)
        return result
    return run


def _wait(condition: Callable[[], Any], deadline: float, what: str, interval: float = 0.05) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(interval)


# --- full-scale runs ----------------------------------------------------------------------------------------------
def criterion(steps, per_epoch: int) -> dict:
    """When the deeper plain net (plain-56) first trails the shallower (plain-20) by PLAIN_GAP points while the
    deeper ResNet is within RESIDUAL_GAP of the shallower (training error = mean batch error over the last epoch),
    and from when it keeps holding."""
    error = steps.pivot_table(index="step", columns="model", values="train_err").rolling(per_epoch).mean().dropna()
    walls = steps.groupby("step").wall.max()
    models = sorted((ModelConfig.parse(label) for label in error.columns), key=lambda m: (m.family, m.depth))
    if error.empty or [m.family for m in models] != ["plain", "plain", "resnet", "resnet"]:
        return {"first_held_s": None}
    plain_a, plain_b, res_a, res_b = (m.label for m in models)
    holds = (error[plain_b] - error[plain_a] >= PLAIN_GAP) & (error[res_b] - error[res_a] <= RESIDUAL_GAP)
    first = holds.idxmax() if holds.any() else None
    tail = holds[::-1].cumprod()[::-1].astype(bool)
    held_from = tail.idxmax() if tail.any() else None
    last = error.iloc[-1]
    return {"first_held_s": None if first is None else round(float(walls[first]), 1),
            "first_held_epoch": None if first is None else round((first + 1) / per_epoch, 2),
            "held_from_s": None if held_from is None else round(float(walls[held_from]), 1),
            "final_train_err": {k: round(float(v), 1) for k, v in last.items()},
            "training_seconds": round(float(walls.max()), 1)}


def recorded_run(suite: Suite, preset_key: str, config, allowed: float, bundle: str) -> dict:
    """Train `config` as the preset's run through the job path (at most `allowed` seconds), record it as a bundle
    named `bundle` and summarise it."""
    from explorer.reproduce import reproduce, write_bundle
    from explorer.store import RunStore

    store = RunStore()
    result = reproduce(preset_key, config=config, store=store, report=False, budget_s=0.95 * allowed)
    folder = write_bundle(store, result, suite.bundles / bundle, 0.95 * allowed)
    steps = store.steps(result.run_id)
    trained = int(steps.step.max()) + 1
    images_per_s = trained * config.optim.batch_size / max(float(steps.wall.max()), 1e-9)
    total, per_epoch = config.run_steps()
    evals = store.evals(result.run_id)
    last = evals[evals.step == evals.step.max()].set_index("model")
    return {"run_id": result.run_id, "bundle": str(folder.relative_to(suite.bundles)), "epochs": config.optim.epochs,
            "batch": config.optim.batch_size, "lr": config.optim.lr, "warmup_epochs": config.optim.warmup_epochs,
            "steps": trained, "of_steps": total, "per_epoch": per_epoch, "images_per_s": round(images_per_s, 1),
            "training_s": round(float(steps.wall.max()), 1),
            "verdict": {"held": result.verdict.held, "figure": result.verdict.figure},
            "test_err": {m: round(float(v), 2) for m, v in last.test_err.items()},
            "train_err": {m: round(float(v), 2) for m, v in last.train_err.items()}}


def fitted_epochs(epochs: float, images: int, rate: float | None, seconds: float) -> float:
    """`epochs`, or fewer where `rate` (images/s) says they would not fit `seconds` of training."""
    if not rate:
        return epochs
    return max(1.0, min(epochs, math.floor(10 * max(seconds - STARTUP_S, 0.0) * rate / images) / 10))


def lockstep_rate(rates: list[float]) -> float | None:
    """Images/s of models trained in lockstep, from their rates alone: each image passes through every model."""
    return 1 / sum(1 / r for r in rates) if rates and all(rates) else None


def table6_section(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> dict:
        from explorer.presets import PRESETS
        from explorer.reproduce import tiny_run
        from explorer.sizing import instrumented

        config = PRESETS["table6"].config(None, suite.device, "synthetic" if suite.tiny else "cifar10")
        total_images = config.data.subset
        trainer_rates = {row["model"]: statistics.median(row["trainer"]) for row in suite.result("overhead") or []}
        rate = lockstep_rate([trainer_rates.get(label) for label in config.labels])
        paper_steps = 64_000  # He et al. 2015 §4.2: 64k iterations at batch 128
        if suite.tiny:
            config = tiny_run(config)
        else:
            epochs = fitted_epochs(config.optim.epochs, total_images, rate, 0.95 * allowed)
            if epochs < config.optim.epochs:
                print(f"Table 6 compressed further, to {epochs} epochs, to fit {allowed:.0f} s at {rate:.0f} lockstep "
                      "img/s: expect more error than the preset's 50 epochs")
                config = instrumented(replace(config, optim=replace(config.optim, epochs=epochs)))
        summary = recorded_run(suite, "table6", config, allowed, "table6")
        length = f"{config.optim.steps} steps" if config.optim.steps else f"{config.optim.epochs:g} epochs"
        summary["schedule"] = f"{config.optim.schedule}, {length}, warm-up {config.optim.warmup_epochs:g} epochs"
        summary["predicted_lockstep_images_per_s"] = None if rate is None else round(rate, 1)
        summary["paper_schedule_s"] = round(paper_steps * 128 / summary["images_per_s"], 0)
        print(json.dumps(summary, indent=2))
        return summary
    return run


def classic_section(suite: Suite, large: bool) -> Callable[[float], Any]:
    """The classic demo at full scale: batch 128, or `suite.large_batch` with the learning rate scaled by the same
    factor and a gradual warm-up over 2 epochs, from a tenth of the rate as every warm-up here (Goyal et al. 2017:
    the linear scaling rule, §2.1, and gradual warm-up, §2.2, over 5 of 90 epochs there). Goyal et al. found the
    large batch's curves, per epoch, on the small batch's once the warm-up is over (ImageNet, up to 8k images): the
    two recorded runs show whether that holds here, and how much sooner in seconds the degradation shows."""
    def run(allowed: float) -> dict:
        from explorer.presets import PRESETS
        from explorer.reproduce import tiny_run
        from explorer.sizing import instrumented
        from explorer.store import RunStore

        config = PRESETS["degradation"].config(None, suite.device, "synthetic" if suite.tiny else "cifar10")
        config = replace(config, models=classic_config(suite, 2).models)
        config = tiny_run(config, steps=8) if suite.tiny else config
        scale = suite.large_batch / config.optim.batch_size if large else 1.0
        variants = suite.result("lockstep variants") or {}
        layout = variants.get("trainer_layout", "separate")
        rate = (variants.get("large_batch_images_per_s", {}) if large else
                variants.get("lockstep_images_per_s", {})).get(layout)
        epochs = fitted_epochs(suite.classic_epochs, config.data.subset, rate, 0.95 * allowed)
        optim = replace(config.optim, epochs=epochs, batch_size=round(config.optim.batch_size * scale),
                        lr=config.optim.lr * scale, warmup_epochs=2.0 if large else config.optim.warmup_epochs)
        config = replace(config, optim=optim)
        config = config if suite.tiny else instrumented(config)
        summary = recorded_run(suite, "degradation", config, allowed, f"degradation-batch{config.optim.batch_size}")
        summary["layout"] = layout
        summary["thirty_epochs_s"] = round(30 * config.data.subset / summary["images_per_s"], 1)
        summary.update(criterion(RunStore().steps(summary["run_id"]), summary["per_epoch"]))
        print(json.dumps(summary, indent=2))
        base = suite.result("classic demo")
        if large and base:
            print(side_by_side(base, summary))
        return summary
    return run


def side_by_side(base: dict, large: dict) -> str:
    """What the larger batch did to the classic demo's curves, beside batch 128's."""
    def line(run: dict) -> str:
        return (f"batch {run['batch']:4d}, lr {run['lr']:.2f}: {run['images_per_s']:8.0f} img/s, criterion first "
                f"held at {run.get('first_held_s')} s (epoch {run.get('first_held_epoch')}), held from "
                f"{run.get('held_from_s')} s; after {run['steps']} steps: train error {run.get('final_train_err')}, "
                f"test error {run['test_err']}")
    return "the larger batch beside the classic demo's:\n  " + line(base) + "\n  " + line(large)


def memory_section(suite: Suite) -> Callable[[float], Any]:
    def run(allowed: float) -> list:
        from bench.memory import measure

        configs = [("resnet20", 128, "bf16"), ("resnet56,plain56", 128, "bf16"), ("resnet110", 128, "bf16"),
                   ("resnet56", 512, "bf16"), ("resnet56", 128, "fp32")]
        if suite.tiny:
            configs = [("resnet8", 16, "fp32")]
        rows = []
        for models, batch, precision in configs:
            row = measure(models, batch, precision, suite.device)
            row["error"] = round(row["predicted"] / row["measured"] - 1, 3) if row["measured"] > 0 else None
            rows.append(row)
            error = f"{row['error']:+.1%}" if row["error"] is not None else "nothing measured"
            print(f"{models:20s} batch {batch:4d} {precision}: measured {row['measured'] / 1e6:8.1f} MB, predicted "
                  f"{row['predicted'] / 1e6:8.1f} MB ({error})")
            if suite.device == "cuda":
                torch.cuda.empty_cache()
        return rows
    return run


# --- the whole pass -----------------------------------------------------------------------------------------------
def targets(suite: Suite) -> dict[str, Any]:
    """Issue 18's targets beside what this pass measured (None: not measured)."""
    classic, table6, app, large = (suite.result(name) or {} for name in ("classic demo", "table6", "app path",
                                                                        f"classic demo, batch {suite.large_batch}"))
    ratios = {row["model"]: row["ratio"] for row in suite.result("overhead") or []}
    return {
        "classic_30_epochs_s": (classic.get("thirty_epochs_s"), TARGETS["classic_30_epochs_s"]),
        "criterion_s": (classic.get("first_held_s"), TARGETS["criterion_s"]),
        "trainer_over_bare": (min(ratios.values()) if ratios else None, TARGETS["trainer_over_bare"]),
        "first_point_s": (app.get("first_point_s"), TARGETS["first_point_s"]),
        "table6_s": (table6.get("training_s"), TARGETS["table6_s"]),
        "table6_test_err": (table6.get("test_err"), "ResNet-20 ≤ 9.25, ResNet-56 ≤ 7.47"),
        "large_batch_30_epochs_s": (large.get("thirty_epochs_s"), TARGETS["classic_30_epochs_s"]),
        "large_batch_criterion_s": (large.get("first_held_s"), TARGETS["criterion_s"]),
    }


def run_all(suite: Suite) -> None:
    large = suite.large_batch
    suite.section("environment", environment(suite), cap=60)
    suite.section("data", data_section(suite), cap=90)
    suite.section("cuda tests", cuda_tests(suite), cap=60, reserve=300)
    suite.section("calibration", calibration_section(suite), cap=20, reserve=290)
    suite.section("lockstep variants", variants_section(suite), cap=45, reserve=260, minimum=20)
    suite.section("overhead", overhead_section(suite), cap=35, reserve=240, minimum=15)
    suite.section("app path", app_section(suite), cap=45, reserve=220, minimum=25)
    suite.section("table6", table6_section(suite), cap=TARGETS["table6_s"], reserve=TABLE6_RESERVE, minimum=60)
    suite.section("classic demo", classic_section(suite, large=False), cap=45, reserve=35, minimum=25)
    suite.section(f"classic demo, batch {large}", classic_section(suite, large=True), cap=45, minimum=25)
    suite.section("memory model", memory_section(suite), cap=20, minimum=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="tiny inputs: checks the code, measures nothing")
    parser.add_argument("--out", type=Path, default=None, help="default $OUT, else out/gpu_suite")
    parser.add_argument("--budget", type=float, default=None, help="seconds in all (default 450; tiny 120)")
    parser.add_argument("--only", default=None, help="comma-separated section names to run (default: all)")
    parser.add_argument("--large-batch", type=int, default=512, help="the larger batch of the classic demo")
    parser.add_argument("--classic-epochs", type=float, default=30.0)
    parser.add_argument("--pytest-k", default=None, help="run only the CUDA tests matching this -k expression")
    args = parser.parse_args(argv)
    out = args.out or Path(os.environ.get("OUT") or REPO / "out" / "gpu_suite")
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget or (120.0 if args.tiny else 450.0)
    work = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    os.environ.update(EXPLORER_STORE=str(work / "runs" / "explorer.sqlite"), EXPLORER_DATA_DIR=str(work / "data"),
                      EXPLORER_CACHE_DIR=str(work / "cache"), EXPLORER_CHECKPOINT_SECONDS="60")
    suite = Suite(out, budget, args.tiny, args.device, work, args.large_batch if not args.tiny else 32)
    suite.classic_epochs = args.classic_epochs
    suite.only = set(args.only.split(",")) if args.only else None
    suite.pytest_k = args.pytest_k
    with open(out / "suite.log", "w") as log, redirect_stdout(Tee(sys.__stdout__, log)):
        print(f"gpu suite: device {args.device}, budget {budget:.0f} s, tiny {args.tiny}, out {out}")
        run_all(suite)
        if suite.bundles.exists():
            with tarfile.open(out / "bundles.tar.gz", "w:gz") as archive:
                archive.add(suite.bundles, arcname="gpu")
        suite.results["targets"] = targets(suite)
        print("\n=== summary ===")
        for name, section in suite.results["sections"].items():
            line = ("error: " + section["error"]) if "error" in section else section.get("skipped") or \
                f"{section['seconds']} s"
            print(f"{name:28s} {line}")
        print("\n=== targets (measured, target) ===")
        for name, (measured, target) in suite.results["targets"].items():
            print(f"{name:28s} {measured}  (target {target})")
        suite.save()
    failed = [name for name, s in suite.results["sections"].items() if "error" in s]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
