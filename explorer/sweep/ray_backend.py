"""Sweeps on Ray: each member a Ray task that trains with the project's Trainer, its records streamed to one writer.

    driver, on the head node            coordinator actor, pinned to the head        Ray tasks, on any node
    sweep.start: members `submitted` ─► the only writer of the run store ◄─records─ train_member: Trainer writes
                 launch ──────────────► one task per member, watches them              through a CoordinatorSink

- One writer: a member's trainer writes through `CoordinatorSink`, a `RunSink` whose every call is an actor call to
  the sweep's coordinator, which writes it into the SQLite store on the head's own disk (never SQLite over a network
  file system). Calls from one task run in the order they were made; a task waits for its last write before it
  returns, and for the oldest of `MAX_IN_FLIGHT` unanswered ones, so a slow head slows its tasks down rather than
  piling records up in memory.
- Leases: the coordinator holds a lease on every member it has not concluded and renews it every `RENEW_SECONDS`,
  so when the coordinator or the head goes away, `jobs.reap` and `sweep.status` mark its members interrupted
  (resumable on this machine's queue) instead of leaving them running forever.
- Failures: a task whose worker process dies (killed, out of memory, node lost) is retried by Ray up to
  `max_retries` times, each attempt starting over (its earlier rows are deleted); then the member ends `failed`
  with "its Ray worker died ...". An exception in training fails the member with its message and is not retried:
  it would fail again.
- Stop: `sweep.stop` writes each member's control (a waiting member is cancelled at once); the coordinator reads
  controls every half second and calls `ray.cancel` on the task of every member asked to stop: a task not yet
  running never starts (the member stays cancelled), a running one is interrupted (the member ends stopped with
  its records). Pausing is not offered here: a Ray member has no checkpoint to resume from.

This module imports Ray; nothing but `explorer.sweep.runs.start`, with backend="ray", imports it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter, deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray
import torch
from ray.exceptions import NodeDiedError, OutOfMemoryError, RayError, RayTaskError, TaskCancelledError, \
    WorkerCrashedError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..config import Config
from ..device import resolve_device
from ..jobs import LEASE_SECONDS
from ..memory import release_memory_eagerly
from ..settings import settings
from ..states import Control, ModelState, RunState
from ..store import RunStore
from ..trainer import Progress, Trainer
from ..worker import DataCache, prepare
from .runs import RayOptions, member_rows, status
from .spec import SweepError

NAMESPACE = "explorer"
RENEW_SECONDS = 1.0
MAX_IN_FLIGHT = 16  # unanswered writes a task may have outstanding
PRIVATE_SETTINGS = ("EXPLORER_STORE", "EXPLORER_OWNER_KEY")  # never sent to the cluster's workers
_LIVE = tuple(str(s) for s in (RunState.SUBMITTED, RunState.CLAIMED, RunState.RUNNING, RunState.PAUSED))


def coordinator_name(sweep_id: str) -> str:
    return f"sweep-{sweep_id}"


# --- the driver's side ----------------------------------------------------------------------------------------------
def connect(address: str | None) -> None:
    """Join the cluster at `address` (or start a local instance) unless this process already joined one. On a
    cluster, the tasks get this checkout's `explorer` package and its EXPLORER_* settings (data roots by name)."""
    if ray.is_initialized():
        return
    if address is not None and address.startswith("ray://"):
        raise SweepError("run the sweep command on the Ray head node with --ray-address auto (or HOST:PORT): the "
                         "run store lives on the head and only the head writes it, so Ray Client (ray://) is not used")
    env = {k: v for k, v in os.environ.items() if k.startswith("EXPLORER_") and k not in PRIVATE_SETTINGS}
    env["EXPLORER_DATA_DIR"] = str(settings().data_dir.resolve())
    runtime_env: dict[str, Any] = {"env_vars": env}
    if address is not None:
        runtime_env["py_modules"] = [str(Path(__file__).resolve().parents[1])]
    try:
        ray.init(address=address, namespace=NAMESPACE, runtime_env=runtime_env)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise SweepError(f"cannot join the Ray cluster at {address}: {error}; start it with `ray start --head`, or "
                         "give its address as --ray-address HOST:PORT") from None


def launch(store: RunStore, sweep_id: str, address: str | None, options: RayOptions) -> None:
    """Start the sweep's coordinator on this node (the one whose disk holds the store) and its tasks. The
    coordinator is detached: it sees the sweep through after this process exits (a local instance does not)."""
    connect(address)
    node = ray.get_runtime_context().get_node_id()
    coordinator = SweepCoordinator.options(
        name=coordinator_name(sweep_id), namespace=NAMESPACE, lifetime="detached",
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
    ).remote(str(store.path.resolve()), sweep_id)
    ray.get(coordinator.start.remote(asdict(options)))


# --- the coordinator: the head's one writer --------------------------------------------------------------------
@ray.remote(num_cpus=0, max_restarts=0)
class SweepCoordinator:
    """Submits and watches a sweep's tasks and writes everything they send into the run store (see the module
    docstring). An async actor: its writes run one at a time on its event loop thread, between the watchers."""

    def __init__(self, store_path: str, sweep_id: str):
        self.store = RunStore(store_path)
        self.sweep_id = sweep_id
        self.tasks: dict[str, ray.ObjectRef] = {}
        self.cancelled: set[str] = set()
        self.closed: set[str] = set()
        self.attempts: Counter[str] = Counter()
        self._background: asyncio.Task | None = None

    async def start(self, options: dict[str, Any]) -> int:
        """Submit one task per waiting member and watch them in the background; returns how many."""
        options = RayOptions(**options)
        me = ray.get_runtime_context().current_actor
        task = train_member.options(num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                                    max_retries=options.max_retries, retry_exceptions=False)
        for member in member_rows(self.store, self.sweep_id):
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
            status(self.store, self.sweep_id)  # settles the sweep's final state into its row
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

    def _open(self) -> list[str]:
        return [run_id for run_id in self.tasks if run_id not in self.closed]

    def _renew(self) -> None:
        open_ids = self._open()
        if not open_ids:
            return
        with self.store.transaction() as conn:
            conn.execute(f"UPDATE runs SET lease_expires = ? WHERE run_id IN ({', '.join('?' * len(open_ids))}) AND "
                         f"status IN ({', '.join('?' * len(_LIVE))})",
                         (time.time() + LEASE_SECONDS, *open_ids, *_LIVE))

    def _apply_controls(self) -> None:
        """Cancel the task of each member asked to stop, or concluded by someone else (cancelled while waiting)."""
        for run_id, state, control in self.store.read("SELECT run_id, status, control FROM runs WHERE sweep_id = ?",
                                                      (self.sweep_id,)):
            if run_id not in self.tasks or run_id in self.closed or run_id in self.cancelled:
                continue
            if RunState(state).final or control == str(Control.STOP):
                if RunState(state).final:
                    self.closed.add(run_id)  # nothing more of it is written
                ray.cancel(self.tasks[run_id])
                self.cancelled.add(run_id)

    # --- what tasks call: `started`, then the trainer's `RunSink` ------------------------------------------------
    def started(self, run_id: str, hostname: str, pid: int) -> bool:
        """A task's attempt begins on `hostname` in process `pid`; False when the member should not train now."""
        if run_id not in self.tasks or run_id in self.closed or run_id in self.cancelled:
            return False
        if self.store.status(run_id).final:
            return False
        self.attempts[run_id] += 1
        with self.store.transaction() as conn:
            conn.execute("UPDATE runs SET status = ?, worker = ?, hostname = ?, lease_expires = ?, error = '' "
                         "WHERE run_id = ?", (str(RunState.CLAIMED), f"ray:{hostname}:{pid}", hostname,
                                              time.time() + LEASE_SECONDS, run_id))
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

    def set_progress(self, run_id: str, progress: Progress) -> None:
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


# --- a member's task --------------------------------------------------------------------------------------------------
class CoordinatorSink:
    """The `RunSink` a member's trainer writes to inside its task: each call goes to the coordinator without waiting
    for it (see the module docstring); `flush` waits until every call so far has been written."""

    def __init__(self, coordinator: Any):
        self.coordinator = coordinator
        self._in_flight: deque[ray.ObjectRef] = deque()

    def _send(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._in_flight.append(getattr(self.coordinator, method).remote(*args, **kwargs))
        if len(self._in_flight) > MAX_IN_FLIGHT:
            ray.get(self._in_flight.popleft())

    def append(self, run_id: str, **rows: list[dict]) -> None:
        self._send("append", run_id, **rows)

    def set_status(self, run_id: str, status: RunState, error: str = "") -> None:
        self._send("set_status", run_id, status, error=error)

    def set_model_status(self, run_id: str, model: str, status: ModelState, diverged_step: int | None = None) -> None:
        self._send("set_model_status", run_id, model, status, diverged_step=diverged_step)

    def set_progress(self, run_id: str, progress: Progress) -> None:
        self._send("set_progress", run_id, progress)

    def truncate_after(self, run_id: str, step: int) -> None:
        self._send("truncate_after", run_id, step)

    def set_run_facts(self, run_id: str, **facts: Any) -> None:
        self._send("set_run_facts", run_id, **facts)

    def flush(self) -> None:
        if self._in_flight:
            ray.get(list(self._in_flight))
            self._in_flight.clear()


_DATA: dict[str, DataCache] = {}  # per device, kept between the tasks a worker process runs


@ray.remote
def train_member(coordinator: Any, run_id: str, config_json: str, budget_s: float | None, num_cpus: float) -> str:
    """Train one member with the project's Trainer, writing through the coordinator; returns its final state."""
    sink = CoordinatorSink(coordinator)
    if not ray.get(coordinator.started.remote(run_id, socket.gethostname(), os.getpid())):
        return str(RunState.CANCELLED)
    release_memory_eagerly()
    config = Config.from_json(config_json)
    if not config.threads:
        torch.set_num_threads(max(1, round(num_cpus)))  # the task's share of its node, not the whole node
    device = resolve_device(config.device)  # auto: the GPU where Ray gave this task one
    policy, data = prepare(config, device, _DATA.setdefault(str(device), DataCache(device)))
    sink.set_run_facts(run_id, device=policy.name, data_source=data.source, hostname=socket.gethostname(),
                       torch_version=torch.__version__)
    sink.truncate_after(run_id, -1)  # an attempt after a dead one writes every record again
    try:
        state = Trainer(config, sink, run_id, data, policy, max_seconds=budget_s).run()
    except Exception:
        sink.flush()
        raise
    sink.flush()
    return str(state)
