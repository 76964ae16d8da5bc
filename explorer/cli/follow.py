"""Runs through the queue from a terminal: submit a configuration, then train it here as a local worker or follow
it while the running workers train it, printing its progress from the store."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import TYPE_CHECKING, Callable

from explorer.cli.common import Interrupted, RunFailed, owner_key, say
from explorer.config import Config
from explorer.states import RunState
from explorer.store import RunStore

if TYPE_CHECKING:
    from explorer.trainer import Progress

Report = Callable[[str], None]


def train_here(store: RunStore, run_id: str, report: Report, data_dir: str | os.PathLike | None = None) -> RunState:
    """Train a submitted run in this process as a local worker, printing its progress; Ctrl-C stops it cleanly.
    `data_dir` replaces the operator's data directory."""
    from explorer.worker import Worker, clean_interrupts

    worker = Worker(store, store.config(run_id).device, data_dir=data_dir)
    with clean_interrupts(worker), Following(store, run_id, report):
        worker.run_one(run_id)
    return finish(store, run_id, interrupted=worker.stopping)


def follow(store: RunStore, run_id: str, report: Report) -> RunState:
    """Wait for a queued run to end (trained by a worker), printing its progress; Ctrl-C leaves it running."""
    from explorer import jobs

    done = threading.Event()
    try:
        with Following(store, run_id, report):
            while not store.status(run_id).final:
                jobs.reap(store)
                done.wait(0.5)
    except KeyboardInterrupt:
        report(f"\nrun {run_id} goes on in its worker; stop it with python -m explorer control {run_id} stop")
        raise Interrupted(run_id) from None
    return finish(store, run_id)


def finish(store: RunStore, run_id: str, interrupted: bool = False) -> RunState:
    """The run's final state; `RunFailed` when it failed or diverged, `Interrupted` when Ctrl-C stopped it here."""
    row = store.run(run_id)
    state = RunState(row["status"])
    if state in (RunState.FAILED, RunState.DIVERGED):
        reason = row["error"] or "every model's loss became non-finite or exploded: lower the learning rate"
        raise RunFailed(f"run {run_id} {state}: {reason}")
    if interrupted and state is RunState.STOPPED:
        raise Interrupted(run_id)
    return state


class Following:
    """Print a run's progress from the store every half second in a thread (its trainer may be in this thread)."""

    def __init__(self, store: RunStore, run_id: str, report: Report):
        self.store, self.run_id, self.report = store, run_id, report
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.tty = sys.stderr.isatty()
        self.last_line = ""

    def _line(self) -> str:
        from explorer.trainer import Progress

        row = self.store.run(self.run_id)
        return progress_line(Progress.from_json(row["progress"], RunState(row["status"])))

    def _loop(self) -> None:
        ticks = 0
        while not self.done.wait(0.5):
            line = self._line()
            ticks += 1
            if self.tty:
                self.report("\r" + line)
            elif line != self.last_line and ticks % 10 == 0:  # a log file gets a line every 5 s, not redraws
                self.report(line + "\n")
            self.last_line = line

    def __enter__(self) -> "Following":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.report(("\r" if self.tty else "") + self._line() + "\n")


def progress_line(p: "Progress") -> str:
    """One line of a `trainer.Progress`: a bar, the step, epoch, speed and the time left (or the state)."""
    width = 30
    done = p.step / max(1, p.total_steps)
    bar = "#" * round(width * done) + "-" * (width - round(width * done))
    eta = f"eta {p.eta_s:4.0f}s" if p.eta_s is not None and p.state is RunState.RUNNING else str(p.state)
    diverged = f" diverged: {','.join(p.diverged)}" if p.diverged else ""
    return (f"[{bar}] step {p.step}/{p.total_steps} epoch {p.epoch:.1f} {p.images_per_s:6.0f} img/s "
            f"{eta}{diverged}")


def run_config(store: RunStore, config: Config, args: argparse.Namespace, preset: str = "",
               budget_s: float | None = None) -> str:
    """Submit `config` and train it here, or leave it to the workers (``--queue``) and optionally wait."""
    from explorer import jobs

    submission = jobs.submit(store, config, owner_key(), preset=preset, budget_s=budget_s,
                             attach=getattr(args, "attach", False), data_dir=args.data_dir)
    run_id = submission.run_id
    say(f"run {run_id}: {', '.join(config.labels)} on {config.data.source}; {submission.estimate.summary()}\n")
    if getattr(args, "queue", False):
        if args.wait:
            follow(store, run_id, say)
        return run_id
    if submission.attached:
        say(f"an identical run exists: following {run_id}\n")
        follow(store, run_id, say)
    else:
        train_here(store, run_id, say, args.data_dir)
    return run_id
