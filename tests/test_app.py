"""Every page of the Streamlit app, driven by streamlit.testing.v1.AppTest against a throw-away run store.

Pages are typed functions (pages/*.py); each test runs one page the way the app's navigation would. No worker runs
(EXPLORER_WORKERS=0): runs are queued, or trained in-process through tests/support.py, or written straight into the
store with made-up records.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import jobs, lessons
from explorer.config import Config
from explorer.states import RunState
from explorer.store import RunStore
from explorer.ui import config_form, panels, session
from support import tiny_config, train

TINY = {"models": "plain8,resnet8", "subset": "200", "test": "100", "batch": "32", "steps": "60", "probe": "5",
        "data": "synthetic"}
GPU_DEGRADATION = "assets/recorded/gpu/degradation"


def page(name: str, query: dict[str, str] | None = None, state: dict | None = None) -> AppTest:
    app = AppTest.from_string(f"from explorer.ui.app import register_pages\nregister_pages()\n"
                              f"from pages.{name} import page\npage()", default_timeout=120)
    app.query_params.update(query or {})
    for key, value in (state or {}).items():
        app.session_state[key] = value
    return app.run()


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    """A fresh store (recorded runs imported), no embedded workers, an empty data directory (synthetic set)."""
    monkeypatch.setenv("EXPLORER_STORE", str(tmp_path / "runs.sqlite"))
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EXPLORER_WORKERS", "0")
    for cached in (session.get_store, config_form.cifar10_location, config_form.sources_offered):
        cached.clear()
    panels._live_tables.clear()
    panels._figure.clear()
    yield session.get_store()
    session.get_store.clear()


def add_run(store: RunStore, query: dict[str, str] = TINY, steps: int = 30, status=RunState.FINISHED,
            owner: str = "someone-else-key-0000") -> str:
    """A run with made-up records: the deepest plain net trains worst; one model has a missing evaluation."""
    config = Config.from_query(query)
    run_id = store.create_run(config, device="cpu (test)", data_source="synthetic (test)", status=status,
                              models=[dict(model=m, idx=i, params=1000 + i) for i, m in enumerate(config.labels)],
                              key_hash=jobs.key_hash(owner), owner=jobs.owner_of(owner))
    rows: dict[str, list[dict]] = {"steps": [], "evals": [], "probes": []}
    for m, model in enumerate(config.models):
        floor = 40.0 if model.family == "plain" else 10.0 + m
        for step in range(steps):
            err = floor + 50 * np.exp(-step / 10)
            rows["steps"].append(dict(model=model.label, step=step, epoch=(step + 1) / 6, loss=err / 25,
                                      train_err=err, lr=0.1, wall=step * 0.1))
            if step % 6 == 5 and model.family == "resnet":  # the plain net is never evaluated: "–", not None
                rows["evals"].append(dict(model=model.label, step=step, epoch=(step + 1) / 6, train_loss=1.0,
                                          train_err=err, test_loss=1.1, test_err=err + 5, test_images=100,
                                          wall=step * 0.1))
            if step % 5 == 0:
                rows["probes"] += [dict(model=model.label, step=step, layer=k, layer_name=name, grad_norm=0.1 * (k + 1),
                                        weight_norm=1.0, update_ratio=1e-3, response_std=0.5)
                                   for k, name in enumerate(["stem.conv", "stage1.0.layer1.conv",
                                                             "stage1.0.layer2.conv", "classifier.0"])]
    store.append(run_id, **rows)
    return run_id


def texts(app: AppTest) -> str:
    return "\n".join(e.value for kind in ("markdown", "caption", "info", "warning", "error", "success")
                     for e in getattr(app, kind))


def test_every_page_renders_without_an_exception(store):
    for name in ("Learn", "Lab", "Architecture", "Compare", "Gradients", "Classroom"):
        app = page(name)
        assert not app.exception, (name, [e.message for e in app.exception])
        assert app.title, name


def test_learn_draws_each_claims_reference_run_and_a_students_run_beside_it(store):
    reference = session.recorded_run_of("degradation")
    assert reference is not None and (session.RECORDED_DIR / "gpu" / "degradation").exists()
    app = page("Learn")
    captions = [c.value for c in app.caption]
    assert sum(f"Reference run {reference}" in c for c in captions) == 4  # the four charts drawn from a run
    assert not any(c.startswith("Your run") for c in captions)

    own = add_run(store, {**TINY, "models": "plain20,plain56,resnet20,resnet56"})
    app = page("Learn", state={"lab_run": own})
    captions = [c.value for c in app.caption]
    assert sum(f"Reference run {reference}" in c for c in captions) == 4  # still drawn, never replaced
    assert sum(c == f"Your run {own}" for c in captions) == 4


def test_train_queues_a_run_owned_by_this_session_and_a_viewer_cannot_control_it(store):
    app = page("Lab", query=TINY)
    app.button(key="train").click().run()
    assert not app.exception
    runs = store.runs()
    assert len(runs[runs.status == "queued"]) == 1
    run_id = runs.run_id.iloc[0]
    assert app.query_params["run"] == run_id and app.query_params["key"] == app.session_state["key"]
    assert jobs.holds_key(store.run(run_id), app.session_state["key"])
    assert "waiting" in texts(app) and "position 1" in texts(app)
    assert app.button(key="cancel").label == "Cancel"

    viewer = page("Lab", query={"run": run_id})
    assert "You are watching" in texts(viewer)
    with pytest.raises(KeyError):
        viewer.button(key="cancel")

    app.button(key="cancel").click().run()
    assert store.status(run_id) is RunState.CANCELLED


def test_an_identical_request_attaches_instead_of_training_twice(store):
    first = page("Lab", query=TINY)
    first.button(key="train").click().run()
    second = page("Lab", query=TINY)
    second.button(key="train").click().run()
    submitted = store.runs().query("owner.notna()")  # recorded runs and recorded sweeps' members have none
    assert len(submitted) == 1
    assert second.session_state["lab_run"] == first.session_state["lab_run"]


def test_hostile_link_values_are_shown_escaped_never_as_markdown(store):
    app = page("Lab", query={"run": "[click me](https://example.com)"})
    assert not app.exception
    app = page("Lab", query={"models": "![i](https://example.com/x.png)"})
    shown = texts(app)
    assert "not valid" in shown
    assert "![i](https" not in shown and "\\!\\[i\\]\\(https" in shown  # escaped: no image, no link
    app = page("Gradients", query={"run": "[click me](https://example.com)"})
    assert "[click me](https" not in texts(app)


def test_a_link_cannot_name_a_server_path(store):
    app = page("Lab", query={**TINY, "data": "/etc"})
    assert "not a name" in texts(app)
    assert app.button(key="train").disabled is False  # the form fell back to the default configuration


def test_hosted_mode_refuses_a_run_too_big_with_the_figure(store, monkeypatch):
    monkeypatch.setenv("EXPLORER_HOSTED", "1")
    monkeypatch.setenv("EXPLORER_MEMORY_LIMIT", "300MB")
    app = page("Lab", query={**TINY, "models": "resnet110", "batch": "512", "subset": "1000"})
    shown = texts(app)
    assert "cannot start here" in shown and "MB" in shown and "batch ≤" in shown
    assert app.button(key="train").disabled


def test_compare_opens_on_the_recorded_classic_demo_until_a_run_is_trained_here(store):
    references = [session.recorded_run_of("degradation", kind) for kind in ("gpu", "cpu")]
    assert page("Compare").session_state["compare_runs"] == references  # not a sweep's seeds, not any newest run
    mine = add_run(store)
    assert page("Compare").session_state["compare_runs"] == [mine]


def test_compare_shows_a_dash_never_none_and_draws_depth_for_one_run_only(store):
    first, second = add_run(store), add_run(store, {**TINY, "seed": "3"})
    app = page("Compare", query={"runs": f"{first},{second}"})
    assert not app.exception
    table = app.dataframe[0].value
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()
    assert (table["test_err"] == "–").any()
    assert "pick a single run" in texts(app)
    depths = add_run(store, {**TINY, "models": "plain8,plain14,resnet8,resnet14"})
    single = page("Compare", query={"runs": depths})
    assert any("one run's models" in c.value for c in single.caption)


def test_gradients_reads_probes_and_says_what_response_std_measures(store):
    run_id = add_run(store)
    app = page("Gradients", query={"run": run_id})
    assert not app.exception
    assert any("batch's own statistics" in c.value for c in app.caption)


def test_a_trained_run_shows_its_live_diagram_summary_and_weights_download(store):
    run_id = train(store, tiny_config(steps=8, eval_every=4, probe_every=2))
    app = page("Lab", query={"run": run_id})
    assert not app.exception
    shown = texts(app)
    assert "finished" in shown and re.search(r"Gradient norm at step \d+: Plain-8", shown)
    assert any(b.label == "Trained weights (.pt)" for b in app.get("download_button"))


def test_classroom_votes_are_counted_and_only_the_teacher_reveals(store):
    teacher = page("Classroom")
    teacher.button(key="open_lesson").click().run()
    lesson_id, key = teacher.query_params["lesson"], teacher.query_params["key"]
    students = [page("Classroom", query={"lesson": lesson_id}) for _ in range(3)]
    for student, choice in zip(students, ("plain20", "plain20", "plain56")):
        student.radio(key="vote_choice").set_value(choice).run()
        student.button(key="vote").click().run()
        assert "Your vote" in texts(student)
    assert lessons.tally(store, lesson_id) == {"plain20": 2, "plain56": 1, "same": 0}
    with pytest.raises(KeyError):
        students[0].button(key="reveal_recorded")
    teacher = page("Classroom", query={"lesson": lesson_id, "key": key})
    teacher.button(key="reveal_recorded").click().run()
    assert "Answer: Plain-20" in texts(teacher)
    assert "Answer: Plain-20" in texts(students[2].run())


def test_a_student_joins_a_lesson_by_typing_its_code(store):
    teacher = page("Classroom")
    teacher.button(key="open_lesson").click().run()
    lesson_id = teacher.query_params["lesson"]
    code = lessons.lesson_row(store, lesson_id)["code"]
    assert f"type the code **{code}**" in texts(teacher)
    student = page("Classroom")
    student.text_input(key="join_code").input("nope1")
    student.button(key="join").click().run()
    assert "no lesson here has the code" in texts(student) and "lesson" not in student.query_params
    student.text_input(key="join_code").input(f" {code[:2].lower()} {code[2:]} ")
    student.button(key="join").click().run()
    assert student.query_params["lesson"] == lesson_id and "Your prediction" in [r.label for r in student.radio]


def test_compares_difference_defaults_to_the_gap_within_one_run_not_across_runs(store):
    references = [session.recorded_run_of("degradation", kind) for kind in ("gpu", "cpu")]
    app = page("Compare")
    first, second = app.selectbox(key="compare_a").value, app.selectbox(key="compare_b").value
    assert "Plain-56" in first and "Plain-20" in second
    assert first.split(" · ")[0] == second.split(" · ")[0]  # the same run: the degradation gap, not GPU vs CPU
    assert len(references) == 2
