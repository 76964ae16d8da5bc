"""`load_data(cfg)`: a `DataConfig` in, an `ImageData` of uint8 ``[N, 3, 32, 32]`` images and int64 labels out,
after the class selection and a class-balanced, seeded subset. The front door of `explorer.data`."""

from __future__ import annotations

import os

from explorer.config import CIFAR10_CLASSES, DataConfig
from explorer.data.cache import load_cached
from explorer.data.images import ImageData
from explorer.data.layout import LAYOUT_NAMES, Progress, silent
from explorer.data.sources import locate_source
from explorer.data.subsets import select_subset
from explorer.data.synthetic import synthetic_cifar


def load_full(source: str, data_dir: str | os.PathLike | None = None, progress: Progress | None = None
              ) -> ImageData | None:
    """Every image of a source that lives on disk (None for synthetic, which is generated per subset)."""
    report = progress or silent
    location = locate_source(source, data_dir, report)
    if location is None:
        return None
    arrays = load_cached(location, report)
    classes = list(arrays["classes"])
    # An ImageFolder of CIFAR-10's classes with its own train/test split is CIFAR-10; one split here is not.
    is_cifar10 = location.kind == "batches" or (location.kind == "imagefolder" and tuple(classes) == CIFAR10_CLASSES)
    full = ImageData(
        train_x=arrays["train_x"], train_y=arrays["train_y"], test_x=arrays["test_x"], test_y=arrays["test_y"],
        classes=classes,
        source=(f"CIFAR-10 ({LAYOUT_NAMES[location.kind]})" if is_cifar10
                else f"{location.description} ({len(classes)} classes)"),
        kind="cifar10" if is_cifar10 else "folder",
    )
    report(1.0, f"loaded {full.source}")
    return full


def load_data(cfg: DataConfig, data_dir: str | os.PathLike | None = None, progress: Progress | None = None,
              full: ImageData | None = None) -> ImageData:
    """The images `cfg` names, with its class selection and class-balanced subsets applied. Raises `DataError`.
    `full` is the source's whole set when the caller already holds it (a worker keeps it between jobs)."""
    if cfg.source == "synthetic":
        return synthetic_cifar(cfg.subset, cfg.test_subset, cfg.seed, classes=cfg.classes or CIFAR10_CLASSES)
    full = full if full is not None else load_full(cfg.source, data_dir, progress)
    return select_subset(full, cfg.classes, cfg.subset, cfg.test_subset, cfg.seed)
