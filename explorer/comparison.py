"""Comparing stored runs: which runs to open on, their tables side by side, one curve across them, final numbers.

What the Compare page draws (explorer/ui, pages/Compare.py) is computed here from store reads, so the page only
picks and draws. Two runs are like for like when they trained on the same data, as many images, for as long, in
batches of the same size: only then does a difference between their curves say something about the nets, not the
recipe. Compare opens on like-for-like runs (the newest run trained here and those like it; else the classic demo
recorded on a GPU, alone), never on a GPU run beside a CPU one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .config import Config, ConfigError
from .metrics import final_numbers, running_mean
from .palette import depth_of, family_of
from .store import RunStore

# key -> (table, column, title); training error comes per batch (steps) or evaluated without augmentation (evals)
CURVES = {
    "test_err": ("evals", "test_err", "Test error"),
    "train_err": ("steps", "train_err", "Training error (batches)"),
    "eval_train_err": ("evals", "train_err", "Training error (evaluated)"),
    "loss": ("steps", "loss", "Training loss"),
}
TABLES = ("steps", "evals", "models", "lesions")


def recipe(config: Config) -> tuple:
    """What makes two runs' curves comparable: data source and classes, images, length and batch size."""
    total, _ = config.run_steps()
    return (config.data.source, config.data.classes, config.data.subset, config.data.test_subset, total,
            config.optim.batch_size)


def describe(config: Config, device: str) -> str:
    """A run's recipe in a few words, for a legend: ``GPU, 50,000 images, 30 epochs``."""
    where = "GPU" if "cuda" in (device or "").lower() else "CPU"
    length = f"{config.optim.epochs:g} epochs" if not config.optim.steps else f"{config.optim.steps:,} steps"
    return f"{where}, {config.data.subset:,} images, {length}"


def _config(row: pd.Series) -> Config | None:
    try:
        return Config.from_json(row["config"])
    except ConfigError:
        return None


def default_runs(runs: pd.DataFrame, recorded: set[str], demo: dict[str, str]) -> list[str]:
    """The runs Compare opens on. `runs` is the store's runs table (newest first), `recorded` the ids of recorded
    runs, `demo` the classic demo's recordings by where they were recorded (``gpu``/``cpu`` -> run id). The newest
    run trained here (not a sweep member, not a recording) and up to two more trained with the same recipe; else the
    GPU recording of the classic demo alone (the CPU one when there is no GPU recording)."""
    trained = runs[runs["sweep_id"].isna() & ~runs["run_id"].isin(recorded)]
    if len(trained):
        newest = _config(trained.iloc[0])
        like = [row.run_id for _, row in trained.iterrows()
                if newest is not None and (c := _config(row)) is not None and recipe(c) == recipe(newest)]
        return like[:3] or trained["run_id"][:1].tolist()
    return [demo[kind] for kind in ("gpu", "cpu") if kind in demo][:1]


def default_difference(series: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """The degradation gap within one run (its deepest plain net minus its shallowest), never a difference across
    runs, whose scale or data may differ; else the first two curves."""
    for run in dict.fromkeys(run for run, _ in series.values()):
        plain = sorted((s for s, (r, model) in series.items() if r == run and family_of(model) == "plain"),
                       key=lambda s: depth_of(series[s][1]))
        if len(plain) >= 2 and depth_of(series[plain[-1]][1]) > depth_of(series[plain[0]][1]):
            return plain[-1], plain[0]
    first, second = list(series)[:2]
    return first, second


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: each run's title (what a legend groups its models under) and its tables, stacked with a
    ``run`` column holding that title."""

    titles: dict[str, str]  # run id -> title
    configs: dict[str, Config | None]
    tables: dict[str, pd.DataFrame]

    @classmethod
    def load(cls, store: RunStore, runs: pd.DataFrame, run_ids: list[str]) -> "Comparison":
        """`runs`: the store's runs table with a ``title`` column (what the page's picker shows)."""
        rows = runs.set_index("run_id").loc[run_ids]
        titles, configs = {}, {}
        for run_id, row in rows.iterrows():
            configs[run_id] = config = _config(row)
            recipe_text = describe(config, row["device"]) if config else "configuration unreadable"
            titles[run_id] = f"{row['name'] or row['preset'] or 'run'} {run_id[-4:]} ({recipe_text})"
        tables = {table: pd.concat([getattr(store, table)(r).assign(run=titles[r]) for r in run_ids],
                                   ignore_index=True) for table in TABLES}
        return cls(titles, configs, tables)

    @property
    def like_for_like(self) -> bool:
        """Whether every run trained with the same recipe (see the module docstring)."""
        return len({recipe(c) if c else None for c in self.configs.values()}) <= 1

    def curve(self, key: str) -> pd.DataFrame:
        """One curve of every model of every run: per-batch values as their running mean."""
        table, column, _ = CURVES[key]
        frame = self.tables[table].rename(columns={column: key})
        return running_mean(frame, key, by=("run", "model")) if table == "steps" else frame

    def finals(self) -> pd.DataFrame:
        finals = final_numbers(self.tables["steps"], self.tables["evals"], self.tables["models"])
        finals.insert(0, "run", finals["run_id"].map(self.titles))
        return finals
