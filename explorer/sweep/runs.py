"""A sweep's life in the run store: start it on a backend, follow it, stop it.

The ``sweeps`` row holds the specification (JSON), the backend, the owner (a hash of the owner's key, as for runs)
and what the owner asked (running or stopped); every member is an ordinary run whose ``sweep_id`` names the sweep,
so the queue, the workers, the pages and the exports treat members as runs. Two backends:

- ``local``: each member is queued (`jobs.submit`) and the workers that serve the queue train it like any other run
  (one code path); `train_here` makes this process one of those workers for the sweep's members. A sweep counts as
  one request against the per-owner queue caps.
- ``ray``: each member is created ``submitted`` (local workers never claim it) and trained by a Ray task on a
  cluster, its records streamed to one writer on the head (`explorer.sweep.ray_backend`). Ray is an optional extra
  (requirements-ray.txt), imported only when this backend is asked for.

A sweep's state is derived from its members (`rows.derive`). Stopping a sweep stops each member through its run's
control (`jobs.request`): waiting members are cancelled, training ones stop at
their worker's next lease renewal or, on Ray, are cancelled by the sweep's coordinator.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from .. import jobs
from ..config import Config
from ..estimate import Estimate
from ..settings import settings
from ..states import Control, RunState
from ..store import RunStore
from .rows import member_rows, settle, sweep_row
from .spec import RayOptions, SweepError, SweepSpec, plan

BACKENDS: tuple[str, ...] = ("local", "ray")
POLL_SECONDS = 0.5
COORDINATOR_GONE = ("the sweep's Ray coordinator stopped answering (its driver or head node went away) before this "
                    "member started: resume it with `python -m explorer resume RUN_ID` to train it on this machine")


@dataclass(frozen=True)
class SweepStatus:
    """Where a sweep stands: its derived state, its members per run status, and why it failed, if it did."""

    sweep_id: str
    name: str
    backend: str
    state: RunState
    counts: dict[str, int]  # members per run status
    error: str
    estimate_s: float  # the members' estimated training seconds, added up

    @property
    def members(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts.items(), key=lambda kv: -kv[1]))
        error = f": {self.error}" if self.error else ""
        return (f"sweep {self.sweep_id} ({self.name}, {self.backend}): {self.state}; {self.members} members: "
                f"{counts}{error}")


# --- reading -------------------------------------------------------------------------------------------------------
def _reap_unstarted(store: RunStore, sweep_id: str) -> None:
    """Ray members still waiting whose coordinator stopped renewing their lease: nobody will train them now."""
    store.interrupt_unstarted(sweep_id, COORDINATOR_GONE)


def status(store: RunStore, sweep_id: str) -> SweepStatus:
    """The sweep's state, derived from its members (see the module docstring), after marking members whose worker
    or coordinator went away interrupted."""
    sweep_row(store, sweep_id)  # an unknown id fails before anything is written
    jobs.reap(store)
    _reap_unstarted(store, sweep_id)
    row, members, state, error = settle(store, sweep_id)
    return SweepStatus(sweep_id=sweep_id, name=row["name"], backend=row["backend"], state=state,
                       counts=dict(Counter(m["status"] for m in members)), error=error,
                       estimate_s=sum(m["estimate_s"] or 0.0 for m in members))


# --- starting ------------------------------------------------------------------------------------------------------
def _ray_launcher() -> Callable[..., None]:
    try:
        from . import ray_backend
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != "ray":
            raise
        raise SweepError("the ray backend needs Ray, which is not installed here: pip install -r "
                         "requirements-ray.txt") from None
    return ray_backend.launch


def start(store: RunStore, spec: SweepSpec, owner_key: str, backend: str = "local", ray_address: str | None = None,
          ray_options: RayOptions | None = None, data_dir: str | os.PathLike | None = None) -> str:
    """Record the sweep, create its members and hand them to `backend`; returns the sweep id.

    On Ray, ``ray_address`` names the cluster (``auto``, ``HOST:6379``); None connects to the instance this process
    already started, or starts a local one that lives as long as this process."""
    if backend not in BACKENDS:
        raise SweepError(f"backend {str(backend)[:40]!r} is not one of {', '.join(BACKENDS)}")
    members = plan(spec)
    cfg = settings()
    if cfg.hosted and len(members) > cfg.max_queued_per_owner:
        raise jobs.JobRefused(f"this server queues at most {cfg.max_queued_per_owner} runs per visitor: a sweep of "
                              f"{len(members)} members needs a machine of your own")
    launch = _ray_launcher() if backend == "ray" else None  # before anything is written
    sweep_id = store.create_sweep(spec.name, json.dumps(spec.to_dict()), backend, jobs.owner_of(owner_key),
                                  jobs.key_hash(owner_key))
    waiting = RunState.SUBMITTED if launch is not None else RunState.QUEUED
    try:
        for config in members:
            jobs.submit(store, config, owner_key, budget_s=spec.budget_s, sweep_id=sweep_id, status=waiting,
                        data_dir=data_dir)
        if launch is not None:
            launch(store, sweep_id, ray_address, ray_options or RayOptions(), data_dir)
    except BaseException as error:
        _abandon(store, sweep_id, error)
        raise
    return sweep_id


def _abandon(store: RunStore, sweep_id: str, error: BaseException) -> None:
    """A sweep that could not be started whole: its waiting members are cancelled, the sweep failed with the reason."""
    reason = str(error) or type(error).__name__
    store.cancel_waiting_members(sweep_id)
    store.set_sweep_status(sweep_id, RunState.FAILED, f"not started: {reason}")


# --- following and stopping --------------------------------------------------------------------------------------
def stop(store: RunStore, sweep_id: str, key: str | None) -> int:
    """Stop every member still waiting or training (see the module docstring); returns how many were asked."""
    row = sweep_row(store, sweep_id)
    if not jobs.holds_key(row, key):
        raise jobs.NotOwner(f"sweep {sweep_id} can only be stopped with its owner's key")
    current = status(store, sweep_id)
    if current.state.final:
        raise jobs.JobRefused(f"sweep {sweep_id} is {current.state}: there is nothing to stop")
    if row["status"] == str(RunState.RUNNING):  # a sweep that failed to start keeps saying so
        store.set_sweep_status(sweep_id, RunState.STOPPED)
    asked = 0
    for member in member_rows(store, sweep_id):
        if RunState(member["status"]).active:
            try:
                jobs.request(store, member["run_id"], key, Control.STOP)
                asked += 1
            except jobs.JobRefused:
                pass  # it ended meanwhile
    return asked


def wait(store: RunStore, sweep_id: str, report: Callable[[SweepStatus], None] | None = None,
         poll: float = POLL_SECONDS, timeout: float | None = None) -> SweepStatus:
    """Poll until the sweep ends, calling `report` whenever its state or counts change; returns the last status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        current = status(store, sweep_id)
        if report is not None and (last is None or (current.state, current.counts) != (last.state, last.counts)):
            report(current)
        last = current
        if current.state.final or (deadline is not None and time.monotonic() > deadline):
            return current
        time.sleep(poll)


def train_here(store: RunStore, sweep_id: str, worker: Any,
               report: Callable[[SweepStatus], None] | None = None) -> None:
    """Train the sweep's queued members in this process with `worker` (an `explorer.worker.Worker`), one after
    another, until none is left or the worker is stopped, calling `report` after each; other workers of the queue
    may take some meanwhile."""
    while not worker.stopping:
        queued = [m["run_id"] for m in member_rows(store, sweep_id) if m["status"] == str(RunState.QUEUED)]
        if not queued:
            return
        for run_id in queued:
            if worker.stopping:
                return
            if worker.run_one(run_id) is not None and report is not None:
                report(status(store, sweep_id))


def estimates(store: RunStore, spec: SweepSpec) -> list[tuple[Config, Estimate]]:
    """Each planned member and what it would cost on this machine (the memory and hosted checks included),
    without creating anything."""
    return [(config, jobs.assess(config, store)[1]) for config in plan(spec)]
