"""Decoding image files to 32x32 RGB uint8 arrays, in worker processes when there are many.

Kept apart from the rest of `explorer.data` so that the decoding processes import only PIL, NumPy and the torch-free
`explorer.data.layout` (a second or less), not PyTorch. CIFAR-10's 60,000 small JPEGs take about 20 s on one core;
one process per core divides that.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import numpy as np
from PIL import Image

from explorer.data.layout import IMAGE_SIZE

PARALLEL_FROM = 8000  # fewer files decode faster in this process than processes start
CHUNK = 2500


class DecodeError(ValueError):
    """A file could not be decoded; the message names it."""


def decode_files(paths: list[str]) -> np.ndarray:
    """``[N, 32, 32, 3]`` uint8 pixels of image files, converted to RGB and resized to 32x32."""
    pixels = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
                pixels[i] = np.asarray(image)
        except (OSError, ValueError) as error:
            raise DecodeError(f"cannot read image file {path} ({error}): replace or delete it") from None
    return pixels


def decode_many(paths: list[str], progress: Callable[[int], None]) -> np.ndarray:
    """`decode_files` over all `paths`, in one process per core when there are many (spawned, not forked: the
    caller may hold threads and database connections). `progress` gets the count decoded so far."""
    workers = min(len(os.sched_getaffinity(0)), 16)
    if len(paths) < PARALLEL_FROM or workers < 2:
        pixels = decode_files(paths)
        progress(len(paths))
        return pixels
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    parts: list[np.ndarray] = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for part in pool.map(decode_files, chunks):
            parts.append(part)
            progress(sum(len(p) for p in parts))
    return np.concatenate(parts)
