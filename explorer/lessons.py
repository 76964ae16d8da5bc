"""Predict, then reveal: a teacher opens a lesson, the class votes on its question, the teacher reveals the run.

A `Lesson` is a question about one experiment (a preset) with a few answers, and the rule that reads the right
answer off the run's records, so the reveal is decided by the numbers, not by the text. A lesson being taught is a
row of the store's ``lessons`` table (its phase, the run it reveals, the hash of its teacher's key) and every vote
a row of ``votes`` keyed by (lesson, voter): one vote per browser session, no accounts, and a voter may change
their mind until the reveal. Only the teacher's key can reveal or reopen. Students join by the lesson's link or by
typing its five-character code (no look-alike characters such as 0/O or 1/I/L; any case, spaces anywhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .jobs import NotOwner, holds_key, key_hash
from .store import RunStore, StoreError
from .verdicts import MARGIN, RunRecords, mean_response_std

VOTING, REVEALED = "voting", "revealed"


class LessonError(ValueError):
    """A lesson request cannot be served; the message says what to do instead."""


@dataclass(frozen=True)
class Lesson:
    key: str
    title: str
    preset: str
    question: str
    options: dict[str, str]  # answer key -> what a student reads
    answer: Callable[[RunRecords], str]  # the right answer's key, read off the run
    chart: str  # the chart of explorer.ui.figures.CHARTS that shows it
    evidence: Callable[[RunRecords], str]  # the numbers the answer was read from, in a line


def _train(r: RunRecords, label: str) -> float:
    value = r.error(label, "train")
    if value is None:
        raise LessonError(f"{label} has no final training error in this run: reveal another run")
    return value


def _pair(r: RunRecords, deep: str, shallow: str) -> str:
    from .config import display_name

    return (f"final training error {display_name(deep)} {_train(r, deep):.1f}%, {display_name(shallow)} "
            f"{_train(r, shallow):.1f}%")


def _responses(r: RunRecords) -> str:
    plain, residual = mean_response_std(r.probes, "plain56"), mean_response_std(r.probes, "resnet56")
    return f"mean layer response std Plain-56 {plain:.2f}, ResNet-56 {residual:.2f}"


def _which_plain(r: RunRecords) -> str:
    gap = _train(r, "plain56") - _train(r, "plain20")
    return "same" if abs(gap) <= MARGIN else ("plain20" if gap > 0 else "plain56")


def _which_residual(r: RunRecords) -> str:
    gap = _train(r, "resnet56") - _train(r, "resnet20")
    return "same" if abs(gap) <= MARGIN else ("resnet20" if gap > 0 else "resnet56")


def _which_responds(r: RunRecords) -> str:
    plain, residual = mean_response_std(r.probes, "plain56"), mean_response_std(r.probes, "resnet56")
    if plain is None or residual is None:
        raise LessonError("this run has no response probes: reveal a run recorded with probes")
    return "plain" if plain > residual else "residual"


LESSONS: dict[str, Lesson] = {lesson.key: lesson for lesson in (
    Lesson("deeper-plain", "Deeper plain nets", "degradation",
           "Two plain nets train on the same images, in the same order: one with 20 layers, one with 56. Which "
           "ends with the lower training error?",
           {"plain20": "Plain-20 (the shallow one)", "plain56": "Plain-56 (the deep one)",
            "same": "About the same"}, _which_plain, "errors", lambda r: _pair(r, "plain56", "plain20")),
    Lesson("deeper-residual", "Deeper residual nets", "degradation",
           "Now the same two depths with shortcut connections: ResNet-20 and ResNet-56. Which ends with the lower "
           "training error?",
           {"resnet20": "ResNet-20 (the shallow one)", "resnet56": "ResNet-56 (the deep one)",
            "same": "About the same"}, _which_residual, "errors", lambda r: _pair(r, "resnet56", "resnet20")),
    Lesson("responses", "Layer responses", "degradation",
           "After training, whose layers respond more strongly to an image (larger output std): the 56-layer plain "
           "net's, or the 56-layer residual net's?",
           {"plain": "The plain net's", "residual": "The residual net's"}, _which_responds, "responses",
           _responses),
)}


@dataclass(frozen=True)
class Opened:
    lesson_id: str  # in the links: the teacher's (with the key) and the students'
    code: str  # what students type on a phone instead of the link


def open_lesson(store: RunStore, lesson: str, teacher_key: str, run_id: str | None = None) -> Opened:
    """Start teaching `lesson` (voting open); returns the lesson's id and join code."""
    if lesson not in LESSONS:
        raise LessonError(f"unknown lesson {lesson[:40]!r}: choose one of {', '.join(LESSONS)}")
    return Opened(*store.open_lesson(lesson, key_hash(teacher_key), VOTING, run_id or ""))


def lesson_row(store: RunStore, lesson_id: str) -> dict:
    """The lesson's row: lesson_id, lesson, key_hash, phase, run_id, created, code."""
    row = store.lesson_row(lesson_id)
    if row is None:
        raise LessonError("this lesson link is not valid here: ask your teacher for the link again")
    return row


def lesson_by_code(store: RunStore, code: str) -> dict:
    """The lesson a student joins by typing its code (any case, spaces anywhere)."""
    row = store.lesson_by_code(code)
    if row is None:
        raise LessonError(f"no lesson here has the code {str(code).strip()[:20]!r}: type the five characters "
                          "shown on the projector")
    return row


def vote(store: RunStore, lesson_id: str, voter: str, choice: str) -> None:
    """Record (or change) one voter's answer while voting is open."""
    row = lesson_row(store, lesson_id)
    if choice not in LESSONS[row["lesson"]].options:
        raise LessonError(f"{choice[:40]!r} is not one of this question's answers")
    if row["phase"] != VOTING:
        raise LessonError("voting has closed: the answer has been revealed")
    store.cast_vote(row["lesson_id"], voter, choice)


def tally(store: RunStore, lesson_id: str) -> dict[str, int]:
    """Votes per answer, every answer present (0 where nobody chose it)."""
    row = lesson_row(store, lesson_id)
    counts = store.vote_counts(row["lesson_id"])
    return {option: counts.get(option, 0) for option in LESSONS[row["lesson"]].options}


def my_vote(store: RunStore, lesson_id: str, voter: str) -> str | None:
    return store.vote_of(lesson_id, voter)


def reveal(store: RunStore, lesson_id: str, teacher_key: str, run_id: str) -> None:
    """Close voting and show `run_id` (a recorded run, or one trained live) to the class."""
    row = lesson_row(store, lesson_id)
    if not holds_key(row, teacher_key):
        raise NotOwner("only the teacher's link can reveal the answer")
    if not store.has_run(run_id):
        raise StoreError(f"run {run_id[:40]!r} is not in this app's run store")
    store.set_lesson_phase(row["lesson_id"], REVEALED, run_id)


def reopen(store: RunStore, lesson_id: str, teacher_key: str) -> None:
    row = lesson_row(store, lesson_id)
    if not holds_key(row, teacher_key):
        raise NotOwner("only the teacher's link can reopen the vote")
    store.set_lesson_phase(row["lesson_id"], VOTING)


def answer(store: RunStore, lesson_id: str) -> tuple[str, RunRecords]:
    """The right answer, read off the revealed run's records."""
    row = lesson_row(store, lesson_id)
    if row["phase"] != REVEALED or not row["run_id"]:
        raise LessonError("the answer has not been revealed yet")
    records = RunRecords.load(store, row["run_id"])
    return LESSONS[row["lesson"]].answer(records), records
