"""The run store: every record of every run in one SQLite file, readable while a trainer writes it.

SQLite runs in WAL mode, so a trainer thread (or process) appends batches of rows while the Streamlit thread
reads them, and readers never wait for the writer. Each thread gets its own connection. Every `append` is one
transaction: a killed writer loses at most the batch it had not committed, and the file always opens.

Tables (errors are percentages 0-100, ``model`` is the `ModelConfig.label`):

    runs    run_id, name, preset, config (JSON), status, created, started, ended, device, data_source,
            torch_version, code_version, hostname, error
    models  run_id, model, idx, params, status (training, diverged, finished, stopped), diverged_step
    steps   run_id, model, step, epoch, loss, train_err, lr, wall
    evals   run_id, model, step, epoch, train_loss, train_err, test_loss, test_err, wall
    probes  run_id, model, step, layer, layer_name, grad_norm, weight_norm, update_ratio, response_std
    lesions run_id, model, block, block_name, test_err

Reads return pandas DataFrames with exactly these columns. A run also travels as a bundle directory
(`export_bundle` / `import_bundle`): ``run.json`` holds its runs row and models rows, and one zstd Parquet file per
non-empty metric table holds the rows without ``run_id``, in float32/int32. The recorded runs under
``assets/recorded/`` are bundles, replayed by importing them into `RunStore.memory()`.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence

import pandas as pd

from . import __version__
from .config import Config, ConfigError

DEFAULT_PATH = Path("runs") / "explorer.sqlite"
BUSY_TIMEOUT_S = 30.0
BUNDLE_FORMAT = 1
SCHEMA_VERSION = 1
RUN_STATUSES = ("created", "running", "paused", "stopping", "finished", "stopped", "failed")
FINAL_STATUSES = ("finished", "stopped", "failed")
MODEL_STATUSES = ("training", "diverged", "finished", "stopped")
METRIC_TABLES = ("steps", "evals", "probes", "lesions")
LIST_RUNS_HINT = "list the stored run ids with `python -m explorer runs`"

# table -> column -> SQLite type. REAL columns stay nullable because SQLite stores NaN (a diverged loss) as NULL.
COLUMNS: dict[str, dict[str, str]] = {
    "runs": dict(run_id="TEXT", name="TEXT", preset="TEXT", config="TEXT", status="TEXT", created="TEXT",
                 started="TEXT", ended="TEXT", device="TEXT", data_source="TEXT", torch_version="TEXT",
                 code_version="TEXT", hostname="TEXT", error="TEXT"),
    "models": dict(run_id="TEXT", model="TEXT", idx="INTEGER", params="INTEGER", status="TEXT",
                   diverged_step="INTEGER"),
    "steps": dict(run_id="TEXT", model="TEXT", step="INTEGER", epoch="REAL", loss="REAL", train_err="REAL",
                  lr="REAL", wall="REAL"),
    "evals": dict(run_id="TEXT", model="TEXT", step="INTEGER", epoch="REAL", train_loss="REAL", train_err="REAL",
                  test_loss="REAL", test_err="REAL", wall="REAL"),
    "probes": dict(run_id="TEXT", model="TEXT", step="INTEGER", layer="INTEGER", layer_name="TEXT",
                   grad_norm="REAL", weight_norm="REAL", update_ratio="REAL", response_std="REAL"),
    "lesions": dict(run_id="TEXT", model="TEXT", block="INTEGER", block_name="TEXT", test_err="REAL"),
}
KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "models": ("run_id", "model"),
    "steps": ("run_id", "model", "step"),
    "evals": ("run_id", "model", "step"),
    "probes": ("run_id", "model", "step", "layer"),
    "lesions": ("run_id", "model", "block"),
}
NULLABLE = {"started", "ended", "diverged_step"}
TIMESTAMPS = ("created", "started", "ended")
_PANDAS_TYPES = {"TEXT": "str", "INTEGER": "int64", "REAL": "float64"}
_PYTHON_TYPES = {"TEXT": str, "INTEGER": int, "REAL": float}
_BUNDLE_TYPES = {"f": "float32", "i": "int32"}  # dtype kind -> compact type; text becomes categorical


class StoreError(RuntimeError):
    """The run store cannot do what was asked; the message says what to change."""


class _Connection(sqlite3.Connection):
    """A connection that `weakref` can track, so `RunStore.close` reaches every thread's connection."""


def _schema() -> str:
    statements = []
    for table, columns in COLUMNS.items():
        defs = [f"{name} {kind}{'' if kind == 'REAL' or name in NULLABLE else ' NOT NULL'}"
                for name, kind in columns.items()]
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(defs)}, "
                          f"PRIMARY KEY ({', '.join(KEYS[table])})) WITHOUT ROWID;")
    statements.append("CREATE INDEX IF NOT EXISTS probes_by_step ON probes (run_id, step);")
    statements.append("CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created);")
    return "\n".join(statements)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _new_run_id() -> str:
    """Short and sortable by creation time: ``r20251123-112000-a3f9``."""
    return datetime.now(timezone.utc).strftime("r%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@functools.cache
def code_version() -> str:
    """``git describe`` of the checkout this package runs from, else the package version."""
    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        return __version__
    try:
        described = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=repo, timeout=5,
                                   capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        described = ""
    return described or __version__


def _torch_version() -> str:
    try:
        return metadata.version("torch")  # without importing torch: readers and replays never need it
    except metadata.PackageNotFoundError:
        return ""


def _converters(table: str) -> list[tuple[str, type]]:
    return [(name, _PYTHON_TYPES[kind]) for name, kind in COLUMNS[table].items() if name != "run_id"]


def _row_values(table: str, run_id: str, row: Mapping[str, Any], converters: list[tuple[str, type]]) -> tuple:
    try:
        return (run_id, *(convert(row[name]) for name, convert in converters))
    except KeyError as missing:
        raise StoreError(f"a {table} row lacks column {missing}: give every row "
                         f"{', '.join(name for name, _ in converters)}") from None
    except (TypeError, ValueError) as error:
        raise StoreError(f"a {table} row holds a value of the wrong type ({error}): {dict(row)}") from None


def _frame(table: str, rows: list[tuple]) -> pd.DataFrame:
    """Rows as a DataFrame with the table's columns and dtypes, also when there are no rows."""
    columns = COLUMNS[table]
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    dtypes = {name: "Int64" if name in NULLABLE else _PANDAS_TYPES[kind]
              for name, kind in columns.items() if name not in TIMESTAMPS}
    frame = frame.astype(dtypes)
    for name in TIMESTAMPS:
        if name in frame:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").astype("datetime64[ms, UTC]")
    return frame


class RunStore:
    """All runs in one SQLite file (WAL mode, one connection per thread)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or os.environ.get("EXPLORER_STORE") or DEFAULT_PATH)
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._temporary: weakref.finalize | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the folder of run store {self.path} ({error}): "
                             "pass another path or set EXPLORER_STORE") from None
        conn = self._conn()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if mode == "wal" and version == 0:
                conn.executescript(_schema() + f"\nPRAGMA user_version = {SCHEMA_VERSION};")
        except sqlite3.Error as error:
            raise self._unopenable(error) from None
        if mode != "wal":
            raise StoreError(f"run store {self.path} cannot use WAL mode (got {mode!r}): put it on a local disk, "
                             "or use RunStore.memory() for a throw-away store")
        if version > SCHEMA_VERSION:
            raise StoreError(f"run store {self.path} was written by a newer version (schema {version}): "
                             "update resnet-explorer or use another store path")

    @classmethod
    def memory(cls) -> "RunStore":
        """A throw-away store, e.g. to replay recorded bundles read-only; deleted on `close` or garbage collection.

        It lives in a temporary file rather than ``:memory:``: an in-memory database belongs to one connection,
        and every thread here has its own.
        """
        directory = tempfile.mkdtemp(prefix="explorer-store-")
        store = cls(Path(directory) / "explorer.sqlite")
        store._temporary = weakref.finalize(store, shutil.rmtree, directory, ignore_errors=True)
        return store

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection; a later call reopens one (a `memory` store is deleted instead)."""
        with self._lock:
            for conn in list(self._connections):
                conn.close()
            self._local = threading.local()
        if self._temporary is not None:
            self._temporary()

    # --- connections and transactions -----------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False, factory=_Connection)
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as error:
                raise self._unopenable(error) from None
            with self._lock:
                self._connections.add(conn)
                self._local.conn = conn
        return conn

    def _unopenable(self, error: sqlite3.Error) -> StoreError:
        return StoreError(f"cannot open run store {self.path} ({error}): pass the path of a writable SQLite file, "
                          "or of a new one, or set EXPLORER_STORE")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that takes the write lock up front, so it never fails half-way on a busy database."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise StoreError(f"run store {self.path} stayed locked for {BUSY_TIMEOUT_S:g} s ({error}): "
                             "another process holds it; try again") from None
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _require(self, conn: sqlite3.Connection, run_id: str) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise StoreError(f"unknown run id {run_id!r} in {self.path}: {LIST_RUNS_HINT}")

    def _select(self, table: str, run_id: str, order: str, model: str | None = None,
                since_step: int | None = None, step: int | None = None) -> pd.DataFrame:
        conn = self._conn()
        self._require(conn, run_id)
        conditions = {"run_id = ?": run_id, "model = ?": model, "step > ?": since_step, "step = ?": step}
        where = {sql: value for sql, value in conditions.items() if value is not None}
        return _frame(table, conn.execute(f"SELECT {', '.join(COLUMNS[table])} FROM {table} "
                                          f"WHERE {' AND '.join(where)} ORDER BY {order}", list(where.values())
                                          ).fetchall())

    @staticmethod
    def _insert(conn: sqlite3.Connection, table: str, rows: Iterable[tuple]) -> None:
        """Insert rows; a row with the key of an earlier one replaces it (e.g. a repeated lesion study)."""
        columns = COLUMNS[table]
        conn.executemany(f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) "
                         f"VALUES ({', '.join('?' * len(columns))})", rows)

    # --- writes ---------------------------------------------------------------------------
    def create_run(self, config: Config, *, device: str, data_source: str, preset: str = "",
                   models: Sequence[Mapping[str, Any]]) -> str:
        """Record a new run (status ``created``) and its models (status ``training``); return its id.

        ``models`` rows have keys ``model`` (label), ``idx`` and ``params``, one per model of ``config``.
        """
        labels = sorted(str(m.get("model")) for m in models)
        if labels != sorted(config.labels):
            raise StoreError(f"models {labels} do not match the configuration's {sorted(config.labels)}: "
                             "give one row (model, idx, params) per configured model")
        converters = [(name, convert) for name, convert in _converters("models") if name in ("model", "idx", "params")]
        with self._write() as conn:
            run_id = _new_run_id()
            while conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                run_id = _new_run_id()
            self._insert(conn, "runs", [(
                run_id, config.name, preset, config.to_json(indent=None), "created", _now(), None, None, device,
                data_source, _torch_version(), code_version(), socket.gethostname(), "",
            )])
            self._insert(conn, "models", [
                (*_row_values("models", run_id, row, converters), "training", None) for row in models
            ])
        return run_id

    def append(self, run_id: str, *, steps: Iterable[Mapping[str, Any]] = (),
               evals: Iterable[Mapping[str, Any]] = (), probes: Iterable[Mapping[str, Any]] = (),
               lesions: Iterable[Mapping[str, Any]] = ()) -> None:
        """Write metric rows (dicts keyed by the table's columns, without run_id) in one transaction."""
        batches = {"steps": steps, "evals": evals, "probes": probes, "lesions": lesions}
        values = {}
        for table, rows in batches.items():
            converters = _converters(table)
            values[table] = [_row_values(table, run_id, row, converters) for row in rows]
        if not any(values.values()):
            return
        with self._write() as conn:
            self._require(conn, run_id)
            for table, rows in values.items():
                self._insert(conn, table, rows)

    def set_status(self, run_id: str, status: str, error: str = "") -> None:
        """Set the run's status; the first ``running`` stamps ``started``, a final status stamps ``ended``."""
        if status not in RUN_STATUSES:
            raise StoreError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        now = _now()
        ended = now if status in FINAL_STATUSES else None
        started = now if status == "running" else None
        with self._write() as conn:
            self._require(conn, run_id)
            conn.execute("UPDATE runs SET status = ?, error = ?, started = COALESCE(started, ?), ended = ? "
                         "WHERE run_id = ?", (status, error, started, ended, run_id))

    def set_model_status(self, run_id: str, model: str, status: str, diverged_step: int | None = None) -> None:
        if status not in MODEL_STATUSES:
            raise StoreError(f"model status {status!r} is not one of {', '.join(MODEL_STATUSES)}")
        with self._write() as conn:
            self._require(conn, run_id)
            updated = conn.execute(
                "UPDATE models SET status = ?, diverged_step = COALESCE(?, diverged_step) "
                "WHERE run_id = ? AND model = ?", (status, diverged_step, run_id, model),
            ).rowcount
            if not updated:
                known = [m for (m,) in conn.execute("SELECT model FROM models WHERE run_id = ?", (run_id,))]
                raise StoreError(f"run {run_id} has no model {model!r}: its models are {', '.join(known)}")

    def delete_run(self, run_id: str) -> None:
        with self._write() as conn:
            self._require(conn, run_id)
            for table in COLUMNS:
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    # --- reads ----------------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        """Every run, newest first."""
        rows = self._conn().execute(f"SELECT {', '.join(COLUMNS['runs'])} FROM runs "
                                    "ORDER BY created DESC, run_id DESC").fetchall()
        return _frame("runs", rows)

    def run(self, run_id: str) -> dict[str, Any]:
        """The runs row as stored: timestamps are ISO 8601 strings (UTC), ``config`` is JSON text."""
        conn = self._conn()
        row = conn.execute(f"SELECT {', '.join(COLUMNS['runs'])} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown run id {run_id!r} in {self.path}: {LIST_RUNS_HINT}")
        return dict(zip(COLUMNS["runs"], row))

    def config(self, run_id: str) -> Config:
        return Config.from_json(self.run(run_id)["config"])

    def models(self, run_id: str) -> pd.DataFrame:
        return self._select("models", run_id, "idx")

    def steps(self, run_id: str, model: str | None = None, since_step: int | None = None) -> pd.DataFrame:
        """Per-step rows, optionally of one model and only after step ``since_step`` (for incremental polling)."""
        return self._select("steps", run_id, "model, step", model=model, since_step=since_step)

    def evals(self, run_id: str, model: str | None = None, since_step: int | None = None) -> pd.DataFrame:
        return self._select("evals", run_id, "model, step", model=model, since_step=since_step)

    def probes(self, run_id: str, model: str | None = None, step: int | None = None) -> pd.DataFrame:
        return self._select("probes", run_id, "model, step, layer", model=model, step=step)

    def lesions(self, run_id: str) -> pd.DataFrame:
        return self._select("lesions", run_id, "model, block")

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

    # --- export and bundles ---------------------------------------------------------------
    def metrics(self, run_id: str) -> pd.DataFrame:
        """Steps and evaluations side by side: one row per (model, step) that has either.

        Columns: model, step, epoch, wall, lr, batch_loss, batch_err (the training batch of that step), and
        train_loss, train_err, test_loss, test_err (the evaluation at that step, empty where none ran).
        """
        steps = self.steps(run_id).drop(columns="run_id").rename(columns={"loss": "batch_loss",
                                                                          "train_err": "batch_err"})
        evals = self.evals(run_id).drop(columns="run_id")
        table = steps.merge(evals, on=["model", "step"], how="outer", suffixes=("", "_eval"))
        for shared in ("epoch", "wall"):
            table[shared] = table[shared].fillna(table.pop(f"{shared}_eval"))
        columns = ["model", "step", "epoch", "wall", "lr", "batch_loss", "batch_err",
                   "train_loss", "train_err", "test_loss", "test_err"]
        return table[columns].sort_values(["model", "step"], ignore_index=True)

    def export(self, run_id: str, path: str | Path, fmt: Literal["csv", "parquet"] = "csv") -> Path:
        """Write `metrics` of one run as CSV or Parquet."""
        if fmt not in ("csv", "parquet"):
            raise StoreError(f"export format {fmt!r} is not csv or parquet")
        table, path = self.metrics(run_id), Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            table.to_csv(path, index=False)
        else:
            table.to_parquet(path, index=False, compression="zstd")
        return path

    def export_bundle(self, run_id: str, directory: str | Path) -> Path:
        """Write run.json and one compact Parquet file per non-empty metric table into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        run = self.run(run_id)
        run["config"] = json.loads(run["config"])
        models = self._conn().execute(f"SELECT {', '.join(COLUMNS['models'])} FROM models WHERE run_id = ? "
                                      "ORDER BY idx", (run_id,)).fetchall()
        bundle = {"format": BUNDLE_FORMAT, "run": run,
                  "models": [dict(zip(list(COLUMNS["models"])[1:], row[1:])) for row in models]}
        (directory / "run.json").write_text(json.dumps(bundle, indent=2) + "\n")
        for table in METRIC_TABLES:
            frame = getattr(self, table)(run_id).drop(columns="run_id")
            path = directory / f"{table}.parquet"
            if frame.empty:
                path.unlink(missing_ok=True)  # a stale file from an earlier export would be imported
                continue
            frame = frame.astype({name: _BUNDLE_TYPES.get(dtype.kind, "category")
                                  for name, dtype in frame.dtypes.items()})
            frame.to_parquet(path, index=False, compression="zstd")
        return directory


def import_bundle(directory: str | Path, into: RunStore | None = None) -> str:
    """Read a bundle written by `RunStore.export_bundle` into a store (default: `RunStore()`); return its run id."""
    directory = Path(directory)
    try:
        bundle = json.loads((directory / "run.json").read_text())
        run, models = bundle["run"], bundle["models"]
    except (OSError, ValueError, KeyError) as error:
        raise StoreError(f"{directory} is not a run bundle ({error}): give a folder written by export_bundle, "
                         "with run.json in it") from None
    if bundle.get("format") != BUNDLE_FORMAT:
        raise StoreError(f"bundle {directory} has format {bundle.get('format')!r}; this version reads format "
                         f"{BUNDLE_FORMAT}: record it again with `python -m explorer record`")
    try:
        config_json = Config.from_dict(run["config"]).to_json(indent=None)
    except ConfigError as error:
        raise StoreError(f"bundle {directory} holds a configuration this version cannot read ({error}): "
                         "record it again with `python -m explorer record`") from None
    store = into or RunStore()
    run_id = run["run_id"]
    tables = {}
    for table in METRIC_TABLES:
        path = directory / f"{table}.parquet"
        if path.exists():
            frame = pd.read_parquet(path)
            converters = _converters(table)
            missing = [name for name, _ in converters if name not in frame]
            if missing:
                raise StoreError(f"{path} lacks columns {', '.join(missing)}: export the bundle again")
            columns = [frame[name].astype(_PANDAS_TYPES[COLUMNS[table][name]]).tolist() for name, _ in converters]
            tables[table] = [(run_id, *values) for values in zip(*columns)]
    model_converters = _converters("models")
    with store._write() as conn:
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
            raise StoreError(f"run {run_id} is already in {store.path}: delete it there first to import it again")
        store._insert(conn, "runs", [tuple({**run, "config": config_json}[name] for name in COLUMNS["runs"])])
        store._insert(conn, "models", [
            (run_id, *(row[name] if row[name] is None else convert(row[name]) for name, convert in model_converters))
            for row in models
        ])
        for table, rows in tables.items():
            store._insert(conn, table, rows)
    return run_id
