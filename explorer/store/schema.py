"""The run store's tables, their columns and keys, and the migrations that bring an older store's file up to date.

Schema 1 (the web server trained runs itself) had the runs and metric tables; schema 2 made runs jobs (owner, key
hash, fingerprint, lease, control, progress, estimate, sweep) and added workers, calibration, sweeps, lessons and
votes; schema 3 gives every lesson a short join code a student can type on a phone; schema 4 adds studies (a
finished run's loss-surface slices, asked for in the Lab and computed by a free worker).
"""

from __future__ import annotations

import secrets
import sqlite3

SCHEMA_VERSION = 4
METRIC_TABLES = ("steps", "evals", "probes", "lesions")

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
                    created="TEXT", code="TEXT"),
    "votes": dict(lesson_id="TEXT", voter="TEXT", choice="TEXT", created="TEXT"),
    "studies": dict(study_id="TEXT", run_id="TEXT", kind="TEXT", spec="TEXT", status="TEXT", device_kind="TEXT",
                    owner="TEXT", key_hash="TEXT", estimate_s="REAL", worker="TEXT", lease_expires="REAL",
                    created="TEXT", ended="TEXT", error="TEXT"),
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
    "studies": ("study_id",),
}
RUN_TABLES = ("runs", "models", *METRIC_TABLES)  # the tables that hold a run
NULLABLE = {"started", "ended", "diverged_step", "owner", "key_hash", "fingerprint", "device_kind", "worker",
            "lease_expires", "control", "progress", "estimate_s", "peak_bytes", "budget_s", "sweep_id",
            "test_images", "memory_bytes"}
TIMESTAMPS = ("created", "started", "ended")
# The runs columns schema 1 lacked: a job's facts, empty for a run recorded without the queue.
JOB_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS["runs"] if c not in (
    "run_id", "name", "preset", "config", "status", "created", "started", "ended", "device", "data_source",
    "torch_version", "code_version", "hostname", "error"))
_V2_COLUMNS = {"runs": JOB_COLUMNS, "evals": ("test_images",)}

# A lesson's join code: letters and digits a student cannot mistake for one another on a projector (no 0/O, 1/I/L).
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 5


def nullable(table: str, name: str) -> bool:
    return COLUMNS[table][name] == "REAL" or name in NULLABLE or (table == "workers" and name == "run_id")


def new_lesson_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _statements() -> list[str]:
    statements = []
    for table, columns in COLUMNS.items():
        defs = [f"{name} {kind}{'' if nullable(table, name) else ' NOT NULL'}" for name, kind in columns.items()]
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(defs)}, "
                          f"PRIMARY KEY ({', '.join(KEYS[table])})) WITHOUT ROWID")
    statements += ["CREATE INDEX IF NOT EXISTS probes_by_step ON probes (run_id, step)",
                   "CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created)",
                   "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created)",
                   "CREATE INDEX IF NOT EXISTS runs_by_fingerprint ON runs (fingerprint)",
                   "CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs (sweep_id)",
                   "CREATE UNIQUE INDEX IF NOT EXISTS lessons_by_code ON lessons (code)",
                   "CREATE INDEX IF NOT EXISTS studies_by_run ON studies (run_id, created)",
                   "CREATE INDEX IF NOT EXISTS studies_by_status ON studies (status, created)"]
    return statements


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store written at schema `version` to `SCHEMA_VERSION` inside the caller's transaction (a new store
    passes `SCHEMA_VERSION`: its tables are created). New columns are empty for old runs."""
    if version < 2:
        conn.execute("UPDATE runs SET status = 'interrupted' WHERE status IN ('created', 'running', 'paused', "
                     "'stopping')")  # version 1 trained in the web server: such runs died with it
        for table, added in _V2_COLUMNS.items():
            present = _columns(conn, table)
            for name in added:
                if name not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {COLUMNS[table][name]}")
    if version < 3 and _columns(conn, "lessons") and "code" not in _columns(conn, "lessons"):
        conn.execute("ALTER TABLE lessons ADD COLUMN code TEXT")
        taken: set[str] = set()
        for (lesson_id,) in conn.execute("SELECT lesson_id FROM lessons ORDER BY created").fetchall():
            code = new_lesson_code()
            while code in taken:
                code = new_lesson_code()
            taken.add(code)
            conn.execute("UPDATE lessons SET code = ? WHERE lesson_id = ?", (code, lesson_id))
    for statement in _statements():  # not executescript: it would commit the caller's transaction
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
