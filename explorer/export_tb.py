"""TensorBoard export: a stored run as event files that ``tensorboard --logdir DIR`` opens.

One TensorBoard run per model, ``DIR/<run id>/<model>/``, so TensorBoard draws the twins' curves on one chart:

- per step: ``loss``, ``train_err`` (the batch's training error, %) and ``lr``;
- per evaluation: ``eval/train_err``, ``eval/test_err``, ``eval/train_loss``, ``eval/test_loss``;
- per probe step: each layer's gradient norm as a scalar ``grad_norm/<model>/<NN>.<layer name>`` (NN: the layer's
  index, input to output, so TensorBoard's alphabetical order is the forward order) and all layers' norms as one
  histogram ``grad_norm/<model>``;
- the run's configuration as text ``config``.

Steps are the store's (the 0-based index of the last update a record covers); wall times are the run's start plus
its seconds of training, so TensorBoard's "relative" axis is training time with pauses left out. Exporting again
into the same folder replaces the earlier export's event files.

Needs the ``tensorboard`` package (an optional extra, ``pip install tensorboard``; requirements-dev.txt installs it
for the tests): writing goes through PyTorch's `torch.utils.tensorboard.SummaryWriter`. Evidence: tests/test_export.py
reads the files back with TensorBoard's own `EventAccumulator` and finds the store's values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .store import RunStore


class ExportError(Exception):
    """The export cannot run as asked; the message says what to change."""


def _summary_writer() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ExportError("TensorBoard export needs the tensorboard package: pip install tensorboard (an optional "
                          "extra; requirements-dev.txt has it)") from None
    return SummaryWriter


def _start_seconds(store: RunStore, run_id: str) -> float:
    """The run's start as Unix seconds (its creation when it never started)."""
    row = store.run(run_id)
    return pd.Timestamp(row["started"] or row["created"]).timestamp()


def layer_tag(model: str, layer: int, name: str, layers: int) -> str:
    return f"grad_norm/{model}/{layer:0{len(str(max(layers - 1, 1)))}d}.{name}"


def export_tensorboard(store: RunStore, run_id: str, logdir: Path) -> Path:
    """Write `run_id`'s records under ``logdir/<run id>/``; returns that folder (see the module docstring)."""
    SummaryWriter = _summary_writer()
    start = _start_seconds(store, run_id)  # StoreError for an unknown run
    steps, evals, probes = store.steps(run_id), store.evals(run_id), store.probes(run_id)
    config = store.config(run_id)
    folder = Path(logdir) / run_id
    walls = steps.drop_duplicates("step").set_index("step")["wall"] if len(steps) else pd.Series(dtype=float)
    for label in config.labels:
        target = folder / label
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ExportError(f"cannot write to {target} ({error.strerror or error}): choose a writable --logdir") \
                from None
        for old in target.glob("events.out.tfevents.*"):
            old.unlink()
        writer = SummaryWriter(log_dir=str(target), max_queue=10_000, flush_secs=3600)
        try:
            writer.add_text("config", f"```\n{config.to_json()}\n```", 0, walltime=start)
            for row in steps[steps["model"] == label].itertuples():
                wall = start + row.wall
                writer.add_scalar("loss", row.loss, row.step, walltime=wall)
                writer.add_scalar("train_err", row.train_err, row.step, walltime=wall)
                writer.add_scalar("lr", row.lr, row.step, walltime=wall)
            for row in evals[evals["model"] == label].itertuples():
                wall = start + row.wall
                for tag in ("train_err", "test_err", "train_loss", "test_loss"):
                    writer.add_scalar(f"eval/{tag}", getattr(row, tag), row.step, walltime=wall)
            _gradient_norms(writer, probes[probes["model"] == label], label, walls, start)
        finally:
            writer.close()
    return folder


def _gradient_norms(writer, probes: pd.DataFrame, label: str, walls: pd.Series, start: float) -> None:
    layers = int(probes["layer"].max()) + 1 if len(probes) else 0
    for step, rows in probes.groupby("step", sort=True):
        wall = start + float(walls.get(step, 0.0))
        rows = rows.sort_values("layer")
        for row in rows.itertuples():
            writer.add_scalar(layer_tag(label, row.layer, row.layer_name, layers), row.grad_norm, step, walltime=wall)
        writer.add_histogram(f"grad_norm/{label}", np.asarray(rows["grad_norm"], dtype=np.float64), step,
                             walltime=wall)
