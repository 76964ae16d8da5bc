"""Small numeric summaries of a run's records, shared by the charts, the verdicts and the pages.

Pure pandas on the store's DataFrames (columns in explorer.store): nothing here draws.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .palette import model_order


def smoothing_window(n: int) -> int:
    """Steps averaged for a noisy per-batch curve: a tenth of the history, between 1 and 50."""
    return int(max(1, min(50, n // 10)))


def running_mean(frame: pd.DataFrame, y: str, by: Sequence[str] = ("model",), window: int | None = None
                 ) -> pd.DataFrame:
    """`frame` in step order with `y` replaced by its trailing running mean within each group (each model of
    each run) over `window` steps (by default `smoothing_window` of the group's length): per-batch numbers are
    noisy, and the first points average what exists so far."""
    frame = frame.sort_values("step", kind="stable")
    values = frame[y].to_numpy(dtype=float)
    means = np.empty(len(values))
    for rows in frame.groupby(list(by), sort=False).indices.values():
        means[rows] = trailing_mean(values[rows], window or smoothing_window(len(rows)))
    return frame.assign(**{y: means})


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each value and the `window` - 1 before it, skipping missing ones (NaN where all are). Prefix
    sums, so a longer history leaves the earlier means bit for bit as they were (a live chart sends only new
    points)."""
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(0, end - window)
    n = counts[end] - counts[start]
    return np.where(n > 0, (sums[end] - sums[start]) / np.maximum(n, 1), np.nan)


def final_numbers(steps: pd.DataFrame, evals: pd.DataFrame, models: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (run, model): last step, epoch, final batch training error (mean of the last window),
    last evaluated training/test error, best test error, final loss, parameters and status."""
    keys = ["run_id", "model"]
    rows = []
    for (run_id, model), group in steps.sort_values("step").groupby(keys, sort=False):
        tail = group.tail(smoothing_window(len(group)))
        rows.append({
            "run_id": run_id, "model": model, "step": int(group["step"].iloc[-1]),
            "epoch": float(group["epoch"].iloc[-1]), "batch_train_err": float(tail["train_err"].mean()),
            "loss": float(tail["loss"].mean()),
        })
    table = pd.DataFrame(rows, columns=["run_id", "model", "step", "epoch", "batch_train_err", "loss"])
    if len(evals):
        ordered = evals.sort_values("step").groupby(keys, sort=False)
        last = ordered[["train_err", "test_err"]].last()
        best = ordered["test_err"].min().rename("best_test_err")
        table = table.merge(last.join(best).reset_index(), on=keys, how="outer")
    else:
        table = table.assign(train_err=np.nan, test_err=np.nan, best_test_err=np.nan)
    if models is not None and len(models):
        table = table.merge(models[keys + ["params", "status"]], on=keys, how="left")
    order = sorted(range(len(table)), key=lambda i: (table["run_id"].iat[i], model_order(table["model"].iat[i])))
    return table.iloc[order].reset_index(drop=True)


