"""Images for the experiments: CIFAR-10, any image folder, or a built-in synthetic set, as uint8 tensors.

One job per module, in the order data flows:

- `layout`: how a data set lies on disk (python batches, ImageFolder with or without a train/test split); `DataError`.
- `sources`: sources by name: which exist, where, their classes, sizes and fingerprints (torch-free: the web
  server's view of the data). `download`: fetching CIFAR-10.
- `decode` and `cache`: image files and pickled batches decoded to uint8 arrays, cached on disk.
- `images`: `ImageData`; `subsets`: class selection and balanced, seeded subsets; `synthetic`: the generated set.
- `load`: `load_data(cfg)`, the front door. `batching`: `BatchStream` and the evaluation batches, on the device.

Names are imported from their module on first use, so ``from explorer.data import available_sources`` (or
``import explorer.data.sources``) does not import torch; ``from explorer.data import BatchStream`` does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES: dict[str, tuple[str, ...]] = {
    "layout": ("DataError", "DataLocation", "LayoutKind", "Progress", "IMAGE_SIZE", "BATCHES_FOLDER", "BATCH_FILES",
               "CACHE_VERSION", "IMG_EXTENSIONS", "LAYOUT_NAMES", "TEST_FRACTION"),
    "download": ("download_cifar10", "ARCHIVE_NAME", "ARCHIVE_BYTES"),
    "sources": ("SourceSizes", "available_sources", "check_fits", "data_fingerprint", "data_roots", "find_cifar10",
                "locate_source", "resolve_data_dir", "source_classes", "source_sizes"),
    "cache": ("BATCH_MD5",),
    "images": ("ImageData", "DataKind"),
    "subsets": ("select_subset",),
    "synthetic": ("synthetic_cifar", "SYNTHETIC_CHUNK"),
    "batching": ("BatchStream", "normalize", "crop_flip", "eval_batches", "CIFAR10_MEAN", "CIFAR10_STD", "CROP_PAD"),
    "load": ("load_data", "load_full"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})


if TYPE_CHECKING:  # what type checkers and editors see; at run time `__getattr__` imports on first use
    from explorer.data.batching import (CIFAR10_MEAN, CIFAR10_STD, CROP_PAD, BatchStream, crop_flip, eval_batches,
                                        normalize)
    from explorer.data.cache import BATCH_MD5
    from explorer.data.download import ARCHIVE_BYTES, ARCHIVE_NAME, download_cifar10
    from explorer.data.images import DataKind, ImageData
    from explorer.data.layout import (BATCH_FILES, BATCHES_FOLDER, CACHE_VERSION, IMAGE_SIZE, IMG_EXTENSIONS,
                                      LAYOUT_NAMES, TEST_FRACTION, DataError, DataLocation, LayoutKind, Progress)
    from explorer.data.load import load_data, load_full
    from explorer.data.sources import (SourceSizes, available_sources, check_fits, data_fingerprint, data_roots,
                                       find_cifar10, locate_source, resolve_data_dir, source_classes, source_sizes)
    from explorer.data.subsets import select_subset
    from explorer.data.synthetic import SYNTHETIC_CHUNK, synthetic_cifar
