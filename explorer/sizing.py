"""How big a preset's run is on each kind of device, and how it shrinks to fit a time budget.

- CPU: 1,000 CIFAR-10 images without augmentation, every net at a quarter of its width, batch 32, lr 0.05 with a
  1-epoch warm-up then cosine over 20 epochs, bf16 where the CPU has bf16 units, one thread, the paper's standard
  initialisation (`CPU_SETTINGS`). Measured with bench/degradation.py (3 seeds, real CIFAR-10, 2 busy cores):
  plain-56 trails plain-20 by 10 points and ResNet-56 leads plain-56 by 10 from epoch 5-7 (about 30-40 s of
  training at 1 thread), every seed; ResNet-56 level with ResNet-20 (within 2 points) from epoch 14 in 2 of 3 seeds
  (about 80 s). Steps matter more than images (batch 32 beat 64 and 16), lr 0.05 beat 0.1 and 0.2, the warm-up is
  needed for ResNet-56 to catch up, and with 2 threads on 2 cores these small nets ran slower than with 1.
- GPU: the paper's regime, the full 50,000 training images with pad-and-crop and flip augmentation (He et al. 2015
  §4.2), 30 epochs, cosine schedule.

Evaluations are spread about `EVALS_PER_RUN` times over a run (so test error is a curve) on as many images as keep
them within `EVAL_SHARE` of the training compute; probes every few steps within `PROBE_SHARE`. With a time budget,
the epochs (or steps) shrink to fit it as the calibrated estimate prices them (`explorer.estimate`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Mapping

from . import device as device_policy
from .config import PROBE_IMAGES, WIDTHS, Config
from .estimate import FORWARD_SHARE, Calibration, estimate

EVAL_SHARE = 0.1  # evaluations cost at most this share of the training compute
PROBE_SHARE = 0.05  # probes likewise
EVALS_PER_RUN = 24
MAX_PROBES = 200
EVAL_IMAGES_RANGE = (100, 2000)
BUDGET_SHARE = 0.9  # a budgeted run is sized to end before the budget cuts it, final evaluation included

CPU_SETTINGS: dict[str, str] = {"subset": "1000", "test": "1000", "augment": "0", "batch": "32", "lr": "0.05",
                                "schedule": "cosine", "warmup": "1", "epochs": "20", "precision": "auto", "threads": "1"}
CPU_WIDTH = 0.25  # on a CPU every net runs at this fraction of its width (4/8/16 channels for a CIFAR ResNet)
GPU_SETTINGS: dict[str, str] = {"subset": "50000", "test": "10000", "augment": "1", "batch": "128", "lr": "0.1",
                                "schedule": "cosine", "warmup": "1", "epochs": "30", "precision": "auto"}
DEVICE_SETTINGS: dict[str, dict[str, str]] = {"cpu": CPU_SETTINGS, "cuda": GPU_SETTINGS}


def device_kind(device: object) -> str:
    """``cpu`` or ``cuda``: the kind of device a run is sized for (a name or a torch device). ``auto`` is what this
    machine shows (`explorer.device.device_kind`'s rule); either kind can be sized on any machine."""
    requested = str(device).split(":")[0]
    return device_policy.device_kind(requested, requested == "cuda" or device_policy.visible_gpus() > 0)


def instrumented(config: Config) -> Config:
    """`config` with evaluations and probes spaced to stay within their shares of the training compute."""
    total, _ = config.run_steps()
    batch = min(config.optim.batch_size, config.data.subset)
    every = max(1, math.ceil(total / EVALS_PER_RUN))
    evals = math.ceil(total / every)
    images = EVAL_SHARE * total * batch / (evals * 2 * FORWARD_SHARE)  # a training and a test sample per evaluation
    low, high = EVAL_IMAGES_RANGE
    eval_images = int(min(high, max(low, round(images, -1)), config.data.subset))
    probe_every = max(math.ceil(FORWARD_SHARE * PROBE_IMAGES / (PROBE_SHARE * batch)), total // MAX_PROBES)
    return replace(config, eval_every=every, eval_images=max(10, eval_images),
                   probe_every=probe_every)


def shortened(config: Config, fraction: float) -> Config:
    """The run cut to `fraction` of its epochs (or steps), its warm-up alike (but at least one epoch of it)."""
    optim = config.optim
    if fraction >= 1:
        return config
    if optim.steps:
        optim = replace(optim, steps=max(2, int(optim.steps * fraction)))
    else:
        warmup = max(optim.warmup_epochs * fraction, min(optim.warmup_epochs, 1.0))
        optim = replace(optim, epochs=max(1.0, round(optim.epochs * fraction, 1)), warmup_epochs=round(warmup, 2))
    return replace(config, optim=optim)


def narrowed(config: Config) -> Config:
    """Every net at `CPU_WIDTH` of its width (a net at width 2 goes to 0.5): the CPU sizing."""
    def narrow(width: float) -> float:
        return min(WIDTHS, key=lambda w: abs(w - width * CPU_WIDTH))

    return replace(config, models=tuple(replace(m, width=narrow(m.width)) for m in config.models))


def sized(query: Mapping[str, str], kind: str, data_source: str, name: str) -> Config:
    """A preset's run on a device kind: the device's settings, then the preset's (URL keys); narrowed on a CPU."""
    config = Config.from_query({**DEVICE_SETTINGS[kind], **query, "data": data_source, "device": kind, "name": name})
    return instrumented(narrowed(config) if kind == "cpu" else config)


def fit_budget(config: Config, budget_s: float, calibration: Calibration) -> Config:
    """`config` shortened so that its estimate fits `BUDGET_SHARE` of the budget."""
    seconds = estimate(config, calibration).seconds
    if seconds <= BUDGET_SHARE * budget_s:
        return config
    return instrumented(shortened(config, BUDGET_SHARE * budget_s / seconds))


def budgeted(make: Callable[[], Config], budget_s: float | None, calibration: Calibration | None) -> Config:
    config = make()
    return config if budget_s is None or calibration is None else fit_budget(config, budget_s, calibration)
