"""Training and evaluation batches from images resident on the device, without a DataLoader.

`BatchStream` yields normalised, shuffled, augmented batches: pad-4 random crop and horizontal flip (He et al. 2015,
§4.2) are one gather over the whole batch, and every epoch is a pure function of ``(seed, epoch)``.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from explorer.data.images import ImageData, seeded_generator

CROP_PAD = 4
# Per-channel statistics of the CIFAR-10 training images, used for every source so inputs are comparable.
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)


def normalize(x: Tensor, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
              channels_last: bool = False) -> Tensor:
    """uint8 images -> float images standardised with the CIFAR-10 per-channel mean and std, on `device`."""
    x = x.to(device) if device is not None else x
    std = torch.tensor(CIFAR10_STD, device=x.device).view(1, 3, 1, 1)
    mean = torch.tensor(CIFAR10_MEAN, device=x.device).view(1, 3, 1, 1)
    out = x.float().mul_(1 / (255 * std)).sub_(mean / std).to(dtype)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def crop_flip(x: Tensor, shifts: Tensor, flips: Tensor, pad: int = CROP_PAD) -> Tensor:
    """Crop each image of ``[B, C, H, W]`` from its zero-padded copy at offset ``shifts[b] = (dy, dx)`` in
    ``0..2*pad`` and mirror it where ``flips[b]``: one gather for the whole batch."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).flatten(2)
    span = torch.arange(w, device=x.device)
    rows = shifts[:, 0, None] + torch.arange(h, device=x.device)
    cols = torch.where(flips[:, None], shifts[:, 1, None] + span.flip(0), shifts[:, 1, None] + span)
    index = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.gather(2, index).view(b, c, h, w)


class BatchStream:
    """Shuffled, augmented, normalised training batches from images resident on `device`.

    Every epoch has ``steps_per_epoch = N // batch_size`` full batches (drop-last, so every step sees the same batch
    size; a set smaller than a batch is one batch of all its images). Epoch ``e`` is a pure function of
    ``(seed, e)``: its permutation, crop offsets and flips come from a CPU generator seeded by both, so the batches
    are identical across runs and devices.
    """

    def __init__(self, data: ImageData, batch_size: int, augment: bool, device: torch.device | str, seed: int,
                 channels_last: bool = False, dtype: torch.dtype = torch.float32) -> None:
        self.device = torch.device(device)
        self.x = data.train_x.to(self.device)
        self.y = data.train_y.to(self.device)
        self.batch_size = min(batch_size, len(self.x))
        self.augment = augment
        self.seed = seed
        self.channels_last = channels_last
        self.dtype = dtype

    @property
    def steps_per_epoch(self) -> int:
        return len(self.x) // self.batch_size

    def run(self, total_steps: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The epochs back to back from step `start` (a resumed run continues there), cut at `total_steps`."""
        step = start
        for epoch in itertools.count(start // self.steps_per_epoch):
            for batch in self.epoch(epoch, skip=step - epoch * self.steps_per_epoch):
                if step >= total_steps:
                    return
                yield batch
                step += 1

    def epoch(self, e: int, skip: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Epoch `e`'s batches, from its `skip`-th on (a resumed run continues mid-epoch)."""
        n, size = len(self.x), self.batch_size
        generator = seeded_generator(self.seed, "epoch", e)
        order = torch.randperm(n, generator=generator).to(self.device)
        shifts = torch.randint(0, 2 * CROP_PAD + 1, (n, 2), generator=generator).to(self.device)
        flips = (torch.rand(n, generator=generator) < 0.5).to(self.device)
        for step in range(skip, self.steps_per_epoch):
            batch = slice(step * size, (step + 1) * size)
            index = order[batch]
            x = self.x[index]
            if self.augment:
                x = crop_flip(x, shifts[batch], flips[batch])
            yield normalize(x, dtype=self.dtype, channels_last=self.channels_last), self.y[index]


def eval_batches(x: Tensor, y: Tensor, batch_size: int, device: torch.device | str,
                 dtype: torch.dtype = torch.float32, channels_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
    """All of ``(x, y)`` in order, normalised and without augmentation; the last batch may be smaller."""
    for start in range(0, len(x), batch_size):
        yield (normalize(x[start:start + batch_size], device, dtype, channels_last),
               y[start:start + batch_size].to(device))
