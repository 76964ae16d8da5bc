"""What the Learn page says is checked against the numbers of the run its charts draw (explorer/claims.py), and the
classroom's answers are read off a run's records (explorer/lessons.py)."""

from pathlib import Path

import pytest

from explorer import lessons
from explorer.claims import CLAIMS
from explorer.store import RunStore
from explorer.verdicts import RunRecords

RECORDED = Path(__file__).resolve().parent.parent / "assets" / "recorded"


def reference(preset: str) -> Path:
    """The bundle a claim draws: the GPU recording where there is one, else the CPU one (as the app picks)."""
    for kind in ("gpu", "cpu"):
        if (RECORDED / kind / preset / "run.json").exists():
            return RECORDED / kind / preset
    pytest.fail(f"no recorded run of {preset} under {RECORDED}")


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.key for c in CLAIMS])
def test_each_claim_is_true_of_its_reference_run(claim):
    with RunStore.memory() as store:
        run_id = store.import_bundle(reference(claim.reference))
        held, numbers = claim.check(RunRecords.load(store, run_id))
    assert held, f"{claim.heading}: the reference run says otherwise ({numbers})"
    assert numbers


@pytest.mark.parametrize("key", sorted(lessons.LESSONS))
def test_each_lesson_reads_its_answer_off_the_reference_run(key):
    lesson = lessons.LESSONS[key]
    with RunStore.memory() as store:
        run_id = store.import_bundle(reference(lesson.preset))
        answer = lesson.answer(RunRecords.load(store, run_id))
    assert answer in lesson.options
    expected = {"deeper-plain": "plain20", "deeper-residual": "resnet56", "responses": "plain"}
    assert answer == expected[key]  # what the paper found, and what the recorded run shows


def test_votes_one_per_voter_change_until_the_reveal_and_only_the_teacher_reveals(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.import_bundle(reference("degradation"))
    lesson_id = lessons.open_lesson(store, "deeper-plain", "teacher-key-0123456789").lesson_id
    lessons.vote(store, lesson_id, "a", "plain56")
    lessons.vote(store, lesson_id, "a", "plain20")  # changed their mind: still one vote
    lessons.vote(store, lesson_id, "b", "same")
    assert lessons.tally(store, lesson_id) == {"plain20": 1, "plain56": 0, "same": 1}
    with pytest.raises(lessons.LessonError, match="not one of"):
        lessons.vote(store, lesson_id, "c", "plain99")
    with pytest.raises(lessons.NotOwner):
        lessons.reveal(store, lesson_id, "a-student", run_id)
    lessons.reveal(store, lesson_id, "teacher-key-0123456789", run_id)
    with pytest.raises(lessons.LessonError, match="closed"):
        lessons.vote(store, lesson_id, "d", "plain20")
    assert lessons.answer(store, lesson_id)[0] == "plain20"
    with pytest.raises(lessons.LessonError, match="not valid"):
        lessons.lesson_row(store, "L-nope")
