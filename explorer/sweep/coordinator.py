"""A Ray sweep's coordinator: the actor on the head node that submits the members' tasks, watches them, turns stop
requests into `ray.cancel`, and is the only writer of their records into the run store.

See `explorer.sweep.ray_backend` for the whole design. The coordinator imports neither torch nor the job queue: its
process starts with every sweep, and a light one starts in about a second. Its lease length comes from its caller.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Any

import ray
from ray.exceptions import NodeDiedError, OutOfMemoryError, RayError, RayTaskError, TaskCancelledError, \
    WorkerCrashedError

from ..states import Control, ModelState, RunState
from ..store import RunStore
from .member_task import train_member
from .rows import member_rows
from .spec import RayOptions

NAMESPACE = "explorer"
RENEW_SECONDS = 1.0
_HELD = tuple(str(s) for s in (RunState.SUBMITTED, RunState.CLAIMED, RunState.RUNNING, RunState.PAUSED))


def coordinator_name(sweep_id: str) -> str:
    return f"sweep-{sweep_id}"


@ray.remote(num_cpus=0, max_restarts=0)
class SweepCoordinator:
    """Submits and watches a sweep's tasks and writes everything they send into the run store. An async actor: its
    writes run one at a time on its event loop's thread, between the watchers' awaits."""

    def __init__(self, store_path: str, sweep_id: str, lease_seconds: float):
        self.store = RunStore(store_path)
        self.sweep_id, self.lease_seconds = sweep_id, lease_seconds
        self.tasks: dict[str, ray.ObjectRef] = {}
        self.cancelled: set[str] = set()  # ray.cancel was called on their task
        self.closed: set[str] = set()  # concluded: nothing more of them is written
        self.attempts: Counter[str] = Counter()
        self._background: asyncio.Task | None = None

    async def start(self, options: RayOptions) -> int:
        """Submit one task per waiting member, longest estimate first (so the deepest members do not end the sweep
        alone), and watch them in the background; returns how many."""
        me = ray.get_runtime_context().current_actor
        task = train_member.options(num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                                    max_retries=options.max_retries, retry_exceptions=False)
        for member in sorted(member_rows(self.store, self.sweep_id), key=lambda m: -(m["estimate_s"] or 0.0)):
            if member["status"] == str(RunState.SUBMITTED):
                self.tasks[member["run_id"]] = task.remote(me, member["run_id"], member["config"],
                                                           member["budget_s"], options.num_cpus)
        self._renew()
        self._background = asyncio.get_running_loop().create_task(self._see_through())
        return len(self.tasks)

    def pid(self) -> int:
        return os.getpid()

    async def _see_through(self) -> None:
        controls = asyncio.get_running_loop().create_task(self._control_loop())
        try:
            await asyncio.gather(*(self._watch(run_id, ref) for run_id, ref in self.tasks.items()))
        finally:
            controls.cancel()
            self.store.close()  # the sweep's own state is derived from its members when read (sweep.status)
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def _watch(self, run_id: str, ref: ray.ObjectRef) -> None:
        outcome, error = None, ""
        try:
            await ref
        except TaskCancelledError:
            outcome = RunState.STOPPED
        except (WorkerCrashedError, NodeDiedError, OutOfMemoryError) as failure:
            outcome = RunState.FAILED
            error = (f"its Ray worker died while training ({_first_line(failure)}), after "
                     f"{max(1, self.attempts[run_id])} attempt(s); the records it had flushed are kept")
        except RayTaskError as failure:
            outcome, error = RunState.FAILED, _reason(failure.cause if failure.cause is not None else failure)
        except RayError as failure:
            outcome, error = RunState.FAILED, f"Ray could not run it: {_first_line(failure)}"
        self._conclude(run_id, outcome, error)

    def _conclude(self, run_id: str, outcome: RunState | None, error: str) -> None:
        """The member's final state once its task is over, unless its trainer (or a stop) already wrote one."""
        self.closed.add(run_id)
        current = self.store.status(run_id)
        if current.final:
            return
        if outcome is RunState.STOPPED:
            if not current.live:
                self.store.set_status(run_id, RunState.CANCELLED)
                return
            for model in self.store.models(run_id).query("status == 'training'")["model"]:
                self.store.set_model_status(run_id, model, ModelState.STOPPED)
        elif outcome is None:
            outcome, error = RunState.FAILED, "its Ray task ended without a final state"
        self.store.set_status(run_id, outcome, error=error)

    async def _control_loop(self) -> None:
        while True:
            self._renew()
            self._apply_controls()
            await asyncio.sleep(RENEW_SECONDS / 2)

    def _renew(self) -> None:
        held = [run_id for run_id in self.tasks if run_id not in self.closed]
        if not held:
            return
        with self.store.transaction() as conn:
            conn.execute(f"UPDATE runs SET lease_expires = ? WHERE run_id IN ({', '.join('?' * len(held))}) AND "
                         f"status IN ({', '.join('?' * len(_HELD))})",
                         (time.time() + self.lease_seconds, *held, *_HELD))

    def _apply_controls(self) -> None:
        """Cancel the task of each member asked to stop, or concluded by someone else (cancelled while waiting)."""
        for run_id, state, control in self.store.read("SELECT run_id, status, control FROM runs WHERE sweep_id = ?",
                                                      (self.sweep_id,)):
            if run_id not in self.tasks or run_id in self.closed or run_id in self.cancelled:
                continue
            if RunState(state).final or control == str(Control.STOP):
                if RunState(state).final:
                    self.closed.add(run_id)
                ray.cancel(self.tasks[run_id])
                self.cancelled.add(run_id)

    # --- what tasks call: `started`, then the trainer's `RunSink` ------------------------------------------------
    def started(self, run_id: str, hostname: str, pid: int) -> bool:
        """A task's attempt begins on `hostname` in process `pid`; False when the member should not train now."""
        if not self._writable(run_id) or run_id in self.cancelled or self.store.status(run_id).final:
            return False
        self.attempts[run_id] += 1
        with self.store.transaction() as conn:
            conn.execute("UPDATE runs SET status = ?, worker = ?, hostname = ?, lease_expires = ?, error = '' "
                         "WHERE run_id = ?", (str(RunState.CLAIMED), f"ray:{hostname}:{pid}", hostname,
                                              time.time() + self.lease_seconds, run_id))
        return True

    def _writable(self, run_id: str) -> bool:
        return run_id in self.tasks and run_id not in self.closed

    def append(self, run_id: str, **rows: list[dict]) -> None:
        if self._writable(run_id):
            self.store.append(run_id, **rows)

    def set_status(self, run_id: str, state: RunState, error: str = "") -> None:
        if self._writable(run_id):
            self.store.set_status(run_id, state, error=error)

    def set_model_status(self, run_id: str, model: str, state: ModelState, diverged_step: int | None = None) -> None:
        if self._writable(run_id):
            self.store.set_model_status(run_id, model, state, diverged_step=diverged_step)

    def set_progress(self, run_id: str, progress: Any) -> None:
        if self._writable(run_id):
            self.store.set_progress(run_id, progress)

    def truncate_after(self, run_id: str, step: int) -> None:
        if self._writable(run_id):
            self.store.truncate_after(run_id, step)

    def set_run_facts(self, run_id: str, **facts: Any) -> None:
        if self._writable(run_id):
            self.store.set_run_facts(run_id, **facts)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _reason(error: BaseException) -> str:
    text = _first_line(error)
    return text if type(error).__name__.endswith("Error") and str(error) else f"{type(error).__name__}: {text}"
