"""Every page of the Streamlit app, driven by streamlit.testing.v1.AppTest against a throw-away run store.

Pages are typed functions (pages/*.py); each test runs one page the way the app's navigation would. No worker runs
(EXPLORER_WORKERS=0): runs are queued, or trained in-process through tests/support.py, or written straight into the
store with made-up records.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from streamlit.testing.v1 import AppTest

from explorer import jobs, lessons
from explorer.config import Config
from explorer.states import RunState
from explorer.store import RunStore
from explorer.ui import config_form, panels, session
from explorer.ui.live import api
from explorer.ui.live.feed import Feed
from support import tiny_config, train

TINY = {"models": "plain8,resnet8", "subset": "200", "test": "100", "batch": "32", "steps": "60", "probe": "5",
        "data": "synthetic"}
GPU_DEGRADATION = "assets/recorded/gpu/degradation"


def page(name: str, query: dict[str, str] | None = None, state: dict | None = None) -> AppTest:
    app = AppTest.from_string(f"from explorer.ui import nav\nfrom pages import PAGES\nnav.register(PAGES)\n"
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


def live_elements(app: AppTest) -> list[dict]:
    """The data of every live element on the page (what its browser code polls for)."""
    return [json.loads(e.proto.json) for e in app.get("bidi_component")
            if e.proto.component_name == "resnet_explorer_live"]


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
    status = next(e for e in live_elements(app) if e["kind"] == "status")
    assert status["url"] == f"/api/runs/{run_id}/live" and status["rendered"] == "queued" and status["owner"]
    line = json.loads(Feed.of(store).run(run_id).payload([], -1))["status"]
    assert line["state"] == "queued" and line["parts"][0] == "position 1 in the queue"
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
    assert app.button(key="train").disabled  # waits for the bad field; the link's other fields are in the form
    assert app.session_state[config_form.PREFIX + "steps"] == int(TINY["steps"])
    app.button(key="accept-data").click().run()
    assert "not a name" not in texts(app)
    assert app.button(key="train").disabled is False  # the form's own data source was accepted


def test_hosted_mode_refuses_a_run_too_big_with_the_figure(store, monkeypatch):
    monkeypatch.setenv("EXPLORER_HOSTED", "1")
    monkeypatch.setenv("EXPLORER_MEMORY_LIMIT", "300MB")
    app = page("Lab", query={**TINY, "models": "resnet110", "batch": "512", "subset": "1000"})
    shown = texts(app)
    assert "cannot start here" in shown and "MB" in shown and "batch ≤" in shown
    assert app.button(key="train").disabled


def test_compare_opens_like_for_like_runs_never_a_gpu_run_beside_a_cpu_one(store):
    gpu = session.recorded_run_of("degradation", "gpu")
    opened = page("Compare")
    assert opened.session_state["compare_runs"] == [gpu]  # not a sweep's seeds, not the CPU recording beside it
    assert not opened.warning
    finals = opened.dataframe[0].value.set_index(["run", "model"])["paper_test_err"]
    assert finals.xs("ResNet-20", level="model").iat[0] == "8.75"  # He et al. 2015 Table 6, beside the GPU run
    assert finals.xs("ResNet-56", level="model").iat[0] == "6.97"
    assert finals.xs("Plain-20", level="model").iat[0] == "–"  # the paper gives no plain-net number
    mine = add_run(store)
    same_recipe = add_run(store, {**TINY, "seed": "7"})
    other_recipe = add_run(store, {**TINY, "subset": "500"})
    assert page("Compare").session_state["compare_runs"] == [other_recipe]  # the newest, and none is like it
    mixed = page("Compare", query={"runs": f"{mine},{other_recipe}"})
    assert any("different recipes" in w.value for w in mixed.warning)
    assert not page("Compare", query={"runs": f"{mine},{same_recipe}"}).warning


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


def test_classroom_students_join_by_code_vote_through_the_route_and_only_the_teacher_reveals(store):
    teacher = page("Classroom")
    teacher.button(key="open_lesson").click().run()
    lesson_id, key = teacher.query_params["lesson"], teacher.query_params["key"]
    code = lessons.lesson_row(store, lesson_id)["code"]
    assert f"Lesson code: **{code}**" in texts(teacher)
    assert any(f"/join/{code}" in block.value for block in teacher.code)  # the QR code's link, copyable
    assert [e["url"] for e in live_elements(teacher) if e["kind"] == "tally"] == [f"/api/lessons/{lesson_id}"]

    joined = page("Classroom", query={"join": code.lower()})  # typed on a phone, any case
    assert joined.query_params["lesson"] == lesson_id
    student = page("Classroom", query={"lesson": lesson_id})
    (ballot,) = [e for e in live_elements(student) if e["kind"] == "ballot"]
    assert ballot["options"] == lessons.LESSONS["deeper-plain"].options and ballot["phase"] == "voting"
    with TestClient(Starlette(routes=api.Routes(lambda: store).routes())) as client:
        for voter, choice in (("phone-0001", "plain20"), ("phone-0002", "plain20"), ("phone-0003", "plain56")):
            assert client.post(f"/api/lessons/{lesson_id}/vote", json={"voter": voter, "choice": choice}).is_success
    assert lessons.tally(store, lesson_id) == {"plain20": 2, "plain56": 1, "same": 0}
    with pytest.raises(KeyError):
        student.button(key="reveal_recorded")
    teacher = page("Classroom", query={"lesson": lesson_id, "key": key})
    teacher.button(key="reveal_recorded").click().run()
    assert "Answer: Plain-20" in texts(teacher)
    assert "2 Plain-20 · 1 Plain-56 · 0 About the same" in texts(teacher).replace("\\", "")
    assert "Answer: Plain-20" in texts(student.run())
    assert [e["phase"] for e in live_elements(student) if e["kind"] == "ballot"] == ["revealed"]


def test_compares_difference_defaults_to_the_gap_within_one_run_not_across_runs(store):
    references = [session.recorded_run_of("degradation", kind) for kind in ("gpu", "cpu")]
    app = page("Compare", query={"runs": ",".join(references)})
    first, second = app.selectbox(key="compare_a").value, app.selectbox(key="compare_b").value
    assert "Plain-56" in first and "Plain-20" in second
    assert first.split(" · ")[0] == second.split(" · ")[0]  # the same run: the degradation gap, not GPU vs CPU
    assert len(references) == 2


def test_a_link_with_one_bad_field_keeps_the_others_and_waits_for_that_field(store):
    app = page("Lab", query={**TINY, "lr": "-1"})
    assert not app.exception
    assert app.session_state["cfg_models"] == "plain8,resnet8" and app.session_state["cfg_subset"] == 200
    assert any("lr=-1" in e.value.replace("\\", "") and "is not valid" in e.value for e in app.error)
    assert app.button(key="train").disabled  # until the bad field is set
    app.button(key="accept-lr").click().run()
    assert not any("lr=" in e.value for e in app.error) and not app.button(key="train").disabled
    assert app.session_state["cfg_models"] == "plain8,resnet8"  # the good fields survived


def test_the_owner_of_a_finished_run_queues_its_slices_from_the_lab(store):
    from support import OWNER

    run_id = train(store, tiny_config(steps=8, eval_every=4, probe_every=2))
    viewer = page("Lab", query={"run": run_id})
    with pytest.raises(KeyError):
        viewer.button(key="lab-landscape-compute")  # only its owner's link can ask
    owner = page("Lab", query={"run": run_id, "key": OWNER}, state={"key": OWNER})
    assert any("Estimated at about" in c.value for c in owner.caption)
    owner.button(key="lab-landscape-compute").click().run()
    assert not owner.exception
    assert [s["kind"] for s in store.studies_of(run_id)] == ["landscape", "landscape"]
    assert any("Computing the loss-surface slices" in i.value for i in owner.info)
