"""The run store: every record of every run, and the job queue, in one SQLite file.

The store is the only channel between the web server and the workers: the server enqueues runs, writes controls
(pause, resume, stop) and reads records; workers claim runs, renew their leases and write records. SQLite runs in
WAL mode, so writers append batches of rows while readers read, and readers never wait for a writer. Each thread
gets its own connection. Every write is one transaction: a killed writer loses at most the batch it had not
committed, and the file always opens.

Tables (errors are percentages 0-100, ``model`` is the `ModelConfig.label`):

    runs        run_id, name, preset, config (JSON), status (`RunState`), created, started, ended, device,
                data_source, torch_version, code_version, hostname, error, and the job's facts: owner, key_hash,
                fingerprint, device_kind, worker, lease_expires, control (`Control`), progress (JSON),
                estimate_s, peak_bytes, budget_s, sweep_id
    models      run_id, model, idx, params, status (`ModelState`), diverged_step
    steps       run_id, model, step, epoch, loss, train_err, lr, wall
    evals       run_id, model, step, epoch, train_loss, train_err, test_loss, test_err, test_images, wall
    probes      run_id, model, step, layer, layer_name, grad_norm, weight_norm, update_ratio, response_std
    lesions     run_id, model, block, block_name, test_err
    workers     worker_id, hostname, pid, device_kind, device, started, heartbeat, run_id
    calibration machine, device, precision, torch_version, measured, step_s, layer_s, gmac_s, memory_bytes
    sweeps      sweep_id, name, spec (JSON), backend, status, created, owner, key_hash, error
    lessons     lesson_id, lesson, key_hash, phase, run_id, created
    votes       lesson_id, voter, choice, created

Reads return pandas DataFrames with exactly these columns. A run also travels as a bundle directory
(`export_bundle` / `import_bundle`): ``run.json`` holds its runs row and models rows, and one zstd Parquet file per
non-empty metric table holds the rows without ``run_id``, in float32/int32. The recorded runs under
``assets/recorded/`` are bundles, replayed by importing them into `RunStore.memory()`.
"""

from __future__ import annotations

import functools
import json
import re
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
from .settings import settings
from .states import ModelState, RunState

BUSY_TIMEOUT_S = 30.0
BUNDLE_FORMAT = 1
SCHEMA_VERSION = 2
METRIC_TABLES = ("steps", "evals", "probes", "lesions")
LIST_RUNS_HINT = "list the stored run ids with `python -m explorer runs`"
RUN_ID = re.compile(r"r\d{8}-\d{6}-[0-9a-f]{4,8}")

# table -> column -> SQLite type. REAL columns stay nullable because SQLite stores NaN (a diverged loss) as NULL.
COLUMNS: dict[str, dict[str, str]] = {
    "runs": dict(run_id="TEXT", name="TEXT", preset="TEXT", config="TEXT", status="TEXT", created="TEXT",
                 started="TEXT", ended="TEXT", device="TEXT", data_source="TEXT", torch_version="TEXT",
                 code_version="TEXT", hostname="TEXT", error="TEXT", owner="TEXT", key_hash="TEXT",
                 fingerprint="TEXT", device_kind="TEXT", worker="TEXT", lease_expires="REAL", control="TEXT",
                 progress="TEXT", estimate_s="REAL", peak_bytes="INTEGER", budget_s="REAL", sweep_id="TEXT"),
    "models": dict(run_id="TEXT", model="TEXT", idx="INTEGER", params="INTEGER", status="TEXT",
                   diverged_step="INTEGER"),
    "steps": dict(run_id="TEXT", model="TEXT", step="INTEGER", epoch="REAL", loss="REAL", train_err="REAL",
                  lr="REAL", wall="REAL"),
    "evals": dict(run_id="TEXT", model="TEXT", step="INTEGER", epoch="REAL", train_loss="REAL", train_err="REAL",
                  test_loss="REAL", test_err="REAL", test_images="INTEGER", wall="REAL"),
    "probes": dict(run_id="TEXT", model="TEXT", step="INTEGER", layer="INTEGER", layer_name="TEXT",
                   grad_norm="REAL", weight_norm="REAL", update_ratio="REAL", response_std="REAL"),
    "lesions": dict(run_id="TEXT", model="TEXT", block="INTEGER", block_name="TEXT", test_err="REAL"),
    "workers": dict(worker_id="TEXT", hostname="TEXT", pid="INTEGER", device_kind="TEXT", device="TEXT",
                    started="TEXT", heartbeat="REAL", run_id="TEXT"),
    "calibration": dict(machine="TEXT", device="TEXT", precision="TEXT", torch_version="TEXT", measured="TEXT",
                        step_s="REAL", layer_s="REAL", gmac_s="REAL", memory_bytes="INTEGER"),
    "sweeps": dict(sweep_id="TEXT", name="TEXT", spec="TEXT", backend="TEXT", status="TEXT", created="TEXT",
                   owner="TEXT", key_hash="TEXT", error="TEXT"),
    "lessons": dict(lesson_id="TEXT", lesson="TEXT", key_hash="TEXT", phase="TEXT", run_id="TEXT",
                    created="TEXT"),
    "votes": dict(lesson_id="TEXT", voter="TEXT", choice="TEXT", created="TEXT"),
}
KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "models": ("run_id", "model"),
    "steps": ("run_id", "model", "step"),
    "evals": ("run_id", "model", "step"),
    "probes": ("run_id", "model", "step", "layer"),
    "lesions": ("run_id", "model", "block"),
    "workers": ("worker_id",),
    "calibration": ("machine", "device", "precision"),
    "sweeps": ("sweep_id",),
    "lessons": ("lesson_id",),
    "votes": ("lesson_id", "voter"),
}
RUN_TABLES = ("runs", "models", *METRIC_TABLES)  # the tables that hold a run
NULLABLE = {"started", "ended", "diverged_step", "owner", "key_hash", "fingerprint", "device_kind", "worker",
            "lease_expires", "control", "progress", "estimate_s", "peak_bytes", "budget_s", "sweep_id",
            "test_images", "memory_bytes"}
TIMESTAMPS = ("created", "started", "ended")
_PANDAS_TYPES = {"TEXT": "str", "INTEGER": "int64", "REAL": "float64"}
_PYTHON_TYPES = {"TEXT": str, "INTEGER": int, "REAL": float}
_BUNDLE_TYPES = {"f": "float32", "i": "int32"}  # dtype kind -> compact type; text becomes categorical
# Columns a version-1 store lacks; `_migrate` adds them.
_V2_COLUMNS = {"runs": [c for c in COLUMNS["runs"] if c not in (
    "run_id", "name", "preset", "config", "status", "created", "started", "ended", "device", "data_source",
    "torch_version", "code_version", "hostname", "error")], "evals": ["test_images"]}


class StoreError(RuntimeError):
    """The run store cannot do what was asked; the message says what to change."""


class _Connection(sqlite3.Connection):
    """A connection that `weakref` can track, so `RunStore.close` reaches every thread's connection."""


def _nullable(table: str, name: str) -> bool:
    return COLUMNS[table][name] == "REAL" or name in NULLABLE or (table == "workers" and name == "run_id")


def _schema() -> str:
    statements = []
    for table, columns in COLUMNS.items():
        defs = [f"{name} {kind}{'' if _nullable(table, name) else ' NOT NULL'}" for name, kind in columns.items()]
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(defs)}, "
                          f"PRIMARY KEY ({', '.join(KEYS[table])})) WITHOUT ROWID;")
    statements.append("CREATE INDEX IF NOT EXISTS probes_by_step ON probes (run_id, step);")
    statements.append("CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created);")
    statements.append("CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created);")
    statements.append("CREATE INDEX IF NOT EXISTS runs_by_fingerprint ON runs (fingerprint);")
    return "\n".join(statements)


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store written by an older version to `SCHEMA_VERSION` (new columns are empty for old runs)."""
    if version < 2:
        conn.execute("UPDATE runs SET status = 'interrupted' WHERE status IN ('created', 'running', 'paused', "
                     "'stopping')")  # version 1 trained in the web server: such runs died with it
        for table, added in _V2_COLUMNS.items():
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name in added:
                if name not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {COLUMNS[table][name]}")
    for statement in _schema().split(";\n"):  # not executescript: it would commit the caller's transaction
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _new_run_id() -> str:
    """Short and sortable by creation time: ``r20251123-112000-a3f9``."""
    return datetime.now(timezone.utc).strftime("r%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def valid_run_id(run_id: object) -> bool:
    """Whether `run_id` has the shape of a run id (cheap check before any query, e.g. of a URL value)."""
    return isinstance(run_id, str) and RUN_ID.fullmatch(run_id) is not None


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
    """The row as a tuple of the table's types; a missing value of an optional INTEGER column (e.g. the number of
    test images an evaluation scored) is stored as empty."""
    def value(name: str, convert: type) -> Any:
        if name not in row and COLUMNS[table][name] == "INTEGER" and _nullable(table, name):
            return None
        item = row[name]
        return None if item is None and _nullable(table, name) else convert(item)

    try:
        return (run_id, *(value(name, convert) for name, convert in converters))
    except KeyError as missing:
        raise StoreError(f"a {table} row lacks column {missing}: give every row "
                         f"{', '.join(name for name, _ in converters)}") from None
    except (TypeError, ValueError) as error:
        raise StoreError(f"a {table} row holds a value of the wrong type ({error}): {dict(row)}") from None


def _frame(table: str, rows: list[tuple]) -> pd.DataFrame:
    """Rows as a DataFrame with the table's columns and dtypes, also when there are no rows."""
    columns = COLUMNS[table]
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    dtypes = {name: "Int64" if kind == "INTEGER" and _nullable(table, name) else _PANDAS_TYPES[kind]
              for name, kind in columns.items() if name not in TIMESTAMPS}
    frame = frame.astype(dtypes)
    for name in TIMESTAMPS:
        if name in frame:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").astype("datetime64[ms, UTC]")
    return frame


class RunStore:
    """All runs in one SQLite file (WAL mode, one connection per thread)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or settings().store)
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
            if mode == "wal" and version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
                if version < SCHEMA_VERSION:
                    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                    _migrate(conn, version if "runs" in tables else SCHEMA_VERSION)
                    version = SCHEMA_VERSION
                conn.execute("COMMIT")
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
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the write lock up front, so it never fails half-way on a busy
        database; everything in it commits together or not at all. Opened inside another of this thread's
        transactions, it is part of that one (a check and the write it allows stay one step)."""
        conn = self._conn()
        if conn.in_transaction:
            yield conn
            return
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

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        """Rows of a read-only query (for the modules that extend the store: the queue, sweeps, lessons)."""
        return self._conn().execute(sql, list(parameters)).fetchall()

    def _require(self, conn: sqlite3.Connection, run_id: str) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise StoreError(f"unknown run id {str(run_id)[:40]!r} in the run store: {LIST_RUNS_HINT}")

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
    def insert(conn: sqlite3.Connection, table: str, rows: Iterable[tuple]) -> None:
        """Insert full rows (every column of `table`, in order); a row with the key of an earlier one replaces it
        (e.g. a repeated lesion study)."""
        columns = COLUMNS[table]
        conn.executemany(f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) "
                         f"VALUES ({', '.join('?' * len(columns))})", rows)

    # --- writes ---------------------------------------------------------------------------
    def create_run(self, config: Config, *, device: str = "", data_source: str = "", preset: str = "",
                   models: Sequence[Mapping[str, Any]], status: RunState = RunState.QUEUED,
                   **job: Any) -> str:
        """Record a new run (status `status`, by default queued) and its models (status training); return its id.

        ``models`` rows have keys ``model`` (label), ``idx`` and ``params``, one per model of ``config``; `job`
        sets any of the job columns (owner, key_hash, fingerprint, device_kind, estimate_s, peak_bytes, budget_s,
        sweep_id).
        """
        labels = sorted(str(m.get("model")) for m in models)
        if labels != sorted(config.labels):
            raise StoreError(f"models {labels} do not match the configuration's {sorted(config.labels)}: "
                             "give one row (model, idx, params) per configured model")
        unknown = sorted(set(job) - set(_V2_COLUMNS["runs"]))
        if unknown:
            raise StoreError(f"create_run got unknown job column {unknown[0]!r}")
        status = _run_state(status)
        converters = [(name, convert) for name, convert in _converters("models") if name in ("model", "idx", "params")]
        with self.transaction() as conn:
            run_id = _new_run_id()
            while conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                run_id = _new_run_id()
            row = dict(run_id=run_id, name=config.name, preset=preset, config=config.to_json(indent=None),
                       status=str(status), created=_now(), started=None, ended=None, device=device,
                       data_source=data_source, torch_version=_torch_version(), code_version=code_version(),
                       hostname=socket.gethostname(), error="", **{c: None for c in _V2_COLUMNS["runs"]})
            row.update(job)
            self.insert(conn, "runs", [tuple(row[name] for name in COLUMNS["runs"])])
            self.insert(conn, "models", [
                (*_row_values("models", run_id, row, converters), str(ModelState.TRAINING), None) for row in models
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
        with self.transaction() as conn:
            self._require(conn, run_id)
            for table, rows in values.items():
                self.insert(conn, table, rows)

    def set_status(self, run_id: str, status: RunState | str, error: str = "") -> None:
        """Set the run's status; the first ``running`` stamps ``started``, a final status stamps ``ended``, and a
        status no worker holds clears the worker and its lease."""
        status = _run_state(status)
        now = _now()
        with self.transaction() as conn:
            self._require(conn, run_id)
            conn.execute(
                "UPDATE runs SET status = ?, error = ?, started = COALESCE(started, ?), ended = ?, "
                "worker = CASE WHEN ? THEN worker END, lease_expires = CASE WHEN ? THEN lease_expires END "
                "WHERE run_id = ?",
                (str(status), error, now if status is RunState.RUNNING else None, now if status.final else None,
                 status.live, status.live, run_id))

    def set_model_status(self, run_id: str, model: str, status: ModelState | str,
                         diverged_step: int | None = None) -> None:
        try:
            status = ModelState(status)
        except ValueError:
            raise StoreError(f"model status {status!r} is not one of {', '.join(s.value for s in ModelState)}"
                             ) from None
        with self.transaction() as conn:
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
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET progress = ? WHERE run_id = ?", (progress.to_json(), run_id))

    def set_run_facts(self, run_id: str, **facts: Any) -> None:
        """Update descriptive columns once a worker knows them (device, data_source, hostname, torch_version)."""
        allowed = {"device", "data_source", "hostname", "torch_version", "code_version", "estimate_s", "peak_bytes"}
        if not facts or set(facts) - allowed:
            raise StoreError(f"set_run_facts takes {', '.join(sorted(allowed))}")
        with self.transaction() as conn:
            self._require(conn, run_id)
            conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in facts)} WHERE run_id = ?",
                         [*facts.values(), run_id])

    def truncate_after(self, run_id: str, step: int) -> None:
        """Delete the run's step, evaluation and probe rows after `step` (a resumed run writes them again)."""
        with self.transaction() as conn:
            self._require(conn, run_id)
            for table in ("steps", "evals", "probes"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ? AND step > ?", (run_id, step))
            conn.execute("UPDATE models SET status = ?, diverged_step = NULL WHERE run_id = ? AND "
                         "(diverged_step IS NULL OR diverged_step > ?)", (str(ModelState.TRAINING), run_id, step))

    def delete_run(self, run_id: str) -> None:
        with self.transaction() as conn:
            self._require(conn, run_id)
            for table in RUN_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    # --- reads ----------------------------------------------------------------------------
    def runs(self, statuses: Iterable[RunState] | None = None) -> pd.DataFrame:
        """Every run (or those in `statuses`), newest first."""
        where, values = "", []
        if statuses is not None:
            values = [str(_run_state(s)) for s in statuses]
            where = f"WHERE status IN ({', '.join('?' * len(values))}) " if values else "WHERE 0 "
        rows = self._conn().execute(f"SELECT {', '.join(COLUMNS['runs'])} FROM runs {where}"
                                    "ORDER BY created DESC, run_id DESC", values).fetchall()
        return _frame("runs", rows)

    def has_run(self, run_id: str) -> bool:
        return valid_run_id(run_id) and bool(self.read("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)))

    def run(self, run_id: str) -> dict[str, Any]:
        """The runs row as stored: timestamps are ISO 8601 strings (UTC), ``config`` is JSON text."""
        conn = self._conn()
        row = conn.execute(f"SELECT {', '.join(COLUMNS['runs'])} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown run id {str(run_id)[:40]!r} in the run store: {LIST_RUNS_HINT}")
        return dict(zip(COLUMNS["runs"], row))

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
        with self.transaction() as conn:
            self.insert(conn, "calibration", [tuple(row[name] for name in COLUMNS["calibration"])])

    def calibrations(self) -> pd.DataFrame:
        return _frame("calibration", self.read(f"SELECT {', '.join(COLUMNS['calibration'])} FROM calibration "
                                               "ORDER BY measured DESC"))

    # --- export and bundles ---------------------------------------------------------------
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

    def export_bundle(self, run_id: str, directory: str | Path) -> Path:
        """Write run.json and one compact Parquet file per non-empty metric table into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        run = self.run(run_id)
        run["config"] = json.loads(run["config"])
        for private in ("key_hash", "owner", "worker", "lease_expires", "control"):
            run[private] = None  # who ran it and how to control it stay on this machine
        models = self.read(f"SELECT {', '.join(COLUMNS['models'])} FROM models WHERE run_id = ? ORDER BY idx",
                           (run_id,))
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
                                  for name, dtype in frame.dtypes.items() if dtype.kind in "fiO" or dtype == "str"})
            frame.to_parquet(path, index=False, compression="zstd")
        return directory

    def import_bundle(self, directory: str | Path) -> str:
        """Read a bundle written by `export_bundle` into this store; return its run id."""
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
                frame = pd.read_parquet(path)
                converters = _converters(table)
                missing = [name for name, _ in converters if name not in frame and not _nullable(table, name)]
                if missing:
                    raise StoreError(f"{path.name} of {directory.name} lacks columns {', '.join(missing)}: export "
                                     "the bundle again")
                columns = [frame[name].astype(_PANDAS_TYPES[COLUMNS[table][name]]).tolist() if name in frame
                           else [None] * len(frame) for name, _ in converters]
                tables[table] = [(run_id, *values) for values in zip(*columns)]
        model_converters = _converters("models")
        row = {**{name: None for name in COLUMNS["runs"]}, **run, "config": config_json}
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise StoreError(f"run {run_id} is already in the run store: delete it there first to import it again")
            self.insert(conn, "runs", [tuple(row[name] for name in COLUMNS["runs"])])
            self.insert(conn, "models", [
                (run_id, *(row[name] if row[name] is None else convert(row[name]) for name, convert in
                           model_converters)) for row in models
            ])
            for table, rows in tables.items():
                self.insert(conn, table, rows)
        return run_id


def _run_state(status: RunState | str) -> RunState:
    try:
        return RunState(status)
    except ValueError:
        raise StoreError(f"run status {status!r} is not one of {', '.join(s.value for s in RunState)}") from None
