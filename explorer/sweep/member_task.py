"""A Ray sweep member's task: train one member with the project's Trainer, writing through the sweep's coordinator.

The task module is imported by the coordinator (to submit tasks) as well as by the workers that run them; the
coordinator must stay free of torch, so the training imports are made inside `train_member`, on the worker, and
only plain values (str, numbers, dicts of them, `RunState`) are sent to it: unpickling anything of the trainer's or
torch's would import torch into the coordinator's event loop and stall every member's lease renewal for seconds.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from typing import Any

import ray

from ..states import ModelState, RunState

MAX_IN_FLIGHT = 16  # unanswered writes a task may have outstanding before it waits for the oldest

_DATA: dict[str, Any] = {}  # device -> `worker.DataCache`, kept between the tasks one worker process runs


class MemberError(RuntimeError):
    """A member could not be trained; the message is the reason. The original exception (a `DataError`, a torch
    error) is not sent: unpickling it would import torch into the coordinator."""


def reason(error: BaseException) -> str:
    """An exception as one line a reader can act on: its message, named by its type where the name says little."""
    text = (str(error).strip().splitlines() or [""])[0][:300]
    return text if type(error).__name__.endswith("Error") and text else f"{type(error).__name__}: {text}"


class CoordinatorSink:
    """The `RunSink` of a member's trainer inside its task: each call goes to the coordinator without waiting for it
    (calls from one task run in the order they were made), and when `MAX_IN_FLIGHT` are unanswered the task waits
    for the oldest, so a slow head slows its tasks down rather than piling records up. `flush` waits for them all."""

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

    def set_progress(self, run_id: str, progress: Any) -> None:
        self._send("set_progress", run_id, progress.to_json())  # text: the coordinator never unpickles a Progress

    def truncate_after(self, run_id: str, step: int) -> None:
        self._send("truncate_after", run_id, step)

    def set_run_facts(self, run_id: str, **facts: Any) -> None:
        self._send("set_run_facts", run_id, **facts)

    def flush(self) -> None:
        if self._in_flight:
            ray.get(list(self._in_flight))
            self._in_flight.clear()


@ray.remote
def train_member(coordinator: Any, run_id: str, config_json: str, budget_s: float | None, num_cpus: float) -> str:
    """Train one member, writing through `coordinator`; returns its final state."""
    import torch

    from ..config import Config
    from ..device import resolve_device
    from ..memory import return_freed_memory
    from ..trainer import Trainer
    from ..worker import DataCache, prepare

    sink = CoordinatorSink(coordinator)
    if not ray.get(coordinator.started.remote(run_id, socket.gethostname(), os.getpid())):
        return str(RunState.CANCELLED)
    try:
        config = Config.from_json(config_json)
        if not config.threads:
            torch.set_num_threads(max(1, round(num_cpus)))  # the task's share of its node, not the whole node
        device = resolve_device(config.device)  # auto: the GPU where Ray gave this task one
        policy, data = prepare(config, device, _DATA.setdefault(str(device), DataCache(device)))
        sink.set_run_facts(run_id, device=policy.name, data_source=data.source, hostname=socket.gethostname(),
                           torch_version=str(torch.__version__))  # a plain str: TorchVersion would import torch
        sink.truncate_after(run_id, -1)  # an attempt after a dead one writes every record again
        state = Trainer(config, sink, run_id, data, policy, max_seconds=budget_s).run()
    except Exception as error:
        sink.flush()
        raise MemberError(reason(error)) from None
    finally:
        return_freed_memory()  # a Ray worker process trains member after member
    sink.flush()
    return str(state)
