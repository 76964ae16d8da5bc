"""Your own images in the app: a standard ImageFolder, flat (class folders at the top, split here) or split (train/
and test/), offered through EXPLORER_DATA_ROOTS, with the Lab's subset sliders bounded by what it holds before a run
is queued, and trained."""

from __future__ import annotations

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.config import Config, DataConfig
from explorer.states import RunState
from explorer.store import RunStore
from explorer.ui import config_form, session
from explorer.worker import Worker
from support import tiny_config, train

TINY = {"models": "plain8,resnet8", "batch": "4", "steps": "3", "eval": "1", "threads": "1", "device": "cpu"}


def write_images(folder, count: int, colour: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (36, 36), colour).save(folder / f"{i:04d}.png")


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    """Two data roots: `pets`, flat (5 images a class: 4 train, 1 test by the split), and `shelter`, split (6 train,
    4 test a class). No embedded workers."""
    for label, name in enumerate(("cat", "dog")):
        colour = (200 - 150 * label, 50 + 150 * label, 60)
        write_images(tmp_path / "pets" / name, 5, colour)
        write_images(tmp_path / "shelter" / "train" / name, 6, colour)
        write_images(tmp_path / "shelter" / "test" / name, 4, colour)
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", f"pets={tmp_path / 'pets'},shelter={tmp_path / 'shelter'}")
    monkeypatch.setenv("EXPLORER_STORE", str(tmp_path / "runs.sqlite"))
    monkeypatch.setenv("EXPLORER_WORKERS", "0")
    for cached in (session.get_store, config_form.cifar10_location, config_form.sources_offered):
        cached.clear()
    yield session.get_store()
    session.get_store.clear()


def lab(query: dict[str, str] | None = None) -> AppTest:
    app = AppTest.from_string("from explorer.ui import nav\nfrom pages import PAGES\nnav.register(PAGES)\n"
                              "from pages.Lab import page\npage()", default_timeout=120)
    app.query_params.update(query or {})
    return app.run()


def infos(app: AppTest) -> str:
    return "\n".join(e.value for e in app.info)


def slider(app: AppTest, key: str):
    return app.select_slider(key=config_form.PREFIX + key)


def queued(store: RunStore) -> list[str]:
    runs = store.runs()
    return list(runs[runs.status == str(RunState.QUEUED)].run_id)


def test_both_layouts_are_offered_and_the_sliders_stop_at_their_size(store):
    app = lab()
    offered = app.selectbox(key="cfg_data").options
    assert any(o.startswith("pets: image folder 'pets' (ImageFolder, 20% of each class") for o in offered)
    assert "shelter: image folder 'shelter' (ImageFolder)" in offered
    assert slider(app, "subset").value > 8  # the demo's subset, on the synthetic set

    app.selectbox(key="cfg_data").set_value("pets").run()
    assert not app.exception
    assert app.multiselect(key="cfg_classes").options == ["cat", "dog"]
    assert slider(app, "subset").value == 8 and slider(app, "subset").options == ["2", "4", "8"]
    assert slider(app, "test").value == 2 and slider(app, "test").options == ["2"]
    assert "Training images lowered from" in infos(app) and "to 8: the data set pets holds at most 8" in infos(app)
    assert not app.error
    app.button(key="train").click().run()
    assert not app.error and len(queued(store)) == 1


def test_a_link_asking_more_than_the_data_holds_is_lowered_with_a_note_then_trains(store):
    app = lab({**TINY, "data": "shelter", "subset": "5000", "test": "10"})
    assert "Training images lowered from 5,000 to 12" in infos(app)
    assert "Test images lowered from 10 to 8" in infos(app)
    app.button(key="train").click().run()
    assert not app.error
    [run_id] = queued(store)
    assert store.config(run_id).data == DataConfig(source="shelter", subset=12, test_subset=8)
    assert Worker(store, "cpu").run_one(run_id) == (run_id, RunState.FINISHED)


def test_four_test_images_a_class_are_enough_for_a_link(store):
    app = lab({**TINY, "data": "shelter", "subset": "12", "test": "4"})  # the old minimum was test=10
    assert not app.error and "lowered" not in infos(app)
    assert slider(app, "test").value == 4
    app.button(key="train").click().run()
    assert not app.error and len(queued(store)) == 1


def test_a_flat_folder_trains_a_few_steps(store):
    config = tiny_config(steps=4, eval_every=2)
    run_id = train(store, Config.from_query({"data": "pets", "subset": "8", "test": "2"}, base=config))
    assert store.status(run_id) is RunState.FINISHED
    evals = store.evals(run_id)
    assert set(evals.model) == {"plain8", "resnet8"} and evals.test_images.max() == 2
