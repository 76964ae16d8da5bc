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


def running_mean(frame: pd.DataFrame, y: str, by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """`frame` in step order with `y` replaced by its trailing running mean within each group (each model of
    each run): per-batch numbers are noisy, and the first points average what exists so far."""
    frame = frame.sort_values("step")
    means = frame.groupby(list(by), sort=False)[y].transform(
        lambda values: values.rolling(smoothing_window(len(values)), min_periods=1).mean())
    return frame.assign(**{y: means})


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


