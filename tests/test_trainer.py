import math
import threading

import pandas as pd
import pytest
import torch

import explorer.trainer as trainer_module
from explorer import jobs
from explorer.config import OptimConfig
from explorer.device import DevicePolicy
from explorer.models import build_model
from explorer.states import Control, RunState
from explorer.step import learning_rate
from explorer.store import RunStore
from explorer.trainer import Probe, Progress, batch_statistics, loss_bound
from explorer.worker import Worker
from support import OWNER, submit, tiny_config, train, wait_for

RECORD_COLUMNS = {"steps": ["model", "step", "epoch", "loss", "train_err", "lr"],
                  "evals": ["model", "step", "epoch", "train_loss", "train_err", "test_loss", "test_err",
                            "test_images"],
                  "probes": ["model", "step", "layer", "layer_name", "grad_norm", "weight_norm", "update_ratio",
                             "response_std"]}


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def records(store: RunStore, run_id: str) -> dict[str, pd.DataFrame]:
    """Every record of a run except wall times (which differ between any two runs)."""
    return {table: getattr(store, table)(run_id)[columns].reset_index(drop=True)
            for table, columns in RECORD_COLUMNS.items()}


def test_lockstep_run_records_steps_evals_and_probes(store):
    run_id = train(store, tiny_config())
    assert store.status(run_id) is RunState.FINISHED
    steps = store.steps(run_id)
    for label in ("plain8", "resnet8"):
        rows = steps[steps.model == label]
        assert rows.step.tolist() == list(range(6))
        assert rows.loss.map(math.isfinite).all() and rows.train_err.between(0, 100).all()
    evals = store.evals(run_id)
    assert sorted(evals[evals.model == "resnet8"].step) == [2, 5]  # after the 3rd and 6th update
    assert evals.test_err.between(0, 100).all()
    assert evals.sort_values("step").test_images.tolist()[-1] == 32  # the last evaluation scores the whole test set
    probes = store.probes(run_id)
    models = {m: build_model(tiny_config().models[i]) for i, m in enumerate(("plain8", "resnet8"))}
    for label, model in models.items():
        rows = probes[probes.model == label]
        assert sorted(rows.step.unique()) == [0, 2, 4]
        assert rows[rows.step == 0].sort_values("layer").layer_name.tolist() == [i.name for i in model.layers()]
        assert (rows.grad_norm > 0).all() and (rows.response_std > 0).all()
        assert (rows.update_ratio > 0).all() and (rows.update_ratio < 10).all()
    assert set(store.models(run_id).status) == {"finished"}
    progress = Progress.from_json(store.run(run_id)["progress"], store.status(run_id))
    assert progress.step == 6 and progress.total_steps == 6 and progress.images_per_s > 0


def test_every_run_draws_a_test_curve_by_default(store):
    config = tiny_config(steps=60, eval_every=0, probe_every=0)
    run_id = train(store, config)
    evals = store.evals(run_id)
    assert evals[evals.model == "resnet8"].step.nunique() >= 20


def test_models_see_identical_batches_whatever_their_company(store):
    alone = train(store, tiny_config(models=("resnet8",)))
    together = train(store, tiny_config(models=("plain8", "vgg11", "resnet8")))
    losses = [store.steps(r).query("model == 'resnet8'").loss.tolist() for r in (alone, together)]
    assert losses[0] == losses[1]


def test_same_config_and_seed_give_identical_records(store):
    first, second = (records(store, train(store, tiny_config())) for _ in range(2))
    for table in RECORD_COLUMNS:
        pd.testing.assert_frame_equal(first[table], second[table])


def test_a_stopped_run_resumes_to_exactly_the_records_of_an_uninterrupted_one(store, monkeypatch):
    config = tiny_config(steps=14, eval_every=4, probe_every=3)
    whole = records(store, train(store, config))

    run_id = submit(store, config)
    worker = Worker(store, "cpu")
    original_flush = trainer_module._Recorder.flush
    calls = []

    def stop_after_a_few(recorder):  # stop mid-run, after some records were written
        original_flush(recorder)
        calls.append(1)
        if len(calls) == 4:
            recorder.trainer.stop()

    monkeypatch.setattr(trainer_module._Recorder, "flush", stop_after_a_few)
    worker.run_one(run_id)
    monkeypatch.setattr(trainer_module._Recorder, "flush", original_flush)
    assert store.status(run_id) is RunState.STOPPED
    assert 0 <= store.latest_step(run_id) < 13
    jobs.requeue(store, run_id, OWNER)
    assert Worker(store, "cpu").run_one(run_id) == (run_id, RunState.FINISHED)
    resumed = records(store, run_id)
    for table in RECORD_COLUMNS:
        pd.testing.assert_frame_equal(whole[table], resumed[table])


def test_a_diverging_model_is_dropped_and_its_twins_go_on(store, monkeypatch):
    def poisoned(cfg, **kwargs):
        model = build_model(cfg, **kwargs)
        if cfg.family == "plain":
            with torch.no_grad():
                model.layers()[-1].module.weight.fill_(float("inf"))
        return model

    monkeypatch.setattr(trainer_module, "build_model", poisoned)
    run_id = train(store, tiny_config(steps=8))
    models = store.models(run_id).set_index("model")
    assert models.loc["plain8", "status"] == "diverged" and models.loc["plain8", "diverged_step"] == 0
    assert models.loc["resnet8", "status"] == "finished"
    steps, probes = store.steps(run_id), store.probes(run_id)
    assert steps[steps.model == "resnet8"].step.max() == 7
    assert steps[steps.model == "plain8"].empty and probes[probes.model == "plain8"].empty
    assert store.status(run_id) is RunState.FINISHED


def test_a_run_whose_every_model_diverges_ends_diverged(store):
    run_id = train(store, tiny_config(models=("plain14-nobn",), steps=30, lr=100.0))
    assert store.models(run_id).status.tolist() == ["diverged"]
    assert store.status(run_id) is RunState.DIVERGED
    steps = store.steps(run_id)
    assert (steps.loss <= loss_bound(10)).all()  # nothing above the bound is recorded


def test_pause_resume_and_stop_through_the_store_act_within_a_second(store):
    run_id = submit(store, tiny_config(steps=100_000, eval_every=1000))
    worker = Worker(store, "cpu")
    thread = threading.Thread(target=worker.run_one, args=(run_id,))
    thread.start()
    try:
        wait_for(lambda: store.latest_step(run_id) >= 2)
        jobs.request(store, run_id, OWNER, Control.PAUSE)
        wait_for(lambda: store.status(run_id) is RunState.PAUSED, timeout=5)
        paused_at = store.latest_step(run_id)
        threading.Event().wait(0.5)
        assert store.latest_step(run_id) == paused_at
        jobs.request(store, run_id, OWNER, Control.RUN)
        wait_for(lambda: store.latest_step(run_id) > paused_at, timeout=5)
        with pytest.raises(jobs.NotOwner):
            jobs.request(store, run_id, "someone-else", Control.STOP)
        jobs.request(store, run_id, OWNER, Control.STOP)
        wait_for(lambda: store.status(run_id) is RunState.STOPPED, timeout=5)
    finally:
        worker.stop()
        thread.join(timeout=30)


def test_a_time_budget_ends_the_run(store):
    run_id = train(store, tiny_config(steps=100_000, eval_every=1000), budget_s=0.5)
    assert store.status(run_id) is RunState.FINISHED
    last_step = store.steps(run_id).step.max()
    assert 0 <= last_step < 100_000
    assert store.evals(run_id).step.max() == last_step  # the budget's end is evaluated like a last step


def test_response_std_uses_batch_statistics_and_leaves_running_statistics_alone():
    model = build_model(tiny_config().models[1])
    policy = DevicePolicy.resolve(tiny_config())
    x = torch.randn(16, 3, 32, 32) * 5 + 3  # far from the running statistics' N(0, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stds = Probe(model, policy).response_std(x.contiguous(memory_format=torch.channels_last))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # with batch statistics every BN output has std about |gamma| = 1, whatever the input's scale
    bn_layers = [i for i, info in enumerate(Probe(model, policy).layers) if info.response is not info.module]
    assert torch.allclose(stds[bn_layers], torch.ones(len(bn_layers)), atol=0.05)
    with batch_statistics(model):
        assert model.training and all(not m.track_running_stats for m in model.modules()
                                      if isinstance(m, torch.nn.BatchNorm2d))
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_running_out_of_memory_fails_the_run_with_what_to_change(store, monkeypatch):
    def out_of_memory(self, x, y):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(trainer_module.TrainStep, "forward_backward", out_of_memory)
    run_id = train(store, tiny_config())
    row = store.run(run_id)
    assert row["status"] == "failed"
    assert "out of memory" in row["error"] and "smaller batch" in row["error"]


def test_learning_rate_schedules():
    optim = OptimConfig(lr=0.1, warmup_epochs=2, schedule="cosine")
    assert learning_rate(0, 100, 10, optim) == pytest.approx(0.01)
    assert learning_rate(10, 100, 10, optim) == pytest.approx(0.055)
    assert learning_rate(20, 100, 10, optim) == pytest.approx(0.1)
    assert learning_rate(100, 100, 10, optim) == pytest.approx(0.0)
    step = OptimConfig(lr=0.1, schedule="step")
    assert [learning_rate(s, 100, 10, step) for s in (0, 49, 50, 75)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
