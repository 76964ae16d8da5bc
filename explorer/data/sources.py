"""Data sources by name: which exist here, where they lie, their classes, sizes and fingerprints. Nothing is decoded
and nothing here imports torch, so the web server can offer sources and bound a form without it.

A run names its source; it never names a path (`explorer.settings` maps names to the folders an operator
configured):

- ``synthetic``: generated in code (`explorer.data.synthetic`), as many images as a run asks for.
- ``cifar10``: searched in the data directory ($EXPLORER_DATA_DIR, default ``./data``) as the official python batches
  (``cifar-10-batches-py/``) or as an ImageFolder copy (``train/<class>/*``, ``test/<class>/*``, also under
  ``cifar10-jpg/``); if absent, downloaded (`explorer.data.download`; never on a hosted server).
- a data root's name (EXPLORER_DATA_ROOTS=name=path): a folder of either layout, or a flat ImageFolder (class
  folders at the top) split into train and test here (`explorer.data.layout`). The data directory itself, when it
  holds such a folder and not CIFAR-10, is offered under its folder's name.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple, Sequence

from explorer.config import CIFAR10_CLASSES, MAX_IMAGES, SOURCE_NAME, DataConfig
from explorer.data.download import download_cifar10
from explorer.data.layout import (BATCH_FILES, BATCHES_FOLDER, CACHE_VERSION, CIFAR10_PER_CLASS, DataError,
                                  DataLocation, Progress, class_dirs, folder_files, folder_stamp, is_cifar10,
                                  layout_at, stamps)
from explorer.settings import settings

__all__ = ["DataError", "DataLocation", "SourceSizes", "available_sources", "check_fits", "data_fingerprint",
           "data_roots", "find_cifar10", "locate_source", "resolve_data_dir", "source_classes", "source_sizes"]

FINGERPRINT_SECONDS = 60.0
_FINGERPRINTS: dict[tuple[str, str], tuple[float, str]] = {}
_SIZES: dict[str, tuple[tuple, "SourceSizes"]] = {}


class SourceSizes(NamedTuple):
    """How many images a source holds: in all, and per class as (training, test)."""

    n_train: int
    n_test: int
    classes: dict[str, tuple[int, int]]

    @classmethod
    def of(cls, per_class: dict[str, tuple[int, int]]) -> "SourceSizes":
        return cls(sum(n for n, _ in per_class.values()), sum(n for _, n in per_class.values()), per_class)

    def limits(self, chosen: Sequence[str] = ()) -> tuple[int, int]:
        """The largest class-balanced training and test subsets of the `chosen` classes (empty or none known here:
        all) that `explorer.data.subsets.select_subset` can draw."""
        known = [c for c in chosen if c in self.classes] or list(self.classes)  # as the class picker keeps them
        counts = [self.classes[c] for c in known]
        if not counts:
            return 0, 0
        return (min(MAX_IMAGES, len(counts) * min(n for n, _ in counts)),
                min(MAX_IMAGES, len(counts) * min(n for _, n in counts)))


def subset_too_large(field: str, n: int, classes: int, maximum: int) -> DataError:
    return DataError(f"{field} {n} is larger than the data: a class-balanced set of these {classes} classes has at "
                     f"most {maximum} images; use {field} <= {maximum}")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else ``$EXPLORER_DATA_DIR``, else ``./data``."""
    return Path(data_dir).expanduser() if data_dir else settings().data_dir


def _candidates(root: Path) -> list[Path]:
    return [root / BATCHES_FOLDER, root / "cifar10-jpg", root]


def _layout_under(root: Path) -> DataLocation | None:
    for candidate in _candidates(root):
        location = layout_at(candidate) if candidate.is_dir() else None
        if location:
            return location
    return None


def find_cifar10(data_dir: str | os.PathLike | None = None) -> DataLocation | None:
    """Where CIFAR-10 lies under the data directory (python batches or an ImageFolder of its ten classes), if
    anywhere; nothing is decoded, so this is cheap enough for a UI banner."""
    root = resolve_data_dir(data_dir)
    for candidate in _candidates(root):
        location = layout_at(candidate) if candidate.is_dir() else None
        if location and is_cifar10(location):
            return replace(location, description=f"CIFAR-10 ({location.description})")
    return None


def find_layout(root: Path) -> DataLocation:
    """The data set under `root` (see `_candidates`); raises `DataError` saying what to put there."""
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist: create it, fix the path or $EXPLORER_DATA_DIR, "
                        "or use the source synthetic")
    location = _layout_under(root)
    if location:
        return location
    if (root / BATCHES_FOLDER).is_dir():
        missing = [name for name in BATCH_FILES if not (root / BATCHES_FOLDER / name).is_file()]
        raise DataError(f"CIFAR-10 batches in {root / BATCHES_FOLDER} are incomplete (missing {', '.join(missing)}): "
                        "delete the folder and download it again")
    raise DataError(f"no images found in {root}: put the CIFAR-10 python batches in {root / BATCHES_FOLDER}/, images "
                    f"in {root}/<class>/ (20% of each class is held out for testing) or in {root}/train/<class>/ "
                    f"and {root}/test/<class>/")


def data_roots(data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Named folders a run may train on: the operator's EXPLORER_DATA_ROOTS, plus the data directory under its own
    folder's name when it holds an image folder that is not CIFAR-10 (your own images: see README)."""
    roots = dict(settings().data_roots)
    root = resolve_data_dir(data_dir)
    if root.is_dir() and find_cifar10(root) is None and layout_at(root) is not None:
        name = re.sub(r"[^a-z0-9_-]+", "-", root.resolve().name.lower()).strip("-_")[:32] or "images"
        name = name if SOURCE_NAME.fullmatch(name) and name not in ("synthetic", "cifar10") else "images"
        roots.setdefault(name, root)
    return roots


def available_sources(data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Source name -> what it is, for pickers: synthetic, cifar10 (found, or downloadable off a hosted server) and
    every data root that holds images. Cheap: nothing is decoded."""
    sources = {"synthetic": "built-in synthetic CIFAR-shaped set"}
    found = find_cifar10(data_dir)
    if found is not None:
        sources["cifar10"] = found.description
    elif not settings().hosted:
        sources["cifar10"] = "CIFAR-10 (downloaded on first use, 170 MB)"
    for name, path in data_roots(data_dir).items():
        location = _layout_under(path) if path.is_dir() else None
        if location is not None:
            sources[name] = f"image folder {name!r} ({location.description})"
    return sources


def locate_source(source: str, data_dir: str | os.PathLike | None = None,
                  progress: Progress | None = None) -> DataLocation | None:
    """Where the named source lies on disk (None for synthetic); downloads CIFAR-10 when it is missing and the server
    is not hosted. Raises `DataError` for an unknown name."""
    if source == "synthetic":
        return None
    if source == "cifar10":
        found = find_cifar10(data_dir)
        if found is not None:
            return found
        if settings().hosted:
            raise DataError("CIFAR-10 is not installed on this server: use the synthetic set, or ask the operator to "
                            "put CIFAR-10 in its data directory")
        return download_cifar10(resolve_data_dir(data_dir), progress)
    roots = data_roots(data_dir)
    if source not in roots:
        known = ", ".join(["synthetic", "cifar10", *roots])
        raise DataError(f"unknown data source {source!r}: choose one of {known} (an operator adds data roots with "
                        "EXPLORER_DATA_ROOTS=name=path)")
    return replace(find_layout(roots[source]), description=f"image folder {source!r}")


def source_classes(source: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """The class names of a source, without decoding anything (an image folder's class folders); [] when the source
    is not here."""
    if source in ("synthetic", "cifar10"):
        return list(CIFAR10_CLASSES)
    path = data_roots(data_dir).get(source)
    location = _layout_under(path) if path is not None and path.is_dir() else None
    if location is None:
        return []
    if location.kind == "batches":
        return list(CIFAR10_CLASSES)
    return [p.name for p in class_dirs(location.path / "train" if location.kind == "imagefolder" else location.path)]


def source_sizes(source: str, data_dir: str | os.PathLike | None = None) -> SourceSizes:
    """How many training and test images each class of a source holds, counting files (never decoding; cached
    until a folder changes), so a form can bound its subsets before a run is queued. Never downloads: CIFAR-10 that
    is not here yet has its official sizes. Raises `DataError` for a source that is not here."""
    if source == "synthetic":
        return SourceSizes.of({c: (MAX_IMAGES, MAX_IMAGES) for c in CIFAR10_CLASSES})
    location = find_cifar10(data_dir) if source == "cifar10" else locate_source(source, data_dir)
    if location is None or location.kind == "batches":
        return SourceSizes.of({c: CIFAR10_PER_CLASS for c in CIFAR10_CLASSES})
    key = str(location.path.resolve())
    stamp = folder_stamp(location)
    cached = _SIZES.get(key)
    if cached is None or cached[0] != stamp:
        found = folder_files(location)
        sizes = SourceSizes.of({name: (len(train), len(test))
                                for name, train, test in zip(found.classes, found.train, found.test)})
        _SIZES[key] = cached = (stamp, sizes)
    return cached[1]


def check_fits(cfg: DataConfig, data_dir: str | os.PathLike | None = None) -> None:
    """Refuse (`DataError`) a class or a subset that the named source does not have, before a run is queued."""
    sizes = source_sizes(cfg.source, data_dir)
    unknown = [c for c in cfg.classes if c not in sizes.classes]
    if unknown:
        raise DataError(f"unknown class {unknown[0]!r} in data source {cfg.source!r}: choose from "
                        f"{', '.join(sizes.classes)}")
    most_train, most_test = sizes.limits(cfg.classes)
    classes = len(cfg.classes or sizes.classes)
    if cfg.subset > most_train:
        raise subset_too_large("subset", cfg.subset, classes, most_train)
    if cfg.test_subset > most_test:
        raise subset_too_large("test_subset", cfg.test_subset, classes, most_test)


def data_fingerprint(source: str, data_dir: str | os.PathLike | None = None) -> str:
    """What the named source holds, cheaply (file names, sizes and mtimes, and a flat folder's split rule; cached a
    minute): runs of the same configuration on the same data are the same experiment."""
    if source == "synthetic":
        return f"synthetic-v{CACHE_VERSION}"
    key = (source, str(resolve_data_dir(data_dir)))
    cached = _FINGERPRINTS.get(key)
    if cached and time.monotonic() - cached[0] < FINGERPRINT_SECONDS:
        return cached[1]
    try:
        location = find_cifar10(data_dir) if source == "cifar10" else locate_source(source, data_dir)
    except DataError:
        location = None
    if location is None:
        fingerprint = f"{source}-absent"
    else:
        fingerprint = hashlib.sha256(repr((CACHE_VERSION, stamps(location))).encode()).hexdigest()[:32]
    _FINGERPRINTS[key] = (time.monotonic(), fingerprint)
    return fingerprint
