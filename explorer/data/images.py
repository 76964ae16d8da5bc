"""`ImageData`, the images a run trains on (uint8, ``[N, 3, 32, 32]``, with int64 labels), and the seeded random
streams that subsets, the synthetic set and the batch order draw from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

DataKind = Literal["cifar10", "synthetic", "folder"]


@dataclass
class ImageData:
    """A train/test split of uint8 images ``[N, 3, 32, 32]`` with int64 labels indexing `classes`."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: list[str]
    source: str
    kind: DataKind

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> "ImageData":
        return replace(self, train_x=self.train_x.to(device), train_y=self.train_y.to(device),
                       test_x=self.test_x.to(device), test_y=self.test_y.to(device))


def seeded_generator(*key: object) -> torch.Generator:
    """A CPU generator seeded from a stable hash of `key`, so separate streams never overlap by accident."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
