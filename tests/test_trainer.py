import math
import time

import pytest
import torch

import explorer.trainer as trainer_module
from explorer import jobs
from explorer.config import Config, DataConfig, ModelConfig, OptimConfig
from explorer.models import build_model
from explorer.store import RunStore
from explorer.trainer import Trainer, learning_rate

TINY_DATA = DataConfig(source="synthetic", subset=64, test_subset=32, seed=1)


def tiny_config(models=("plain8", "resnet8"), steps=6, **optim) -> Config:
    return Config(models=tuple(ModelConfig.parse(m) for m in models), data=TINY_DATA,
                  optim=OptimConfig(batch_size=16, steps=steps, **optim), probe_every=2, eval_every=3,
                  device="cpu", threads=1)


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def test_lockstep_run_records_steps_evals_and_probes(store):
    trainer = Trainer(tiny_config(), store)
    run_id = trainer.run()
    assert trainer.state == "finished" and store.run(run_id)["status"] == "finished"
    steps = store.steps(run_id)
    for label in ("plain8", "resnet8"):
        rows = steps[steps.model == label]
        assert rows.step.tolist() == list(range(6))
        assert rows.loss.map(math.isfinite).all() and rows.train_err.between(0, 100).all()
    evals = store.evals(run_id)
    assert sorted(evals[evals.model == "resnet8"].step) == [2, 5]  # after the 3rd and 6th update
    assert evals.test_err.between(0, 100).all()
    probes = store.probes(run_id)
    for label, model in trainer.models.items():
        rows = probes[probes.model == label]
        assert sorted(rows.step.unique()) == [0, 2, 4]
        layer_names = [info.name for info in model.layers()]
        assert rows[rows.step == 0].sort_values("layer").layer_name.tolist() == layer_names
        assert (rows.grad_norm > 0).all() and (rows.response_std > 0).all()
        assert (rows.update_ratio > 0).all() and (rows.update_ratio < 10).all()
    assert set(store.models(run_id).status) == {"finished"}


def test_models_see_identical_batches_whatever_their_company(store):
    alone = Trainer(tiny_config(models=("resnet8",)), store)
    together = Trainer(tiny_config(models=("plain8", "vgg11", "resnet8")), store)
    losses = [store.steps(t.run()).query("model == 'resnet8'").loss.tolist() for t in (alone, together)]
    assert losses[0] == losses[1]


def test_same_config_and_seed_give_identical_records(store):
    runs = [Trainer(tiny_config(), store).run() for _ in range(2)]
    first, second = (store.steps(r)[["model", "step", "loss", "train_err", "lr"]] for r in runs)
    assert first.equals(second)
    probes = [store.probes(r)[["model", "step", "layer", "grad_norm", "response_std"]] for r in runs]
    assert probes[0].equals(probes[1])


def test_a_diverging_model_is_dropped_and_its_twins_go_on(store, monkeypatch):
    def poisoned(cfg, **kwargs):
        model = build_model(cfg, **kwargs)
        if cfg.family == "plain":
            with torch.no_grad():
                model.layers()[-1].module.weight.fill_(float("inf"))
        return model

    monkeypatch.setattr(trainer_module, "build_model", poisoned)
    trainer = Trainer(tiny_config(steps=8), store)
    run_id = trainer.run()
    models = store.models(run_id).set_index("model")
    assert models.loc["plain8", "status"] == "diverged" and models.loc["plain8", "diverged_step"] == 0
    assert models.loc["resnet8", "status"] == "finished"
    steps = store.steps(run_id)
    assert steps[steps.model == "resnet8"].step.max() == 7
    assert trainer.progress().diverged == ["plain8"]


def test_absurd_learning_rate_diverges(store):
    trainer = Trainer(tiny_config(models=("plain14-nobn",), steps=20, lr=100.0), store)
    run_id = trainer.run()
    assert store.models(run_id).status.tolist() == ["diverged"]


def test_pause_resume_and_stop_from_another_thread(store):
    trainer = Trainer(tiny_config(steps=100_000), store)
    run_id = trainer.start()
    _wait_for(lambda: trainer.progress().step >= 2)
    trainer.pause()
    _wait_for(lambda: trainer.state == "paused")
    paused_at = trainer.progress().step
    time.sleep(0.3)
    assert trainer.progress().step == paused_at
    assert store.run(run_id)["status"] == "paused"
    trainer.resume()
    _wait_for(lambda: trainer.progress().step > paused_at)
    trainer.stop()
    trainer.join(timeout=30)
    assert trainer.state == "stopped" and store.run(run_id)["status"] == "stopped"
    assert store.steps(run_id).step.max() >= paused_at


def test_a_time_budget_ends_the_run(store):
    trainer = Trainer(tiny_config(steps=100_000), store, max_seconds=0.5)
    run_id = trainer.run()
    assert trainer.state == "finished"
    last_step = store.steps(run_id).step.max()
    assert 0 <= last_step < 100_000
    assert store.evals(run_id).step.max() == last_step  # the budget's end is evaluated like a last step


def test_jobs_refuse_a_second_run_and_reattach_by_id(store):
    first = jobs.start_job(tiny_config(steps=100_000), store)
    try:
        with pytest.raises(jobs.JobBusy, match="still training"):
            jobs.start_job(tiny_config(), store)
        assert jobs.get_job(first.run_id) is first and jobs.active_job() is first
    finally:
        first.stop()
        first.join(timeout=30)
    assert jobs.active_job() is None


def test_learning_rate_schedules():
    optim = OptimConfig(lr=0.1, warmup_epochs=2, schedule="cosine")
    assert learning_rate(0, 100, 10, optim) == pytest.approx(0.01)
    assert learning_rate(10, 100, 10, optim) == pytest.approx(0.055)
    assert learning_rate(20, 100, 10, optim) == pytest.approx(0.1)
    assert learning_rate(100, 100, 10, optim) == pytest.approx(0.0)
    step = OptimConfig(lr=0.1, schedule="step")
    assert [learning_rate(s, 100, 10, step) for s in (0, 49, 50, 75)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)
