"""A sweep's results as tables: one tidy row per member and metric, and mean / sd / min / max over seeds.

    table(store, sweep_id)    sweep_id, run_id, model, family, depth, <grid fields>, seed, metric, value, status
    summary(store, sweep_id)  model, family, depth, <run-setting fields>, metric, mean, sd, min, max, n, members

Metrics come from `metrics.final_numbers` (the last evaluation's training and test error on fixed samples, the best
test error, the smoothed final batch error and loss) and ``train_seconds``, the member's training time. Every member
has a row per metric, with an empty value where it has none yet (waiting, failed before its first record). The
summary aggregates the members that finished: diverged, failed or stopped members are counted in ``members`` but not
in ``n``, so a mean is never drawn from a half-trained net. Pure pandas over the store: nothing here draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import Config
from ..metrics import final_numbers
from ..palette import model_order
from ..states import RunState
from ..store import RunStore
from .rows import member_rows, spec_of
from .spec import MODEL_FIELDS, field_value

METRICS: tuple[str, ...] = ("train_err", "test_err", "best_test_err", "batch_train_err", "loss", "train_seconds")
SUMMARY_METRICS: tuple[str, ...] = ("train_err", "test_err")


def _records(store: RunStore, run_ids: list[str]) -> pd.DataFrame:
    """`final_numbers` of the members, one row per run, plus their training seconds."""
    steps = [store.steps(r) for r in run_ids]
    evals = [store.evals(r) for r in run_ids]
    models = [store.models(r) for r in run_ids]
    steps_frame = pd.concat(steps, ignore_index=True) if steps else pd.DataFrame()
    if steps_frame.empty:
        return pd.DataFrame(columns=["run_id", *METRICS])
    finals = final_numbers(steps_frame, pd.concat(evals, ignore_index=True), pd.concat(models, ignore_index=True))
    seconds = steps_frame.groupby("run_id")["wall"].max().rename("train_seconds")
    return finals.merge(seconds, left_on="run_id", right_index=True, how="left")


def table(store: RunStore, sweep_id: str) -> pd.DataFrame:
    """One row per member and metric (see the module docstring), sorted by family, depth, grid fields and seed."""
    spec = spec_of(store, sweep_id)
    fields = spec.grid_fields
    members = member_rows(store, sweep_id)
    finals = _records(store, [m["run_id"] for m in members]).set_index("run_id")
    rows = []
    for member in members:
        config = Config.from_json(member["config"])
        model = config.models[0]
        keys = {"sweep_id": sweep_id, "run_id": member["run_id"], "model": model.label, "family": model.family,
                "depth": model.depth, **{key: field_value(config, key) for key in fields}, "seed": config.seed}
        for metric in METRICS:
            value = finals.at[member["run_id"], metric] if member["run_id"] in finals.index else np.nan
            rows.append({**keys, "metric": metric, "value": float(value), "status": member["status"]})
    columns = ["sweep_id", "run_id", "model", "family", "depth", *[f for f in fields if f not in ("family", "depth")],
               "seed", "metric", "value", "status"]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    order = frame["model"].map(model_order)
    sort_keys = [*[f for f in fields if f not in MODEL_FIELDS], "seed"]
    frame = frame.assign(_order=order).sort_values(["_order", *sort_keys, "metric"], kind="stable")
    return frame.drop(columns="_order").reset_index(drop=True)


def summarize(tidy: pd.DataFrame, metrics: tuple[str, ...] = SUMMARY_METRICS) -> pd.DataFrame:
    """Mean, sd (n - 1), min and max over seeds of each metric, per model and run setting, of a `table`."""
    keys = [c for c in tidy.columns if c not in ("sweep_id", "run_id", "seed", "metric", "value", "status")]
    rows = tidy[tidy["metric"].isin(metrics)]
    done = rows[(rows["status"] == str(RunState.FINISHED)) & rows["value"].notna()]
    grouped = done.groupby([*keys, "metric"], sort=False)["value"]
    stats = grouped.agg(mean="mean", sd="std", min="min", max="max", n="count")
    members = rows.groupby([*keys, "metric"], sort=False)["run_id"].nunique().rename("members")
    frame = members.to_frame().join(stats).reset_index()
    frame["n"] = frame["n"].fillna(0).astype(int)
    return frame[[*keys, "metric", "mean", "sd", "min", "max", "n", "members"]]


def summary(store: RunStore, sweep_id: str) -> pd.DataFrame:
    """`summarize` of the sweep's `table`."""
    return summarize(table(store, sweep_id))
