"""Studies of finished runs: a job smaller than a run, asked for by a run's owner in the Lab (its loss-surface
slices, `explorer.landscape`), taken by a worker that has no run to train, and checked against their own short life
(`states.STUDY_TRANSITIONS`). The result is the study's own file beside the store; this table keeps who asked, its
state, and why it failed."""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..states import STUDY_TRANSITIONS, RunState
from .base import Database, StoreError, utc_now
from .schema import COLUMNS

_STUDY_COLUMNS = tuple(COLUMNS["studies"])
_ALIVE = (str(RunState.QUEUED), str(RunState.RUNNING), str(RunState.FINISHED))


class Studies(Database):
    def request_study(self, run_id: str, kind: str, spec: str, device_kind: str, owner: str, key_hash: str,
                      estimate_s: float) -> tuple[str, bool]:
        """Queue a study of `run_id` (or join the same one, queued, running or done); returns (its id, whether it
        was already there)."""
        with self._transaction() as conn:
            self._require(conn, run_id)
            same = conn.execute(f"SELECT study_id FROM studies WHERE run_id = ? AND kind = ? AND spec = ? AND status "
                                f"IN ({', '.join('?' * len(_ALIVE))}) ORDER BY created DESC LIMIT 1",
                                (run_id, kind, spec, *_ALIVE)).fetchone()
            if same:
                return same[0], True
            study_id = "t" + secrets.token_hex(6)
            row = dict(study_id=study_id, run_id=run_id, kind=kind, spec=spec, status=str(RunState.QUEUED),
                       device_kind=device_kind, owner=owner, key_hash=key_hash, estimate_s=estimate_s, worker=None,
                       lease_expires=None, created=utc_now(), ended=None, error="")
            self._insert(conn, "studies", [tuple(row[name] for name in _STUDY_COLUMNS)])
        return study_id, False

    def studies_of(self, run_id: str) -> list[dict[str, Any]]:
        """The run's studies, newest first."""
        return [dict(zip(_STUDY_COLUMNS, row)) for row in self._read(
            f"SELECT {', '.join(_STUDY_COLUMNS)} FROM studies WHERE run_id = ? ORDER BY created DESC", (run_id,))]

    def claim_study(self, worker_id: str, device_kind: str, lease_s: float) -> dict[str, Any] | None:
        """Give the oldest study queued for `device_kind` to `worker_id` under a lease; None when none waits."""
        with self._transaction() as conn:
            row = conn.execute("SELECT study_id FROM studies WHERE status = ? AND device_kind = ? ORDER BY created "
                               "LIMIT 1", (str(RunState.QUEUED), device_kind)).fetchone()
            if row is None:
                return None
            self._change_study(conn, row[0], RunState.RUNNING, worker=worker_id, lease_expires=time.time() + lease_s)
            found = conn.execute(f"SELECT {', '.join(_STUDY_COLUMNS)} FROM studies WHERE study_id = ?",
                                 (row[0],)).fetchone()
        return dict(zip(_STUDY_COLUMNS, found))

    def renew_study(self, study_id: str, worker_id: str, lease_s: float) -> bool:
        """Extend the worker's lease on its study; False when it no longer holds it."""
        with self._transaction() as conn:
            return conn.execute("UPDATE studies SET lease_expires = ? WHERE study_id = ? AND worker = ? AND status = ?",
                                (time.time() + lease_s, study_id, worker_id, str(RunState.RUNNING))).rowcount > 0

    def end_study(self, study_id: str, status: RunState, error: str = "") -> None:
        """Finish, fail or cancel a study."""
        with self._transaction() as conn:
            self._change_study(conn, study_id, status, error=error, ended=utc_now(), lease_expires=None)

    def reap_studies(self, reason: str) -> list[str]:
        """Fail the running studies whose worker stopped renewing its lease; returns their ids."""
        with self._transaction() as conn:
            lost = [s for (s,) in conn.execute("SELECT study_id FROM studies WHERE status = ? AND lease_expires < ?",
                                               (str(RunState.RUNNING), time.time())).fetchall()]
            for study_id in lost:
                self._change_study(conn, study_id, RunState.FAILED, error=reason, ended=utc_now(),
                                   lease_expires=None)
        return lost

    def _change_study(self, conn: Any, study_id: str, status: RunState, **columns: Any) -> None:
        row = conn.execute("SELECT status FROM studies WHERE study_id = ?", (study_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown study {str(study_id)[:20]!r}")
        current = RunState(row[0])
        if status not in STUDY_TRANSITIONS[current]:
            allowed = ", ".join(sorted(str(s) for s in STUDY_TRANSITIONS[current])) or "nothing: it has ended"
            raise StoreError(f"study {study_id} is {current} and cannot become {status}: it can become {allowed}")
        assignments = ", ".join(f"{name} = ?" for name in ("status", *columns))
        conn.execute(f"UPDATE studies SET {assignments} WHERE study_id = ?", (str(status), *columns.values(), study_id))
