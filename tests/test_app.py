"""Every page of the Streamlit app, driven by streamlit.testing.v1.AppTest against a throw-away run store.

Stored runs are written straight into the store (no training), except in the one test that presses Train, which
trains two 8-layer nets on a few synthetic images in the background and stops them.
"""

import base64
import json
import shlex
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from explorer import cli, jobs
from explorer.config import Config
from explorer.estimate import Estimate
from explorer.presets import PRESETS
from explorer.store import RunStore
from explorer.ui import config_form, panels, session

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
PAGES = ("pages/1_Learn.py", "pages/2_Lab.py", "pages/3_Architecture.py", "pages/4_Compare.py",
         "pages/5_Gradients.py")
TINY = {"models": "plain8,resnet8", "subset": "200", "test": "100", "batch": "32", "steps": "60", "probe": "5"}


@pytest.fixture(autouse=True)
def served_app(request, monkeypatch):
    """Run pages as a server does once its entry script has called st.navigation.

    AppTest rebuilds Streamlit's page manager before every run, and a fresh page manager serves a folder named
    ``pages/`` the old way (each page alone) until st.navigation runs: `session.require_navigation` then reruns,
    which would drop the button click of every run. Tests that use the `fresh_server` fixture keep that first-visit
    behaviour.
    """
    if "fresh_server" in request.fixturenames:
        return
    original = PagesManager.__init__

    def served(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", served)


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    """A fresh store and an empty data directory (so the app falls back to the synthetic set)."""
    monkeypatch.setenv("EXPLORER_STORE", str(tmp_path / "runs.sqlite"))
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(session, "RECORDED_DIR", tmp_path / "recorded")
    session.get_store.clear()
    config_form.cifar10_location.clear()
    yield RunStore()
    session.get_store.clear()


def add_run(store: RunStore, query: dict[str, str] = TINY, steps: int = 30, layers: int = 4, preset: str = "") -> str:
    """A finished run with made-up records: the deepest plain net trains worst."""
    config = Config.from_query(query)
    run_id = store.create_run(config, device="cpu (test)", data_source="synthetic (test)", preset=preset,
                              models=[dict(model=m, idx=i, params=1000 + i) for i, m in enumerate(config.labels)])
    deepest_plain = max((m.depth for m in config.models if m.family == "plain"), default=0)
    rows: dict[str, list[dict]] = {"steps": [], "evals": [], "probes": []}
    for m, model in enumerate(config.models):
        floor = 40.0 if model.family == "plain" and model.depth == deepest_plain > 8 else 10.0 + m
        for step in range(steps):
            err = floor + 50 * np.exp(-step / 10)
            rows["steps"].append(dict(model=model.label, step=step, epoch=(step + 1) / 6, loss=err / 25,
                                      train_err=err, lr=0.1, wall=step * 0.1))
            if step % 6 == 5:
                rows["evals"].append(dict(model=model.label, step=step + 1, epoch=(step + 1) / 6, train_loss=1.0,
                                          train_err=err, test_loss=1.1, test_err=err + 5, wall=step * 0.1))
            if step % 5 == 0:
                rows["probes"] += [dict(model=model.label, step=step, layer=k, layer_name=f"conv{k}",
                                        grad_norm=10.0 ** -k, weight_norm=5.0, update_ratio=1e-3, response_std=0.5)
                                   for k in range(layers)]
    store.append(run_id, **rows)
    store.set_status(run_id, "finished")
    return run_id


def open_page(page: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query or {})
    at.switch_page(page)
    return at.run()


def last_x(trace: dict) -> float:
    """The last x value of a plotly trace as Streamlit serialises it (a list, or a base64 typed array)."""
    x = trace["x"]
    if isinstance(x, dict):
        x = np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))
    return float(x[-1])


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def charts_of(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


# --- every page -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_and_without_runs(store, page):
    assert_clean(open_page(page))
    add_run(store)
    at = open_page(page)
    assert_clean(at)
    assert at.title, "each page has a title"


@pytest.fixture
def fresh_server() -> None:
    """Marks a test that runs pages as the first visitor of a freshly started server (see `served_app`)."""


def test_a_link_to_a_page_of_a_fresh_server_runs_inside_the_entry_script(store, fresh_server):
    at = open_page("pages/2_Lab.py", TINY)
    assert_clean(at)
    assert at.title[0].value == "Lab"
    assert at.toggle(key="presentation") is not None  # drawn by streamlit_app.py, not by the page


def test_learn_shows_the_latest_twin_run_and_the_data_banner(store):
    run_id = add_run(store)
    at = open_page("pages/1_Learn.py")
    assert any("CIFAR-10 was not found" in w.value for w in at.warning)
    assert len(charts_of(at)) == 2 and any(run_id in c.value for c in at.caption)
    assert at.button[0].label.startswith("Start the classic demo")


def test_the_demo_button_starts_the_classic_demo_and_opens_the_lab(store, monkeypatch):
    started = []

    def start_job(config, run_store, preset=""):
        started.append((config, preset))
        return SimpleNamespace(run_id=add_run(run_store, config.to_query()))

    monkeypatch.setattr(jobs, "start_job", start_job)
    monkeypatch.setattr(session, "estimate_seconds", lambda config, device: Estimate(60.0, 100, {}, 0, "cpu"))
    at = open_page("pages/1_Learn.py")
    at.button(key="demo").click().run()
    assert_clean(at)
    (config, preset), = started
    assert preset == "degradation"
    assert [(m.family, m.depth) for m in config.models] == [("plain", 20), ("plain", 56), ("resnet", 20), ("resnet", 56)]
    assert at.title[0].value == "Lab" and at.query_params["run"] == at.session_state[session.LAB_RUN]


# --- the Lab: widgets, presets, URL ---------------------------------------------------------------------------
def test_lab_widgets_produce_the_configuration(store):
    at = open_page("pages/2_Lab.py")
    at.multiselect(key="cfg_families").set_value(["plain", "resnet"]).run()
    at.select_slider(key="cfg_shallow").set_value(14).run()
    at.select_slider(key="cfg_deep").set_value(32).run()
    at.toggle(key="cfg_zero_init").set_value(False)  # the CPU default (the degradation preset) starts it on
    at.select_slider(key="cfg_lr").set_value(0.05)
    at.select_slider(key="cfg_batch").set_value(64)
    at.number_input(key="cfg_steps").set_value(100)
    at.selectbox(key="cfg_data").set_value("synthetic")
    at.run()
    assert_clean(at)
    config = at.session_state[config_form.CONFIG_KEY]
    assert config.labels == ["plain14", "plain32", "resnet14", "resnet32"]
    assert (config.optim.lr, config.optim.batch_size, config.optim.steps) == (0.05, 64, 100)
    assert at.query_params["models"] == "plain14,plain32,resnet14,resnet32" and at.query_params["lr"] == "0.05"


def test_lab_depth_moves_in_valid_steps_and_follows_the_block(store):
    at = open_page("pages/2_Lab.py")
    offered = [int(d) for d in at.select_slider(key="cfg_deep").proto.options]
    assert 20 in offered and 56 in offered and all((d - 2) % 6 == 0 for d in offered)
    at.selectbox(key="cfg_block").set_value("bottleneck").run()
    assert_clean(at)
    config = at.session_state[config_form.CONFIG_KEY]
    assert all((m.depth - 2) % 9 == 0 for m in config.models if m.family != "vgg")
    assert all(m.block == "bottleneck" for m in config.models)


def test_every_preset_loads_into_the_form(store):
    at = open_page("pages/2_Lab.py")
    for key, preset in PRESETS.items():
        at.selectbox(key=config_form.PICKED_PRESET_KEY).set_value(key).run()
        at.button(key="load_preset").click().run()
        assert_clean(at)
        expected = preset.config(data_source="synthetic")
        assert at.session_state[config_form.CONFIG_KEY] == expected, key
        assert at.text_input(key=config_form.MODELS_KEY).value == ",".join(expected.labels)
        assert any("What to watch" in md.value for md in at.markdown), key


def test_a_link_restores_the_whole_configuration(store):
    config = Config.from_query({"models": "plain20,resnet20-B-pre", "data": "synthetic", "subset": "500",
                                "classes": "cat,dog,ship", "augment": "0", "opt": "adam", "lr": "0.02",
                                "wd": "0.0005", "schedule": "step", "epochs": "3", "seed": "7", "name": "a b"})
    at = open_page("pages/2_Lab.py", config.to_query())
    assert_clean(at)
    assert at.session_state[config_form.CONFIG_KEY] == config
    assert at.select_slider(key="cfg_lr").value == 0.02
    assert at.multiselect(key="cfg_classes").value == ["cat", "dog", "ship"]
    assert dict(at.query_params) == config.to_query()


def test_a_bad_link_is_explained_not_fatal(store):
    at = open_page("pages/2_Lab.py", {"models": "plain21"})
    assert_clean(at)
    assert any("6n+2" in e.value for e in at.error)
    assert at.session_state[config_form.CONFIG_KEY].labels  # fell back to the demo


def test_an_invalid_model_list_is_explained_and_cannot_train(store):
    at = open_page("pages/2_Lab.py")
    at.text_input(key=config_form.MODELS_KEY).set_value("resnet20,resnet21").run()
    assert_clean(at)
    assert any("depth 21 is not 6n+2" in e.value for e in at.error)
    assert at.button(key="train").disabled
    at.multiselect(key="cfg_families").set_value([]).run()
    assert_clean(at)
    assert any("no model to train" in e.value for e in at.error) and at.button(key="train").disabled


def test_a_reload_reattaches_to_the_run_in_the_link(store):
    run_id = add_run(store)
    at = open_page("pages/2_Lab.py", {"run": run_id})
    assert_clean(at)
    assert any(run_id in md.value and "finished" in md.value for md in at.markdown)
    assert len(charts_of(at)) == 5
    assert at.session_state[config_form.CONFIG_KEY] == store.config(run_id)
    assert at.query_params["run"] == run_id
    assert any(c.value.startswith("python -m explorer train --models plain8,resnet8") for c in at.code)


def test_presentation_mode_enlarges_the_charts(store):
    run_id = add_run(store)
    at = open_page("pages/2_Lab.py", {"run": run_id})
    normal = charts_of(at)[0]["layout"]["font"]["size"]
    at.toggle(key="presentation").set_value(True).run()
    assert charts_of(at)[0]["layout"]["font"]["size"] == pytest.approx(1.5 * normal)


def test_the_cli_command_reruns_the_same_configuration():
    config = Config.from_query({"models": "plain20,resnet56-B", "lr": "0.05", "classes": "cat,dog",
                                "name": "my run; rm -rf /", "data_seed": "3", "augment": "0"})
    command = panels.cli_command(config)
    assert command.startswith("python -m explorer train --models plain20,resnet56-B")
    args = cli.build_parser().parse_args(shlex.split(command)[3:])
    assert cli.config_from_args(args) == config


def test_a_second_train_is_refused_while_a_job_runs(store, monkeypatch):
    busy = SimpleNamespace(run_id="r-busy", active=True, state="running", config=Config.from_query(TINY))
    monkeypatch.setattr(jobs, "active_job", lambda: busy)
    at = open_page("pages/2_Lab.py", TINY)
    assert any("r-busy" in i.value for i in at.info)  # offered to watch it
    at.button(key="train").click().run()
    assert_clean(at)
    assert any("r-busy is still training" in w.value for w in at.warning)
    assert store.runs().empty


def test_train_estimates_asks_then_runs_pauses_resumes_and_stops_in_the_background(store):
    at = open_page("pages/2_Lab.py", {**TINY, "subset": "50", "test": "20", "batch": "10", "steps": "1000000",
                                      "threads": "1"})
    at.button(key="train").click().run()
    assert_clean(at)
    assert any("This run would take about" in w.value for w in at.warning)  # too slow: asks first
    assert store.runs().empty
    at.button(key="start_slow").click().run()
    assert_clean(at)
    run_id = at.session_state[session.LAB_RUN]
    job = jobs.get_job(run_id)
    assert job is not None and at.query_params["run"] == run_id
    try:
        wait_for(lambda: store.latest_step(run_id) >= 1)
        at.run()
        assert any("images/s" in md.value for md in at.markdown)  # the live status line
        at.button(key="pause").click().run()
        wait_for(lambda: job.state == "paused")
        at.run()
        assert not at.button(key="resume").disabled and at.button(key="pause").disabled
        paused_at = store.latest_step(run_id)
        time.sleep(1.0)
        assert store.latest_step(run_id) == paused_at
        at.button(key="resume").click().run()
        wait_for(lambda: store.latest_step(run_id) > paused_at)
        at.button(key="stop").click().run()
        job.join(60)
    finally:
        job.stop()
    assert job.state == "stopped" and store.run(run_id)["status"] == "stopped"
    assert 0 < store.latest_step(run_id) < 1_000_000


def test_a_finished_preset_run_shows_its_verdict(store):
    run_id = add_run(store, {**TINY, "models": "plain20,plain56,resnet20,resnet56"}, preset="degradation")
    at = open_page("pages/2_Lab.py", {"run": run_id})
    assert_clean(at)
    assert any(s.value.startswith("**Prediction held.**") for s in at.success)


def test_a_recorded_run_replays_with_a_timeline(store, tmp_path):
    source = RunStore(tmp_path / "recording.sqlite")
    run_id = add_run(source, {**TINY, "models": "plain20,plain56,resnet20,resnet56"}, preset="degradation")
    source.export_bundle(run_id, tmp_path / "recorded" / "degradation")
    session.get_store.clear()  # the recorded runs are imported when the store opens
    at = open_page("pages/2_Lab.py")
    at.selectbox(key=config_form.PICKED_PRESET_KEY).set_value("degradation").run()
    at.button(key="replay_recorded").click().run()
    assert_clean(at)
    assert at.session_state[session.LAB_RUN] == run_id and at.query_params["run"] == run_id
    assert max(last_x(trace) for trace in charts_of(at)[0]["data"]) == pytest.approx(30 / 6)
    at.slider(key=f"timeline-{run_id}").set_value(10).run()
    assert_clean(at)
    assert max(last_x(trace) for trace in charts_of(at)[0]["data"]) == pytest.approx(11 / 6)  # epoch of step 10


# --- Compare and Gradients --------------------------------------------------------------------------------------
def test_compare_overlays_runs_and_lists_final_numbers(store):
    first = add_run(store)
    second = add_run(store, {**TINY, "models": "plain8,plain14,resnet14"})
    at = open_page("pages/4_Compare.py", {"runs": f"{first},{second}"})
    assert_clean(at)
    overlay, difference = charts_of(at)[:2]
    assert len(overlay["data"]) == 5
    assert {t["line"]["dash"] for t in overlay["data"]} == {"solid", "dash"}  # one dash per run
    assert "plain14" in difference["layout"]["title"]["text"]  # deep plain minus shallow plain by default
    assert len(at.dataframe[0].value) == 5
    at.segmented_control(key="compare_curve").set_value("loss").run()
    assert_clean(at)
    assert charts_of(at)[0]["layout"]["yaxis"]["type"] == "log"


def test_gradients_shows_twins_on_one_colour_scale(store):
    run_id = add_run(store, {**TINY, "models": "plain8,plain14,resnet8,resnet14"})
    at = open_page("pages/5_Gradients.py", {"run": run_id})
    assert_clean(at)
    heatmap = charts_of(at)[0]
    assert [t["type"] for t in heatmap["data"]] == ["heatmap", "heatmap"]
    assert at.multiselect(key="gradients_models").value == ["plain14", "resnet14"]
    assert {t["coloraxis"] for t in heatmap["data"]} == {"coloraxis"}
    at.segmented_control(key="gradients_scaling").set_value("window").run()
    at.select_slider(key="gradients_step").set_value(10).run()
    assert_clean(at)
    assert len(charts_of(at)) == 3
