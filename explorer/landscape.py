"""Loss-surface slices of a trained run (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"), for a
plain and a residual twin side by side, priced before they run and stored beside the run store.

Two slices through each chosen model's weight space:

- 1-D, the line from the initial weights θ0 to the trained weights θ1 (Goodfellow et al. 2015):
  θ(α) = (1 − α)·θ0 + α·θ1 for α in [0, 1]. θ0 is rebuilt, not stored: a model's initial weights are a pure
  function of its configuration and the run's seed (`explorer.models.build_model`). Every parameter moves, BN gains
  and shifts included.
- 2-D, a plane around θ1 (Li et al. §4): θ(a, b) = θ1 + a·δ + b·η for a, b in [−span, span], along two Gaussian
  directions, filter-normalised: each filter of δ (an output channel of a conv, a row of a linear layer) is
  rescaled to the norm of the same filter of θ1. BatchNorm makes a filter's scale meaningless to the loss, so an
  unnormalised direction would be a large step for small filters and a tiny one for large ones, and sharpness
  could not be compared between layers or nets (Li et al. §3-4). BN parameters and biases get a zero direction
  (Li et al.'s code does the same: ``ignore='biasbn'``): they are not perturbed. Every direction tensor comes from a
  generator seeded by (seed, direction, tensor name), and twins share tensor names, so the plain and the residual
  net are cut along the same raw noise: a fair comparison.

Loss: mean cross-entropy and error on a fixed set of N training images (the first N of a permutation seeded by the
run's seed), all N in one batch, with BatchNorm normalising by that batch's own statistics (train-mode BN, running
statistics untouched, as `explorer.trainer.batch_statistics`). The stored running statistics belong to θ1 alone:
an interpolated or perturbed net normalised with them measures the mismatch, not the surface (at α = 0 a random net
would be normalised with a trained net's statistics). One batch of all N makes the loss a deterministic function
of the weights.

Cost: points × models forwards of N images, priced first by the calibrated cost model
(`Calibration.forward_seconds`); over the budget, `OverBudget` says the estimate and what to shrink. The calibration
is fitted to training steps of small batches, while a CPU forward of 1,000 images is dominated by BN, ReLU and the
additions over large activations, so the estimate can be low (1.3 to 4 times here, with the machine's load): the
first points are timed and the run stops with `OverBudget` when the measured pace would overrun the budget by half.

Speed: `torch.inference_mode`, the run's device policy (channels_last; bf16 autocast on GPUs and on CPUs with bf16
units), the N images normalised once and reused at every point, weights set in place with foreach ops.
Evidence (bench/landscape.py, 2026-11-27, ResNet-20, 1,000 images, bf16, this project's shared 2-core CPU): at load
average 2-3, 1.10 s a point with one thread and 1.98 s with two (the other core is busy, so a second thread only
waits), so a 21×21 slice takes about 8 min against a 2-minute target (4 times over); at load 7-8 the full 21×21
slice took 1,415 s with one thread (3.1 s a point). Two thirds of a forward is BN with batch statistics, ReLU and
the additions (elementwise passes over the activations), a quarter convolutions; torch.compile fused them for a 1.35
times faster forward after 86 s of compiling: not worth its fragility here. The cost model's estimate was 360 s.

Results: ``<store folder>/landscapes/<run id>-<kind>-<spec hash>.parquet``, columns model, alpha (1-D) or a, b
(2-D), loss, error, with the spec and timings in the file's metadata; `read`, `latest` and `stored` read them back.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .checkpoints import trained_weights
from .config import Config, ModelConfig
from .device import DevicePolicy
from .estimate import format_seconds, model_cost
from .states import ModelState
from .store import RunStore

if TYPE_CHECKING:  # computing a slice needs PyTorch; reading a stored one (the web server) does not
    import torch
    from torch import nn

KINDS = ("1d", "2d")
METHOD_VERSION = 1  # part of every stored file's hash: a changed method never reads an old result
DEFAULT_BUDGET_S = 600.0
MAX_GRID = 101
MAX_IMAGES = 10_000
MAX_SPAN = 10.0
OVERRUN = 1.5  # stop once the measured pace would exceed the budget by this factor
PACE_POINTS = 3  # points timed before the pace is trusted (the first one pays for kernel selection)
METADATA_KEY = b"explorer.landscape"
Progress = Callable[[int, int], None]  # (points done, points in all)


class LandscapeError(Exception):
    """A slice cannot be computed as asked; the message says what to change."""


class OverBudget(LandscapeError):
    """The slice would take longer than its budget; the message gives the estimate and what to shrink."""


@dataclass(frozen=True)
class SliceSpec:
    """What to compute: which slice of which models, how finely, on how many images."""

    kind: str  # "1d": init → trained; "2d": plane around the trained weights
    models: tuple[str, ...]  # model labels of the run
    grid: int = 21  # points per axis
    images: int = 1000  # training images the loss is measured on (at most the run's training subset)
    span: float = 1.0  # 2-D: each axis runs over [-span, span] in filter-normalised units (Li et al. use 1)
    seed: int = 0  # of the 2-D directions

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LandscapeError(f"slice kind {str(self.kind)[:20]!r} is not 1d or 2d: use --kind 1d, 2d or both")
        if not self.models:
            raise LandscapeError("no model chosen: name at least one of the run's models, e.g. --models resnet20")
        if not 2 <= self.grid <= MAX_GRID:
            raise LandscapeError(f"--grid {self.grid} is out of range: use 2 to {MAX_GRID} points per axis")
        if self.kind == "2d" and self.grid % 2 == 0:
            raise LandscapeError(f"--grid {self.grid}: a 2-D slice needs an odd number of points per axis so that "
                                 f"the trained weights (0, 0) lie on it: use {self.grid + 1}")
        if not 1 <= self.images <= MAX_IMAGES:
            raise LandscapeError(f"--images {self.images} is out of range: use 1 to {MAX_IMAGES:,}")
        if not (math.isfinite(self.span) and 0 < self.span <= MAX_SPAN):
            raise LandscapeError(f"--span {self.span} is out of range: use a number above 0 and at most {MAX_SPAN:g}")

    @property
    def points(self) -> int:
        """Grid points per model."""
        return self.grid if self.kind == "1d" else self.grid ** 2

    def axis(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.grid) if self.kind == "1d" else np.linspace(-self.span, self.span, self.grid)

    def coordinates(self) -> list[tuple[float, ...]]:
        """(alpha,) per 1-D point, (a, b) per 2-D point, b varying fastest."""
        axis = [float(v) for v in self.axis()]
        return [(a,) for a in axis] if self.kind == "1d" else [(a, b) for a in axis for b in axis]

    @property
    def key(self) -> str:
        body = json.dumps({**asdict(self), "models": list(self.models), "method": METHOD_VERSION}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:12]

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "models": list(self.models)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SliceSpec":
        raw = json.loads(text)
        return cls(**{**raw, "models": tuple(raw["models"])})


@dataclass(frozen=True)
class Landscape:
    """A computed slice: its values, what it was computed from and what it cost."""

    run_id: str
    spec: SliceSpec
    frame: pd.DataFrame  # model, alpha (1-D) or a, b (2-D), loss, error (%)
    images: int  # training images actually used
    seconds: float  # wall time of the computation
    estimate_s: float  # what the cost model predicted
    device: str
    precision: str
    path: Path

    @property
    def seconds_per_point(self) -> float:
        return self.seconds / max(1, self.spec.points * len(self.spec.models))


# --- pricing -------------------------------------------------------------------------------------------------
def resolve_policy(config: Config, device: str = "auto", threads: int | None = None) -> DevicePolicy:
    """The run's device policy on `device`, with `threads` CPU threads (None: the run's setting; 0: PyTorch's
    default, every core). On a busy shared machine one thread can beat two: a thread pool whose other thread is
    descheduled spins at every barrier (bench/landscape.py measures both)."""
    return DevicePolicy.resolve(replace(config, device=device, threads=config.threads if threads is None else threads))


def images_used(config: Config, spec: SliceSpec) -> int:
    return min(spec.images, config.data.subset)


def estimate_seconds(store: RunStore, run_id: str, spec: SliceSpec, kind: str, precision: str) -> float:
    """Predicted seconds of `spec` on a device of `kind` computing in `precision`, from this machine's stored
    calibration (arithmetic only: the web server prices a slice without PyTorch)."""
    from .jobs import calibration

    config = store.config(run_id)
    calibrated = calibration(store, kind, precision, config.threads)
    images, classes = images_used(config, spec), len(config.data.classes) or 10
    seconds = 0.0
    for model in _model_configs(store, run_id, spec):
        layers, macs = model_cost(model, classes)
        seconds += spec.points * calibrated.forward_seconds(layers, macs, images, batch=images)
    return seconds


def check_budget(spec: SliceSpec, estimate_s: float, budget_s: float | None, images: int) -> None:
    """Raise `OverBudget` when `estimate_s` exceeds `budget_s` (None: no budget), naming sizes that would fit."""
    if budget_s is None or estimate_s <= budget_s:
        return
    raise OverBudget(f"the {spec.kind} slice would take about {_seconds(estimate_s)} ({_size(spec, images)}), "
                     f"over the budget of {_seconds(budget_s)}: "
                     f"{_shrink(spec, budget_s / estimate_s, images, estimate_s)}")


def _seconds(seconds: float) -> str:
    return f"{seconds:.2g} s" if seconds < 10 else format_seconds(seconds)


def _size(spec: SliceSpec, images: int) -> str:
    grid = f"{spec.grid} points" if spec.kind == "1d" else f"{spec.grid}×{spec.grid} points"
    return f"{grid} × {len(spec.models)} model{'s' * (len(spec.models) > 1)} × {images:,} images"


def _shrink(spec: SliceSpec, fraction: float, images: int, needed_s: float) -> str:
    """Concrete changes that would cut the cost to `fraction` of the present one."""
    options = []
    grid = spec.grid * fraction if spec.kind == "1d" else spec.grid * math.sqrt(fraction)
    grid = int(grid) - (spec.kind == "2d" and int(grid) % 2 == 0)
    if grid >= 3:
        options.append(f"--grid {grid}")
    if int(images * fraction) >= 32:
        options.append(f"--images {int(images * fraction)}")
    if len(spec.models) > 1 and fraction * len(spec.models) >= 1:
        options.append("fewer --models")
    if not options:
        return f"no smaller slice fits: give a --budget of at least {_seconds(needed_s)}"
    return f"use {', '.join(options)}, or a larger --budget"


# --- directions --------------------------------------------------------------------------------------------------
def _generator(seed: int, direction: int, name: str) -> torch.Generator:
    import torch

    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(f"{direction}:{name}".encode()))


def filter_normalized_direction(named: list[tuple[str, torch.Tensor]], seed: int, direction: int
                                ) -> list[torch.Tensor]:
    """A Gaussian direction with every filter scaled to the norm of the same filter of the weights (Li et al. §4);
    tensors of one dimension (BN gains and shifts, biases) get zeros: they are not perturbed."""
    import torch

    out = []
    for name, weight in named:
        if weight.dim() <= 1:
            out.append(torch.zeros_like(weight))
            continue
        noise = torch.randn(weight.shape, generator=_generator(seed, direction, name)).to(weight.device)
        filters = noise.flatten(1).norm(dim=1)
        target = weight.detach().float().flatten(1).norm(dim=1)
        scale = (target / filters.clamp_min(1e-12)).view(-1, *([1] * (weight.dim() - 1)))
        out.append((noise * scale).to(weight.dtype).contiguous(memory_format=_memory_format(weight)))
    return out


def _memory_format(tensor: torch.Tensor) -> torch.memory_format:
    import torch

    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


# --- computing ---------------------------------------------------------------------------------------------------
def _model_configs(store: RunStore, run_id: str, spec: SliceSpec) -> list[ModelConfig]:
    """The run's configurations of `spec.models`, refusing models the run does not have or that diverged."""
    config = store.config(run_id)
    by_label = {m.label: m for m in config.models}
    unknown = [label for label in spec.models if label not in by_label]
    if unknown:
        raise LandscapeError(f"run {run_id} has no model {unknown[0]!r}: choose from {', '.join(by_label)}")
    models = store.models(run_id)
    diverged = set(models.loc[models["status"] == str(ModelState.DIVERGED), "model"]) if len(models) else set()
    bad = [label for label in spec.models if label in diverged]
    if bad:
        raise LandscapeError(f"{bad[0]} diverged in run {run_id}: its weights are not finite; leave it out of "
                             "--models")
    return [by_label[label] for label in spec.models]


class _Slicer:
    """One model placed at any point of a slice: θ0, θ1 and the directions kept on the device, weights set in place."""

    def __init__(self, model: nn.Module, initial: list[torch.Tensor], spec: SliceSpec):
        self.model, self.kind = model, spec.kind
        named = list(model.named_parameters())
        self.params = [p for _, p in named]
        self.trained = [p.detach().clone() for p in self.params]
        self.initial = initial
        self.directions = ([filter_normalized_direction(named, spec.seed, k) for k in (0, 1)]
                           if spec.kind == "2d" else [])

    def place(self, point: tuple[float, ...]) -> None:
        import torch

        if self.kind == "1d":
            torch._foreach_copy_(self.params, self.initial)
            torch._foreach_lerp_(self.params, self.trained, point[0])  # (1 - α)·θ0 + α·θ1
            return
        torch._foreach_copy_(self.params, self.trained)
        for direction, step in zip(self.directions, point):
            torch._foreach_add_(self.params, direction, alpha=step)  # θ1 + a·δ + b·η


def _sample(config: Config, n: int, policy: DevicePolicy, data_dir: str | os.PathLike | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` training images of a permutation seeded by the run's seed, normalised, as one batch."""
    import torch

    from .data import eval_batches, load_data

    data = load_data(config.data, data_dir)
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(config.seed))[:n]
    x, y = next(eval_batches(data.train_x[order], data.train_y[order], n, policy.device,
                             channels_last=policy.channels_last))
    return x, y


def _prepare(cfg: ModelConfig, num_classes: int, seed: int, weights: dict, policy: DevicePolicy, spec: SliceSpec
             ) -> _Slicer:
    from .models import build_model

    model = policy.to_device(build_model(cfg, num_classes=num_classes, seed=seed)).requires_grad_(False)
    initial = [p.detach().clone() for p in model.parameters()]  # θ0: rebuilt from (config, seed)
    model.load_state_dict(weights)
    return _Slicer(model, initial, spec)


def compute(store: RunStore, run_id: str, spec: SliceSpec, *, budget_s: float | None = DEFAULT_BUDGET_S,
            device: str = "auto", threads: int | None = None, progress: Progress | None = None,
            data_dir: str | os.PathLike | None = None) -> Landscape:
    """Compute `spec` for a trained run and store it (see the module docstring). Raises `OverBudget` before any
    work when the estimate exceeds `budget_s`, or after the first points when the measured pace would exceed it
    by half; `LandscapeError` for models the run lacks; `StoreError` when the run kept no weights here."""
    import torch

    from .step import loss_and_error
    from .trainer import batch_statistics

    config = store.config(run_id)
    cfgs = _model_configs(store, run_id, spec)
    policy = resolve_policy(config, device, threads)
    images = images_used(config, spec)
    estimate = estimate_seconds(store, run_id, spec, policy.device.type, policy.precision)
    check_budget(spec, estimate, budget_s, images)
    weights = trained_weights(store, run_id)
    policy.apply()
    x, y = _sample(config, images, policy, data_dir)
    coordinates = spec.coordinates()
    total = len(coordinates) * len(cfgs)
    started = time.perf_counter()
    rows: list[dict] = []
    for m, cfg in enumerate(cfgs):
        slicer = _prepare(cfg, len(config.data.classes) or 10, config.seed, weights[cfg.label], policy, spec)
        values = []
        with torch.inference_mode(), batch_statistics(slicer.model):
            for i, point in enumerate(coordinates):
                slicer.place(point)
                with policy.autocast():
                    logits = slicer.model(x)
                values.append(torch.stack(loss_and_error(logits, y)))
                done = m * len(coordinates) + i + 1
                _check_pace(spec, done, total, time.perf_counter() - started, budget_s, images)
                if progress is not None:
                    progress(done, total)
        names = ("alpha",) if spec.kind == "1d" else ("a", "b")
        for point, (loss, error) in zip(coordinates, torch.stack(values).float().cpu().tolist()):
            rows.append({"model": cfg.label, **dict(zip(names, point)), "loss": loss, "error": error})
    result = Landscape(run_id=run_id, spec=spec, frame=pd.DataFrame(rows), images=images,
                       seconds=time.perf_counter() - started, estimate_s=estimate, device=policy.name,
                       precision=policy.precision, path=landscape_path(store, run_id, spec))
    _write(result)
    return result


def _check_pace(spec: SliceSpec, done: int, total: int, elapsed: float, budget_s: float | None, images: int) -> None:
    if budget_s is None or done < PACE_POINTS or done == total:
        return
    projected = elapsed / done * total
    if projected > OVERRUN * budget_s:
        raise OverBudget(f"stopped after {done} of {total} points: at the measured {elapsed / done:.2f} s a point the "
                         f"{spec.kind} slice would take about {_seconds(projected)} ({_size(spec, images)}), "
                         f"over the budget of {_seconds(budget_s)}: "
                         f"{_shrink(spec, budget_s / projected, images, projected)}")


def load_or_compute(store: RunStore, run_id: str, spec: SliceSpec, **kwargs) -> Landscape:
    """The stored slice of `spec`, else `compute(store, run_id, spec, **kwargs)`."""
    return read(store, run_id, spec) or compute(store, run_id, spec, **kwargs)


# --- storage ----------------------------------------------------------------------------------------------------
def landscape_dir(store: RunStore) -> Path:
    return store.path.parent / "landscapes"


def landscape_path(store: RunStore, run_id: str, spec: SliceSpec) -> Path:
    return landscape_dir(store) / f"{run_id}-{spec.kind}-{spec.key}.parquet"


def _write(result: Landscape) -> None:
    import torch

    meta = {"run_id": result.run_id, "spec": {**asdict(result.spec), "models": list(result.spec.models)},
            "images": result.images, "seconds": result.seconds, "estimate_s": result.estimate_s,
            "device": result.device, "precision": result.precision, "method": METHOD_VERSION,
            "torch_version": torch.__version__}
    table = pa.Table.from_pandas(result.frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(meta)})
    result.path.parent.mkdir(parents=True, exist_ok=True)
    partial = result.path.with_suffix(f".{os.getpid()}.tmp")  # two writers never share a partial file
    pq.write_table(table, partial)
    partial.replace(result.path)


def _load(path: Path) -> Landscape | None:
    try:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[METADATA_KEY])
        spec = SliceSpec(**{**meta["spec"], "models": tuple(meta["spec"]["models"])})
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException, LandscapeError):
        return None  # a partial or foreign file is not a result
    return Landscape(run_id=meta["run_id"], spec=spec, frame=table.to_pandas(), images=meta["images"],
                     seconds=meta["seconds"], estimate_s=meta["estimate_s"], device=meta["device"],
                     precision=meta["precision"], path=path)


def read(store: RunStore, run_id: str, spec: SliceSpec) -> Landscape | None:
    """The stored result of exactly `spec`, or None."""
    path = landscape_path(store, run_id, spec)
    return _load(path) if path.is_file() else None


def _paths(store: RunStore, run_id: str, kind: str = "*") -> list[Path]:
    folder = landscape_dir(store)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{glob.escape(run_id)}-{kind}-*.parquet"), key=lambda p: p.stat().st_mtime,
                  reverse=True)


def stored(store: RunStore, run_id: str) -> list[Landscape]:
    """Every stored slice of a run, newest first."""
    return [result for path in _paths(store, run_id) if (result := _load(path)) is not None and result.run_id == run_id]


def latest(store: RunStore, run_id: str, kind: str) -> Landscape | None:
    """The newest stored slice of `kind` ("1d" or "2d") of a run, or None (reads only that file)."""
    return next((result for path in _paths(store, run_id, kind)
                 if (result := _load(path)) is not None and result.run_id == run_id and result.spec.kind == kind), None)


# --- reading a slice -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineProfile:
    """The loss along a 1-D slice: where it starts and ends, its highest point, and whether it only falls."""

    start: float
    end: float
    peak: float
    peak_alpha: float
    monotone: bool  # never rises by more than `tolerance` from one point to the next
    biggest_rise: float
    rise_alpha: float


def line_profile(alpha: np.ndarray, loss: np.ndarray, tolerance: float = 0.01) -> LineProfile:
    order = np.argsort(alpha)
    alpha, loss = np.asarray(alpha, float)[order], np.asarray(loss, float)[order]
    rises = np.diff(loss)
    peak = int(np.nanargmax(loss))
    worst = int(np.nanargmax(rises)) if len(rises) else 0
    return LineProfile(start=float(loss[0]), end=float(loss[-1]), peak=float(loss[peak]),
                       peak_alpha=float(alpha[peak]), monotone=bool(len(rises) == 0 or np.nanmax(rises) <= tolerance),
                       biggest_rise=float(rises[worst]) if len(rises) else 0.0,
                       rise_alpha=float(alpha[worst + 1]) if len(rises) else 0.0)


@dataclass(frozen=True)
class SurfaceProfile:
    """A 2-D slice in three numbers: the loss at the trained weights, its mean on the edge of the square, and how
    many grid points are lower than all their neighbours (one for a convex bowl, many for a chaotic surface)."""

    centre: float
    edge: float
    minima: int


def surface_profile(frame: pd.DataFrame) -> SurfaceProfile:
    """`frame`: one model's rows of a 2-D slice (columns a, b, loss)."""
    grid = frame.pivot_table(index="b", columns="a", values="loss").to_numpy()
    n = grid.shape[0]
    centre = float(grid[n // 2, grid.shape[1] // 2])
    edge = float(np.nanmean(np.concatenate([grid[0], grid[-1], grid[1:-1, 0], grid[1:-1, -1]])))
    padded = np.pad(grid, 1, constant_values=np.inf)
    neighbours = np.stack([padded[1 + dy:1 + dy + n, 1 + dx:1 + dx + grid.shape[1]]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)])
    minima = int(np.sum(np.all(grid[None] < neighbours, axis=0)))
    return SurfaceProfile(centre=centre, edge=edge, minima=minima)
