"""Sweeps on Ray, on a local two-CPU instance: every member's records arrive in the head's store, a member whose
worker process is killed is retried or ends failed with the reason, stopping cancels the tasks, and Ray and the
local backend write the same records for the same seeds. Skipped where Ray (an optional extra) is not installed."""

import os
import signal

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -r requirements-ray.txt")

from explorer import sweep  # noqa: E402
from explorer.states import RunState  # noqa: E402
from explorer.sweep.coordinator import NAMESPACE, coordinator_name  # noqa: E402
from explorer.store import RunStore  # noqa: E402
from explorer.worker import Worker  # noqa: E402
from support import OWNER, tiny_sweep, wait_for  # noqa: E402

ONE_ATTEMPT = sweep.RayOptions(max_retries=0)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away local instance needs no token
    ray.init(num_cpus=2, include_dashboard=False, namespace="explorer-tests", log_to_driver=False)
    yield
    ray.shutdown()


def _records(store: RunStore, sweep_id: str) -> dict[tuple[str, int], list[tuple]]:
    """(model, seed) -> its step rows (step, loss, train_err)."""
    records = {}
    for member in sweep.member_rows(store, sweep_id):
        config = store.config(member["run_id"])
        steps = store.steps(member["run_id"])
        records[(config.models[0].label, config.seed)] = list(steps[["step", "loss", "train_err"]].itertuples(
            index=False, name=None))
    return records


def _coordinator_gone(sweep_id: str) -> bool:
    """Whether the sweep's coordinator has exited, which it does once every task of the sweep has ended."""
    try:
        ray.get_actor(coordinator_name(sweep_id), namespace=NAMESPACE)
    except ValueError:
        return True
    return False


def _worker_pid(store: RunStore, run_id: str) -> int | None:
    """The pid of the Ray worker process training `run_id` (the coordinator names it ray:HOST:PID)."""
    worker = store.run(run_id)["worker"] or ""
    return int(worker.rsplit(":", 1)[1]) if worker.startswith("ray:") else None


def test_every_members_records_arrive_in_the_heads_store_as_the_local_backend_writes_them(tmp_path):
    spec = tiny_sweep()
    on_ray = RunStore(tmp_path / "ray.sqlite")
    sweep_id = sweep.start(on_ray, spec, OWNER, backend="ray")
    assert all(m["status"] != "queued" for m in sweep.member_rows(on_ray, sweep_id))  # never the local queue's
    assert Worker(on_ray, "cpu").run_one() is None
    final = sweep.wait(on_ray, sweep_id, timeout=300)
    assert final.state is RunState.FINISHED and final.counts == {"finished": 8}
    for member in sweep.member_rows(on_ray, sweep_id):
        run = on_ray.run(member["run_id"])
        assert run["worker"] is None and run["device"].startswith("cpu")
        assert len(on_ray.evals(member["run_id"])) == 2
    ray_records = _records(on_ray, sweep_id)
    assert len(ray_records) == 8 and all(len(rows) == 4 for rows in ray_records.values())
    local = RunStore(tmp_path / "local.sqlite")
    local_id = sweep.start(local, spec, OWNER)
    worker = Worker(local, "cpu")
    for member in sweep.member_rows(local, local_id)[1::3]:  # three of the eight: both families, both seeds
        worker.run_one(member["run_id"])
    local_records = {key: rows for key, rows in _records(local, local_id).items() if rows}
    assert len(local_records) == 3
    assert local_records == {key: ray_records[key] for key in local_records}


def test_stopping_a_ray_sweep_cancels_its_tasks_and_keeps_what_was_trained(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    spec = tiny_sweep("stopped", families=("plain",), depths=(8,), seeds=3, steps=100_000)
    sweep_id = sweep.start(store, spec, OWNER, backend="ray")
    members = [m["run_id"] for m in sweep.member_rows(store, sweep_id)]
    wait_for(lambda: any(store.latest_step(r) >= 0 for r in members), timeout=180)
    assert sweep.stop(store, sweep_id, OWNER) == 3
    final = sweep.wait(store, sweep_id, timeout=120)
    assert final.state is RunState.STOPPED
    states = {store.status(r) for r in members}
    assert states <= {RunState.STOPPED, RunState.CANCELLED} and RunState.STOPPED in states
    trained = [r for r in members if store.status(r) is RunState.STOPPED]
    assert all(store.latest_step(r) < 100_000 - 1 for r in trained)
    assert any(store.latest_step(r) >= 0 for r in trained)
    wait_for(lambda: _coordinator_gone(sweep_id), timeout=60)  # every task ended: none trains on unseen


def test_a_member_whose_worker_process_is_killed_ends_failed_with_the_reason(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    spec = tiny_sweep("killed", families=("plain",), depths=(8,), seeds=1, steps=3000)
    sweep_id = sweep.start(store, spec, OWNER, backend="ray", ray_options=ONE_ATTEMPT)
    (run_id,) = (m["run_id"] for m in sweep.member_rows(store, sweep_id))
    wait_for(lambda: _worker_pid(store, run_id) is not None, timeout=180)
    os.kill(_worker_pid(store, run_id), signal.SIGKILL)
    final = sweep.wait(store, sweep_id, timeout=300)
    run = store.run(run_id)
    assert final.state is RunState.FAILED and run["status"] == "failed"
    wait_for(lambda: _coordinator_gone(sweep_id), timeout=60)
    assert "its Ray worker died" in run["error"] and "1 attempt" in run["error"]
    assert run_id in final.error


def test_a_killed_member_is_retried_from_the_start(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    spec = tiny_sweep("retried", families=("plain",), depths=(8,), seeds=1, steps=100)
    sweep_id = sweep.start(store, spec, OWNER, backend="ray", ray_options=sweep.RayOptions(max_retries=1))
    (run_id,) = (m["run_id"] for m in sweep.member_rows(store, sweep_id))
    wait_for(lambda: _worker_pid(store, run_id) is not None, timeout=180)
    first = _worker_pid(store, run_id)
    os.kill(first, signal.SIGKILL)
    final = sweep.wait(store, sweep_id, timeout=300)
    assert final.state is RunState.FINISHED
    assert sorted(store.steps(run_id)["step"]) == list(range(100))  # every step once: the retry started over
    assert store.run(run_id)["hostname"]
