"""A run as a bundle directory: ``run.json`` holds its runs row and models rows, and one zstd Parquet file per
non-empty metric table holds the rows without ``run_id``, in float32/int32. The recorded runs under
``assets/recorded/`` are bundles, replayed by importing them into `RunStore.memory()`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..config import Config, ConfigError
from .base import _PANDAS_TYPES, StoreError, converters
from .runs import Runs
from .schema import COLUMNS, METRIC_TABLES, nullable

BUNDLE_FORMAT = 1
_BUNDLE_TYPES = {"f": "float32", "i": "int32"}  # dtype kind -> compact type; text becomes categorical
_PRIVATE = ("key_hash", "owner", "worker", "lease_expires", "control")  # who ran it and how to control it


class Bundles(Runs):
    def export_bundle(self, run_id: str, directory: str | Path) -> Path:
        """Write run.json and one compact Parquet file per non-empty metric table into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        run = self.run(run_id)
        run["config"] = json.loads(run["config"])
        for private in _PRIVATE:
            run[private] = None  # they stay on this machine
        models = self._read(f"SELECT {', '.join(COLUMNS['models'])} FROM models WHERE run_id = ? ORDER BY idx",
                            (run_id,))
        bundle = {"format": BUNDLE_FORMAT, "run": run,
                  "models": [dict(zip(list(COLUMNS["models"])[1:], row[1:])) for row in models]}
        (directory / "run.json").write_text(json.dumps(bundle, indent=2) + "\n")
        for table in METRIC_TABLES:
            rows = getattr(self, table)(run_id).drop(columns="run_id")
            path = directory / f"{table}.parquet"
            if rows.empty:
                path.unlink(missing_ok=True)  # a stale file from an earlier export would be imported
                continue
            rows = rows.astype({name: _BUNDLE_TYPES.get(dtype.kind, "category")
                                for name, dtype in rows.dtypes.items() if dtype.kind in "fiO" or dtype == "str"})
            rows.to_parquet(path, index=False, compression="zstd")
        return directory

    def import_bundle(self, directory: str | Path) -> str:
        """Read a bundle written by `export_bundle` into this store; return its run id. The run keeps the state it
        was recorded in: importing is not a status change."""
        directory = Path(directory)
        try:
            bundle = json.loads((directory / "run.json").read_text())
            run, models = bundle["run"], bundle["models"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise StoreError(f"{directory.name} is not a run bundle ({error}): give a folder written by "
                             "export_bundle, with run.json in it") from None
        if bundle.get("format") != BUNDLE_FORMAT:
            raise StoreError(f"bundle {directory.name} has format {bundle.get('format')!r}; this version reads format "
                             f"{BUNDLE_FORMAT}: record it again with `python -m explorer record`")
        try:
            config_json = Config.from_dict(run["config"]).to_json(indent=None)
        except ConfigError as error:
            raise StoreError(f"bundle {directory.name} holds a configuration this version cannot read ({error}): "
                             "record it again with `python -m explorer record`") from None
        run_id = run["run_id"]
        tables = {}
        for table in METRIC_TABLES:
            path = directory / f"{table}.parquet"
            if path.exists():
                rows = pd.read_parquet(path)
                convert = converters(table)
                missing = [name for name, _ in convert if name not in rows and not nullable(table, name)]
                if missing:
                    raise StoreError(f"{path.name} of {directory.name} lacks columns {', '.join(missing)}: export "
                                     "the bundle again")
                columns = [rows[name].astype(_PANDAS_TYPES[COLUMNS[table][name]]).tolist() if name in rows
                           else [None] * len(rows) for name, _ in convert]
                tables[table] = [(run_id, *values) for values in zip(*columns)]
        model_columns = converters("models")
        row = {**{name: None for name in COLUMNS["runs"]}, **run, "config": config_json}
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise StoreError(f"run {run_id} is already in the run store: delete it there first to import it again")
            self._insert(conn, "runs", [tuple(row[name] for name in COLUMNS["runs"])])
            self._insert(conn, "models", [
                (run_id, *(m[name] if m[name] is None else to(m[name]) for name, to in model_columns))
                for m in models
            ])
            for table, table_rows in tables.items():
                self._insert(conn, table, table_rows)
        return run_id
