"""How much memory a run needs, predicted in milliseconds from its Config, and the guard that refuses what will not fit.

A lockstep run keeps every model resident (weights, gradients, optimiser state) but trains one model at a time, so
its peak is the sum of the models' states, plus the largest model's activations at the run's batch size, plus the
images held for training and evaluation. That is what a run is checked against; the worker process around it
(PyTorch itself, `PROCESS_BYTES`) is already resident and is reported, not charged. Activations are counted exactly:
the bytes autograd saves for the backward pass, read from the net's plan (`explorer.plan`: arithmetic, no PyTorch,
checked against autograd's saved-tensor hooks by tests/test_plan.py) and scaled by the block type's memory factor.
`ACTIVATION_FACTOR` turns saved bytes into peak bytes per device and precision (gradients of activations alive
during the backward pass, workspace, bf16 copies, what the allocator keeps); it was fitted to measured peaks and is
checked against measured peaks by tests/test_memory.py (never more than 25% below the peak; at most 25% above it,
45% for bf16 on the CPU, whose peaks vary) and bench/memory.py.

`check` refuses a run over the limit (the machine's free memory, or EXPLORER_MEMORY_LIMIT) with `ResourceError`:
the figure, the limit, and the largest batch that would fit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from .config import Config, ModelConfig
from .plan import plan_net
from .settings import available_ram, settings

IMAGE_BYTES = 3 * 32 * 32  # one uint8 image
CIFAR10_IMAGES = 60_000  # a worker keeps a disk source's whole set in memory between jobs
SYNTHETIC_CHUNK_BYTES = 3 * 5000 * IMAGE_BYTES * 4  # float32 intermediates while rendering a chunk of images
# Peak bytes per saved activation byte (fp32-equivalent, traced), per (device kind, precision), plus a constant
# workspace (cuDNN): fitted to peaks measured with bench/memory.py (CPU: PyTorch 2.14, one thread) and
# bench/gpu_suite.py (an H200, PyTorch 2.11; bench/results/gpu-h200-run1.json). On the CPU the peak is the worker's
# own, under its allocator policy (`return_freed_memory`): glibc keeps freed activations for the next step, so a
# run peaks above what it needs (1.32-1.77 saved bytes per byte in fp32 where a fixed mmap threshold measured
# 1.06). bf16 autocast leaves the heap most fragmented, and its peak varies from run to run: 539-974 MB for
# resnet56,plain56 at batch 64 (0.56 under the fixed threshold); its factor sits near the top of what was measured.
ACTIVATION_FACTOR: dict[tuple[str, str], float] = {
    ("cpu", "fp32"): 1.45, ("cpu", "bf16"): 2.7, ("cuda", "fp32"): 1.05, ("cuda", "bf16"): 0.52,
}
WORKSPACE_BYTES = {"cpu": 0, "cuda": 64_000_000}
PROCESS_BYTES = {"cpu": 450_000_000, "cuda": 600_000_000}  # PyTorch and the worker itself (host RAM / CUDA context)


class ResourceError(RuntimeError):
    """A run would not fit in the memory this server allows; the message gives the figure and what to change."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak bytes of a run on one device, and its parts."""

    total: int  # what the run itself needs: states + activations + data
    states: int  # every model's weights, gradients and optimiser state
    activations: int  # the largest model's activations at the run's batch size
    data: int  # images held for training and evaluation
    process: int  # PyTorch and the worker process around the run (already resident before it starts)
    device_kind: str

    def summary(self) -> str:
        return (f"{format_bytes(self.total)} ({format_bytes(self.activations)} activations, "
                f"{format_bytes(self.states)} weights and optimiser state, {format_bytes(self.data)} images)")


def format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit in ("B", "KB") else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


@functools.lru_cache(maxsize=256)
def model_footprint(cfg: ModelConfig, num_classes: int = 10) -> tuple[int, int]:
    """(activation bytes charged per image in fp32, parameters) of a net: the bytes its plan saves for the backward
    pass times its block type's memory factor."""
    plan = plan_net(cfg, num_classes)
    return round(plan.saved_bytes() * plan.memory_factor), plan.params


def _state_bytes(cfg: Config, parameters: int) -> int:
    slots = 2 if cfg.optim.optimizer == "adam" else (1 if cfg.optim.momentum > 0 else 0)
    return parameters * 4 * (2 + slots)  # weights, gradients, optimiser slots; fp32


def predict(config: Config, device_kind: str, precision: str) -> MemoryEstimate:
    """The peak memory of `config` on a device of `device_kind` (cpu or cuda) computing in `precision` (fp32 or
    bf16): host RAM on a CPU, GPU memory on a GPU."""
    classes = len(config.data.classes) or 10
    footprints = [model_footprint(m, classes) for m in config.models]
    batch = min(config.optim.batch_size, config.data.subset)
    # a precision without a fitted factor is charged as fp32, which keeps the most
    factor = ACTIVATION_FACTOR.get((device_kind, precision), ACTIVATION_FACTOR[(device_kind, "fp32")])
    activations = int(max(saved for saved, _ in footprints) * batch * factor) + WORKSPACE_BYTES[device_kind]
    states = sum(_state_bytes(config, params) for _, params in footprints)
    images = (config.data.subset + config.data.test_subset) * IMAGE_BYTES
    if device_kind == "cpu":
        whole_set = CIFAR10_IMAGES * IMAGE_BYTES if config.data.source != "synthetic" else SYNTHETIC_CHUNK_BYTES
        data = images + whole_set
    else:
        data = images + CIFAR10_IMAGES * IMAGE_BYTES * (config.data.source != "synthetic")
    process = PROCESS_BYTES[device_kind]
    return MemoryEstimate(total=activations + states + data, states=states, activations=activations,
                          data=data, process=process, device_kind=device_kind)


def memory_limit(device_kind: str, device_memory: int | None = None) -> int:
    """The most one run may use: EXPLORER_MEMORY_LIMIT if set, else 80% of the free RAM (CPU) or of the GPU's
    memory (`device_memory`, from the worker's calibration)."""
    configured = settings().memory_limit
    if configured is not None:
        return configured
    if device_kind == "cuda" and device_memory:
        return int(0.8 * device_memory)
    return int(0.8 * available_ram())


def largest_batch(config: Config, device_kind: str, precision: str, limit: int) -> int:
    """The largest batch size (at most 4096) at which `config` fits in `limit` bytes, 0 if not even one image fits:
    a bisection over `predict` (arithmetic on cached footprints), exact where the prediction meets the limit."""
    def fits(batch: int) -> bool:
        return predict(replace(config, optim=replace(config.optim, batch_size=batch)), device_kind,
                       precision).total <= limit

    low, high = 0, 4096  # fits(low) holds (no batch, nothing to check); fits(high) is checked first
    if fits(high):
        return high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def check(config: Config, device_kind: str, precision: str, limit: int | None = None,
          device_memory: int | None = None) -> MemoryEstimate:
    """`predict`, refusing with `ResourceError` when the run would need more than the limit."""
    estimate = predict(config, device_kind, precision)
    limit = limit if limit is not None else memory_limit(device_kind, device_memory)
    if estimate.total > limit:
        where = "GPU memory" if device_kind == "cuda" else "memory"
        fits = largest_batch(config, device_kind, precision, limit)
        advice = (f"use batch ≤ {fits}, or fewer, shallower or narrower models" if fits
                  else "use fewer, shallower or narrower models, or a smaller subset")
        raise ResourceError(f"this run needs about {estimate.summary()} of {where}, more than the "
                            f"{format_bytes(limit)} this server allows per run: {advice}")
    return estimate


def return_freed_memory() -> None:
    """Give what a finished run freed back to the operating system (glibc's ``malloc_trim``; nothing off glibc).

    During a run glibc keeps large freed blocks for reuse, and its dynamic mmap threshold serves the next step's
    activations from them: that is what lets a worker train at the command line's speed. Between runs nothing would
    give them back, and a long-lived worker would hold the peak of every run it trained; workers call this after
    each run and study, which keeps their memory flat across runs (bench/memory.py --worker-runs). A fixed mmap
    threshold (every large block mapped and unmapped at each use) also kept memory flat, but cost a fifth of the
    training speed (bench/overhead.py: 0.79x the bare loop's images/s).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
