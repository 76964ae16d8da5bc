"""Decoding a source's files into uint8 arrays, cached in the cache directory ($EXPLORER_CACHE_DIR).

The official batches are Python pickles: they are unpickled only after every file's md5 matches the one torchvision
publishes, so a planted file cannot run code. Image files are decoded once (`explorer.data.decode`: PIL, resized to
32x32 RGB, in parallel processes when there are many) and cached with `torch.save`, keyed by the source folder and
every file's size and mtime (and a flat folder's split rule), so a changed folder is decoded again and an unchanged
one loads in well under a second. Nothing is written into a data folder.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from explorer.config import CIFAR10_CLASSES
from explorer.data.decode import DecodeError, decode_many
from explorer.data.layout import (BATCH_FILES, CACHE_VERSION, IMAGE_SIZE, DataError, DataLocation, Progress,
                                  batch_stamps, scan_imagefolder)
from explorer.settings import settings

# md5 of each official batch file, as torchvision publishes them (torchvision.datasets.CIFAR10.train_list and
# test_list; tests/test_data.py checks that they still agree). Written out so that workers need not import torchvision.
BATCH_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
}


def _decode_images(items: list[tuple[str, int]], report: Progress, done: int, total: int) -> tuple[Tensor, Tensor]:
    """Decode the files of `items` (`explorer.data.decode`, in parallel when there are many) with their labels."""
    def progress(count: int) -> None:
        report((done + count) / total, f"decoding images: {done + count:,} of {total:,}")

    try:
        pixels = decode_many([path for path, _ in items], progress)
    except DecodeError as error:
        raise DataError(str(error)) from None
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), labels


def _decode_imagefolder(classes: list[str], files: dict, report: Progress) -> dict:
    total = len(files["train"]) + len(files["test"])
    train_x, train_y = _decode_images(files["train"], report, 0, total)
    test_x, test_y = _decode_images(files["test"], report, len(files["train"]), total)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "classes": classes}


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_batch(path: Path) -> tuple[Tensor, Tensor]:
    """One official batch file, unpickled only once its md5 matches the published one."""
    try:
        checksum = _md5(path)
    except OSError as error:
        raise DataError(f"cannot read CIFAR-10 batch {path.name} ({error.strerror}): download it again") from None
    if checksum != BATCH_MD5[path.name]:
        raise DataError(f"CIFAR-10 batch {path.name} does not match the official checksum, so it is not loaded (it "
                        "is a pickle, which could run code): replace the folder with the official download")
    try:
        with open(path, "rb") as file:
            batch = pickle.load(file, encoding="bytes")
        pixels = np.asarray(batch[b"data"], dtype=np.uint8)
        images = torch.from_numpy(pixels).reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)
        labels = torch.tensor(batch[b"labels"], dtype=torch.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, IndexError, TypeError, ValueError,
            RuntimeError, AttributeError) as error:
        raise DataError(
            f"CIFAR-10 batch {path} is corrupt ({type(error).__name__}: {error}): delete {path.parent} and download "
            "it again"
        ) from None
    if len(labels) == 0 or len(images) != len(labels) or labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES):
        raise DataError(
            f"CIFAR-10 batch {path} is corrupt ({len(images)} images, {len(labels)} labels): delete {path.parent} "
            "and download it again"
        )
    return images, labels


def _decode_batches(folder: Path, report: Progress) -> dict:
    parts = []
    for i, name in enumerate(BATCH_FILES):
        report(i / len(BATCH_FILES), f"reading {name}")
        parts.append(_read_batch(folder / name))
    train, test = parts[:-1], parts[-1]
    return {
        "train_x": torch.cat([x for x, _ in train]), "train_y": torch.cat([y for _, y in train]),
        "test_x": test[0], "test_y": test[1], "classes": list(CIFAR10_CLASSES),
    }


def _cache_dir() -> Path:
    folder = settings().cache_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create the cache folder {folder} ({error.strerror}): set EXPLORER_CACHE_DIR to a "
                        "writable folder") from None
    return folder


def load_cached(location: DataLocation, report: Progress) -> dict:
    """The decoded arrays of `location` (train_x, train_y, test_x, test_y, classes), from the cache when its key
    (path, sizes, mtimes) still matches."""
    if location.kind == "batches":
        stamps = batch_stamps(location.path)
    else:
        classes, files, stamps = scan_imagefolder(location)
    source = str(location.path.resolve())
    key = hashlib.sha256(repr((CACHE_VERSION, source, stamps)).encode()).hexdigest()
    cache_file = _cache_dir() / f"{location.kind}-{hashlib.sha256(source.encode()).hexdigest()[:16]}.pt"
    if cache_file.is_file():
        try:
            cached = torch.load(cache_file, weights_only=True)
            if cached.get("key") == key:
                return cached
        except Exception:  # an unreadable cache is only a cache miss
            pass
    if location.kind == "batches":
        arrays = _decode_batches(location.path, report)
    else:
        arrays = _decode_imagefolder(classes, files, report)
    arrays["key"] = key
    partial = cache_file.with_suffix(f".{os.getpid()}.tmp")
    try:
        torch.save(arrays, partial)
        os.replace(partial, cache_file)
    except OSError as error:
        partial.unlink(missing_ok=True)
        warnings.warn(f"could not cache decoded images in {cache_file}: {error}", stacklevel=2)
    return arrays
