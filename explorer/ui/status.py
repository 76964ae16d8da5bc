"""A run's status line as words, from its stored row: what the Lab prints under a run and what the live feed sends
every viewer. Pure text (no Streamlit), so both say the same thing.

While a run waits it reads "waiting · position 2 in the queue · about 1 min of training ahead on 1 worker ·
estimated 40 s once it starts"; while it trains "running · step 120 / 620 · epoch 2.0 · 85 images/s · cpu ·
cifar10 · ETA 0:40"; afterwards "finished · ... · trained 1:52", with a warning for interrupted, failed and diverged
runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from explorer.estimate import format_seconds
from explorer.jobs import QueuePlace
from explorer.memory import format_bytes
from explorer.states import RunState
from explorer.trainer import Progress


@dataclass(frozen=True)
class StatusLine:
    state: RunState
    parts: tuple[str, ...]  # the line's facts, joined with " · " after the state
    fraction: float | None  # the progress bar, while a worker holds the run
    notice: str = ""  # a warning that goes with the state (diverged models, an interrupted run, an error)
    notice_level: str = ""  # "warning" or "error"

    @property
    def text(self) -> str:
        return " · ".join((str(self.state), *self.parts))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def progress_of(row: Mapping) -> Progress:
    return Progress.from_json(row["progress"], RunState(row["status"]))


def with_records(p: Progress, last_step: int, epoch: float, wall: float, total_steps: int, batch: int
                 ) -> Progress:
    """A recorded run's progress read off its records (bundles carry no live progress)."""
    step = last_step + 1
    return replace(p, step=step, total_steps=total_steps, epoch=epoch, elapsed_s=wall,
                   images_per_s=step * batch / wall if wall > 0 else 0.0)


def status_line(row: Mapping, p: Progress, place: QueuePlace | None = None, recorded: str = "") -> StatusLine:
    """The line for a run's stored `row` and progress `p`; `place` for a queued run, `recorded` the date of a
    recording."""
    state = RunState(row["status"])
    if state is RunState.QUEUED:
        ahead = (f"about {format_seconds(place.ahead_seconds)} of training ahead on {place.workers} worker"
                 f"{'s' if place.workers > 1 else ''}") if place else ""
        parts = (f"position {place.position if place else '?'} in the queue", *([ahead] if ahead else ()),
                 f"estimated {format_seconds(row['estimate_s'] or 0)} once it starts")
        return StatusLine(RunState.QUEUED, parts, None)
    memory = (f"GPU memory {format_bytes(p.gpu_memory_bytes)}",) if p.gpu_memory_bytes else ()
    when = f"ETA {duration(p.eta_s)}" if state is RunState.RUNNING else f"trained {duration(p.elapsed_s)}"
    parts = (f"step {p.step:,} / {p.total_steps:,}", f"epoch {p.epoch:.1f}", f"{p.images_per_s:,.0f} images/s",
             row["device"] or "device pending", *memory, row["data_source"], when,
             *((f"recorded {recorded}",) if recorded else ()))
    fraction = min(1.0, p.step / max(1, p.total_steps)) if state.live or state is RunState.CLAIMED else None
    notice, level = "", ""
    if p.diverged:
        notice, level = (f"Diverged (loss became non-finite or exploded; their curves end in an X, the others go "
                         f"on): {', '.join(p.diverged)}"), "warning"
    if state is RunState.INTERRUPTED:
        notice, level = ("Interrupted: its worker stopped answering (killed, crashed or restarted). Every record up "
                         "to its last save is kept; its owner can resume it from the last checkpoint."), "warning"
    elif state is RunState.FAILED and row["error"]:
        notice, level = f"The run failed: {row['error']}", "error"
    elif state is RunState.DIVERGED:
        notice, level = "Every model diverged: lower the learning rate (or add a warm-up) and train again.", "error"
    return StatusLine(state, parts, fraction, notice, level)
