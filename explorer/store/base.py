"""The run store's file: opening and migrating it, one connection per thread, write transactions, typed rows, and
the one place a run's status changes (checked against `states.TRANSITIONS`).

Everything here is private to the store package; the other modules of the package add the named methods that the
queue, the workers, sweeps and the classroom call.
"""

from __future__ import annotations

import functools
import re
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import weakref
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

import pandas as pd

from .. import __version__
from ..settings import settings
from ..states import TRANSITIONS, Control, RunState, may_follow
from .schema import COLUMNS, SCHEMA_VERSION, TIMESTAMPS, migrate, nullable

BUSY_TIMEOUT_S = 30.0
LIST_RUNS_HINT = "list the stored run ids with `python -m explorer runs`"
RUN_ID = re.compile(r"r\d{8}-\d{6}-[0-9a-f]{4,8}")
_PANDAS_TYPES = {"TEXT": "str", "INTEGER": "int64", "REAL": "float64"}
_PYTHON_TYPES = {"TEXT": str, "INTEGER": int, "REAL": float}
_D = TypeVar("_D", bound="Database")


class StoreError(RuntimeError):
    """The run store cannot do what was asked; the message says what to change."""


class IllegalTransition(StoreError):
    """A status change that the life of a run (`states.TRANSITIONS`) does not allow."""

    def __init__(self, what: str, current: RunState, new: RunState):
        allowed = ", ".join(sorted(str(s) for s in TRANSITIONS[current])) or "nothing: it has ended"
        super().__init__(f"{what} is {current} and cannot become {new}: a {current} run can become {allowed}")
        self.current, self.new = current, new


def utc_now(ago: timedelta = timedelta(0)) -> str:
    """The time (less `ago`) as the store writes it: ISO 8601 in UTC, to the millisecond (sortable as text)."""
    return (datetime.now(timezone.utc) - ago).isoformat(timespec="milliseconds")


def stamped_id(prefix: str) -> str:
    """Short and sortable by creation time: ``r20251123-112000-a3f9`` for a run, ``s...`` for a sweep."""
    return datetime.now(timezone.utc).strftime(f"{prefix}%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def valid_run_id(run_id: object) -> bool:
    """Whether `run_id` has the shape of a run id (cheap check before any query, e.g. of a URL value)."""
    return isinstance(run_id, str) and RUN_ID.fullmatch(run_id) is not None


def run_state(status: RunState | str) -> RunState:
    try:
        return RunState(status)
    except ValueError:
        raise StoreError(f"run status {status!r} is not one of {', '.join(s.value for s in RunState)}") from None


@functools.cache
def code_version() -> str:
    """``git describe`` of the checkout this package runs from, else the package version."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return __version__
    try:
        described = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=repo, timeout=5,
                                   capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        described = ""
    return described or __version__


def converters(table: str) -> list[tuple[str, type]]:
    return [(name, _PYTHON_TYPES[kind]) for name, kind in COLUMNS[table].items() if name != "run_id"]


def row_values(table: str, run_id: str, row: Mapping[str, Any], convert: list[tuple[str, type]]) -> tuple:
    """The row as a tuple of the table's types; a missing value of an optional INTEGER column (e.g. the number of
    test images an evaluation scored) is stored as empty."""
    def value(name: str, to: type) -> Any:
        if name not in row and COLUMNS[table][name] == "INTEGER" and nullable(table, name):
            return None
        item = row[name]
        return None if item is None and nullable(table, name) else to(item)

    try:
        return (run_id, *(value(name, to) for name, to in convert))
    except KeyError as missing:
        raise StoreError(f"a {table} row lacks column {missing}: give every row "
                         f"{', '.join(name for name, _ in convert)}") from None
    except (TypeError, ValueError) as error:
        raise StoreError(f"a {table} row holds a value of the wrong type ({error}): {dict(row)}") from None


def frame(table: str, rows: list[tuple]) -> pd.DataFrame:
    """Rows as a DataFrame with the table's columns and dtypes, also when there are no rows."""
    columns = COLUMNS[table]
    table_frame = pd.DataFrame.from_records(rows, columns=list(columns))
    dtypes = {name: "Int64" if kind == "INTEGER" and nullable(table, name) else _PANDAS_TYPES[kind]
              for name, kind in columns.items() if name not in TIMESTAMPS}
    table_frame = table_frame.astype(dtypes)
    for name in TIMESTAMPS:
        if name in table_frame:
            table_frame[name] = pd.to_datetime(table_frame[name], utc=True, format="ISO8601"
                                               ).astype("datetime64[ms, UTC]")
    return table_frame


def marks(values: Sequence[Any]) -> str:
    """``?, ?, ?``: one SQL parameter per value."""
    return ", ".join("?" * len(values))


class _Connection(sqlite3.Connection):
    """A connection that `weakref` can track, so `RunStore.close` reaches every thread's connection."""


class Database:
    """One SQLite file in WAL mode, one connection per thread, migrated to `SCHEMA_VERSION` when opened."""

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
                    migrate(conn, version if "runs" in tables else SCHEMA_VERSION)
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
    def memory(cls: type[_D]) -> _D:
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

    def __enter__(self: _D) -> _D:
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
    def _transaction(self) -> Iterator[sqlite3.Connection]:
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

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        return self._conn().execute(sql, list(parameters)).fetchall()

    @staticmethod
    def _insert(conn: sqlite3.Connection, table: str, rows: Iterable[tuple]) -> None:
        """Insert full rows (every column of `table`, in order); a row with the key of an earlier one replaces it
        (e.g. a repeated lesion study)."""
        columns = COLUMNS[table]
        conn.executemany(f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({marks(columns)})", rows)

    def _require(self, conn: sqlite3.Connection, run_id: str) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise StoreError(f"unknown run id {str(run_id)[:40]!r} in the run store: {LIST_RUNS_HINT}")

    # --- the one place a run's status changes ----------------------------------------------
    def _change_status(self, conn: sqlite3.Connection, run_id: str, new: RunState, error: str = "",
                       **columns: Any) -> RunState:
        """Move the run to `new` if its life allows it (else `IllegalTransition`), within the caller's transaction;
        returns the state it left. The first ``running`` stamps ``started``, a final state stamps ``ended`` (a
        state that is not final clears it), a state no worker holds clears the worker and its lease, a run queued
        again is to run (control ``run``), and `columns` (worker, lease_expires, hostname) are written with it."""
        row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown run id {str(run_id)[:40]!r} in the run store: {LIST_RUNS_HINT}")
        current = RunState(row[0])
        if not may_follow(current, new):
            raise IllegalTransition(f"run {run_id}", current, new)
        values = {"status": str(new), "error": error, "ended": utc_now() if new.final else None, **columns}
        if not new.live:
            values.update(worker=None, lease_expires=None)
        if new is RunState.QUEUED:
            values["control"] = str(Control.RUN)
        assignments = [f"{name} = ?" for name in values]
        if new is RunState.RUNNING:
            assignments.append("started = COALESCE(started, ?)")
            values["started"] = utc_now()
        conn.execute(f"UPDATE runs SET {', '.join(assignments)} WHERE run_id = ?", [*values.values(), run_id])
        return current
