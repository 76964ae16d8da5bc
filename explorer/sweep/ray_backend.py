"""Sweeps on Ray: each member a Ray task that trains with the project's Trainer, its records streamed to one writer.

    driver (head node)               coordinator actor (pinned to the head)        Ray tasks (any node)
    sweep.start: members submitted,  the only writer of the run store  ◄─records─ train_member: the Trainer
    launch ────────────────────────► one task per member, watches them             writes through CoordinatorSink

- One writer: a member's trainer writes through `CoordinatorSink`, a `RunSink` whose every call is an actor call to
  the sweep's coordinator (`explorer.sweep.coordinator`), which writes it into the SQLite store on the head's own
  disk (never SQLite over a network file system). Calls from one task run in the order they were made; a task waits
  for its last write before it returns (`explorer.sweep.member_task`).
- Leases: the coordinator holds a lease (`COORDINATOR_LEASE_SECONDS`) on every member it has not concluded and
  renews it every second, so when the coordinator or the head goes away, `jobs.reap` and `sweep.status` mark its
  members interrupted (resumable on this machine's queue) instead of leaving them running forever.
- Failures: a task whose worker process dies (killed, out of memory, node lost) is retried by Ray up to
  ``max_retries`` times, each attempt starting over (its earlier rows are deleted); then the member ends `failed`
  with "its Ray worker died ...". An exception in training fails the member with its message and is not retried:
  it would fail again.
- Stop: `sweep.stop` writes each member's control (a waiting member is cancelled at once); the coordinator reads
  controls every half second and calls `ray.cancel` on the task of every member asked to stop: a task not yet
  running never starts (the member stays cancelled), a running one is interrupted (the member ends stopped with
  its records), and one still running 15 s later has its process killed. Pausing is not offered here: a Ray
  member has no checkpoint to resume from.

This module is the driver's side. Ray is imported only here and in the two modules it names, which nothing but
`explorer.sweep.runs.start` (backend="ray") imports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..data.sources import resolve_data_dir
from ..store import RunStore
from .coordinator import NAMESPACE, SweepCoordinator, coordinator_name
from .spec import RayOptions, SweepError

PRIVATE_SETTINGS = ("EXPLORER_STORE", "EXPLORER_OWNER_KEY")  # never sent to the cluster's workers
# Ray runs actors at low priority (nice 15) beside the cluster's work, so a coordinator on a busy head can stall for
# seconds: its members' leases last longer than a local worker's (jobs.LEASE_SECONDS) before they count as lost.
COORDINATOR_LEASE_SECONDS = 30.0


def connect(address: str | None, data_dir: str | os.PathLike | None = None) -> None:
    """Join the cluster at `address` (or start a local instance) unless this process already joined one. On a
    cluster, the tasks get this checkout's `explorer` package and its EXPLORER_* settings (data roots by name), with
    `data_dir` (default: this process's) as their data directory."""
    if ray.is_initialized():
        return
    if address is not None and address.startswith("ray://"):
        raise SweepError("run the sweep command on the Ray head node with --ray-address auto (or HOST:PORT): the "
                         "run store lives on the head and only the head writes it, so Ray Client (ray://) is not used")
    env = {k: v for k, v in os.environ.items() if k.startswith("EXPLORER_") and k not in PRIVATE_SETTINGS}
    env["EXPLORER_DATA_DIR"] = str(resolve_data_dir(data_dir).resolve())
    runtime_env: dict[str, Any] = {"env_vars": env}
    if address is not None:
        runtime_env["py_modules"] = [str(Path(__file__).resolve().parents[1])]
    try:
        ray.init(address=address, namespace=NAMESPACE, runtime_env=runtime_env)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise SweepError(f"cannot join the Ray cluster at {address}: {error}; start it with `ray start --head`, or "
                         "give its address as --ray-address HOST:PORT") from None


def launch(store: RunStore, sweep_id: str, address: str | None, options: RayOptions,
           data_dir: str | os.PathLike | None = None) -> None:
    """Start the sweep's coordinator on this node (the one whose disk holds the store) and its tasks. The
    coordinator is detached: it sees the sweep through after this process exits (a local instance does not)."""
    connect(address, data_dir)
    node = ray.get_runtime_context().get_node_id()
    coordinator = SweepCoordinator.options(
        name=coordinator_name(sweep_id), namespace=NAMESPACE, lifetime="detached",
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
    ).remote(str(store.path.resolve()), sweep_id, COORDINATOR_LEASE_SECONDS)
    ray.get(coordinator.start.remote(options))
