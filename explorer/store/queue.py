"""The job queue's rows: enqueueing with deduplication in one transaction, claims under leases, renewals, reaping,
the owner's controls, and the registry of workers. Which run goes first, how many may wait and what a refusal says
are the queue's policy (`explorer.jobs`), passed in; every status change goes through the transition table."""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, NamedTuple

from ..config import Config
from ..states import Control, RunState
from .base import marks, utc_now
from .runs import Runs

_LIVE = tuple(str(s) for s in RunState if s.live)
_ATTACHABLE = tuple(str(s) for s in RunState if s.live or s in (RunState.QUEUED, RunState.FINISHED))
_WORKER_COLUMNS = ("worker_id", "hostname", "pid", "device_kind", "device", "run_id")


class Waiting(NamedTuple):
    """A queued run as the queue's order sees it."""

    run_id: str
    owner: str
    created: str
    estimate_s: float | None


class Held(NamedTuple):
    """A run a worker holds (claimed, running or paused)."""

    owner: str
    estimate_s: float | None
    progress: str | None  # the trainer's `Progress` as JSON


class Claim(NamedTuple):
    run_id: str
    resume: bool  # it trained before (stopped or interrupted): continue from its checkpoint


Order = Callable[[list[Waiting], dict[str, int]], list[str]]


class Queue(Runs):
    # --- enqueueing -----------------------------------------------------------------------
    def enqueue(self, config: Config, *, fingerprint: str, attach: bool, admit: Callable[[], None],
                **run: Any) -> tuple[str, bool]:
        """In one transaction, so simultaneous identical requests make one run: when `attach`, the newest run with
        `fingerprint` that is queued, held or finished (returned with True); else `admit()` (the caller's caps,
        which may read `waiting_counts` and raise to refuse) and a new run, `create_run(config, **run)`."""
        with self._transaction():
            same = self.find_attachable(fingerprint) if attach else None
            if same is not None:
                return same, True
            admit()
            return self.create_run(config, fingerprint=fingerprint, **run), False

    def find_attachable(self, fingerprint: str) -> str | None:
        """The newest run with `fingerprint` that an identical request may join: queued, held or finished."""
        rows = self._read(f"SELECT run_id FROM runs WHERE fingerprint = ? AND status IN ({marks(_ATTACHABLE)}) "
                          "ORDER BY created DESC LIMIT 1", (fingerprint, *_ATTACHABLE))
        return rows[0][0] if rows else None

    def waiting_counts(self) -> dict[str, int]:
        """Queued requests per owner, a sweep's queued members counting as one."""
        return dict(self._read("SELECT owner, COUNT(DISTINCT COALESCE(sweep_id, run_id)) FROM runs WHERE "
                               "status = ? GROUP BY owner", (str(RunState.QUEUED),)))

    def sweep_has_runs(self, sweep_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM runs WHERE sweep_id = ? LIMIT 1", (sweep_id,)))

    # --- the queue seen from a worker ---------------------------------------------------------
    def queued_runs(self, kind: str) -> list[Waiting]:
        """The runs queued for a device of `kind` (cpu, cuda), in no particular order."""
        return [Waiting(*row) for row in self._read(
            "SELECT run_id, owner, created, estimate_s FROM runs WHERE status = ? AND device_kind = ?",
            (str(RunState.QUEUED), kind))]

    def held_runs(self, kind: str | None = None) -> list[Held]:
        """The runs workers hold (for a device of `kind`, or any)."""
        where, values = f"status IN ({marks(_LIVE)})", list(_LIVE)
        if kind is not None:
            where, values = where + " AND device_kind = ?", [*values, kind]
        return [Held(*row) for row in self._read(f"SELECT owner, estimate_s, progress FROM runs WHERE {where}",
                                                 values)]

    def has_queued(self, kind: str) -> bool:
        return bool(self._read("SELECT 1 FROM runs WHERE status = ? AND device_kind = ? LIMIT 1",
                               (str(RunState.QUEUED), kind)))

    def claim(self, run_id: str, worker_id: str, lease_s: float, *, hostname: str | None = None,
              again: bool = False) -> Claim | None:
        """Give a waiting run to `worker_id` under a lease of `lease_s` seconds; None when it is not waiting. With
        `again`, a run already held is claimed anew (a Ray task's next attempt after its process died)."""
        with self._transaction() as conn:
            row = conn.execute("SELECT status, started FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None or not (RunState(row[0]).waiting or (again and RunState(row[0]).live)):
                return None
            now = time.time()
            held = {"worker": worker_id, "lease_expires": now + lease_s}
            self._change_status(conn, run_id, RunState.CLAIMED, **held, **({"hostname": hostname} if hostname else {}))
            conn.execute("UPDATE workers SET run_id = ?, heartbeat = ? WHERE worker_id = ?", (run_id, now, worker_id))
            return Claim(run_id, row[1] is not None)

    def claim_next(self, worker_id: str, kind: str, lease_s: float, order: Order) -> Claim | None:
        """Atomically claim the first of the runs queued for `kind` in `order` (given the queued runs and how many
        runs each owner has held now); None when none is queued."""
        with self._transaction():
            busy: dict[str, int] = {}
            for held in self.held_runs():
                busy[held.owner] = busy.get(held.owner, 0) + 1
            ranked = order(self.queued_runs(kind), busy)
            return self.claim(ranked[0], worker_id, lease_s) if ranked else None

    def renew_lease(self, run_id: str, worker_id: str, lease_s: float) -> Control | None:
        """Extend `worker_id`'s lease on its run and return the owner's wish; None when it no longer holds the run."""
        now = time.time()
        with self._transaction() as conn:
            updated = conn.execute(f"UPDATE runs SET lease_expires = ? WHERE run_id = ? AND worker = ? AND status IN "
                                   f"({marks(_LIVE)})", (now + lease_s, run_id, worker_id, *_LIVE)).rowcount
            conn.execute("UPDATE workers SET heartbeat = ? WHERE worker_id = ?", (now, worker_id))
            if not updated:
                return None
            (control,) = conn.execute("SELECT control FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return Control(control or Control.RUN)

    def reap_expired(self, reason: str) -> list[str]:
        """Mark the held runs whose lease lapsed `interrupted` with `reason`; returns their ids."""
        with self._transaction() as conn:
            lost = [r for (r,) in conn.execute(f"SELECT run_id FROM runs WHERE status IN ({marks(_LIVE)}) AND "
                                               "lease_expires < ?", (*_LIVE, time.time())).fetchall()]
            for run_id in lost:
                self._change_status(conn, run_id, RunState.INTERRUPTED, reason)
        return lost

    # --- the owner's controls ---------------------------------------------------------------
    def request_control(self, run_id: str, control: Control) -> RunState:
        """Pass `control` to the worker holding the run (read at its next renewal); a waiting run asked to stop is
        cancelled. Returns the state the run was in: when it was neither held nor waiting, nothing changed."""
        with self._transaction() as conn:
            current = self.status(run_id)
            if current.waiting and control is Control.STOP:
                self._change_status(conn, run_id, RunState.CANCELLED)
            elif current.live:
                conn.execute("UPDATE runs SET control = ? WHERE run_id = ?", (str(control), run_id))
        return current

    def requeue(self, run_id: str) -> None:
        """Put a stopped or interrupted run back in the queue, to run."""
        self.set_status(run_id, RunState.QUEUED)

    # --- workers' registry ------------------------------------------------------------------
    def register_worker(self, worker_id: str, kind: str, device: str, pid: int) -> None:
        with self._transaction() as conn:
            self._insert(conn, "workers", [(worker_id, socket.gethostname(), pid, kind, device, utc_now(),
                                            time.time(), None)])

    def worker_idle(self, worker_id: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE workers SET run_id = NULL, heartbeat = ? WHERE worker_id = ?",
                         (time.time(), worker_id))

    def unregister_worker(self, worker_id: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))

    def forget_silent_workers(self, silent_s: float) -> None:
        """Forget the workers not heard from for `silent_s` seconds (they died without unregistering)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM workers WHERE heartbeat < ?", (time.time() - silent_s,))

    def live_workers(self, heard_within_s: float) -> list[dict[str, Any]]:
        """The workers heard from in the last `heard_within_s` seconds, oldest first: worker_id, hostname, pid,
        device_kind, device and the run it holds."""
        return [dict(zip(_WORKER_COLUMNS, row)) for row in self._read(
            f"SELECT {', '.join(_WORKER_COLUMNS)} FROM workers WHERE heartbeat >= ? ORDER BY started",
            (time.time() - heard_within_s,))]
