"""Loss-surface slices (explorer/landscape.py): filter-normalised directions, the ends of the 1-D line, the budget,
storage, the figures and their summaries, and the CLI, on a tiny run trained on synthetic data."""

import numpy as np
import pandas as pd
import pytest
import torch

from explorer import landscape
from explorer.checkpoints import trained_weights
from explorer.cli import main
from explorer.config import ModelConfig
from explorer.data import eval_batches, load_data
from explorer.models import build_model
from explorer.step import loss_and_error
from explorer.store import RunStore
from explorer.trainer import batch_statistics
from explorer.device import precision_on
from explorer.ui import charts
from explorer.ui.charts import as_plotly
from explorer.ui.figures import CHARTS, RunTables
from support import tiny_config, train

IMAGES = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[RunStore, str]:
    store = RunStore(tmp_path_factory.mktemp("landscape") / "runs.sqlite")
    return store, train(store, tiny_config(steps=8))


def spec(kind: str, grid: int = 3, **kwargs) -> landscape.SliceSpec:
    return landscape.SliceSpec(kind, ("plain8", "resnet8"), grid=grid, images=IMAGES, **kwargs)


# --- directions -------------------------------------------------------------------------------------------------
def test_each_filter_of_a_direction_has_the_norm_of_its_weights_and_bn_and_biases_stay_put():
    model = build_model(ModelConfig.parse("resnet8"), seed=3)
    named = list(model.named_parameters())
    direction = landscape.filter_normalized_direction(named, seed=0, direction=0)
    for (name, weight), d in zip(named, direction):
        if weight.dim() <= 1:
            assert torch.count_nonzero(d) == 0, name
        else:
            torch.testing.assert_close(d.flatten(1).norm(dim=1), weight.flatten(1).norm(dim=1))
    assert any(w.dim() <= 1 for _, w in named) and any(w.dim() == 4 for _, w in named)


def test_twins_are_cut_along_the_same_raw_noise_and_the_two_directions_differ():
    plain, resnet = (build_model(ModelConfig.parse(m), seed=0) for m in ("plain8", "resnet8"))
    plain_named, resnet_named = dict(plain.named_parameters()), dict(resnet.named_parameters())
    shared = [n for n in plain_named if n in resnet_named and plain_named[n].dim() > 1]
    first = {n: d for n, d in zip(plain_named, landscape.filter_normalized_direction(list(plain_named.items()), 0, 0))}
    twin = {n: d for n, d in zip(resnet_named, landscape.filter_normalized_direction(list(resnet_named.items()), 0, 0))}
    second = {n: d for n, d in zip(plain_named, landscape.filter_normalized_direction(list(plain_named.items()), 0, 1))}
    assert shared
    for name in shared:
        unit = lambda d: d.flatten(1) / d.flatten(1).norm(dim=1, keepdim=True)  # noqa: E731
        torch.testing.assert_close(unit(first[name]), unit(twin[name]))
        assert not torch.allclose(unit(first[name]), unit(second[name]))


# --- the slices ------------------------------------------------------------------------------------------------
def batch_loss(model: torch.nn.Module, store: RunStore, run_id: str) -> float:
    """Loss on the landscape's images (first IMAGES of the run-seeded permutation), with batch statistics."""
    config = store.config(run_id)
    data = load_data(config.data)
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(config.seed))[:IMAGES]
    x, y = next(eval_batches(data.train_x[order], data.train_y[order], IMAGES, "cpu", channels_last=True))
    policy = landscape.resolve_policy(config, "cpu")
    model = policy.to_device(model)
    with torch.inference_mode(), batch_statistics(model), policy.autocast():
        return float(loss_and_error(model(x), y)[0])


def test_the_line_runs_from_the_rebuilt_initial_net_to_the_trained_net(trained):
    store, run_id = trained
    line = landscape.compute(store, run_id, spec("1d"), budget_s=None, device="cpu").frame
    plane = landscape.compute(store, run_id, spec("2d"), budget_s=None, device="cpu").frame
    config = store.config(run_id)
    for cfg in config.models:
        rows = line[line["model"] == cfg.label].set_index("alpha")["loss"]
        initial = batch_loss(build_model(cfg, seed=config.seed), store, run_id)
        trained_net = build_model(cfg, seed=config.seed)
        trained_net.load_state_dict(trained_weights(store, run_id)[cfg.label])
        assert rows[0.0] == pytest.approx(initial, rel=1e-5)
        assert rows[1.0] == pytest.approx(batch_loss(trained_net, store, run_id), rel=1e-5)
        centre = plane[(plane["model"] == cfg.label) & (plane["a"] == 0) & (plane["b"] == 0)]["loss"]
        assert float(centre.iloc[0]) == pytest.approx(rows[1.0], rel=1e-6)
        assert rows[1.0] < rows[0.0]  # trained for a few steps: the end is lower than the start
    assert set(plane.columns) == {"model", "a", "b", "loss", "error"} and len(plane) == 2 * 9


def test_a_slice_over_budget_is_refused_before_any_work_with_what_to_shrink(trained, monkeypatch):
    store, run_id = trained
    monkeypatch.setattr(landscape, "trained_weights", lambda *a: pytest.fail("work started despite the estimate"))
    big = spec("2d", grid=21)
    precision = precision_on(store.config(run_id).precision, "cpu")
    estimate = landscape.estimate_seconds(store, run_id, big, "cpu", precision)
    with pytest.raises(landscape.OverBudget, match=r"21×21 points × 2 models × 32 images\), over the budget of .*: "
                                                   r"use --grid 9, or a larger --budget"):
        landscape.compute(store, run_id, big, budget_s=estimate / 4, device="cpu")
    with pytest.raises(landscape.OverBudget, match="no smaller slice fits: give a --budget of at least"):
        landscape.compute(store, run_id, big, budget_s=1e-6, device="cpu")


def test_a_slice_whose_measured_pace_overruns_the_budget_stops_early(trained, monkeypatch):
    store, run_id = trained
    monkeypatch.setattr(landscape, "estimate_seconds", lambda *a: 0.0)  # a calibration far too optimistic
    with pytest.raises(landscape.OverBudget, match=f"stopped after {landscape.PACE_POINTS} of 50 points"):
        landscape.compute(store, run_id, spec("2d", grid=5, seed=7), budget_s=1e-4, device="cpu")
    assert landscape.read(store, run_id, spec("2d", grid=5, seed=7)) is None


def test_a_stored_slice_is_read_back_instead_of_recomputed(trained, monkeypatch):
    store, run_id = trained
    computed = landscape.compute(store, run_id, spec("1d", grid=4), budget_s=None, device="cpu")
    assert computed.path.parent == store.path.parent / "landscapes" and computed.path.suffix == ".parquet"
    monkeypatch.setattr(landscape, "compute", lambda *a, **k: pytest.fail("recomputed a stored slice"))
    again = landscape.load_or_compute(store, run_id, spec("1d", grid=4))
    pd.testing.assert_frame_equal(again.frame, computed.frame)
    assert (again.images, again.seconds, again.precision) == (IMAGES, computed.seconds, computed.precision)
    assert landscape.latest(store, run_id, "1d").path == computed.path
    assert landscape.read(store, run_id, spec("1d", grid=5)) is None  # another spec, another file


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="3d", models=("resnet8",)), "not 1d or 2d"),
    (dict(kind="2d", models=("resnet8",), grid=20), "use 21"),
    (dict(kind="1d", models=("resnet8",), images=0), "--images 0"),
    (dict(kind="2d", models=("resnet8",), span=float("nan")), "--span nan"),
    (dict(kind="1d", models=()), "name at least one"),
])
def test_bad_specs_say_what_to_change(kwargs, message):
    with pytest.raises(landscape.LandscapeError, match=message):
        landscape.SliceSpec(**kwargs)


def test_a_model_the_run_lacks_is_refused(trained):
    store, run_id = trained
    with pytest.raises(landscape.LandscapeError, match="choose from plain8, resnet8"):
        landscape.compute(store, run_id, landscape.SliceSpec("1d", ("resnet20",)), device="cpu")


# --- reading a slice --------------------------------------------------------------------------------------------
def test_line_profile_finds_a_barrier_and_a_monotone_fall():
    alpha = np.linspace(0, 1, 11)
    falling = landscape.line_profile(alpha, 2.3 - 1.9 * alpha)
    assert falling.monotone and falling.start == pytest.approx(2.3) and falling.end == pytest.approx(0.4)
    barrier = landscape.line_profile(alpha, 2.3 + 4 * alpha * (0.6 - alpha))
    assert not barrier.monotone and barrier.peak_alpha == pytest.approx(0.3) and barrier.peak > 2.3


def test_surface_profile_counts_one_minimum_in_a_bowl_and_more_on_a_bumpy_surface():
    axis = np.linspace(-1, 1, 9)
    a, b = np.meshgrid(axis, axis, indexing="ij")
    bowl = pd.DataFrame({"a": a.ravel(), "b": b.ravel(), "loss": (0.5 + a ** 2 + b ** 2).ravel()})
    surface = landscape.surface_profile(bowl)
    assert (surface.centre, surface.minima) == (pytest.approx(0.5), 1)
    assert surface.edge > 1.5
    bumpy = bowl.assign(loss=bowl["loss"] + 0.6 * np.sin(8 * bowl["a"] + 0.3) * np.sin(7 * bowl["b"] + 0.9))
    assert landscape.surface_profile(bumpy).minima > 1


# --- figures and summaries --------------------------------------------------------------------------------------
def line_frame() -> pd.DataFrame:
    alpha = np.linspace(0, 1, 11)
    return pd.concat([pd.DataFrame({"model": "resnet20", "alpha": alpha, "loss": 2.3 - 1.89 * alpha, "error": 50.0}),
                      pd.DataFrame({"model": "plain20", "alpha": alpha, "loss": 2.3 + 4 * alpha * (0.6 - alpha),
                                    "error": 60.0})])


def test_the_1d_summary_names_the_barrier_and_the_monotone_fall():
    text = CHARTS["landscape_1d"].summary(RunTables(*[pd.DataFrame()] * 5, landscape_1d=line_frame()))
    assert "ResNet-20's falls monotonically from 2.3 to 0.41" in text
    assert "Plain-20's loss rises to a barrier of 2.66 at α=0.30" in text


def test_2d_figure_puts_the_twins_side_by_side_on_one_colour_scale_and_levels(trained):
    store, run_id = trained
    plane = landscape.compute(store, run_id, spec("2d"), budget_s=None, device="cpu").frame
    fig = as_plotly(charts.landscape_2d_figure(plane))
    contours = [t for t in fig.data if t.type == "contour"]
    assert len(contours) == 2 and {t.coloraxis for t in contours} == {"coloraxis"}
    assert contours[0].contours.start == contours[1].contours.start
    assert [a.text for a in fig.layout.annotations] == ["Plain-8", "ResNet-8"]
    line = as_plotly(charts.landscape_1d_figure(line_frame()))
    assert line.layout.yaxis.type == "log" and sum(t.showlegend for t in line.data) == 2
    tables = RunTables.read(store, run_id)
    assert len(tables.landscape_2d) == 18 and "on the grid" in CHARTS["landscape_2d"].summary(tables)


# --- the command line ---------------------------------------------------------------------------------------------
def test_cli_prices_computes_summarises_and_draws(trained, tmp_path, capsys):
    store, run_id = trained
    out = tmp_path / "slice.html"
    assert main(["--store", str(store.path), "landscape", run_id, "--grid", "3", "--images", "16", "--models",
                 "resnet8", "--device", "cpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "estimate about" in captured.err and "ResNet-8's loss" in captured.out
    assert "<html>" in (tmp_path / "slice-1d.html").read_text()[:100]
    assert (tmp_path / "slice-2d.html").stat().st_size > 10_000
    assert main(["--store", str(store.path), "landscape", run_id, "--grid", "31", "--budget", "0.01"]) == 2
    assert "over the budget of 0.01 s" in capsys.readouterr().err


# --- a study queued from the Lab ------------------------------------------------------------------------------
def test_the_owner_queues_slices_and_a_free_worker_computes_them(tmp_path, monkeypatch):
    from support import OWNER
    from explorer import jobs
    from explorer.states import RunState
    from explorer.store import StoreError
    from explorer.worker import Worker

    store = RunStore(tmp_path / "runs.sqlite")
    run_id = train(store, tiny_config(steps=8))
    one_d, two_d = spec("1d"), spec("2d")
    with pytest.raises(jobs.NotOwner):
        jobs.request_landscape(store, run_id, "someone-else-key-0000", one_d)
    first = jobs.request_landscape(store, run_id, OWNER, one_d)
    again = jobs.request_landscape(store, run_id, OWNER, one_d)
    assert not first.attached and again.attached and again.study_id == first.study_id and first.estimate_s > 0
    jobs.request_landscape(store, run_id, OWNER, two_d)
    assert [s["status"] for s in store.studies_of(run_id)] == ["queued", "queued"]

    worker = Worker(store, "cpu")
    assert worker.study_one() == first.study_id and worker.study_one() is not None and worker.study_one() is None
    assert {s["status"] for s in store.studies_of(run_id)} == {"finished"}
    assert landscape.latest(store, run_id, "1d") is not None and landscape.latest(store, run_id, "2d") is not None
    with pytest.raises(StoreError, match="cannot become running"):
        store.end_study(first.study_id, RunState.RUNNING)

    unfinished = submit_run(store)  # before the cap below, which would refuse the run itself
    monkeypatch.setenv("EXPLORER_MAX_JOB_SECONDS", "1")
    with pytest.raises(jobs.JobRefused, match="this server runs jobs of up to"):
        jobs.request_landscape(store, run_id, OWNER, spec("2d", grid=21))
    with pytest.raises(jobs.JobRefused, match="finished"):
        jobs.request_landscape(store, unfinished, OWNER, one_d)


def submit_run(store: RunStore) -> str:
    from dataclasses import replace

    from support import submit

    return submit(store, replace(tiny_config(steps=8), seed=5))


def test_a_study_whose_worker_died_fails_with_a_reason(tmp_path):
    from support import OWNER
    from explorer import jobs
    from explorer.states import RunState

    store = RunStore(tmp_path / "runs.sqlite")
    run_id = train(store, tiny_config(steps=4))
    study = jobs.request_landscape(store, run_id, OWNER, spec("1d"))
    assert store.claim_study("w-gone", "cpu", lease_s=-1.0)["study_id"] == study.study_id  # its lease already lapsed
    jobs.reap(store)
    (row,) = store.studies_of(run_id)
    assert row["status"] == str(RunState.FAILED) and "stopped answering" in row["error"]
