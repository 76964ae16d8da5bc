"""The device policy: where and how a run computes, decided here once and asked by everything else.

Two rules decide a run's device and precision, and they need no PyTorch, so the web server (which queues and prices
runs without loading it) asks the same functions as the worker:

- `device_kind`: ``auto`` is a GPU where one is available, else the CPU; ``cuda`` without one is refused.
- `precision_on`: ``auto`` is bf16 autocast on a GPU and on CPUs with bf16 units (AMX or AVX-512 BF16, several
  times faster there), else fp32 (bf16 without the units is slower). The precisions themselves, and the dtype each
  computes in, are the configuration's vocabulary (`explorer.config.AUTOCAST_DTYPES`); `calibrated_precisions` says
  which a worker times for the estimates.

`DevicePolicy.resolve` applies them for a process that trains, and adds what only a trainer needs: channels_last
memory format, CPU threads, whether steps replay as CUDA graphs, whether lockstep models run on their own CUDA
streams, and whether cuDNN may pick non-deterministic kernels. PyTorch is imported where a policy uses it.

CUDA graphs: a CIFAR ResNet step at batch 128 is hundreds of small kernels, so on a GPU eager PyTorch waits on the
CPU launching them; replaying the captured forward and backward as one graph removes that cost (bench/gpu_suite.py
measures it). Streams let the lockstep twins overlap on the GPU, since one small net does not fill it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .config import AUTOCAST_DTYPES, DEVICES, Config, ConfigError

if TYPE_CHECKING:
    import torch

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the driver sees
CPU_INFO = Path("/proc/cpuinfo")


# --- the rules (no PyTorch) ---------------------------------------------------------------------------------------
def device_kind(requested: str, gpu_available: bool) -> str:
    """``cpu`` or ``cuda``: where a run that asks for `requested` (auto, cpu or cuda) computes, where a GPU is or is
    not available; ``cuda`` without one is a `ConfigError`."""
    if requested not in DEVICES:
        raise ConfigError(f"device {str(requested)[:40]!r} is not one of {', '.join(DEVICES)}")
    if requested == "cuda" and not gpu_available:
        raise ConfigError("device cuda was requested but no CUDA GPU is available here (on this machine or any running "
                          "worker): use device auto or cpu")
    if requested == "auto":
        return "cuda" if gpu_available else "cpu"
    return requested


AUTO_PRECISION = "bf16 autocast on a GPU and on CPUs with bf16 units (several times faster), else fp32"


def precision_on(requested: str, kind: str) -> str:
    """The precision a run that asks for `requested` computes in on a device of `kind`: as asked, or for ``auto``
    `AUTO_PRECISION`."""
    if requested != "auto":
        return requested
    return "bf16" if kind == "cuda" or cpu_has_bf16_units() else "fp32"


def calibrated_precisions(kind: str) -> tuple[str, ...]:
    """Every precision a worker on `kind` times for the estimates, the one ``auto`` picks there first."""
    first = precision_on("auto", kind)
    return (first, *(name for name in AUTOCAST_DTYPES if name != first))


@functools.cache
def cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX or AVX-512 BF16), from /proc/cpuinfo's flags."""
    try:
        flags = CPU_INFO.read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def visible_gpus() -> int:
    """GPUs this machine shows its processes, counted without PyTorch: the NVIDIA driver's entries, limited by
    CUDA_VISIBLE_DEVICES (which, like CUDA, stops at its first empty or negative entry)."""
    try:
        present = sum(1 for _ in NVIDIA_GPUS.iterdir())
    except OSError:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return present
    shown = 0
    for entry in visible.split(","):
        if not entry.strip() or entry.strip().startswith("-"):
            break
        shown += 1
    return min(shown, present)


def resolve_device(requested: str) -> "torch.device":
    """The torch device of `requested` in this process: ``auto`` is the GPU when PyTorch sees one."""
    import torch

    return torch.device(device_kind(requested, torch.cuda.is_available()))


def cpu_name(threads: int) -> str:
    """How a CPU computing with `threads` threads is named in runs and calibrations: ``cpu (1 threads)``."""
    return f"cpu ({threads} threads)"


def device_name(device: "torch.device") -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return cpu_name(torch.get_num_threads())


@functools.cache
def default_threads() -> int:
    """PyTorch's own thread count in this process, read before any policy changes it: what threads 0 means."""
    import torch

    return torch.get_num_threads()


def _env_switch(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if value == "" else value in ("1", "true", "yes")


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype (config.AUTOCAST_DTYPES); None computes in fp32
    channels_last: bool
    threads: int  # 0: PyTorch's default
    cuda_graphs: bool
    streams: bool
    deterministic: bool
    # Batched twins (explorer.twins): models of identical parameter shapes share one forward and backward. Off by
    # default (on a CPU it won 1.16x at a quarter width and lost 0.65x at full width; bench/gpu_suite.py measures a
    # GPU); EXPLORER_BATCHED_TWINS=1 turns it on.
    batched_twins: bool = False

    @classmethod
    def resolve(cls, config: Config, *, cuda_graphs: bool | None = None, streams: bool | None = None,
                deterministic: bool | None = None, batched_twins: bool | None = None) -> "DevicePolicy":
        """The policy of `config` on this machine. Graphs, streams and determinism default to the environment's
        EXPLORER_CUDA_GRAPHS, EXPLORER_CUDA_STREAMS and EXPLORER_DETERMINISTIC (benchmarks pass them explicitly);
        batched twins to EXPLORER_BATCHED_TWINS (off when unset)."""
        import torch

        device = resolve_device(config.device)
        cuda = device.type == "cuda"
        dtype = AUTOCAST_DTYPES[precision_on(config.precision, device.type)]
        return cls(
            device=device,
            dtype=getattr(torch, dtype) if dtype else None,
            # On CPUs channels_last was no faster for the CPU demo (311-317 against 322-352 images/s, 2 rounds) and
            # PyTorch 2.14's CPU backward of a stride-2 1x1 conv from 4 channels in that layout corrupts the heap
            # (option B/C shortcuts and Inception branches at a quarter width crashed workers): GPUs only.
            channels_last=cuda,
            threads=config.threads,
            cuda_graphs=cuda and (_env_switch("EXPLORER_CUDA_GRAPHS", True) if cuda_graphs is None else cuda_graphs),
            streams=cuda and (_env_switch("EXPLORER_CUDA_STREAMS", False) if streams is None else streams),
            deterministic=not cuda or (_env_switch("EXPLORER_DETERMINISTIC", False)
                                       if deterministic is None else deterministic),
            batched_twins=_env_switch("EXPLORER_BATCHED_TWINS", False) if batched_twins is None else batched_twins,
        )

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def name(self) -> str:
        """``cpu (1 threads)`` or ``cuda (NVIDIA H200)``: the threads this policy computes with, even before `apply`
        (a worker names the run's device first; the process's count may still be the last run's)."""
        return cpu_name(self.threads or default_threads()) if not self.cuda else device_name(self.device)

    @property
    def precision(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.") if self.dtype is not None else None
        return next(name for name, autocast in AUTOCAST_DTYPES.items() if autocast == dtype)

    def apply(self) -> None:
        """Set the process-wide switches this policy needs (threads, cuDNN); call before building models."""
        import torch

        # threads 0 means PyTorch's default: set it back, or a worker's run after a one-thread run would stay at one
        torch.set_num_threads(self.threads or default_threads())
        if self.cuda:
            torch.backends.cudnn.benchmark = not self.deterministic
            torch.backends.cudnn.deterministic = self.deterministic

    def autocast(self) -> contextlib.AbstractContextManager:
        import torch

        # Autocast's weight cast cache must be off while a CUDA graph is captured (PyTorch's graph docs).
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None,
                              cache_enabled=False if self.cuda_graphs else None)

    def to_device(self, model: torch.nn.Module) -> torch.nn.Module:
        import torch

        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        return model.to(self.device, memory_format=memory_format)

    def memory_in_use(self) -> int | None:
        """Bytes the GPU's allocator holds now (None on a CPU)."""
        import torch

        return torch.cuda.memory_allocated(self.device) if self.cuda else None

    @contextlib.contextmanager
    def side_stream(self, stream: "torch.cuda.Stream | None") -> Iterator[None]:
        """Run the enclosed work on `stream` after everything queued so far on the current stream (no-op for
        None); `join` makes the current stream wait for it again."""
        if stream is None:
            yield
            return
        import torch

        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            yield

    def new_stream(self) -> "torch.cuda.Stream | None":
        import torch

        return torch.cuda.Stream(self.device) if self.streams else None

    def join(self, streams: list) -> None:
        import torch

        current = torch.cuda.current_stream(self.device) if self.cuda else None
        for stream in streams:
            if stream is not None:
                current.wait_stream(stream)
