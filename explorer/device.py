"""The device policy: where and how a run computes, resolved once from its Config and used by every step.

One `DevicePolicy` answers, for the trainer, the estimate, the memory check and the benchmarks alike: which device,
which autocast dtype (bf16 on a GPU and on CPUs with bf16 units, else fp32), channels_last memory format, CPU
threads, whether steps replay as CUDA graphs, whether lockstep models run on their own CUDA streams, and whether
cuDNN may pick non-deterministic kernels.

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
from typing import Iterator

import torch

from .config import Config, ConfigError


def resolve_device(requested: str) -> torch.device:
    """``auto`` is the GPU when there is one; ``cuda`` without one is a `ConfigError`."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was requested but this machine has no CUDA GPU: use device auto or cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested not in ("cpu", "cuda"):
        raise ConfigError(f"device {requested!r} is not auto, cpu or cuda")
    return torch.device(requested)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@functools.cache
def cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX or AVX-512 BF16): there bf16 autocast is several times
    faster than fp32; elsewhere it is slower, so ``precision=auto`` stays fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def _env_switch(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if value == "" else value in ("1", "true", "yes")


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None computes in fp32
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
        device = resolve_device(config.device)
        cuda = device.type == "cuda"
        bf16 = config.precision == "bf16" or (config.precision == "auto" and (cuda or cpu_has_bf16_units()))
        return cls(
            device=device,
            dtype=torch.bfloat16 if bf16 else None,
            channels_last=True,
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
        return device_name(self.device)

    @property
    def precision(self) -> str:
        return "bf16" if self.dtype is torch.bfloat16 else "fp32"

    def apply(self) -> None:
        """Set the process-wide switches this policy needs (threads, cuDNN); call before building models."""
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.cuda:
            torch.backends.cudnn.benchmark = not self.deterministic
            torch.backends.cudnn.deterministic = self.deterministic

    def autocast(self) -> contextlib.AbstractContextManager:
        # Autocast's weight cast cache must be off while a CUDA graph is captured (PyTorch's graph docs).
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None,
                              cache_enabled=False if self.cuda_graphs else None)

    def to_device(self, model: torch.nn.Module) -> torch.nn.Module:
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        return model.to(self.device, memory_format=memory_format)

    def memory_in_use(self) -> int | None:
        """Bytes the GPU's allocator holds now (None on a CPU)."""
        return torch.cuda.memory_allocated(self.device) if self.cuda else None

    @contextlib.contextmanager
    def side_stream(self, stream: "torch.cuda.Stream | None") -> Iterator[None]:
        """Run the enclosed work on `stream` after everything queued so far on the current stream (no-op for
        None); `join` makes the current stream wait for it again."""
        if stream is None:
            yield
            return
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            yield

    def new_stream(self) -> "torch.cuda.Stream | None":
        return torch.cuda.Stream(self.device) if self.streams else None

    def join(self, streams: list) -> None:
        current = torch.cuda.current_stream(self.device) if self.cuda else None
        for stream in streams:
            if stream is not None:
                current.wait_stream(stream)
