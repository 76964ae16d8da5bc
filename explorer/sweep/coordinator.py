"""A Ray sweep's coordinator: the actor on the head node that submits the members' tasks, watches them, turns stop
requests into `ray.cancel`, and is the only writer of their records into the run store.

See `explorer.sweep.ray_backend` for the whole design. The coordinator imports neither torch nor the job queue: its
process starts with every sweep, and a light one starts in about a second. Its lease length comes from its caller.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from typing import Any

import ray
from ray.exceptions import NodeDiedError, OutOfMemoryError, RayError, RayTaskError, TaskCancelledError, \
    WorkerCrashedError

from ..states import Control, ModelState, RunState
from ..store import RunStore, StoreError
from .member_task import reason, train_member
from .rows import member_rows, settle
from .spec import RayOptions

NAMESPACE = "explorer"
RENEW_SECONDS = 1.0
FORCE_AFTER_SECONDS = 15.0  # a cancelled task still running this long after is killed (ray.cancel(force=True))


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
        self.cancelled: dict[str, float] = {}  # run id -> when ray.cancel was called on its task (monotonic)
        self.forced: set[str] = set()  # their process was killed
        self.ended: set[str] = set()  # their task is over
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
            settle(self.store, self.sweep_id)  # the sweep's row records how it ended
            self.store.close()
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def _watch(self, run_id: str, ref: ray.ObjectRef) -> None:
        outcome, error = None, ""
        try:
            await ref
        except TaskCancelledError:
            outcome = RunState.STOPPED
        except (WorkerCrashedError, NodeDiedError, OutOfMemoryError) as failure:
            outcome = RunState.FAILED
            error = (f"its Ray worker died while training ({reason(failure)}), after "
                     f"{max(1, self.attempts[run_id])} attempt(s); the records it had flushed are kept")
        except RayTaskError as failure:  # a MemberError, whose message is the reason
            outcome, error = RunState.FAILED, reason(failure.cause if failure.cause is not None else failure)
        except RayError as failure:
            outcome, error = RunState.FAILED, f"Ray could not run it: {reason(failure)}"
        self.ended.add(run_id)
        if run_id in self.forced:  # its process was killed because it went on after it was asked to stop
            outcome, error = RunState.STOPPED, ""
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
            try:
                self._renew()
                self._apply_controls()
            except StoreError as error:  # a store locked for a while: try again, rather than stop renewing
                print(f"sweep {self.sweep_id}: {error}", file=sys.stderr, flush=True)
            await asyncio.sleep(RENEW_SECONDS / 2)

    def _renew(self) -> None:
        self.store.extend_leases([run_id for run_id in self.tasks if run_id not in self.closed], self.lease_seconds)

    def _apply_controls(self) -> None:
        """Cancel the task of each member asked to stop, or concluded by someone else (cancelled while waiting);
        kill the process of one that goes on regardless (an interrupt can be lost in a task's first moments)."""
        now = time.monotonic()
        for run_id, since in self.cancelled.items():
            if run_id not in self.forced and now - since > FORCE_AFTER_SECONDS and run_id not in self.ended:
                ray.cancel(self.tasks[run_id], force=True)
                self.forced.add(run_id)
        for run_id, state, control in self.store.member_controls(self.sweep_id):
            if run_id not in self.tasks or run_id in self.closed or run_id in self.cancelled:
                continue
            if state.final or control == str(Control.STOP):
                if state.final:
                    self.closed.add(run_id)
                ray.cancel(self.tasks[run_id])
                self.cancelled[run_id] = now

    # --- what tasks call: `started`, then the trainer's `RunSink` ------------------------------------------------
    def started(self, run_id: str, hostname: str, pid: int) -> bool:
        """A task's attempt begins on `hostname` in process `pid`; False when the member should not train now."""
        if not self._writable(run_id) or run_id in self.cancelled:
            return False
        claim = self.store.claim(run_id, f"ray:{hostname}:{pid}", self.lease_seconds, hostname=hostname,
                                 again=True)  # a retry after a dead attempt claims the member anew
        if claim is not None:
            self.attempts[run_id] += 1
        return claim is not None

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

    def set_progress(self, run_id: str, progress_json: str) -> None:
        if self._writable(run_id):
            self.store.set_progress(run_id, _Published(progress_json))

    def truncate_after(self, run_id: str, step: int) -> None:
        if self._writable(run_id):
            self.store.truncate_after(run_id, step)

    def set_run_facts(self, run_id: str, **facts: Any) -> None:
        if self._writable(run_id):
            self.store.set_run_facts(run_id, **facts)


class _Published:
    """A trainer's `Progress` as its task sends it, already JSON: unpickling a `Progress` would import the trainer
    (and torch) into the coordinator, stalling its event loop, and with it the members' leases."""

    def __init__(self, text: str):
        self.text = text

    def to_json(self) -> str:
        return self.text
