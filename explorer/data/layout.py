"""How a data set lies on disk, found without decoding it: CIFAR-10's python batches, an ImageFolder with ``train/``
and ``test/`` class folders, or a flat ImageFolder (class folders at the top) that is split here.

A flat folder's split is decided file by file: a file is a test image when a stable hash of its path relative to the
folder (``cat/0001.jpg``) falls in the lowest `TEST_FRACTION` of the hash range. The split is therefore the same on
every machine, and adding a file never moves another one (except in a class so small that the one-test-image rule
below picks its test image). Torch-free: the web server imports this through `explorer.data.sources`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from explorer.config import CIFAR10_CLASSES

Progress = Callable[[float, str], None]
LayoutKind = Literal["batches", "imagefolder", "flat"]

IMAGE_SIZE = 32
BATCHES_FOLDER = "cifar-10-batches-py"
BATCH_FILES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR10_PER_CLASS = (5000, 1000)  # training and test images of each class in the official batches
CACHE_VERSION = 2
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's list
TEST_FRACTION = 0.2  # of each class of a flat ImageFolder, held out for testing
LAYOUT_NAMES: dict[str, str] = {"batches": "python batches", "imagefolder": "ImageFolder",
                                "flat": f"ImageFolder, {TEST_FRACTION:.0%} of each class held out for testing"}


class DataError(Exception):
    """The images cannot be loaded as asked; the message says what to change."""


@dataclass(frozen=True)
class DataLocation:
    """Where a data set lies on disk, found without decoding it."""

    kind: LayoutKind
    path: Path
    description: str


@dataclass(frozen=True)
class FolderFiles:
    """An ImageFolder's image files by class label, per split, each class sorted by file name (nothing decoded)."""

    classes: list[str]
    train: list[list[os.DirEntry]]
    test: list[list[os.DirEntry]]


def silent(fraction: float, message: str) -> None:
    """A `Progress` that reports nothing."""


def class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_image(entry: os.DirEntry) -> bool:
    return entry.name.lower().endswith(IMG_EXTENSIONS) and entry.is_file()


def _holds_images(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(_is_image(e) for e in entries)  # stops at the first image


def layout_at(path: Path) -> DataLocation | None:
    """The layout of the data set at `path`, if it holds one; cheap (a few directory listings)."""
    if all((path / name).is_file() for name in BATCH_FILES):
        return DataLocation("batches", path, LAYOUT_NAMES["batches"])
    if (path / "train").is_dir() and (path / "test").is_dir():
        return DataLocation("imagefolder", path, LAYOUT_NAMES["imagefolder"])
    if any(_holds_images(folder) for folder in class_dirs(path)):
        return DataLocation("flat", path, LAYOUT_NAMES["flat"])
    return None


def is_cifar10(location: DataLocation) -> bool:
    """CIFAR-10 is the official batches or an ImageFolder copy of its own train/test split with its ten classes."""
    if location.kind == "batches":
        return True
    if location.kind == "flat":
        return False
    return tuple(p.name for p in class_dirs(location.path / "train")) == CIFAR10_CLASSES


def _images(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        images = sorted((e for e in entries if _is_image(e)), key=lambda e: e.name)
    if not images:
        raise DataError(f"class folder {folder} has no images ({', '.join(IMG_EXTENSIONS)}): add images or remove it")
    return images


def _test_share(relative: str) -> float:
    """Where a file's relative path falls in [0, 1) by a stable hash (SHA-256, not Python's salted `hash`)."""
    return int.from_bytes(hashlib.sha256(relative.encode()).digest()[:8], "big") / 2**64


def split_class(folder: Path) -> tuple[list[os.DirEntry], list[os.DirEntry]]:
    """A flat class folder's (train, test) files: test where `_test_share` < `TEST_FRACTION`, with at least one of
    each (the file nearest the boundary moves)."""
    images = _images(folder)
    if len(images) < 2:
        raise DataError(f"class folder {folder} holds 1 image: a class needs at least 2 (one to train on, one to "
                        "test on): add images or remove the folder")
    shares = {e.name: _test_share(f"{folder.name}/{e.name}") for e in images}
    test = {n for n, share in shares.items() if share < TEST_FRACTION}
    if not test:
        test = {min(shares, key=shares.__getitem__)}
    elif len(test) == len(images):
        test.remove(max(shares, key=shares.__getitem__))
    return [e for e in images if e.name not in test], [e for e in images if e.name in test]


def folder_files(location: DataLocation) -> FolderFiles:
    """The image files of an ImageFolder (either layout), without decoding or even `stat`-ing them."""
    root = location.path
    if location.kind == "flat":
        classes = [p.name for p in class_dirs(root)]
        splits = [split_class(root / name) for name in classes]
        return FolderFiles(classes, [train for train, _ in splits], [test for _, test in splits])
    classes = [p.name for p in class_dirs(root / "train")]
    if not classes:
        raise DataError(f"{root / 'train'} has no class folders: put the images in {root}/train/<class>/")
    test_classes = [p.name for p in class_dirs(root / "test")]
    if test_classes != classes:
        raise DataError(f"{root / 'test'} holds classes {test_classes} but {root / 'train'} holds {classes}: "
                        "use the same class folders in both")
    return FolderFiles(classes, [_images(root / "train" / name) for name in classes],
                       [_images(root / "test" / name) for name in classes])


def scan_imagefolder(location: DataLocation) -> tuple[list[str], dict[str, list[tuple[str, int]]], list[tuple]]:
    """Class names, the (file, label) pairs of each split, and every file's (split, class, name, size, mtime) for
    the cache key and the fingerprint (a flat folder's also names its split rule). Paths stay strings: building
    60,000 `Path` objects would cost more than the 60,000 `stat` calls."""
    found = folder_files(location)
    files: dict[str, list[tuple[str, int]]] = {}
    stamps: list[tuple] = [("flat", TEST_FRACTION)] if location.kind == "flat" else []
    for split, per_class in (("train", found.train), ("test", found.test)):
        files[split] = []
        for label, (name, entries) in enumerate(zip(found.classes, per_class)):
            for entry in entries:
                stat = entry.stat()
                files[split].append((entry.path, label))
                stamps.append((split, name, entry.name, stat.st_size, stat.st_mtime_ns))
    return found.classes, files, stamps


def batch_stamps(folder: Path) -> list[tuple]:
    return [(n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns) for n in BATCH_FILES]


def stamps(location: DataLocation) -> list[tuple]:
    """Every file's name, size and mtime: what the cache key and the fingerprint cover."""
    return batch_stamps(location.path) if location.kind == "batches" else scan_imagefolder(location)[2]


def folder_stamp(location: DataLocation) -> tuple:
    """The modification times of the folders that hold the files: a file added, removed or renamed changes one."""
    root = location.path
    if location.kind == "batches":
        folders = [root]
    elif location.kind == "flat":
        folders = [root, *class_dirs(root)]
    else:
        folders = [root, root / "train", root / "test", *class_dirs(root / "train"), *class_dirs(root / "test")]
    return tuple((str(f), f.stat().st_mtime_ns) for f in folders)
