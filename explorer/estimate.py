"""How long a run will take, predicted in milliseconds from a per-machine calibration that workers measure.

A training step of one model costs a fixed overhead, a cost per weighted layer (kernel launches, Python) and a cost
per multiply-add; `calibrate` times the trainer's own step (`explorer.step.TrainStep`) on a few reference nets and
batch sizes on the worker's device, fits those three numbers by least squares, and the worker stores them
(`RunStore.save_calibration`). `estimate` then prices any configuration by arithmetic alone: the web server never
builds a model or times a step to answer "how long?", so a click costs milliseconds, and a net that would not
fit in memory is priced without trying. Evaluations and probes are forward passes, a third of a step's
multiply-adds (the backward pass costs about two forwards).

Before a worker has calibrated, `DEFAULT_CALIBRATIONS` stand in (measured on the machines named there) and the
estimate says it is uncalibrated.
"""

from __future__ import annotations

import functools
import math
import socket
import statistics
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from .config import FINAL_TRAIN_IMAGES, PROBE_IMAGES, Config, ModelConfig
from .device import DevicePolicy
from .memory import MemoryEstimate, predict
from .plan import plan_net

FORWARD_SHARE = 1 / 3  # multiply-adds of a forward pass relative to a training step
EVAL_BATCH = 500
# (model label, batch): small and large batches on a shallow and a deeper net separate the three costs.
# The nets a calibration times. On a CPU, quarter-width nets as the CPU presets train them: their small convolutions
# cost per layer more than per multiply-add, which full-width references alone missed (the classic demo priced at
# 93 s against 258 s measured; with these, 216 s).
REFERENCE_STEPS = {"cpu": (("resnet8", 8), ("resnet20", 32), ("resnet20-w0.25", 32), ("resnet56-w0.25", 32)),
                   "cuda": (("resnet20", 32), ("resnet20", 512), ("resnet56", 128), ("resnet110", 64))}
TIMED_STEPS = 3


@dataclass(frozen=True)
class Calibration:
    """Seconds per step = step_s + layer_s × layers + gmac_s × (giga multiply-adds of forward and backward)."""

    machine: str
    device: str
    precision: str
    step_s: float
    layer_s: float
    gmac_s: float
    memory_bytes: int | None = None  # the device's memory (GPUs), for the memory guard
    torch_version: str = ""
    measured: str = ""  # when; empty for a default
    correction: float = 1.0  # measured / predicted seconds of the runs this device finished lately (`learned`)
    learned_from: int = 0  # how many runs `correction` comes from

    @property
    def device_kind(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"

    def step_seconds(self, layers: int, macs: int, batch: int) -> float:
        return self.step_s + self.layer_s * layers + self.gmac_s * 3 * macs * batch / 1e9

    def forward_seconds(self, layers: int, macs: int, images: int, batch: int = EVAL_BATCH) -> float:
        batches = math.ceil(images / batch)
        return batches * (self.step_s + self.layer_s * layers) * FORWARD_SHARE + self.gmac_s * macs * images / 1e9

    def to_row(self) -> dict:  # what the store keeps: the timing, not what was learned from runs
        return {"machine": self.machine, "device": self.device, "precision": self.precision,
                "torch_version": self.torch_version, "measured": self.measured, "step_s": self.step_s,
                "layer_s": self.layer_s, "gmac_s": self.gmac_s, "memory_bytes": self.memory_bytes}


# Until a worker has timed this machine. GPU: measured with `calibrate` on an H200 with PyTorch 2.11
# (bench/results/gpu-h200-run1.json). CPU fp32: one thread, as every CPU preset trains, fitted to the classic demo and
# the depth sweep as this project's 2-core machine trained them (258 s and 509 s of wall time, bench/estimates.py;
# the reference-step timing had priced them 3.5x too fast); a run on more threads is over-estimated until a worker
# times the machine or a run finishes here.
DEFAULT_CALIBRATIONS: dict[tuple[str, str], Calibration] = {
    ("cpu", "fp32"): Calibration("default", "cpu", "fp32", step_s=6.9e-3, layer_s=1.38e-3, gmac_s=0.069),
    ("cpu", "bf16"): Calibration("default", "cpu", "bf16", step_s=2e-3, layer_s=6e-4, gmac_s=0.02),
    ("cuda", "bf16"): Calibration("default", "cuda", "bf16", step_s=4.6e-4, layer_s=4.9e-5, gmac_s=5.6e-5),
    ("cuda", "fp32"): Calibration("default", "cuda", "fp32", step_s=0.0, layer_s=7.6e-5, gmac_s=8.5e-5),
}


@dataclass(frozen=True)
class Estimate:
    """Predicted seconds of a run's training (data loading excluded), its peak memory, and how sure it is."""

    seconds: float
    steps: int
    images_per_s: dict[str, float]  # training images per second of each model alone
    memory: MemoryEstimate
    device: str
    calibrated: bool
    learned_from: int = 0  # finished runs on this device the estimate was corrected by

    @property
    def peak_memory_bytes(self) -> int:
        return self.memory.total

    def summary(self) -> str:
        if self.learned_from:
            note = f" (learned from the last {self.learned_from} run{'s' if self.learned_from > 1 else ''} here)"
        elif not self.calibrated:
            note = " (uncalibrated: no worker has timed this machine yet)"
        else:
            note = ""
        return (f"about {format_seconds(self.seconds)} for {self.steps:,} steps on {self.device}; peak memory about "
                f"{self.memory.summary()}{note}")


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@functools.lru_cache(maxsize=256)
def model_cost(cfg: ModelConfig, num_classes: int = 10) -> tuple[int, int]:
    """(weighted layers, forward multiply-adds per image) of a net, from its plan."""
    plan = plan_net(cfg, num_classes)
    return plan.depth, plan.macs


def estimate(config: Config, calibration: Calibration) -> Estimate:
    """Price `config` on the calibrated device: arithmetic only."""
    total, per_epoch = config.run_steps()
    batch = min(config.optim.batch_size, config.data.subset)
    classes = len(config.data.classes) or 10
    evals = math.ceil(total / config.evaluation_interval())
    probes = math.ceil(total / config.probe_every) if config.probe_every else 0
    eval_images = 2 * min(config.eval_images, config.data.subset)
    final_images = min(max(config.eval_images, FINAL_TRAIN_IMAGES), config.data.subset) + config.data.test_subset
    seconds, rates = 0.0, {}
    for model in config.models:
        layers, macs = model_cost(model, classes)
        step = calibration.step_seconds(layers, macs, batch)
        rates[model.label] = batch / step
        seconds += total * step + probes * (calibration.forward_seconds(layers, macs, PROBE_IMAGES) + 2e-3)
        seconds += (evals - 1) * calibration.forward_seconds(layers, macs, eval_images)
        seconds += calibration.forward_seconds(layers, macs, final_images)
    memory = predict(config, calibration.device_kind, calibration.precision)
    return Estimate(seconds=seconds * calibration.correction, steps=total, images_per_s=rates, memory=memory,
                    device=calibration.device, calibrated=bool(calibration.measured),
                    learned_from=calibration.learned_from)


LEARN_FROM = 5  # the latest finished runs an estimate learns from
MIN_MEASURED_S = 20.0  # shorter runs are mostly start-up: they would teach the wrong pace


def learned(calibration: Calibration, finished: list[tuple[Config, float]]) -> Calibration:
    """`calibration` corrected by the runs its device finished (newest first: each run's configuration and its
    measured training seconds): times the median of measured / predicted over the latest `LEARN_FROM` runs of at
    least `MIN_MEASURED_S`, kept within 4x either way. The timed reference steps miss what a whole run adds (probes,
    evaluations, the recorder, a busy machine); the runs themselves do not. An estimate then moves only when a run
    finishes, never from one page load to the next."""
    base = replace(calibration, correction=1.0, learned_from=0)
    ratios = []
    for config, measured in finished:
        predicted = estimate(config, base).seconds
        if measured >= MIN_MEASURED_S and predicted > 0:
            ratios.append(measured / predicted)
        if len(ratios) == LEARN_FROM:
            break
    if not ratios:
        return base
    return replace(base, correction=float(np.clip(np.median(ratios), 0.25, 4.0)), learned_from=len(ratios))


def calibrate(policy: DevicePolicy, timed_steps: int = TIMED_STEPS,
              interrupted: Callable[[], bool] = lambda: False) -> Calibration | None:
    """Time the trainer's step on the reference nets on `policy`'s device and fit the cost model (a few seconds);
    None as soon as `interrupted` says so (checked between steps: a waiting run goes first). Runs in a worker:
    PyTorch is imported here, not by the web server that reads calibrations."""
    import torch

    from .config import OptimConfig
    from .models import build_model
    from .step import TrainStep, make_optimizer

    policy.apply()  # its thread count: a calibration is named after it (cpu (1 threads), cpu (2 threads))
    rows, times = [], []
    for label, batch in REFERENCE_STEPS[policy.device.type]:
        if interrupted():
            return None
        cfg = ModelConfig.parse(label)
        model = policy.to_device(build_model(cfg, seed=0))
        step = TrainStep(model, make_optimizer(model, OptimConfig(), policy), policy)
        layout = torch.channels_last if policy.channels_last else torch.contiguous_format
        x = torch.randn(batch, 3, 32, 32).to(policy.device, memory_format=layout)
        y = torch.randint(10, (batch,)).to(policy.device)
        step(x, y, 0.01)  # warm-up (and graph capture), not timed
        samples = []
        for _ in range(timed_steps):
            if interrupted():
                return None
            _synchronize(policy)
            started = time.perf_counter()
            step(x, y, 0.01)
            _synchronize(policy)
            samples.append(time.perf_counter() - started)
        layers, macs = model_cost(cfg)
        rows.append([1.0, layers, 3 * macs * batch / 1e9])
        times.append(statistics.median(samples))
    coefficients, *_ = np.linalg.lstsq(np.array(rows), np.array(times), rcond=None)
    step_s, layer_s, gmac_s = (max(float(c), 0.0) for c in coefficients)
    if gmac_s == 0.0:  # a degenerate fit (noisy machine): charge everything per multiply-add
        gmac_s = sum(times) / sum(r[2] for r in rows)
    memory = torch.cuda.get_device_properties(policy.device).total_memory if policy.cuda else None
    return Calibration(machine=socket.gethostname(), device=policy.name, precision=policy.precision, step_s=step_s,
                       layer_s=layer_s, gmac_s=gmac_s, memory_bytes=memory, torch_version=torch.__version__,
                       measured=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _synchronize(policy: DevicePolicy) -> None:
    import torch

    if policy.cuda:
        torch.cuda.synchronize(policy.device)


def calibration_for(rows: list[dict], device_kind: str, precision: str, machine: str | None = None,
                    device: str | None = None) -> Calibration:
    """The newest stored calibration of a device kind and precision (on `machine` for CPUs: another host's CPU
    says nothing about this one), of the named `device` when there is one (a CPU with as many threads as the run
    will use: one thread and two are different machines to a small net), else the default."""
    fitting = [row for row in rows if row["precision"] == precision and str(row["device"]).startswith(device_kind)
               and (device_kind == "cuda" or machine is None or row["machine"] == machine)]
    for row in sorted(fitting, key=lambda r: device is not None and r["device"] != device):
        memory = row.get("memory_bytes")
        return Calibration(**{**row, "memory_bytes": None if memory is None or memory != memory else int(memory)})
    default = DEFAULT_CALIBRATIONS.get((device_kind, precision)) or replace(
        DEFAULT_CALIBRATIONS[(device_kind, "fp32")], precision=precision)
    # until measured; named after the device asked for, so the runs it finishes correct it (`learned`)
    return replace(default, device=device) if device else default
