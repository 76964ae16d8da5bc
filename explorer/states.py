"""The life of a run, as one vocabulary for the store, the workers, the trainer, the CLI and the pages.

    queued ────┬─claim─► claimed ──► running ──► finished | stopped | failed | diverged
    submitted ─┘           │         ▲  │
                           │  resume │  ▼ pause
                           │        paused ──► stopped | failed
                           ├──► failed (it could not start) | stopped (stopped before its first step)
                           └──(its lease lapsed, claimed, running or paused: the worker died)──► interrupted

    claimed | running ──retry──► claimed        (a Ray task's next attempt, after its process died)
    queued | submitted ──(withdrawn while waiting)──► cancelled
    submitted ──► interrupted (its coordinator went away) | failed (its Ray task could not run)
    stopped | interrupted ──requeue──► queued   (resumed from the last checkpoint)

``submitted`` is a sweep member handed to an external scheduler (Ray): it is not in the local queue, so local
workers never claim it. ``finished``, ``failed``, ``diverged`` and ``cancelled`` never change again. `TRANSITIONS`
is this drawing as a table; the store refuses every status change it does not hold (`store.IllegalTransition`),
whoever asks: the trainer, a worker, the reaper, an owner's control, a sweep. A model inside a run has its own,
smaller life (`ModelState`).
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


_S = RunState
# Which state may follow which: the drawing above, and nothing else.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    _S.SUBMITTED: frozenset({_S.CLAIMED, _S.CANCELLED, _S.INTERRUPTED, _S.FAILED}),
    _S.QUEUED: frozenset({_S.CLAIMED, _S.CANCELLED}),
    _S.CLAIMED: frozenset({_S.RUNNING, _S.CLAIMED, _S.FAILED, _S.STOPPED, _S.INTERRUPTED}),
    _S.RUNNING: frozenset({_S.PAUSED, _S.CLAIMED, _S.FINISHED, _S.STOPPED, _S.FAILED, _S.DIVERGED,
                           _S.INTERRUPTED}),
    _S.PAUSED: frozenset({_S.RUNNING, _S.STOPPED, _S.FAILED, _S.INTERRUPTED}),
    _S.STOPPED: frozenset({_S.QUEUED}),
    _S.INTERRUPTED: frozenset({_S.QUEUED}),
    _S.FINISHED: frozenset(),
    _S.FAILED: frozenset(),
    _S.DIVERGED: frozenset(),
    _S.CANCELLED: frozenset(),
}


# A study of a finished run (its loss-surface slices, explorer.landscape) is a smaller job: a worker that is free of
# runs takes it, computes it and keeps its result beside the store; one whose worker stopped answering failed.
STUDY_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.FINISHED, _S.FAILED}),
    _S.FINISHED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def may_follow(current: RunState, new: RunState) -> bool:
    """Whether a run in state `current` may change to `new` (see `TRANSITIONS`)."""
    return new in TRANSITIONS[current]


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
