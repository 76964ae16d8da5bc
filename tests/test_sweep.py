"""Sweeps on the local backend: planning the grid, members trained through the queue by in-process workers, the
tidy table and its summary, stopping, recording and replaying, the CLI, and the sweep figure. Tiny synthetic runs
(64 images, 4 steps); the Ray backend is tested in test_sweep_ray.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorer import jobs, paper, sweep
from explorer.cli import main
from explorer.config import ConfigError
from explorer.states import RunState
from explorer.store import RunStore, StoreError
from explorer.sweep import SweepError, SweepSpec
from explorer.ui import charts
from explorer.ui.charts import as_plotly
from explorer.worker import Worker
from support import OWNER, submit, tiny_config, tiny_sweep

REPO = Path(__file__).resolve().parent.parent

MEMBERS = 8  # 2 families x 2 depths x 2 seeds


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One store holding a trained tiny sweep (8 members), a second sweep of 2 members and a lone run."""
    store = RunStore(tmp_path_factory.mktemp("sweep") / "runs.sqlite")
    first = sweep.start(store, tiny_sweep(), OWNER)
    second = sweep.start(store, tiny_sweep("other", families=("resnet",), depths=(20,), seeds=2), OWNER)
    lone = submit(store, tiny_config(models=("plain8",), steps=4, probe_every=0))
    worker = Worker(store, "cpu")
    for sweep_id in (first, second):
        sweep.train_here(store, sweep_id, worker)
    worker.run_one(lone)
    return store, first, second, lone


# --- planning ------------------------------------------------------------------------------------------------------
def test_plan_expands_models_then_run_settings_then_seeds():
    spec = tiny_sweep(seeds=2, lr=[0.1, 0.05])
    members = sweep.plan(spec)
    assert len(members) == 2 * 2 * 2 * 2
    assert all(len(m.models) == 1 for m in members)
    assert [m.models[0].label for m in members[::4]] == ["plain8", "plain14", "resnet8", "resnet14"]
    assert [(m.optim.lr, m.seed) for m in members[:4]] == [(0.1, 0), (0.1, 1), (0.05, 0), (0.05, 1)]
    assert members[1].name == "tiny sweep: Plain-8, seed 1"
    assert {m.data for m in members} == {spec.base.data}  # the same images for every member


def test_seeds_count_up_from_the_base_seed_and_architecture_fields_keep_the_rest_of_the_model():
    base = tiny_config(models=("resnet8-B",), steps=4)
    spec = SweepSpec("B vs C", base=base.__class__(**{**base.__dict__, "seed": 5}), grid={"shortcut": ["B", "C"]},
                     seeds=3)
    members = sweep.plan(spec)
    assert [m.models[0].label for m in members] == ["resnet8-B"] * 3 + ["resnet8-C"] * 3
    assert [m.seed for m in members[:3]] == [5, 6, 7]


@pytest.mark.parametrize("grid, seeds, message", [
    ({"colour": ["red"]}, 1, "grid field 'colour' is unknown"),
    ({"seed": [1, 2]}, 1, "seeds=N"),
    ({"depth": []}, 1, "non-empty list"),
    ({"depth": [8]}, 0, "seeds 0 is not a whole number"),
    ({"depth": list(range(8, 2000, 6))}, 10, "use at most 1,000"),
])
def test_bad_specifications_say_what_to_change(grid, seeds, message):
    with pytest.raises(SweepError, match=message):
        SweepSpec("bad", base=tiny_config(models=("resnet8",)), grid=grid, seeds=seeds)


def test_bad_grid_values_fail_in_the_one_validation_layer():
    with pytest.raises(ConfigError, match="try 20 or 26"):
        sweep.plan(tiny_sweep(depths=(21,)))
    with pytest.raises(ConfigError, match="lr='fast' is not a number"):
        sweep.plan(tiny_sweep(lr=["fast"]))


def test_a_specification_survives_json():
    spec = tiny_sweep(lr=[0.1, 0.05])
    again = SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and sweep.plan(again) == sweep.plan(spec)


# --- the local backend ---------------------------------------------------------------------------------------------
def test_every_member_is_a_queued_run_trained_by_the_workers(trained):
    store, first, _, _ = trained
    members = sweep.member_rows(store, first)
    assert len(members) == MEMBERS
    assert {m["status"] for m in members} == {"finished"}
    for member in members:
        steps = store.steps(member["run_id"])
        assert sorted(steps["step"]) == [0, 1, 2, 3]
        assert store.evals(member["run_id"])["test_err"].notna().all()
    status = sweep.status(store, first)
    assert status.state is RunState.FINISHED and status.counts == {"finished": MEMBERS}
    assert store.sweep_row(first)["status"] == "finished"


def test_seeds_differ_between_members_and_fix_their_records(trained):
    store, first, _, _ = trained
    losses = {}
    for member in sweep.member_rows(store, first):
        config = store.config(member["run_id"])
        losses[(config.models[0].label, config.seed)] = store.steps(member["run_id"])["loss"].tolist()
    assert losses[("plain8", 0)] != losses[("plain8", 1)]
    assert len(losses) == MEMBERS


def test_the_tidy_table_has_one_row_per_member_and_metric(trained):
    store, first, _, _ = trained
    tidy = sweep.table(store, first)
    assert len(tidy) == MEMBERS * len(sweep.METRICS)
    assert not tidy.duplicated(["run_id", "metric"]).any()
    assert list(tidy.columns) == ["sweep_id", "run_id", "model", "family", "depth", "seed", "metric", "value",
                                  "status"]
    assert set(tidy["metric"]) == set(sweep.METRICS)
    assert tidy[tidy["metric"].isin(["train_err", "test_err"])]["value"].between(0, 100).all()
    assert tidy[tidy["metric"] == "train_seconds"]["value"].gt(0).all()
    assert list(dict.fromkeys(tidy["model"])) == ["plain8", "plain14", "resnet8", "resnet14"]


def test_the_summary_gives_mean_sd_min_max_over_seeds(trained):
    store, first, _, _ = trained
    tidy = sweep.table(store, first)
    summary = sweep.summary(store, first)
    assert len(summary) == 4 * 2  # family x depth, train and test error
    assert set(summary["metric"]) == {"train_err", "test_err"}
    assert (summary["n"] == 2).all() and (summary["members"] == 2).all()
    row = summary[(summary["model"] == "plain14") & (summary["metric"] == "test_err")].iloc[0]
    values = tidy[(tidy["model"] == "plain14") & (tidy["metric"] == "test_err")]["value"]
    assert row["mean"] == pytest.approx(values.mean())
    assert row["sd"] == pytest.approx(values.std(ddof=1))
    assert (row["min"], row["max"]) == (values.min(), values.max())


def test_only_members_of_one_sweep_are_drawn_together(trained):
    store, first, second, lone = trained
    first_runs = set(sweep.table(store, first)["run_id"])
    second_runs = set(sweep.table(store, second)["run_id"])
    assert len(first_runs) == MEMBERS and len(second_runs) == 2
    assert not first_runs & second_runs and lone not in first_runs | second_runs
    assert set(sweep.summary(store, second)["model"]) == {"resnet20"}


def test_unfinished_members_are_listed_but_not_averaged(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    sweep_id = sweep.start(store, tiny_sweep(families=("plain",), depths=(8,), seeds=2), OWNER)
    tidy = sweep.table(store, sweep_id)
    assert len(tidy) == 2 * len(sweep.METRICS) and tidy["value"].isna().all()
    summary = sweep.summary(store, sweep_id)
    assert (summary["n"] == 0).all() and (summary["members"] == 2).all() and summary["mean"].isna().all()
    assert sweep.status(store, sweep_id).state is RunState.RUNNING


def test_a_failed_member_fails_the_sweep_with_its_reason(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    sweep_id = sweep.start(store, tiny_sweep(families=("plain",), depths=(8,), seeds=2), OWNER)
    first, second = (m["run_id"] for m in sweep.member_rows(store, sweep_id))
    for member in (first, second):
        jobs.claim(store, "w1", "cpu", member)
    store.set_status(first, RunState.RUNNING)
    store.set_status(first, RunState.FINISHED)
    store.set_status(second, RunState.FAILED, error="out of memory")
    status = sweep.status(store, sweep_id)
    assert status.state is RunState.FAILED and "1 of 2 members failed" in status.error
    assert "out of memory" in status.error


def test_stopping_cancels_waiting_members_and_needs_the_owners_key(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    sweep_id = sweep.start(store, tiny_sweep(), OWNER)
    with pytest.raises(jobs.NotOwner):
        sweep.stop(store, sweep_id, "someone-else")
    assert sweep.stop(store, sweep_id, OWNER) == MEMBERS
    status = sweep.status(store, sweep_id)
    assert status.state is RunState.STOPPED and status.counts == {"cancelled": MEMBERS}
    assert Worker(store, "cpu").run_one() is None  # nothing of it is left for a worker
    with pytest.raises(jobs.JobRefused, match="nothing to stop"):
        sweep.stop(store, sweep_id, OWNER)


def test_a_sweep_counts_as_one_request_against_the_queue_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_MAX_QUEUED_PER_OWNER", "2")
    store = RunStore(tmp_path / "runs.sqlite")
    sweep.start(store, tiny_sweep(), OWNER)  # 8 members, one request
    submit(store, tiny_config(models=("plain8",), steps=3))
    with pytest.raises(jobs.JobRefused, match="2 runs waiting"):
        sweep.start(store, tiny_sweep(seeds=1), OWNER)


def test_a_member_that_cannot_be_submitted_abandons_the_whole_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_MAX_JOB_SECONDS", "1")
    monkeypatch.setenv("EXPLORER_HOSTED", "1")
    monkeypatch.setenv("EXPLORER_MAX_QUEUED_PER_OWNER", "20")
    store = RunStore(tmp_path / "runs.sqlite")
    spec = tiny_sweep(families=("plain",), depths=(8, 110), seeds=1, steps=100_000)
    with pytest.raises(jobs.JobRefused):
        sweep.start(store, spec, OWNER)
    (sweep_id,) = sweep.sweep_ids(store)
    status = sweep.status(store, sweep_id)
    assert status.state is RunState.FAILED and status.error.startswith("not started:")
    assert not status.counts.get("queued")


def test_without_ray_the_ray_backend_says_how_to_install_it_and_writes_nothing(tmp_path, monkeypatch):
    for name in ("ray_backend", "coordinator", "member_task"):
        monkeypatch.delitem(sys.modules, f"explorer.sweep.{name}", raising=False)
        monkeypatch.delattr(sweep, name, raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    store = RunStore(tmp_path / "runs.sqlite")
    with pytest.raises(SweepError, match="pip install -r requirements-ray.txt"):
        sweep.start(store, tiny_sweep(), OWNER, backend="ray")
    assert sweep.sweep_ids(store) == [] and store.runs().empty


def test_ray_stays_out_of_the_default_install():
    code = ("import sys, explorer.cli, explorer.sweep, explorer.sweep.runs, explorer.sweep.tables, "
            "explorer.sweep.recorded, explorer.ui.charts; print('ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "False", result.stderr


# --- recording -------------------------------------------------------------------------------------------------------
def test_a_recorded_sweep_replays_with_the_same_summary(trained, tmp_path):
    store, first, _, _ = trained
    folder = sweep.record(store, first, tmp_path / "recorded")
    document = json.loads((folder / "sweep.json").read_text())
    assert document["spec"]["seeds"] == 2 and document["hardware"]["devices"]
    assert "budget_s" in document and len(document["members"]) == MEMBERS
    assert len([p for p in folder.iterdir() if p.is_dir()]) == MEMBERS
    replay = RunStore.memory()
    assert sweep.load_recorded(folder, replay) == first
    pd.testing.assert_frame_equal(sweep.summary(replay, first), sweep.summary(store, first), check_dtype=False,
                                  rtol=1e-5)
    with pytest.raises(StoreError, match="already in the run store"):
        sweep.load_recorded(folder, replay)


def test_a_running_sweep_is_not_recorded(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    sweep_id = sweep.start(store, tiny_sweep(seeds=1), OWNER)
    with pytest.raises(SweepError, match="still running"):
        sweep.record(store, sweep_id, tmp_path / "recorded")


# --- the command line ----------------------------------------------------------------------------------------------
TINY_FLAGS = ["--data", "synthetic", "--subset", "64", "--test", "32", "--batch", "16", "--device", "cpu",
              "--threads", "1", "--steps", "3", "--eval", "3", "--eval-images", "32"]


def test_the_sweep_command_trains_records_reports_and_exports(tmp_path, capsys):
    store = ["--store", str(tmp_path / "runs.sqlite")]
    assert main([*store, "sweep", "--family", "plain,resnet", "--depth", "8", "--seeds", "2", *TINY_FLAGS,
                 "--record", str(tmp_path / "rec")]) == 0
    sweep_id = capsys.readouterr().out.strip()
    assert sweep.valid_sweep_id(sweep_id) and (tmp_path / "rec" / "sweep.json").is_file()
    assert main([*store, "sweep-status", sweep_id]) == 0
    out = capsys.readouterr().out
    assert "finished; 4 members" in out and "resnet8" in out
    assert main([*store, "sweep-export", sweep_id, "--out", str(tmp_path / "t.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "t.csv")) == 4 * len(sweep.METRICS)
    assert main([*store, "sweep-export", sweep_id, "--summary", "--out", str(tmp_path / "s.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 2 * 2


@pytest.mark.parametrize("args, message", [
    (["sweep", "--depth", "8", "--seeds", "0"], "seeds 0 is not a whole number"),
    (["sweep", "--depth", "8", "--backend", "spark"], "invalid choice: 'spark'"),
    (["sweep", "--depth", "21"], "try 20 or 26"),
    (["sweep", "--depth", "8", "--backend", "ray", "--gpus", "-1"], "gpus per member -1"),
    (["sweep-status", "s-nonsense"], "unknown sweep id 's-nonsense'"),
    (["sweep-export", "s20250101-000000-abcd", "--out", "table.txt"], "must end in .csv or .parquet"),
    (["sweep-stop", "s20250101-000000-abcd"], "unknown sweep id"),
])
def test_bad_sweep_input_exits_2_with_one_line(args, message, tmp_path, capsys):
    assert main(["--store", str(tmp_path / "runs.sqlite"), *args]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and len(stderr.strip().splitlines()) == 1


def test_a_dry_run_prints_members_and_starts_nothing(tmp_path, capsys):
    path = tmp_path / "runs.sqlite"
    assert main(["--store", str(path), "sweep", "--family", "plain,resnet", "--depth", "8,14", "--seeds", "3",
                 *TINY_FLAGS, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 13 and out[-1].startswith("12 members")
    assert sweep.sweep_ids(RunStore(path)) == []


# --- the figure ------------------------------------------------------------------------------------------------------
def _summary() -> pd.DataFrame:
    rows = []
    for family, floor in (("plain", 8.0), ("resnet", 7.0)):
        for depth in (20, 32, 44, 56):
            mean = floor + (depth / 20 if family == "plain" else -depth / 40)
            for metric in ("train_err", "test_err"):
                rows.append(dict(model=f"{family}{depth}", family=family, depth=depth, metric=metric, mean=mean,
                                 sd=0.3, min=mean - 0.4, max=mean + 0.5, n=3, members=3))
    return pd.DataFrame(rows)


def test_the_sweep_figure_draws_mean_lines_bands_and_labelled_paper_markers():
    fig = as_plotly(charts.sweep_figure(_summary(), "test_err", reference=paper.reference_frame()))
    means = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in means] == ["Plain nets", "Residual nets"]
    assert list(means[1].x) == [20, 32, 44, 56] and means[1].error_y.array[0] == pytest.approx(0.3)
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 2
    assert max(bands[0].y) == pytest.approx(8.0 + 56 / 20 + 0.5)
    assert min(bands[0].y) == pytest.approx(8.0 + 20 / 20 - 0.4)
    (published,) = [t for t in fig.data if t.mode == "markers"]
    assert published.name == "He et al. 2015, Table 6 (residual nets)"
    assert list(published.x) == [20, 32, 44, 56, 110] and published.y[-1] == pytest.approx(6.43)
    assert "mean 6.61 ± 0.16" in published.customdata[-1][0]


def test_the_paper_gives_no_plain_or_training_error_reference():
    references = paper.reference_frame()
    assert set(references["family"]) == {"resnet"} and set(references["metric"]) == {"test_err"}
    fig = as_plotly(charts.sweep_figure(_summary(), "train_err", reference=references))
    assert not [t for t in fig.data if t.mode == "markers"]
    assert fig.layout.yaxis.title.text == "training error (%)"


def test_members_that_did_not_finish_are_not_drawn():
    summary = _summary()
    summary.loc[summary["depth"] == 56, ["n", "mean"]] = (0, np.nan)
    fig = as_plotly(charts.sweep_figure(summary, "test_err"))
    assert all(56 not in list(t.x) for t in fig.data)


def test_the_shipped_cpu_depth_sweep_replays_and_shows_degradation_over_seeds():
    """assets/recorded/cpu/sweep-depth (real CIFAR-10, 2 seeds): what docs/SWEEPS.md and the Compare page show."""
    folder = REPO / "assets" / "recorded" / "cpu" / "sweep-depth"
    with RunStore.memory() as replay:
        sweep_id = sweep.load_recorded(folder, replay)
        current = sweep.status(replay, sweep_id)
        assert current.state is RunState.FINISHED and current.members == 16
        means = sweep.summary(replay, sweep_id).query("metric == 'train_err'").set_index("model")
    assert set(means["n"]) == {2}
    plain, resnet = means.filter(like="plain", axis=0)["mean"], means.filter(like="resnet", axis=0)["mean"]
    assert plain.iloc[-1] > plain.iloc[0] + 10  # plain-56 trains worse than plain-20
    assert resnet.max() < plain.min()  # every ResNet below every plain net
