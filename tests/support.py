"""Small helpers the tests share: tiny configurations and training a run the way the CLI does (submit, then a
local worker), without subprocesses."""

from __future__ import annotations

import time
from typing import Callable

from explorer import jobs
from explorer.config import Config, DataConfig, ModelConfig, OptimConfig
from explorer.states import RunState
from explorer.store import RunStore
from explorer.worker import Worker

TINY_DATA = DataConfig(source="synthetic", subset=64, test_subset=32, seed=1)
OWNER = "test-owner-key"


def tiny_config(models=("plain8", "resnet8"), steps=6, eval_every=3, probe_every=2, **optim) -> Config:
    return Config(models=tuple(ModelConfig.parse(m) for m in models), data=TINY_DATA,
                  optim=OptimConfig(batch_size=16, steps=steps, **optim), probe_every=probe_every,
                  eval_every=eval_every, eval_images=32, device="cpu", threads=1)


def submit(store: RunStore, config: Config, **kwargs) -> str:
    return jobs.submit(store, config, kwargs.pop("owner", OWNER), attach=kwargs.pop("attach", False),
                       **kwargs).run_id


def train(store: RunStore, config: Config, **kwargs) -> str:
    """Submit `config` and train it here to the end; returns the run id."""
    run_id = submit(store, config, **kwargs)
    Worker(store, "cpu").run_one(run_id)
    return run_id


def store_finished_run(store: RunStore, errors: dict[str, tuple[float, float]], diverged: str = "",
                       config: Config | None = None) -> str:
    """A finished run with one final evaluation per model: label -> (training error, test error); `config` (its
    models must be those of `errors`) says how the run was trained."""
    config = config or Config(models=tuple(ModelConfig.parse(label) for label in errors), device="cpu")
    run_id = store.create_run(config, device="cpu", data_source="test",
                              models=[dict(model=label, idx=i, params=1) for i, label in enumerate(errors)])
    store.append(run_id, evals=[dict(model=label, step=10, epoch=1.0, train_loss=1.0, train_err=train,
                                     test_loss=1.0, test_err=test, wall=1.0)
                                for label, (train, test) in errors.items()])
    for label in errors:
        store.set_model_status(run_id, label, "diverged" if label == diverged else "finished")
    return run_id


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


def status(store: RunStore, run_id: str) -> RunState:
    return store.status(run_id)


def tiny_sweep(name: str = "tiny sweep", families=("plain", "resnet"), depths=(8, 14), seeds: int = 2,
               steps: int = 4, **grid):
    """A sweep of one-model members on `TINY_DATA`: families × depths × `seeds`, `steps` steps each, no probes."""
    from explorer.sweep import SweepSpec

    return SweepSpec(name, base=tiny_config(models=("resnet8",), steps=steps, eval_every=2, probe_every=0),
                     grid={"family": list(families), "depth": list(depths), **grid}, seeds=seeds)
