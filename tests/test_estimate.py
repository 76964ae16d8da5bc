"""Estimates a visitor can trust: priced from a calibration of as many CPU threads as the run will use, corrected by
the runs this machine finished, and the same on every page load until another run finishes."""

from __future__ import annotations

import json
import socket
from dataclasses import replace

import pytest
import torch

from explorer import jobs
from explorer.config import Config, DataConfig, ModelConfig, OptimConfig
from explorer.device import DevicePolicy, cpu_name, default_threads
from explorer.estimate import DEFAULT_CALIBRATIONS, MIN_MEASURED_S, Calibration, estimate, learned
from explorer.states import RunState
from explorer.store import RunStore

CONFIG = Config(models=(ModelConfig.parse("resnet8-w0.25"), ModelConfig.parse("plain8-w0.25")),
                data=DataConfig(subset=256, test_subset=64), optim=OptimConfig(batch_size=32, epochs=1000),
                device="cpu", precision="fp32")


def calibration_row(threads: int, gmac_s: float) -> dict:
    return {"machine": socket.gethostname(), "device": cpu_name(threads), "precision": "fp32", "torch_version": "x",
            "measured": "2026-12-01T00:00:00+00:00", "step_s": 2e-3, "layer_s": 4e-4, "gmac_s": gmac_s,
            "memory_bytes": None}


def finish_one_thread_run(store: RunStore, seconds: float) -> None:
    """A one-thread run of CONFIG submitted to `store` and finished by a worker here in `seconds` of training."""
    run_id = jobs.submit(store, replace(CONFIG, threads=1), "owner-key-000000000", attach=False).run_id
    store.claim(run_id, "w-1", lease_s=60)
    store.set_status(run_id, RunState.RUNNING)
    store.set_run_facts(run_id, device=cpu_name(1))

    class Done:
        def to_json(self) -> str:
            return json.dumps({"step": 8000, "total_steps": 8000, "elapsed_s": seconds})

    store.set_progress(run_id, Done())
    store.set_status(run_id, RunState.FINISHED)


def test_an_estimate_learns_from_the_runs_this_machine_finished():
    timed = DEFAULT_CALIBRATIONS[("cpu", "fp32")]
    predicted = estimate(CONFIG, timed).seconds
    assert predicted > MIN_MEASURED_S  # a run long enough to learn from
    assert learned(timed, []) == timed
    slow = learned(timed, [(CONFIG, 2 * predicted), (CONFIG, 2.2 * predicted), (CONFIG, 1.8 * predicted)])
    assert slow.correction == pytest.approx(2.0) and slow.learned_from == 3
    assert estimate(CONFIG, slow).seconds == pytest.approx(2 * predicted)
    assert "learned from the last 3 runs here" in estimate(CONFIG, replace(slow, measured="today")).summary()
    short = replace(CONFIG, optim=replace(CONFIG.optim, epochs=0.1))
    assert learned(timed, [(short, MIN_MEASURED_S / 2)]).learned_from == 0  # start-up, not pace
    assert learned(timed, [(CONFIG, 100 * predicted)]).correction == 4.0  # one odd run cannot make it absurd


def test_the_calibration_matches_the_runs_thread_count_and_learns_from_finished_runs(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.save_calibration(calibration_row(1, gmac_s=0.04))
    store.save_calibration(calibration_row(2, gmac_s=0.02))
    one, all_threads = (jobs.assess(replace(CONFIG, threads=n), store)[1].seconds for n in (1, 0))
    rows = {n: Calibration(**calibration_row(n, gmac)) for n, gmac in ((1, 0.04), (2, 0.02))}
    assert one == pytest.approx(estimate(CONFIG, rows[1]).seconds)  # the one-thread row, not the newest
    assert all_threads == pytest.approx(estimate(CONFIG, rows[2]).seconds) and one > all_threads
    assert [jobs.assess(replace(CONFIG, threads=1), store)[1].seconds for _ in range(3)] == [one] * 3

    finish_one_thread_run(store, 3 * one)
    assert jobs.assess(replace(CONFIG, threads=1), store)[1].seconds == pytest.approx(3 * one, rel=1e-6)
    assert jobs.assess(replace(CONFIG, threads=0), store)[1].seconds == pytest.approx(all_threads)  # another device


def test_a_fresh_server_learns_from_its_first_run_before_any_worker_timed_it(tmp_path):
    """No calibration yet (a worker busy from its first minute never idles to time the machine): the default stands
    in under the run's own device name, so the first finished run corrects the next estimate."""
    store = RunStore(tmp_path / "runs.sqlite")
    guess = jobs.assess(replace(CONFIG, threads=1), store)[1]
    assert not guess.calibrated and "uncalibrated" in guess.summary()
    finish_one_thread_run(store, 2.5 * guess.seconds)
    after = jobs.assess(replace(CONFIG, threads=1), store)[1]
    assert after.seconds == pytest.approx(2.5 * guess.seconds, rel=1e-6)
    assert "learned from the last 1 run here" in after.summary()


def test_a_policy_of_all_threads_after_a_one_thread_run_uses_all_of_them_again():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        default = default_threads()  # read once per process, before a policy changes it
        one = DevicePolicy.resolve(replace(CONFIG, threads=1))
        assert one.name == cpu_name(1)  # named before it is applied: the run's device, not the process's count
        one.apply()
        assert torch.get_num_threads() == 1
        DevicePolicy.resolve(replace(CONFIG, threads=0)).apply()
        assert torch.get_num_threads() == default
    finally:
        torch.set_num_threads(before)
