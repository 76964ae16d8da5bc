"""The store owns its schema and a run's life: no SQL text outside explorer/store/ (the sources are read, not run),
every status change checked against `states.TRANSITIONS` (each of the 121 pairs tried on a real store), sweeps'
states likewise, and the classroom's join codes, including the migration that gives old lessons one."""

import ast
import re
import sqlite3
from pathlib import Path

import pytest

from explorer import lessons
from explorer.config import Config, ModelConfig
from explorer.states import TRANSITIONS, Control, RunState, may_follow
from explorer.store import SCHEMA_VERSION, IllegalTransition, RunStore, StoreError
from explorer.store import schema as store_schema
from support import OWNER, tiny_config, tiny_sweep

REPO = Path(__file__).resolve().parent.parent
SQL = re.compile(r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
                 r"CREATE\s+(TABLE|(UNIQUE\s+)?INDEX|VIEW|TRIGGER)|DROP\s+(TABLE|INDEX)|ALTER\s+TABLE|PRAGMA\s+\w+|"
                 r"BEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED|TRANSACTION)|REPLACE\s+INTO)\b")
# Outside the store, SQL is only data the fuzzer throws at the store: a foreign database it must refuse to open,
# and an injection typed where a run id belongs.
HOSTILE_INPUT = {("bench/fuzz.py", "CREATE TABLE runs (x TEXT)"), ("bench/fuzz.py", "CREATE TABLE steps (y BLOB)"),
                 ("bench/fuzz_cases.py", "' OR '1'='1'; DROP TABLE runs; --")}
CONFIG = Config(models=(ModelConfig.parse("resnet8"),), device="cpu")


def literals(source: str) -> list[tuple[int, str, str]]:
    """Every string literal of a Python source as (line, text, enclosing function); an f-string reads with ``_`` in
    each of its holes, so ``f"UPDATE {table} SET x = ?"`` reads as SQL."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.JoinedStr):
            text = "".join(str(v.value) if isinstance(v, ast.Constant) else "_" for v in node.values)
            found.append((node.lineno, text, function))
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value, function))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(source), "")
    return found


def sql_sites(path: Path) -> list[tuple[int, str, str]]:
    return [(line, text, function) for line, text, function in literals(path.read_text()) if SQL.search(text)]


def outside_the_store() -> list[Path]:
    files = [REPO / "streamlit_app.py", *REPO.glob("pages/*.py"), *REPO.glob("bench/*.py"),
             *REPO.glob("explorer/**/*.py")]
    return sorted(p for p in files if (REPO / "explorer" / "store") not in p.parents)


# --- the store owns its SQL -----------------------------------------------------------------------------------------
def test_the_detector_sees_sql_in_plain_and_formatted_strings_but_not_in_prose():
    source = ('a = "SELECT run_id FROM runs WHERE x = ?"\nb = f"UPDATE {t} SET status = ?"\nc = "UPDATE runs SET x"\n'
              'd = "PRAGMA user_version"\ne = "select the run you want from the list"\nf = "Update the page"\n')
    flagged = [line for line, text, _ in literals(source) if SQL.search(text)]
    assert flagged == [1, 2, 3, 4]
    assert SQL.search("INSERT OR REPLACE INTO votes VALUES (?)") and SQL.search("DELETE FROM workers")


def test_no_sql_is_written_outside_the_store():
    found = []
    for path in outside_the_store():
        name = str(path.relative_to(REPO))
        found += [f"{name}:{line}: {text[:70]!r}" for line, text, _ in sql_sites(path)
                  if (name, text) not in HOSTILE_INPUT]
    assert not found, "SQL outside explorer/store/: add a named store method instead\n" + "\n".join(found)
    assert len(outside_the_store()) > 60  # the walk found the sources


def test_the_store_is_read_and_written_through_named_methods_only():
    for private in ("read", "transaction", "insert"):
        assert not hasattr(RunStore, private), f"RunStore.{private} is public again"


def test_inside_the_store_only_the_transition_check_writes_a_runs_status(store):
    updates = {}
    for path in (REPO / "explorer" / "store").glob("*.py"):
        for _, text, function in sql_sites(path):
            if re.search(r"UPDATE (runs|sweeps) SET", text):
                updates[(path.name, function)] = text.split("WHERE")[0]
    status_writers = {where for where, assigned in updates.items() if re.search(r"\bstatus\s*=", assigned)}
    assert status_writers == {("sweeps.py", "set_sweep_status"), ("schema.py", "migrate")}  # schema 1's states
    built = {where for where, assigned in updates.items() if re.search(r"SET _\s*$", assigned)}
    assert built == {("base.py", "_change_status"), ("runs.py", "set_run_facts")}  # columns given at run time
    with pytest.raises(StoreError, match="set_run_facts takes"):
        store.set_run_facts(run_in(store, RunState.QUEUED), status="finished")


# --- the life of a run ----------------------------------------------------------------------------------------------
def test_the_table_is_the_drawing():
    assert set(TRANSITIONS) == set(RunState)
    assert {s for s in RunState if s.final and TRANSITIONS[s]} == {RunState.STOPPED, RunState.INTERRUPTED}
    assert all(TRANSITIONS[s] == {RunState.QUEUED} for s in RunState if s.resumable)
    assert {s for s in RunState if RunState.CLAIMED in TRANSITIONS[s]} == {
        RunState.QUEUED, RunState.SUBMITTED, RunState.CLAIMED, RunState.RUNNING}  # claim, and a Ray retry
    assert {s for s in RunState if RunState.INTERRUPTED in TRANSITIONS[s]} == {
        RunState.SUBMITTED, RunState.CLAIMED, RunState.RUNNING, RunState.PAUSED}  # a lease lapsed
    assert not any(s in TRANSITIONS[s] for s in RunState if s is not RunState.CLAIMED)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with RunStore(tmp_path_factory.mktemp("states") / "runs.sqlite") as store:
        yield store


def run_in(store: RunStore, state: RunState) -> str:
    return store.create_run(CONFIG, models=[{"model": "resnet8", "idx": 0, "params": 1}], status=state)


@pytest.mark.parametrize("current", list(RunState), ids=str)
def test_set_status_allows_exactly_the_tables_changes(store, current):
    for new in RunState:
        run_id = run_in(store, current)
        if may_follow(current, new):
            store.set_status(run_id, new)
            assert store.status(run_id) is new
            continue
        with pytest.raises(IllegalTransition) as refused:
            store.set_status(run_id, new)
        assert f"is {current} and cannot become {new}" in str(refused.value)
        assert store.status(run_id) is current


def test_an_illegal_change_is_a_store_error_that_says_what_the_run_can_become(store):
    run_id = run_in(store, RunState.FINISHED)
    with pytest.raises(StoreError, match=r"is finished and cannot become running: a finished run can become "
                                         r"nothing: it has ended"):
        store.set_status(run_id, RunState.RUNNING)
    with pytest.raises(IllegalTransition, match="is queued and cannot become running: a queued run can become "
                                                "cancelled, claimed"):
        store.set_status(run_in(store, RunState.QUEUED), RunState.RUNNING)  # a run trains once claimed


def test_claims_requeues_and_cancels_follow_the_table(store):
    running = run_in(store, RunState.RUNNING)
    assert store.claim(running, "w1", 5.0) is None  # held by someone: not waiting
    assert store.claim(running, "w2", 5.0, again=True) == (running, False)  # a Ray retry claims it anew
    paused = run_in(store, RunState.PAUSED)
    with pytest.raises(IllegalTransition, match="is paused and cannot become claimed"):
        store.claim(paused, "w2", 5.0, again=True)
    stopped = store.create_run(CONFIG, models=[{"model": "resnet8", "idx": 0, "params": 1}], status=RunState.STOPPED,
                               control=str(Control.STOP))
    store.requeue(stopped)
    row = store.run(stopped)
    assert (row["status"], row["control"], row["ended"], row["error"]) == ("queued", "run", None, "")
    for state in (RunState.CANCELLED, RunState.FINISHED, RunState.FAILED, RunState.QUEUED):
        with pytest.raises(IllegalTransition, match=f"is {state} and cannot become queued"):
            store.requeue(run_in(store, state))
    finished = run_in(store, RunState.FINISHED)
    assert store.request_control(finished, Control.STOP) is RunState.FINISHED
    assert store.status(finished) is RunState.FINISHED  # nothing changed


def test_a_late_worker_cannot_overwrite_what_the_reaper_concluded(store):
    run_id = run_in(store, RunState.QUEUED)
    store.claim(run_id, "w1", -1.0)  # a lease that has already lapsed
    store.set_status(run_id, RunState.RUNNING)
    assert run_id in store.reap_expired("its worker stopped answering")
    with pytest.raises(IllegalTransition, match="is interrupted and cannot become finished"):
        store.set_status(run_id, RunState.FINISHED)
    row = store.run(run_id)
    assert (row["status"], row["error"], row["worker"]) == ("interrupted", "its worker stopped answering", None)


def test_a_sweeps_recorded_state_changes_as_a_runs_may(tmp_path):
    from explorer import sweep

    store = RunStore(tmp_path / "runs.sqlite")
    sweep_id = sweep.start(store, tiny_sweep(families=("plain",), depths=(8,), seeds=1), OWNER)
    store.set_sweep_status(sweep_id, RunState.RUNNING, "a note")  # the same state, its error written
    assert store.sweep_row(sweep_id)["error"] == "a note"
    store.set_sweep_status(sweep_id, RunState.FINISHED, "")
    with pytest.raises(IllegalTransition, match=f"sweep {sweep_id} is finished and cannot become stopped"):
        store.set_sweep_status(sweep_id, RunState.STOPPED)
    assert store.sweep_row(sweep_id)["status"] == "finished"


# --- the classroom's join codes --------------------------------------------------------------------------------------
def test_a_lesson_has_a_short_code_students_can_type_in_any_case_with_spaces(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    opened = lessons.open_lesson(store, "deeper-plain", "teacher-key")
    assert len(opened.code) == 5 and set(opened.code) <= set(store_schema.CODE_ALPHABET)
    assert not set("0O1IL") & set(store_schema.CODE_ALPHABET)
    typed = " " + " ".join(opened.code.lower()) + "\n"
    assert lessons.lesson_by_code(store, typed)["lesson_id"] == opened.lesson_id
    assert lessons.lesson_row(store, opened.lesson_id)["code"] == opened.code
    other = "".join(store_schema.CODE_ALPHABET[(store_schema.CODE_ALPHABET.index(c) + 1) % 31] for c in opened.code)
    for wrong in (other, opened.code[:4], opened.code + "2", "OIL10", ""):
        with pytest.raises(lessons.LessonError, match="type the five characters"):
            lessons.lesson_by_code(store, wrong)


def test_a_new_code_never_repeats_one_in_use(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite")
    first = lessons.open_lesson(store, "deeper-plain", "teacher-key")
    offered = iter([first.code, first.code, "ZZZZZ"])
    monkeypatch.setattr("explorer.store.classroom.new_lesson_code", lambda: next(offered))
    assert lessons.open_lesson(store, "responses", "teacher-key").code == "ZZZZZ"


V2_LESSONS = ("CREATE TABLE lessons (lesson_id TEXT NOT NULL, lesson TEXT NOT NULL, key_hash TEXT NOT NULL, "
              "phase TEXT NOT NULL, run_id TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (lesson_id)) WITHOUT ROWID")


def test_a_version_2_store_is_migrated_and_its_lessons_get_codes(tmp_path):
    path = tmp_path / "v2.sqlite"
    RunStore(path).close()
    with sqlite3.connect(path) as conn:  # schema 2: lessons without codes
        conn.execute("DROP TABLE lessons")
        conn.execute(V2_LESSONS)
        for i in range(3):
            conn.execute("INSERT INTO lessons VALUES (?, 'deeper-plain', 'hash', 'voting', '', ?)",
                         (f"L0000000{i}", f"2026-01-01T00:00:0{i}.000+00:00"))
        conn.execute("INSERT INTO votes VALUES ('L00000001', 'a', 'plain20', '2026-01-01T00:00:05.000+00:00')")
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    with RunStore(path) as store:
        rows = [lessons.lesson_row(store, f"L0000000{i}") for i in range(3)]
        codes = [row["code"] for row in rows]
        assert len(set(codes)) == 3 and all(len(c) == 5 and set(c) <= set(store_schema.CODE_ALPHABET) for c in codes)
        assert lessons.lesson_by_code(store, codes[1].lower())["lesson_id"] == "L00000001"
        assert lessons.tally(store, "L00000001") == {"plain20": 1, "plain56": 0, "same": 0}
        assert len(lessons.open_lesson(store, "responses", "key").code) == 5
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)  # migrated through every version
    conn.close()
    with RunStore(path) as store:  # opened again: the codes stay
        assert [lessons.lesson_row(store, f"L0000000{i}")["code"] for i in range(3)] == codes


def test_the_queue_still_trains_a_run_from_queued_to_finished(tmp_path):
    from support import train

    store = RunStore(tmp_path / "runs.sqlite")
    run_id = train(store, tiny_config(models=("resnet8",), steps=2, eval_every=2, probe_every=0))
    row = store.run(run_id)
    assert row["status"] == "finished" and row["started"] and row["ended"] and row["worker"] is None
