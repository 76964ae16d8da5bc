"""Checkpoints: a run's models, optimisers and position, saved by its trainer and read by resumes and downloads.

One file per run beside the run store (``<store folder>/checkpoints/<run id>.pt``), replaced atomically, so a crash
while saving leaves the previous checkpoint intact. A finished run's last checkpoint holds its trained weights:
`export_weights` writes them as one ``state_dict`` per model (the loss landscape reads them too). Files are PyTorch's
format, so PyTorch is imported when one is read or written: the web server loads it only for a weights download.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .store import RunStore, StoreError


@dataclass
class Checkpoint:
    """Everything a resumed run needs: the last step it covers, wall time so far, and every model's state."""

    step: int
    wall: float
    active: list[str]
    diverged: dict[str, int]
    models: dict[str, dict]
    optimizers: dict[str, dict]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        import torch

        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(asdict(self), partial)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> "Checkpoint | None":
        if not path.is_file():
            return None
        import torch

        return cls(**torch.load(path, map_location="cpu", weights_only=True))


def checkpoint_path(store: RunStore, run_id: str) -> Path:
    return store.path.parent / "checkpoints" / f"{run_id}.pt"


def trained_weights(store: RunStore, run_id: str) -> dict[str, dict]:
    """label -> state_dict of a run's models at its last checkpoint (the end, for a finished run)."""
    checkpoint = Checkpoint.load(checkpoint_path(store, run_id)) if store.has_run(run_id) else None
    if checkpoint is None:
        raise StoreError(f"run {str(run_id)[:40]!r} has no saved weights here: only runs trained on this server "
                         "keep them (recorded runs hold metrics only)")
    return checkpoint.models


def weights_bytes(store: RunStore, run_id: str) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(trained_weights(store, run_id), buffer)
    return buffer.getvalue()


def export_weights(store: RunStore, run_id: str, out: Path) -> Path:
    data = weights_bytes(store, run_id)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    except OSError as error:
        raise StoreError(f"cannot write {out} ({error.strerror or error}): choose a writable file path") from None
    return out
