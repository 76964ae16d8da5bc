"""The job queue (explorer/jobs.py) on a real SQLite store: atomic claims under competing worker processes, fair
round-robin order over owners, queue caps, deduplication, leases that expire, owner keys, hosted-mode refusals and
queue positions."""

import multiprocessing
import re
import threading
import time
from dataclasses import replace

import pytest

from explorer import jobs
from explorer.config import Config, ModelConfig, OptimConfig
from explorer.memory import ResourceError, predict
from explorer.states import Control, RunState
from explorer.store import RunStore
from support import tiny_config as support_config

ALICE, BOB, CAROL = "alice-key", "bob-key", "carol-key"


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store:
        yield store


def tiny_config(seed: int = 0, **kwargs) -> Config:
    return replace(support_config(**kwargs), seed=seed)


def enqueue(store: RunStore, owner_key: str, seed: int) -> str:
    """A queued run of `owner_key` straight into the store (no estimate: the queue is what is tested)."""
    config = replace(tiny_config(models=("resnet8",)), seed=seed)
    run_id = store.create_run(config, models=[{"model": "resnet8", "idx": 0, "params": 1}],
                              owner=jobs.owner_of(owner_key), key_hash=jobs.key_hash(owner_key), device_kind="cpu",
                              control=str(Control.RUN), estimate_s=10.0 + seed)
    time.sleep(0.002)  # creation times are in milliseconds: keep them distinct, so age breaks ties
    return run_id


# --- claims ----------------------------------------------------------------------------------------------------
def claim_all(path: str, worker_id: str, start: multiprocessing.Event, out: multiprocessing.Queue) -> None:
    store = RunStore(path)
    start.wait()
    claimed = []
    while (taken := jobs.claim(store, worker_id, "cpu")) is not None:
        claimed.append(taken[0])
    out.put((worker_id, claimed))


def test_a_claim_is_atomic_under_four_competing_worker_processes(store):
    runs = [enqueue(store, (ALICE, BOB, CAROL)[i % 3], i) for i in range(20)]
    context = multiprocessing.get_context("fork")  # forked workers start in milliseconds, so they really compete
    start, out = context.Event(), context.Queue()
    workers = [context.Process(target=claim_all, args=(str(store.path), f"w{i}", start, out)) for i in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    results = dict(out.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    claimed = [run_id for ids in results.values() for run_id in ids]
    assert sorted(claimed) == sorted(runs)  # every run claimed exactly once
    for worker_id, ids in results.items():
        for run_id in ids:
            row = store.run(run_id)
            assert (row["status"], row["worker"]) == ("claimed", worker_id)
            assert row["lease_expires"] > time.time()


def test_claims_go_round_robin_over_owners(store):
    a1, a2, a3 = (enqueue(store, ALICE, i) for i in range(3))
    b1, b2 = (enqueue(store, BOB, i) for i in range(3, 5))
    c1 = enqueue(store, CAROL, 5)
    order = [jobs.claim(store, "w", "cpu")[0] for _ in range(6)]
    assert order == [a1, b1, c1, a2, b2, a3]
    assert jobs.claim(store, "w", "cpu") is None


def test_fair_order_counts_the_runs_an_owner_already_trains():
    rows = [("a1", "alice", "1"), ("a2", "alice", "2"), ("b1", "bob", "3"), ("c1", "carol", "4"), ("b2", "bob", "5")]
    assert jobs._fair_order(rows, {}) == ["a1", "b1", "c1", "a2", "b2"]
    assert jobs._fair_order(rows, {"alice": 1}) == ["b1", "c1", "a1", "b2", "a2"]
    assert jobs._fair_order([], {"alice": 3}) == []


def test_a_claim_takes_only_runs_of_its_device_kind(store):
    run_id = enqueue(store, ALICE, 0)
    assert jobs.claim(store, "gpu-worker", "cuda") is None
    assert jobs.claim(store, "cpu-worker", "cpu") == (run_id, False)
    assert jobs.claim(store, "cpu-worker", "cpu", run_id) is None  # a claimed run is not claimed again


# --- submitting -------------------------------------------------------------------------------------------------
def test_per_owner_and_global_caps_refuse_with_what_to_do(store, monkeypatch):
    monkeypatch.setenv("EXPLORER_MAX_QUEUED_PER_OWNER", "2")
    monkeypatch.setenv("EXPLORER_MAX_QUEUED", "3")
    for seed in range(2):
        jobs.submit(store, tiny_config(seed=seed), ALICE)
    with pytest.raises(jobs.JobRefused, match=r"you already have 2 runs waiting \(at most 2\)"):
        jobs.submit(store, tiny_config(seed=2), ALICE)
    jobs.submit(store, tiny_config(seed=3), BOB)
    with pytest.raises(jobs.JobRefused, match=r"the queue is full \(3 runs waiting\)"):
        jobs.submit(store, tiny_config(seed=4), CAROL)
    assert len(store.runs([RunState.QUEUED])) == 3
    jobs.claim(store, "w", "cpu")  # a run that starts frees a place
    jobs.submit(store, tiny_config(seed=4), CAROL)


def test_an_identical_request_attaches_to_the_run_and_a_different_seed_does_not(store):
    first = jobs.submit(store, tiny_config(), ALICE)
    assert not first.attached
    again = jobs.submit(store, replace(tiny_config(), name="another name"), BOB)  # the name is not the experiment
    assert (again.run_id, again.attached) == (first.run_id, True)
    other = jobs.submit(store, tiny_config(seed=1), ALICE)
    assert not other.attached and other.run_id != first.run_id
    fresh = jobs.submit(store, tiny_config(), ALICE, attach=False)
    assert not fresh.attached and fresh.run_id not in (first.run_id, other.run_id)
    assert len(store.runs()) == 3


def test_simultaneous_identical_requests_start_one_run(store, monkeypatch):
    import explorer.memory

    traced = explorer.memory.model_footprint

    def slow_trace(*args):  # a deep net traces for a while: requests overlap however long a submit takes
        time.sleep(0.1)
        return traced(*args)

    monkeypatch.setattr(explorer.memory, "model_footprint", slow_trace)
    config, results, failures = tiny_config(), [], []
    start = threading.Barrier(6)

    def press() -> None:
        try:
            start.wait()
            results.append(jobs.submit(store, config, f"student-{threading.get_ident()}"))
        except Exception as error:  # reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=press) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len({r.run_id for r in results}) == 1 and sum(not r.attached for r in results) == 1
    assert len(store.runs()) == 1


def test_a_failed_or_stopped_run_is_not_attached_to(store):
    first = jobs.submit(store, tiny_config(), ALICE)
    jobs.claim(store, "w1", "cpu")
    store.set_status(first.run_id, RunState.FAILED, error="boom")
    second = jobs.submit(store, tiny_config(), ALICE)
    assert not second.attached and second.run_id != first.run_id


# --- leases ------------------------------------------------------------------------------------------------------
def test_a_lapsed_lease_is_reaped_as_interrupted_keeping_its_records(store, monkeypatch):
    monkeypatch.setattr(jobs, "LEASE_SECONDS", 0.2)
    run_id = enqueue(store, ALICE, 0)
    assert jobs.claim(store, "w1", "cpu") == (run_id, False)
    store.set_status(run_id, RunState.RUNNING)
    store.append(run_id, steps=[dict(model="resnet8", step=s, epoch=0.1, loss=2.0, train_err=90.0, lr=0.1, wall=0.1)
                                for s in range(3)])
    assert jobs.renew(store, run_id, "w1") is Control.RUN
    assert jobs.renew(store, run_id, "someone-else") is None  # only the holder renews
    assert jobs.reap(store) == []  # renewed: not lapsed
    time.sleep(0.3)
    assert jobs.reap(store) == [run_id]
    row = store.run(run_id)
    assert row["status"] == "interrupted" and row["worker"] is None and "stopped answering" in row["error"]
    assert store.steps(run_id).step.tolist() == [0, 1, 2]
    assert jobs.renew(store, run_id, "w1") is None  # the late worker learns it lost the run
    assert jobs.reap(store) == []


def test_renewal_carries_the_owners_controls(store):
    run_id = enqueue(store, ALICE, 0)
    jobs.claim(store, "w1", "cpu")
    jobs.request(store, run_id, ALICE, Control.PAUSE)
    assert jobs.renew(store, run_id, "w1") is Control.PAUSE
    jobs.request(store, run_id, ALICE, Control.RUN)
    assert jobs.renew(store, run_id, "w1") is Control.RUN


# --- owners --------------------------------------------------------------------------------------------------------
def test_controls_need_the_owners_key(store):
    run_id = enqueue(store, ALICE, 0)
    jobs.claim(store, "w1", "cpu")
    for key in (BOB, None, "", jobs.key_hash(ALICE)):
        with pytest.raises(jobs.NotOwner, match="owner's link"):
            jobs.request(store, run_id, key, Control.STOP)
    jobs.request(store, run_id, ALICE, Control.STOP)
    assert store.run(run_id)["control"] == "stop"
    store.set_status(run_id, RunState.STOPPED)
    with pytest.raises(jobs.NotOwner):
        jobs.requeue(store, run_id, BOB)
    with pytest.raises(jobs.JobRefused, match="nothing to pause"):
        jobs.request(store, run_id, ALICE, Control.PAUSE)
    jobs.requeue(store, run_id, ALICE)
    row = store.run(run_id)
    assert (row["status"], row["control"]) == ("queued", "run")
    assert jobs.claim(store, "w2", "cpu") == (run_id, False)  # never started, so nothing to resume


def test_stopping_a_queued_run_cancels_it_and_only_stopped_runs_requeue(store):
    run_id = enqueue(store, ALICE, 0)
    with pytest.raises(jobs.JobRefused, match="only stopped or interrupted"):
        jobs.requeue(store, run_id, ALICE)
    jobs.request(store, run_id, ALICE, Control.STOP)
    assert store.status(run_id) is RunState.CANCELLED
    assert jobs.claim(store, "w", "cpu") is None
    assert store.run(run_id)["key_hash"] != ALICE  # the store keeps a hash of the key, never the key


# --- hosted mode ---------------------------------------------------------------------------------------------------
def test_hosted_mode_refuses_a_job_longer_than_its_cap(store, monkeypatch):
    monkeypatch.setenv("EXPLORER_HOSTED", "1")
    monkeypatch.setenv("EXPLORER_MAX_JOB_SECONDS", "120")
    long = Config(models=(ModelConfig.parse("resnet110"),), optim=OptimConfig(steps=100_000), device="cpu")
    with pytest.raises(jobs.JobRefused, match=r"this run would take about .*; this server runs jobs of up to 2 min"):
        jobs.submit(store, long, ALICE)
    assert store.runs().empty
    jobs.submit(store, tiny_config(), ALICE)  # a short one is queued


def test_a_job_too_big_for_the_memory_limit_is_refused_with_the_figure(store, monkeypatch):
    monkeypatch.setenv("EXPLORER_HOSTED", "1")
    monkeypatch.setenv("EXPLORER_MEMORY_LIMIT", "50MB")
    with pytest.raises(ResourceError, match=r"needs about \d+\.\d MB .* more than the 50.0 MB this server allows"):
        jobs.submit(store, tiny_config(), ALICE)  # not even the process fits: fewer or smaller models is the advice
    config = Config(models=(ModelConfig.parse("resnet110"),), optim=OptimConfig(steps=10, batch_size=2048),
                    device="cpu", precision="fp32")
    limit = predict(replace(config, optim=replace(config.optim, batch_size=256)), "cpu", "fp32").total
    monkeypatch.setenv("EXPLORER_MEMORY_LIMIT", str(limit))
    with pytest.raises(ResourceError) as refused:
        jobs.submit(store, config, ALICE)
    message = str(refused.value)
    assert f"needs about {predict(config, 'cpu', 'fp32').total / 1e9:.1f} GB" in message
    fits = int(re.search(r"use batch ≤ (\d+)", message)[1])
    assert 255 <= fits <= 256  # the batch at which the prediction meets the limit
    assert store.runs().empty


# --- the waiting page ----------------------------------------------------------------------------------------------
def test_queue_places_count_1_to_n_in_fair_order(store):
    runs = {key: [enqueue(store, key, 10 * i + k) for k in range(n)]
            for i, (key, n) in enumerate(((ALICE, 3), (BOB, 1), (CAROL, 2)))}
    fair = [runs[ALICE][0], runs[BOB][0], runs[CAROL][0], runs[ALICE][1], runs[CAROL][1], runs[ALICE][2]]
    places = {run_id: jobs.queue_place(store, run_id) for run_id in fair}
    assert [places[run_id].position for run_id in fair] == [1, 2, 3, 4, 5, 6]
    ahead = [places[run_id].ahead_seconds for run_id in fair]
    assert ahead[0] == 0 and ahead == sorted(ahead) and len(set(ahead)) == 6
    assert ahead[1] == store.run(fair[0])["estimate_s"]  # the one run ahead, as estimated
    jobs.claim(store, "w", "cpu")
    assert jobs.queue_place(store, fair[0]) is None  # training: no longer waiting
    assert jobs.queue_place(store, fair[1]).position == 1
