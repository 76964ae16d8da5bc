"""Downloading CIFAR-10's official python batches (torchvision's downloader, which checks the archive's md5).

Torchvision is imported only when a download starts, so locating data stays torch-free.
"""

from __future__ import annotations

import threading
from pathlib import Path

from explorer.data.layout import BATCHES_FOLDER, DataError, DataLocation, Progress, layout_at, silent

ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_BYTES = 170_498_071


def download_cifar10(root: Path, progress: Progress | None = None) -> DataLocation:
    """Fetch the official archive into `root`, reporting the bytes received through `progress` while it runs."""
    report = progress or silent
    archive = root / ARCHIVE_NAME
    failures: list[Exception] = []

    def fetch() -> None:
        import torchvision  # only here: everything else reads files itself

        try:
            torchvision.datasets.CIFAR10(str(root), download=True)
        except Exception as error:
            failures.append(error)

    worker = threading.Thread(target=fetch, name="cifar10-download", daemon=True)
    worker.start()
    while worker.is_alive():
        received = archive.stat().st_size if archive.is_file() else 0
        report(0.95 * min(received / ARCHIVE_BYTES, 1.0), f"downloading CIFAR-10 to {root}: {received / 1e6:.0f} of "
               f"{ARCHIVE_BYTES / 1e6:.0f} MB")
        worker.join(0.5)
    location = layout_at(root / BATCHES_FOLDER) if (root / BATCHES_FOLDER).is_dir() else None
    if failures or location is None:
        reason = f"{type(failures[0]).__name__}: {failures[0]}" if failures else f"no {BATCHES_FOLDER}/ appeared"
        raise DataError(
            f"could not download CIFAR-10 into {root} ({reason}): put {BATCHES_FOLDER}/ or an ImageFolder copy "
            "there, set $EXPLORER_DATA_DIR to where it is, or use the source synthetic"
        )
    report(1.0, "CIFAR-10 downloaded")
    return location
