"""A sweep's rows: its ``sweeps`` row (specification, backend, owner, the state it recorded) and its members, which
are ordinary runs naming it in ``sweep_id``. How a sweep's state follows from its members is `explorer.sweep.rows`'s;
a sweep's recorded state changes as a run's may (`states.TRANSITIONS`), or keeps its state while its error is
written."""

from __future__ import annotations

import re
import time
from typing import Any, Iterable

from ..states import RunState, may_follow
from .base import IllegalTransition, StoreError, marks, stamped_id, utc_now
from .queue import Queue
from .schema import COLUMNS

SWEEP_ID = re.compile(r"s\d{8}-\d{6}-[0-9a-f]{4,8}")
LIST_SWEEPS_HINT = "list the sweeps with `python -m explorer sweep-status`"
MEMBER_COLUMNS = ("run_id", "status", "config", "error", "estimate_s", "budget_s")
_SWEEP_COLUMNS = tuple(COLUMNS["sweeps"])
_HELD_BY_A_COORDINATOR = tuple(str(s) for s in RunState if s.live or s is RunState.SUBMITTED)


def valid_sweep_id(sweep_id: object) -> bool:
    return isinstance(sweep_id, str) and SWEEP_ID.fullmatch(sweep_id) is not None


class Sweeps(Queue):
    def create_sweep(self, name: str, spec_json: str, backend: str, owner: str, key_hash: str) -> str:
        """Record a new sweep, running; returns its id."""
        with self._transaction() as conn:
            sweep_id = stamped_id("s")
            while conn.execute("SELECT 1 FROM sweeps WHERE sweep_id = ?", (sweep_id,)).fetchone():
                sweep_id = stamped_id("s")
            self._insert(conn, "sweeps", [(sweep_id, name, spec_json, backend, str(RunState.RUNNING), utc_now(),
                                           owner, key_hash, "")])
        return sweep_id

    def import_sweep(self, row: dict[str, Any]) -> None:
        """Add a recorded sweep's row (the sweeps columns; its members are imported as bundles)."""
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM sweeps WHERE sweep_id = ?", (row["sweep_id"],)).fetchone():
                raise StoreError(f"sweep {row['sweep_id']} is already in the run store")
            self._insert(conn, "sweeps", [tuple(row.get(name) for name in _SWEEP_COLUMNS)])

    def has_sweep(self, sweep_id: str) -> bool:
        return valid_sweep_id(sweep_id) and bool(self._read("SELECT 1 FROM sweeps WHERE sweep_id = ?", (sweep_id,)))

    def sweep_row(self, sweep_id: str) -> dict[str, Any]:
        """The sweeps row: sweep_id, name, spec (JSON), backend, status, created, owner, key_hash, error."""
        rows = self._read(f"SELECT {', '.join(_SWEEP_COLUMNS)} FROM sweeps WHERE sweep_id = ?", (sweep_id,)) \
            if valid_sweep_id(sweep_id) else []
        if not rows:
            raise StoreError(f"unknown sweep id {str(sweep_id)[:40]!r} in the run store: {LIST_SWEEPS_HINT}")
        return dict(zip(_SWEEP_COLUMNS, rows[0]))

    def sweep_ids(self) -> list[str]:
        """Every sweep, newest first."""
        return [s for (s,) in self._read("SELECT sweep_id FROM sweeps ORDER BY created DESC, sweep_id DESC")]

    def sweep_members(self, sweep_id: str) -> list[dict[str, Any]]:
        """The sweep's runs (run_id, status, config JSON, error, estimate_s, budget_s), in the order they were
        created."""
        self.sweep_row(sweep_id)
        return [dict(zip(MEMBER_COLUMNS, row)) for row in self._read(
            f"SELECT {', '.join(MEMBER_COLUMNS)} FROM runs WHERE sweep_id = ? ORDER BY created, run_id", (sweep_id,))]

    def member_controls(self, sweep_id: str) -> list[tuple[str, RunState, str | None]]:
        """Each member's (run id, state, control): what a sweep's coordinator watches."""
        return [(run_id, RunState(status), control) for run_id, status, control in self._read(
            "SELECT run_id, status, control FROM runs WHERE sweep_id = ?", (sweep_id,))]

    def set_sweep_status(self, sweep_id: str, status: RunState, error: str | None = None) -> None:
        """Record the sweep's state (and `error`, unless None) if a run's life allows the change; a sweep may also
        keep its state while its error is written."""
        with self._transaction() as conn:
            current = RunState(self.sweep_row(sweep_id)["status"])
            if status is not current and not may_follow(current, status):
                raise IllegalTransition(f"sweep {sweep_id}", current, status)
            conn.execute("UPDATE sweeps SET status = ?, error = COALESCE(?, error) WHERE sweep_id = ?",
                         (str(status), error, sweep_id))

    def cancel_waiting_members(self, sweep_id: str) -> list[str]:
        """Cancel the sweep's members still waiting (queued or submitted); returns their ids."""
        return self._members_to(sweep_id, RunState.CANCELLED, "", "status IN (?, ?)",
                                (str(RunState.QUEUED), str(RunState.SUBMITTED)))

    def interrupt_unstarted(self, sweep_id: str, reason: str) -> list[str]:
        """Mark the submitted members whose lease lapsed (nobody renews it: nobody will train them) interrupted."""
        return self._members_to(sweep_id, RunState.INTERRUPTED, reason, "status = ? AND lease_expires < ?",
                                (str(RunState.SUBMITTED), time.time()))

    def _members_to(self, sweep_id: str, state: RunState, error: str, where: str, values: Iterable[Any]) -> list[str]:
        with self._transaction() as conn:
            members = [r for (r,) in conn.execute(f"SELECT run_id FROM runs WHERE sweep_id = ? AND {where}",
                                                  (sweep_id, *values)).fetchall()]
            for run_id in members:
                self._change_status(conn, run_id, state, error)
        return members

    def extend_leases(self, run_ids: list[str], lease_s: float) -> None:
        """Extend a sweep coordinator's lease on the members it still holds or has submitted."""
        if not run_ids:
            return
        with self._transaction() as conn:
            conn.execute(f"UPDATE runs SET lease_expires = ? WHERE run_id IN ({marks(run_ids)}) AND "
                         f"status IN ({marks(_HELD_BY_A_COORDINATOR)})",
                         (time.time() + lease_s, *run_ids, *_HELD_BY_A_COORDINATOR))
