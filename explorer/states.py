"""The life of a run, as one vocabulary for the store, the workers, the trainer, the CLI and the pages.

    queued ──claim──► claimed ──► running ⇄ paused ──► finished | stopped | failed | diverged
      │                  │           │
      └─► cancelled      └───────────┴──(lease expired: the worker died)──► interrupted

``submitted`` is a sweep member handed to an external scheduler (Ray): it is not in the local queue, so local
workers never claim it. ``stopped`` and ``interrupted`` runs keep a checkpoint and can be resumed (back to
``queued``). A model inside a run has its own, smaller life (`ModelState`).
"""

from __future__ import annotations

from enum import Enum


class RunState(str, Enum):
    SUBMITTED = "submitted"
    QUEUED = "queued"
    CLAIMED = "claimed"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    DIVERGED = "diverged"  # every model's loss became non-finite or exploded
    INTERRUPTED = "interrupted"  # its worker died (lease expired) or the process was killed
    CANCELLED = "cancelled"  # withdrawn before a worker claimed it

    def __str__(self) -> str:
        return self.value

    @property
    def waiting(self) -> bool:
        """In the queue or handed to a scheduler, not yet training."""
        return self in (RunState.SUBMITTED, RunState.QUEUED)

    @property
    def live(self) -> bool:
        """Held by a worker (which renews its lease): charts of such a run keep changing."""
        return self in (RunState.CLAIMED, RunState.RUNNING, RunState.PAUSED)

    @property
    def active(self) -> bool:
        return self.waiting or self.live

    @property
    def final(self) -> bool:
        return not self.active

    @property
    def resumable(self) -> bool:
        return self in (RunState.STOPPED, RunState.INTERRUPTED)


class ModelState(str, Enum):
    TRAINING = "training"
    DIVERGED = "diverged"
    FINISHED = "finished"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


class Control(str, Enum):
    """What a run's owner asks of the worker that holds it (the store's ``runs.control``)."""

    RUN = "run"
    PAUSE = "pause"
    STOP = "stop"

    def __str__(self) -> str:
        return self.value
