"""A run's rows in the store: creating it, the records its trainer writes (metrics, model and run status,
progress), reading them back as DataFrames, exporting them, and the machines' calibration rows."""

from __future__ import annotations

import socket
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import pandas as pd

from ..config import Config
from ..states import ModelState, RunState
from .base import LIST_RUNS_HINT, Database, StoreError, code_version, converters, frame, marks, row_values, \
    run_state, stamped_id, utc_now, valid_run_id
from .schema import COLUMNS, JOB_COLUMNS, RUN_TABLES

FACTS = {"device", "data_source", "hostname", "torch_version", "code_version", "estimate_s", "peak_bytes"}


def _torch_version() -> str:
    try:
        return metadata.version("torch")  # without importing torch: readers and replays never need it
    except metadata.PackageNotFoundError:
        return ""


class Runs(Database):
    # --- writes ---------------------------------------------------------------------------
    def create_run(self, config: Config, *, device: str = "", data_source: str = "", preset: str = "",
                   models: Sequence[Mapping[str, Any]], status: RunState = RunState.QUEUED,
                   **job: Any) -> str:
        """Record a new run (status `status`, by default queued) and its models (status training); return its id.

        ``models`` rows have keys ``model`` (label), ``idx`` and ``params``, one per model of ``config``; `job`
        sets any of the job columns (owner, key_hash, fingerprint, device_kind, estimate_s, peak_bytes, budget_s,
        sweep_id). The queue creates runs queued or submitted; a replay or a test may record one in any state.
        """
        labels = sorted(str(m.get("model")) for m in models)
        if labels != sorted(config.labels):
            raise StoreError(f"models {labels} do not match the configuration's {sorted(config.labels)}: "
                             "give one row (model, idx, params) per configured model")
        unknown = sorted(set(job) - set(JOB_COLUMNS))
        if unknown:
            raise StoreError(f"create_run got unknown job column {unknown[0]!r}")
        status = run_state(status)
        model_columns = [(name, to) for name, to in converters("models") if name in ("model", "idx", "params")]
        with self._transaction() as conn:
            run_id = stamped_id("r")
            while conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                run_id = stamped_id("r")
            row = dict(run_id=run_id, name=config.name, preset=preset, config=config.to_json(indent=None),
                       status=str(status), created=utc_now(), started=None, ended=None, device=device,
                       data_source=data_source, torch_version=_torch_version(), code_version=code_version(),
                       hostname=socket.gethostname(), error="", **{c: None for c in JOB_COLUMNS})
            row.update(job)
            self._insert(conn, "runs", [tuple(row[name] for name in COLUMNS["runs"])])
            self._insert(conn, "models", [
                (*row_values("models", run_id, m, model_columns), str(ModelState.TRAINING), None) for m in models
            ])
        return run_id

    def append(self, run_id: str, *, steps: Iterable[Mapping[str, Any]] = (),
               evals: Iterable[Mapping[str, Any]] = (), probes: Iterable[Mapping[str, Any]] = (),
               lesions: Iterable[Mapping[str, Any]] = ()) -> None:
        """Write metric rows (dicts keyed by the table's columns, without run_id) in one transaction."""
        batches = {"steps": steps, "evals": evals, "probes": probes, "lesions": lesions}
        values = {}
        for table, rows in batches.items():
            convert = converters(table)
            values[table] = [row_values(table, run_id, row, convert) for row in rows]
        if not any(values.values()):
            return
        with self._transaction() as conn:
            self._require(conn, run_id)
            for table, table_rows in values.items():
                self._insert(conn, table, table_rows)

    def set_status(self, run_id: str, status: RunState | str, error: str = "") -> None:
        """Move the run to `status` if its life allows it (`states.TRANSITIONS`; else `IllegalTransition`): the
        first ``running`` stamps ``started``, a final status stamps ``ended``, and a status no worker holds clears
        the worker and its lease."""
        with self._transaction() as conn:
            self._change_status(conn, run_id, run_state(status), error)

    def set_model_status(self, run_id: str, model: str, status: ModelState | str,
                         diverged_step: int | None = None) -> None:
        try:
            status = ModelState(status)
        except ValueError:
            raise StoreError(f"model status {status!r} is not one of {', '.join(s.value for s in ModelState)}"
                             ) from None
        with self._transaction() as conn:
            self._require(conn, run_id)
            updated = conn.execute(
                "UPDATE models SET status = ?, diverged_step = COALESCE(?, diverged_step) "
                "WHERE run_id = ? AND model = ?", (str(status), diverged_step, run_id, model),
            ).rowcount
            if not updated:
                known = [m for (m,) in conn.execute("SELECT model FROM models WHERE run_id = ?", (run_id,))]
                raise StoreError(f"run {run_id} has no model {model!r}: its models are {', '.join(known)}")

    def set_progress(self, run_id: str, progress: Any) -> None:
        """Store the trainer's latest `Progress` (anything with ``to_json``) for the pages to read."""
        with self._transaction() as conn:
            conn.execute("UPDATE runs SET progress = ? WHERE run_id = ?", (progress.to_json(), run_id))

    def set_run_facts(self, run_id: str, **facts: Any) -> None:
        """Update descriptive columns once a worker knows them (device, data_source, hostname, torch_version)."""
        if not facts or set(facts) - FACTS:
            raise StoreError(f"set_run_facts takes {', '.join(sorted(FACTS))}")
        with self._transaction() as conn:
            self._require(conn, run_id)
            conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in facts)} WHERE run_id = ?",
                         [*facts.values(), run_id])

    def truncate_after(self, run_id: str, step: int) -> None:
        """Delete the run's step, evaluation and probe rows after `step` (a resumed run writes them again)."""
        with self._transaction() as conn:
            self._require(conn, run_id)
            for table in ("steps", "evals", "probes"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ? AND step > ?", (run_id, step))
            conn.execute("UPDATE models SET status = ?, diverged_step = NULL WHERE run_id = ? AND "
                         "(diverged_step IS NULL OR diverged_step > ?)", (str(ModelState.TRAINING), run_id, step))

    def delete_run(self, run_id: str) -> None:
        with self._transaction() as conn:
            self._require(conn, run_id)
            for table in RUN_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    # --- reads ----------------------------------------------------------------------------
    def runs(self, statuses: Iterable[RunState] | None = None) -> pd.DataFrame:
        """Every run (or those in `statuses`), newest first."""
        where, values = "", []
        if statuses is not None:
            values = [str(run_state(s)) for s in statuses]
            where = f"WHERE status IN ({marks(values)}) " if values else "WHERE 0 "
        return frame("runs", self._read(f"SELECT {', '.join(COLUMNS['runs'])} FROM runs {where}"
                                        "ORDER BY created DESC, run_id DESC", values))

    def has_run(self, run_id: str) -> bool:
        return valid_run_id(run_id) and bool(self._read("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)))

    def run(self, run_id: str) -> dict[str, Any]:
        """The runs row as stored: timestamps are ISO 8601 strings (UTC), ``config`` is JSON text."""
        rows = self._read(f"SELECT {', '.join(COLUMNS['runs'])} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise StoreError(f"unknown run id {str(run_id)[:40]!r} in the run store: {LIST_RUNS_HINT}")
        return dict(zip(COLUMNS["runs"], rows[0]))

    def status(self, run_id: str) -> RunState:
        return RunState(self.run(run_id)["status"])

    def config(self, run_id: str) -> Config:
        return Config.from_json(self.run(run_id)["config"])

    def models(self, run_id: str) -> pd.DataFrame:
        return self._select("models", run_id, "idx")

    def steps(self, run_id: str, model: str | None = None, since_step: int | None = None) -> pd.DataFrame:
        """Per-step rows, optionally of one model and only after step ``since_step`` (for incremental polling)."""
        return self._select("steps", run_id, "model, step", model=model, since_step=since_step)

    def evals(self, run_id: str, model: str | None = None, since_step: int | None = None) -> pd.DataFrame:
        return self._select("evals", run_id, "model, step", model=model, since_step=since_step)

    def probes(self, run_id: str, model: str | None = None, step: int | None = None,
               since_step: int | None = None) -> pd.DataFrame:
        return self._select("probes", run_id, "model, step, layer", model=model, step=step, since_step=since_step)

    def lesions(self, run_id: str) -> pd.DataFrame:
        return self._select("lesions", run_id, "model, block")

    def _select(self, table: str, run_id: str, order: str, model: str | None = None,
                since_step: int | None = None, step: int | None = None) -> pd.DataFrame:
        conn = self._conn()
        self._require(conn, run_id)
        conditions = {"run_id = ?": run_id, "model = ?": model, "step > ?": since_step, "step = ?": step}
        where = {sql: value for sql, value in conditions.items() if value is not None}
        return frame(table, conn.execute(f"SELECT {', '.join(COLUMNS[table])} FROM {table} "
                                         f"WHERE {' AND '.join(where)} ORDER BY {order}", list(where.values())
                                         ).fetchall())

    def latest_step(self, run_id: str) -> int:
        """The highest recorded step of any model, -1 before the first."""
        conn = self._conn()
        self._require(conn, run_id)
        # One primary-key lookup per model instead of a scan of the run's steps.
        (latest,) = conn.execute(
            "SELECT MAX((SELECT MAX(step) FROM steps WHERE steps.run_id = models.run_id AND steps.model = "
            "models.model)) FROM models WHERE run_id = ?", (run_id,),
        ).fetchone()
        return -1 if latest is None else latest

    # --- calibration: a machine's measured speed (explorer.estimate) ------------------------
    def save_calibration(self, row: Mapping[str, Any]) -> None:
        with self._transaction() as conn:
            self._insert(conn, "calibration", [tuple(row[name] for name in COLUMNS["calibration"])])

    def calibration_rows(self) -> list[dict[str, Any]]:
        """Every machine's calibration (the calibration table's columns), the latest measured first."""
        columns = list(COLUMNS["calibration"])
        return [dict(zip(columns, row)) for row in
                self._read(f"SELECT {', '.join(columns)} FROM calibration ORDER BY measured DESC")]

    # --- export ---------------------------------------------------------------------------
    def metrics(self, run_id: str) -> pd.DataFrame:
        """Steps and evaluations side by side: one row per (model, step) that has either.

        Columns: model, step, epoch, wall, lr, batch_loss, batch_err (the training batch of that step), and
        train_loss, train_err, test_loss, test_err, test_images (the evaluation at that step, empty where none ran).
        """
        steps = self.steps(run_id).drop(columns="run_id").rename(columns={"loss": "batch_loss",
                                                                          "train_err": "batch_err"})
        evals = self.evals(run_id).drop(columns="run_id")
        table = steps.merge(evals, on=["model", "step"], how="outer", suffixes=("", "_eval"))
        for shared in ("epoch", "wall"):
            table[shared] = table[shared].fillna(table.pop(f"{shared}_eval"))
        columns = ["model", "step", "epoch", "wall", "lr", "batch_loss", "batch_err",
                   "train_loss", "train_err", "test_loss", "test_err", "test_images"]
        return table[columns].sort_values(["model", "step"], ignore_index=True)

    def export(self, run_id: str, path: str | Path, fmt: Literal["csv", "parquet"] = "csv") -> Path:
        """Write `metrics` of one run as CSV or Parquet."""
        if fmt not in ("csv", "parquet"):
            raise StoreError(f"export format {fmt!r} is not csv or parquet")
        table, path = self.metrics(run_id), Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "csv":
                table.to_csv(path, index=False)
            else:
                table.to_parquet(path, index=False, compression="zstd")
        except OSError as error:
            raise StoreError(f"cannot write {path} ({error.strerror or error}): choose a writable file path") from None
        return path
