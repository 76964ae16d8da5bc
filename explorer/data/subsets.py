"""Class selection and class-balanced, seeded subsets of a loaded set."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from explorer.data.images import ImageData, seeded_generator
from explorer.data.sources import DataError, subset_too_large


def _balanced_counts(n: int, k: int) -> list[int]:
    return [n // k + (i < n % k) for i in range(k)]


def _select_indices(y: Tensor, labels: list[int], n: int, generator: torch.Generator, field: str) -> Tensor:
    available = [int((y == label).sum()) for label in labels]
    maximum = len(labels) * min(available)
    if n > maximum:
        raise subset_too_large(field, n, len(labels), maximum)
    picks = []
    for label, count in zip(labels, _balanced_counts(n, len(labels))):
        members = (y == label).nonzero().flatten()
        picks.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(picks).sort().values


def select_subset(data: ImageData, classes: tuple[str, ...], n_train: int, n_test: int, seed: int) -> ImageData:
    """The named classes (labels remapped to 0..k-1 in the given order; empty = all) and class-balanced random
    subsets of `n_train` and `n_test` images, the same for the same seed."""
    unknown = [c for c in classes if c not in data.classes]
    if unknown:
        raise DataError(f"unknown class {unknown[0]!r} in {data.source}: choose from {', '.join(data.classes)}")
    names = list(classes) if classes else list(data.classes)
    old_labels = [data.classes.index(c) for c in names]
    remap = torch.full((len(data.classes),), -1, dtype=torch.int64)
    remap[old_labels] = torch.arange(len(old_labels))
    remap = remap.to(data.train_y.device)  # the set may live on a GPU (a worker keeps it there between jobs)
    train = _select_indices(data.train_y, old_labels, n_train, seeded_generator(seed, "train"), "subset")
    test = _select_indices(data.test_y, old_labels, n_test, seeded_generator(seed, "test"), "test_subset")
    return replace(
        data, classes=names,
        train_x=data.train_x[train], train_y=remap[data.train_y[train]],
        test_x=data.test_x[test], test_y=remap[data.test_y[test]],
    )
