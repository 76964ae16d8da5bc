"""How long a run will take and how much memory it needs, measured in a few seconds before it starts.

Each model of the run takes a few real training steps (forward, backward, optimiser) on random images of the
run's batch size, on the target device, with the trainer's settings (channels_last, bf16 autocast, optimizer).
The first step is a warm-up and is not timed; the median of the next ones, per image, scales to the run's
training images, plus its evaluations and probes (a forward pass costs about a third of a training step, as the
backward pass costs about two forwards). On a CPU a model too big for a quick full batch (ResNet-1202) is timed
at a smaller batch, chosen from its multiply-adds, and scaled up linearly, which overestimates a little: small
batches use the hardware less well.

Peak memory adds every model's parameters, gradients and optimiser state (all models stay resident in lockstep),
the largest model's activations at the run's batch size, and the training images kept on the device. Activations
are CUDA's measured peak on a GPU, and on a CPU the bytes autograd saves for the backward pass.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from .config import Config, ModelConfig
from .models import build_model, describe_config
from .trainer import EVAL_TRAIN_IMAGES, PROBE_IMAGES, device_name, make_optimizer, resolve_device

CPU_STEP_MACS = 50e9  # on a CPU, time at most this many multiply-adds per step (about a second on two cores)
TIMED_STEPS = 3
TIMING_SECONDS = 0.5  # per model, stop timing once this much has been measured (at least one step)
FORWARD_SHARE = 1 / 3  # cost of a forward pass relative to a training step
IMAGE_BYTES = 3 * 32 * 32  # one uint8 image


@dataclass(frozen=True)
class Estimate:
    """Predicted wall time of a run's training (data loading excluded) and its peak memory."""

    seconds: float
    steps: int
    images_per_s: dict[str, float]  # training images per second of each model alone
    peak_memory_bytes: int
    device: str

    def summary(self) -> str:
        return (f"about {format_seconds(self.seconds)} for {self.steps:,} steps on {self.device}; "
                f"peak memory about {format_bytes(self.peak_memory_bytes)}")


@dataclass(frozen=True)
class _Timing:
    seconds_per_image: float
    activation_bytes_per_image: float
    state_bytes: int


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def estimate_seconds(config: Config, device: str | torch.device = "auto") -> Estimate:
    """Time each model of `config` for a moment on `device` and extrapolate to the whole run."""
    device = resolve_device(device) if isinstance(device, str) else device
    total, per_epoch = config.run_steps()
    batch = min(config.optim.batch_size, config.data.subset)
    num_classes = len(config.data.classes) or 10
    evals = math.ceil(total / (config.eval_every or per_epoch))
    probes = math.ceil(total / config.probe_every) if config.probe_every else 0
    forward_images = evals * (min(EVAL_TRAIN_IMAGES, config.data.subset) + config.data.test_subset)
    forward_images += probes * PROBE_IMAGES
    with _threads(config.threads):
        timings = {model.label: _time_model(model, config, device, batch, num_classes) for model in config.models}
        name = device_name(device)
    seconds = sum(t.seconds_per_image * (total * batch + FORWARD_SHARE * forward_images) for t in timings.values())
    data_bytes = (config.data.subset + config.data.test_subset) * IMAGE_BYTES
    peak = (sum(t.state_bytes for t in timings.values()) + data_bytes
            + max(t.activation_bytes_per_image for t in timings.values()) * batch)
    return Estimate(seconds=seconds, steps=total, peak_memory_bytes=int(peak), device=name,
                    images_per_s={label: 1 / t.seconds_per_image for label, t in timings.items()})


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """The trainer's thread count while timing (0 keeps PyTorch's default)."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _time_model(cfg: ModelConfig, config: Config, device: torch.device, batch: int, num_classes: int) -> _Timing:
    model = build_model(cfg, num_classes=num_classes, seed=config.seed)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config.optim)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)
    generator = torch.Generator().manual_seed(config.seed)

    def step(size: int) -> tuple[float, int]:
        """One training step on random images; its seconds and its activation bytes."""
        x = torch.randn(size, 3, 32, 32, generator=generator).to(device, memory_format=torch.channels_last)
        y = torch.randint(num_classes, (size,), generator=generator).to(device)
        with _StepMeter(model, device) as meter:
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                logits = model(x)
            F.cross_entropy(logits.float(), y).backward()
            optimizer.step()
        return meter.seconds, meter.activation_bytes

    timing_batch = batch
    if device.type != "cuda":
        per_image = 3 * describe_config(cfg, num_classes).macs  # forward + backward
        timing_batch = max(1, min(batch, int(CPU_STEP_MACS // per_image)))
    _, activations = step(timing_batch)  # warm-up, not timed
    times: list[float] = []
    while len(times) < TIMED_STEPS and sum(times) < TIMING_SECONDS:
        times.append(step(timing_batch)[0])
    state = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    state += sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)  # gradients
    state += sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                 if torch.is_tensor(t))
    return _Timing(seconds_per_image=statistics.median(times) / timing_batch,
                   activation_bytes_per_image=activations / timing_batch, state_bytes=state)


class _StepMeter:
    """Wall time and activation memory of the training step run inside it.

    On CUDA the activations are the peak allocation above what was allocated before the step; elsewhere they are
    the bytes autograd saves for the backward pass (each storage once, parameters excluded).
    """

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.saved: dict[int, int] = {}
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self.seconds, self.activation_bytes, self._before, self._started = 0.0, 0, 0, 0.0

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.parameters:
            self.saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    def __enter__(self) -> "_StepMeter":
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        else:
            self.hooks.__enter__()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.activation_bytes = torch.cuda.max_memory_allocated(self.device) - self._before
        else:
            self.hooks.__exit__(*exc)
            self.activation_bytes = sum(self.saved.values())
        self.seconds = time.perf_counter() - self._started
