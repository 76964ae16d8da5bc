"""Workers that die, are interrupted or lose their run: a worker process killed with SIGKILL mid-run leaves its run to
be reaped as interrupted with every flushed record kept, and a fresh worker resumes it to exactly the records of an
uninterrupted run; Ctrl-C on `python -m explorer train` stops the run cleanly (exit 130, resumable) and `resume`
finishes it; a worker whose lease was taken writes nothing more."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from explorer import cli, jobs
from explorer import worker as worker_module
from explorer.checkpoints import checkpoint_path
from explorer.states import RunState
from explorer.store import RunStore
from explorer.worker import Worker
from support import OWNER, submit, tiny_config, train, wait_for

REPO = Path(__file__).resolve().parent.parent
CONFIG = tiny_config(models=("resnet8",), steps=120, eval_every=20, probe_every=10)
RECORD_COLUMNS = {"steps": ["model", "step", "epoch", "loss", "train_err", "lr"],
                  "evals": ["model", "step", "epoch", "train_loss", "train_err", "test_loss", "test_err",
                            "test_images"],
                  "probes": ["model", "step", "layer", "layer_name", "grad_norm", "weight_norm", "update_ratio",
                             "response_std"]}


def records(store: RunStore, run_id: str) -> dict[str, pd.DataFrame]:
    """Every record of a run except wall times (which differ between any two runs)."""
    return {table: getattr(store, table)(run_id)[columns].reset_index(drop=True)
            for table, columns in RECORD_COLUMNS.items()}


def assert_same_records(got: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    for table in RECORD_COLUMNS:
        pd.testing.assert_frame_equal(got[table], expected[table], obj=table)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The records of `CONFIG` trained in one go, to compare interrupted runs with."""
    store = RunStore(tmp_path_factory.mktemp("uninterrupted") / "runs.sqlite")
    run_id = train(store, CONFIG)
    assert store.status(run_id) is RunState.FINISHED
    return records(store, run_id)


def explorer_process(store: Path, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "EXPLORER_CHECKPOINT_SECONDS": "1"}
    return subprocess.Popen([sys.executable, "-m", "explorer", "--store", str(store), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_while_alive(process: subprocess.Popen, condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the process ended early ({process.returncode}): {process.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_a_killed_worker_process_is_reaped_and_its_run_resumes_to_the_uninterrupted_records(tmp_path, uninterrupted):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    run_id = submit(store, CONFIG)
    worker = explorer_process(path, "worker", "--device", "cpu")
    try:
        wait_while_alive(worker, lambda: store.latest_step(run_id) >= 5 and checkpoint_path(store, run_id).exists())
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        worker.kill()
        worker.communicate()
    before = records(store, run_id)
    assert len(before["steps"]) > 0 and store.status(run_id) is RunState.RUNNING  # nobody said it ended

    killed = time.monotonic()
    wait_for(lambda: run_id in jobs.reap(store) or store.status(run_id) is RunState.INTERRUPTED, timeout=10)
    assert time.monotonic() - killed < 10
    assert store.status(run_id) is RunState.INTERRUPTED
    assert_same_records(records(store, run_id), before)  # every row recorded before the kill is kept
    assert store.latest_step(run_id) < CONFIG.optim.steps - 1

    jobs.requeue(store, run_id, OWNER)
    assert Worker(store, "cpu").run_one() == (run_id, RunState.FINISHED)
    assert_same_records(records(store, run_id), uninterrupted)


def test_ctrl_c_on_train_stops_the_run_resumably_and_resume_finishes_it(tmp_path, capsys, uninterrupted):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    train_process = explorer_process(path, "train", "--models", "resnet8", "--data", "synthetic", "--subset", "64",
                                     "--test", "32", "--data-seed", "1", "--batch", "16", "--steps", "120",
                                     "--eval", "20", "--probe", "10", "--eval-images", "32", "--device", "cpu",
                                     "--threads", "1")
    try:
        wait_while_alive(train_process, lambda: len(store.runs()) == 1 and
                         store.latest_step(store.runs().run_id[0]) >= 3)
        run_id = store.runs().run_id[0]
        assert store.config(run_id) == CONFIG
        interrupted = time.monotonic()
        train_process.send_signal(signal.SIGINT)
        _, stderr = train_process.communicate(timeout=15)
    finally:
        train_process.kill()
    assert train_process.returncode == 130
    assert time.monotonic() - interrupted < 10
    assert f"resume with python -m explorer resume {run_id}" in stderr and "Traceback" not in stderr
    assert store.status(run_id) is RunState.STOPPED
    assert checkpoint_path(store, run_id).exists()
    assert store.latest_step(run_id) < CONFIG.optim.steps - 1

    assert cli.main(["--store", str(path), "resume", run_id]) == 0
    assert capsys.readouterr().out.strip() == run_id
    assert store.status(run_id) is RunState.FINISHED
    assert_same_records(records(store, run_id), uninterrupted)


def test_a_worker_that_lost_its_lease_writes_nothing_more(tmp_path, monkeypatch, uninterrupted):
    monkeypatch.setattr(worker_module, "RENEW_SECONDS", 0.05)
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = submit(store, CONFIG)
    late = Worker(store, "cpu")
    thread = threading.Thread(target=late.run_one, args=(run_id,))
    thread.start()
    try:
        wait_for(lambda: store.latest_step(run_id) >= 10)
        with sqlite3.connect(store.path, timeout=30) as conn:  # the machine stalled: its lease lapsed and the run was reaped
            conn.execute("UPDATE runs SET lease_expires = 0 WHERE run_id = ?", (run_id,))
        assert jobs.reap(store) == [run_id]
        reaped = records(store, run_id)
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        late.stop()
        thread.join(timeout=30)
    assert store.status(run_id) is RunState.INTERRUPTED  # not stopped or finished by the late worker
    assert "stopped answering" in store.run(run_id)["error"]
    after = records(store, run_id)
    for table in RECORD_COLUMNS:  # at most the rows of a flush already under way when the lease was taken
        assert len(after[table]) - len(reaped[table]) <= len(uninterrupted[table]) // 2
    assert set(store.models(run_id).status) == {"training"}

    jobs.requeue(store, run_id, OWNER)  # whatever the late worker saved, the run resumes to the same records
    assert Worker(store, "cpu").run_one() == (run_id, RunState.FINISHED)
    assert_same_records(records(store, run_id), uninterrupted)


def test_a_worker_calibrating_for_minutes_stays_in_the_registry(tmp_path, monkeypatch):
    """A calibration outlasts `jobs.WORKER_STALE_SECONDS`: the worker must keep answering, or `jobs.reap` forgets it
    and `live_workers` stops counting a worker that still trains (found with two compose workers)."""
    store = RunStore(tmp_path / "runs.sqlite")
    worker = Worker(store, "cpu")
    seen = []

    def minutes_long_calibration(policy, interrupted):
        with sqlite3.connect(store.path) as conn:  # as if the calibration had already run for ten minutes
            conn.execute("UPDATE workers SET heartbeat = heartbeat - 600 WHERE worker_id = ?", (worker.worker_id,))
        conn.close()
        seen.append(interrupted())  # between two reference steps
        jobs.reap(store)
        seen.append([w["worker_id"] for w in jobs.live_workers(store)])
        worker.stop()
        return None

    monkeypatch.setattr(worker_module, "calibrate", minutes_long_calibration)
    monkeypatch.setattr(worker_module, "CALIBRATE_AFTER_IDLE_SECONDS", 0.0)
    worker.serve(idle_exit=30)
    assert seen == [False, [worker.worker_id]]
