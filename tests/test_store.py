import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorer.config import Config, DataConfig, ModelConfig, OptimConfig
from explorer.states import ModelState, RunState
from explorer.store import COLUMNS, RUN_TABLES, SCHEMA_VERSION, RunStore, StoreError, valid_run_id

REPO = Path(__file__).resolve().parent.parent
CONFIG = Config(models=(ModelConfig.parse("plain8"), ModelConfig.parse("resnet8")),
                data=DataConfig(subset=64, test_subset=32), optim=OptimConfig(steps=10, batch_size=16),
                device="cpu", name="tiny")


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store:
        yield store


def new_run(store: RunStore) -> str:
    return store.create_run(CONFIG, device="cpu", data_source="synthetic (test)", preset="tiny-preset",
                            models=[{"model": label, "idx": i, "params": 1000 + i} for i, label in
                                    enumerate(CONFIG.labels)])


def step_rows(model: str, steps: range) -> list[dict]:
    return [dict(model=model, step=s, epoch=s / 4, loss=2.0 - s / 100, train_err=80.0 - s, lr=0.1, wall=0.5 * s)
            for s in steps]


def eval_rows(model: str, steps: range) -> list[dict]:
    return [dict(model=model, step=s, epoch=s / 4, train_loss=1.5, train_err=60.0, test_loss=1.75,
                 test_err=62.5 + s, test_images=32, wall=0.5 * s) for s in steps]


def probe_rows(model: str, step: int, layers: int = 7) -> list[dict]:
    return [dict(model=model, step=step, layer=k, layer_name=f"layer{k}.conv", grad_norm=0.25 * k,
                 weight_norm=1.0 + k, update_ratio=1e-3, response_std=0.5) for k in range(layers)]


def filled_run(store: RunStore) -> str:
    run_id = new_run(store)
    store.append(run_id,
                 steps=step_rows("plain8", range(8)) + step_rows("resnet8", range(8)),
                 evals=eval_rows("plain8", range(4, 9, 4)) + eval_rows("resnet8", range(4, 9, 4)),
                 probes=probe_rows("plain8", 0) + probe_rows("resnet8", 0) + probe_rows("resnet8", 4),
                 lesions=[dict(model="resnet8", block=b, block_name=f"stage1.{b}", test_err=70.0 + b)
                          for b in range(3)])
    return run_id


def test_create_append_read_round_trip(store):
    run_id = filled_run(store)
    assert run_id.startswith("r") and len(run_id) == len("r20251123-112000-a3f9")
    run = store.run(run_id)
    assert run["status"] == RunState.QUEUED and run["name"] == "tiny" and run["preset"] == "tiny-preset"
    assert run["device"] == "cpu" and run["data_source"] == "synthetic (test)"
    assert run["torch_version"] and run["code_version"] and run["hostname"]
    assert store.config(run_id) == CONFIG

    models = store.models(run_id)
    assert models[["model", "idx", "params", "status"]].values.tolist() == [
        ["plain8", 0, 1000, ModelState.TRAINING], ["resnet8", 1, 1001, ModelState.TRAINING]]
    assert models.diverged_step.isna().all()

    steps = store.steps(run_id, model="resnet8")
    assert steps.step.tolist() == list(range(8))
    assert steps.loss.tolist() == [row["loss"] for row in step_rows("resnet8", range(8))]
    assert store.evals(run_id).test_err.tolist() == [66.5, 70.5, 66.5, 70.5]
    assert len(store.probes(run_id)) == 21 and len(store.probes(run_id, step=4)) == 7
    assert store.probes(run_id, model="plain8").grad_norm.tolist() == [0.25 * k for k in range(7)]
    assert store.lesions(run_id).test_err.tolist() == [70.0, 71.0, 72.0]
    assert store.runs().run_id.tolist() == [run_id]


def test_frames_have_the_schema_columns_and_dtypes_even_when_empty(store):
    filled = filled_run(store)
    time.sleep(0.005)
    empty = new_run(store)
    readers = {"models": store.models, "steps": store.steps, "evals": store.evals, "probes": store.probes,
               "lesions": store.lesions}
    expected = {"TEXT": str(pd.Series(["text"], dtype="str").dtype), "INTEGER": "int64", "REAL": "float64"}
    for run_id in (filled, empty):
        for table, read in readers.items():
            frame = read(run_id)
            assert list(frame.columns) == list(COLUMNS[table])
            for name, kind in COLUMNS[table].items():
                want = "Int64" if name in ("diverged_step", "test_images") else expected[kind]
                assert str(frame[name].dtype) == want, (table, name)
    runs = store.runs()
    assert list(runs.columns) == list(COLUMNS["runs"])
    assert str(runs.created.dtype) == "datetime64[ms, UTC]" and runs.started.isna().all()
    assert runs.run_id.tolist() == [empty, filled]  # newest first


def test_nan_loss_reads_back_as_nan_and_filters_select_rows(store):
    run_id = new_run(store)
    assert store.latest_step(run_id) == -1
    rows = step_rows("plain8", range(5))
    rows[3]["loss"] = math.nan
    store.append(run_id, steps=rows + step_rows("resnet8", range(7)))
    assert math.isnan(store.steps(run_id, model="plain8").loss[3])
    assert store.latest_step(run_id) == 6
    assert store.steps(run_id, since_step=4).step.tolist() == [5, 6]
    assert store.steps(run_id, model="plain8", since_step=-1).step.tolist() == list(range(5))


def test_values_are_converted_and_a_repeated_key_replaces_its_row(store):
    run_id = new_run(store)
    row = dict(model="resnet8", block=np.int64(1), block_name="stage1.1", test_err=np.float32(50.0))
    store.append(run_id, lesions=[row])
    store.append(run_id, lesions=[{**row, "test_err": 40.0}])
    assert store.lesions(run_id)[["block", "test_err"]].values.tolist() == [[1, 40.0]]


def test_a_row_missing_a_column_is_refused_and_nothing_of_its_batch_is_written(store):
    run_id = new_run(store)
    bad = step_rows("plain8", range(2))
    del bad[1]["lr"]
    with pytest.raises(StoreError, match="lacks column 'lr'"):
        store.append(run_id, steps=bad, evals=eval_rows("plain8", range(1)))
    assert store.steps(run_id).empty and store.evals(run_id).empty


def test_status_transitions_stamp_started_and_ended(store):
    run_id = new_run(store)
    assert store.claim(run_id, "w1", 5.0) == (run_id, False)
    assert store.run(run_id)["started"] is None
    store.set_status(run_id, RunState.RUNNING)
    started = store.run(run_id)["started"]
    assert started and store.run(run_id)["ended"] is None
    time.sleep(0.01)
    store.set_status(run_id, RunState.PAUSED)
    store.set_status(run_id, "running")  # the enum's value is accepted too
    assert store.run(run_id)["started"] == started and store.status(run_id) is RunState.RUNNING
    time.sleep(0.01)
    store.set_status(run_id, RunState.FAILED, error="RuntimeError: boom")
    run = store.run(run_id)
    assert run["status"] == "failed" and run["error"] == "RuntimeError: boom" and run["ended"] > started
    with pytest.raises(StoreError, match="is not one of"):
        store.set_status(run_id, "exploded")


def test_model_status_records_the_divergence_step(store):
    run_id = new_run(store)
    store.set_model_status(run_id, "plain8", ModelState.DIVERGED, diverged_step=12)
    store.set_model_status(run_id, "resnet8", ModelState.FINISHED)
    models = store.models(run_id).set_index("model")
    assert models.status.to_dict() == {"plain8": "diverged", "resnet8": "finished"}
    assert models.diverged_step["plain8"] == 12 and pd.isna(models.diverged_step["resnet8"])
    with pytest.raises(StoreError, match="its models are plain8, resnet8"):
        store.set_model_status(run_id, "vgg11", "finished")
    with pytest.raises(StoreError, match="is not one of"):
        store.set_model_status(run_id, "plain8", "asleep")


def test_create_run_refuses_models_that_are_not_the_configured_ones(store):
    with pytest.raises(StoreError, match="do not match"):
        store.create_run(CONFIG, device="cpu", data_source="x", models=[{"model": "plain8", "idx": 0, "params": 1}])


def test_unknown_run_id_raises_store_error_that_says_how_to_list_runs(store):
    new_run(store)
    for call in (lambda: store.run("r0"), lambda: store.steps("r0"), lambda: store.latest_step("r0"),
                 lambda: store.append("r0", steps=step_rows("plain8", range(1))),
                 lambda: store.set_status("r0", RunState.RUNNING), lambda: store.delete_run("r0"),
                 lambda: store.truncate_after("r0", 3),
                 lambda: store.export("r0", store.path.parent / "x.csv")):
        with pytest.raises(StoreError, match="python -m explorer runs"):
            call()


def test_bad_paths_raise_store_error(tmp_path):
    not_a_db = tmp_path / "notes.sqlite"
    not_a_db.write_text("this is not a database " * 100)
    for path in (tmp_path, not_a_db / "runs.sqlite", not_a_db):
        with pytest.raises(StoreError, match="EXPLORER_STORE"):
            RunStore(path)


def test_default_path_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_STORE", str(tmp_path / "deep" / "env.sqlite"))
    with RunStore() as store:
        assert store.path == tmp_path / "deep" / "env.sqlite" and store.path.exists()


def test_delete_run_removes_every_row(store):
    kept, deleted = filled_run(store), filled_run(store)
    store.delete_run(deleted)
    assert store.runs().run_id.tolist() == [kept]
    conn = sqlite3.connect(store.path)
    for table in RUN_TABLES:
        assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (deleted,)).fetchone() == (0,)
        assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (kept,)).fetchone()[0] > 0
    conn.close()


def test_readers_see_growing_counts_while_a_writer_thread_writes(store):
    run_id = new_run(store)
    batches, per_batch, failures = 30, 50, []

    def write() -> None:
        try:
            for b in range(batches):
                store.append(run_id, steps=step_rows("plain8", range(b * per_batch, (b + 1) * per_batch)),
                             probes=probe_rows("plain8", b, layers=100))
                time.sleep(0.002)
        except Exception as error:  # reported by the assertion below
            failures.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    counts = []
    while writer.is_alive():
        counts.append((len(store.steps(run_id)), store.latest_step(run_id)))
    writer.join()
    counts.append((len(store.steps(run_id)), store.latest_step(run_id)))
    assert not failures
    assert counts == sorted(counts) and len(set(counts)) > 1
    assert counts[-1] == (batches * per_batch, batches * per_batch - 1)
    assert all(n % per_batch == 0 for n, _ in counts)  # a reader never sees half a batch


def test_reads_do_not_wait_for_an_open_write_transaction(store):
    run_id = new_run(store)
    store.append(run_id, steps=step_rows("plain8", range(3)))
    writer = sqlite3.connect(store.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO steps VALUES (?, 'plain8', 99, 0, 0, 0, 0, 0)", (run_id,))
    try:
        started = time.perf_counter()
        assert store.steps(run_id).step.tolist() == [0, 1, 2]
        assert time.perf_counter() - started < 2.0  # the busy timeout is 30 s
    finally:
        writer.execute("ROLLBACK")
        writer.close()


WRITER = """
import os, sys
from explorer.store import RunStore
store, run_id, progress = RunStore(sys.argv[1]), sys.argv[2], sys.argv[3]
for batch in range(1_000_000):
    store.append(run_id, steps=[dict(model="plain8", step=batch * 50 + i, epoch=0.0, loss=1.0, train_err=1.0,
                                     lr=0.1, wall=0.0) for i in range(50)])
    with open(progress + ".tmp", "w") as file:
        file.write(str(batch + 1))
    os.replace(progress + ".tmp", progress)
"""


def test_a_killed_writer_process_keeps_every_committed_batch(tmp_path):
    path, progress = tmp_path / "runs.sqlite", tmp_path / "progress"
    with RunStore(path) as store:
        run_id = new_run(store)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), run_id, str(progress)], env=env,
                              stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (progress.exists() and int(progress.read_text()) >= 20):
        assert writer.poll() is None, writer.stderr.read().decode()
        assert time.monotonic() < deadline, "the writer process made no progress"
        time.sleep(0.02)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    writer.stderr.close()
    committed = int(progress.read_text())
    with RunStore(path) as store:
        steps = store.steps(run_id).step.tolist()
        assert len(steps) % 50 == 0 and len(steps) >= committed * 50
        assert steps == list(range(len(steps)))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_export_csv_and_parquet_read_back_equal(store, tmp_path):
    run_id = filled_run(store)
    metrics = store.metrics(run_id)
    assert list(metrics.columns) == ["model", "step", "epoch", "wall", "lr", "batch_loss", "batch_err",
                                     "train_loss", "train_err", "test_loss", "test_err", "test_images"]
    assert len(metrics) == 2 * 9  # steps 0-7 plus the evaluation at step 8, per model
    at_four = metrics.set_index(["model", "step"]).loc[("resnet8", 4)]
    assert at_four.batch_loss == 1.96 and at_four.test_err == 66.5
    for fmt in ("csv", "parquet"):
        path = store.export(run_id, tmp_path / "out" / f"metrics.{fmt}", fmt)
        back = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        pd.testing.assert_frame_equal(back, metrics, check_dtype=False)
    with pytest.raises(StoreError, match="not csv or parquet"):
        store.export(run_id, tmp_path / "metrics.xlsx", "xlsx")


def test_bundle_round_trip_replays_in_a_memory_store_from_any_thread(store, tmp_path):
    run_id = filled_run(store)
    store.set_model_status(run_id, "plain8", ModelState.DIVERGED, diverged_step=5)
    store.claim(run_id, "w1", 5.0)
    store.set_status(run_id, RunState.RUNNING)
    store.set_status(run_id, RunState.FINISHED)
    bundle = store.export_bundle(run_id, tmp_path / "bundle")
    assert sorted(p.name for p in bundle.iterdir()) == ["evals.parquet", "lesions.parquet", "probes.parquet",
                                                        "run.json", "steps.parquet"]
    assert json.loads((bundle / "run.json").read_text())["run"]["config"]["name"] == "tiny"

    replay = RunStore.memory()
    assert replay.import_bundle(bundle) == run_id
    assert replay.run(run_id) == store.run(run_id)
    pd.testing.assert_frame_equal(replay.models(run_id), store.models(run_id))
    with ThreadPoolExecutor(1) as pool:  # a Streamlit script thread reads what the main thread imported
        for table in ("steps", "evals", "probes", "lesions"):
            replayed = pool.submit(getattr(replay, table), run_id).result()
            pd.testing.assert_frame_equal(replayed, getattr(store, table)(run_id), rtol=1e-6)
    with pytest.raises(StoreError, match="already in"):
        replay.import_bundle(bundle)
    replay.close()
    assert not replay.path.exists()


def test_import_of_a_folder_without_run_json_raises_store_error(tmp_path):
    with pytest.raises(StoreError, match="not a run bundle"):
        RunStore.memory().import_bundle(tmp_path)


def test_a_bundle_keeps_who_owns_a_run_and_how_to_control_it_on_this_machine(store, tmp_path):
    run_id = store.create_run(CONFIG, models=[{"model": m, "idx": i, "params": 1} for i, m in enumerate(CONFIG.labels)],
                              owner="o-someone", key_hash="secret-hash", control="run", fingerprint="abc")
    store.set_progress(run_id, type("P", (), {"to_json": lambda self: '{"step": 3}'})())
    assert store.run(run_id)["progress"] == '{"step": 3}'
    bundle = json.loads((store.export_bundle(run_id, tmp_path / "b") / "run.json").read_text())["run"]
    assert bundle["fingerprint"] == "abc"
    assert [bundle[k] for k in ("owner", "key_hash", "control", "worker")] == [None] * 4
    assert bundle["progress"] == '{"step": 3}'  # a replayed run shows how far it got


def test_recorded_bundles_import_into_a_memory_store():
    for folder in (REPO / "assets" / "recorded" / "cpu" / "degradation", REPO / "assets" / "recorded" / "gpu" / "degradation"):
        with RunStore.memory() as replay:
            run_id = replay.import_bundle(folder)
            assert replay.status(run_id) is RunState.FINISHED
            assert [(m.family, m.depth) for m in replay.config(run_id).models] == [
                ("plain", 20), ("plain", 56), ("resnet", 20), ("resnet", 56)]
            assert len(replay.steps(run_id)) > 0 and replay.evals(run_id).test_err.between(0, 100).all()


def enqueue(store: RunStore, admit) -> str:
    return store.enqueue(CONFIG, fingerprint="same", attach=False, admit=admit,
                         models=[{"model": m, "idx": i, "params": 1} for i, m in enumerate(CONFIG.labels)])[0]


def test_a_failed_transaction_writes_nothing_and_a_write_inside_it_is_part_of_it(store):
    other = new_run(store)

    def admit() -> None:
        store.set_run_facts(other, device="changed")  # its own transaction: joins the enqueue's
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        enqueue(store, admit)
    assert store.run(other)["device"] == "cpu" and store.runs().run_id.tolist() == [other]
    created = enqueue(store, lambda: store.set_run_facts(other, device="changed"))  # the connection works again
    assert store.run(other)["device"] == "changed" and store.has_run(created)


def test_truncate_after_drops_later_rows_and_revives_later_divergences(store):
    run_id = filled_run(store)
    store.set_model_status(run_id, "plain8", ModelState.DIVERGED, diverged_step=6)
    store.set_model_status(run_id, "resnet8", ModelState.DIVERGED, diverged_step=2)
    store.truncate_after(run_id, 4)
    assert store.steps(run_id).groupby("model").step.max().tolist() == [4, 4]
    assert store.evals(run_id).step.tolist() == [4, 4]
    assert sorted(store.probes(run_id).step.unique()) == [0, 4]
    assert len(store.lesions(run_id)) == 3  # a lesion study is not a per-step record
    models = store.models(run_id).set_index("model")
    assert models.status.to_dict() == {"plain8": "training", "resnet8": "diverged"}
    assert pd.isna(models.diverged_step["plain8"]) and models.diverged_step["resnet8"] == 2


def test_run_ids_are_checked_before_any_query(store):
    run_id = new_run(store)
    assert valid_run_id(run_id) and store.has_run(run_id)
    for bad in ("r0", "", None, 5, "r20251123-112000-a3f9' OR 1=1 --", run_id + "x"):
        assert not valid_run_id(bad)
    assert not store.has_run("r20251123-112000-a3f9")


V1_SCHEMA = """
CREATE TABLE runs (run_id TEXT NOT NULL, name TEXT NOT NULL, preset TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, created TEXT NOT NULL, started TEXT, ended TEXT, device TEXT NOT NULL,
    data_source TEXT NOT NULL, torch_version TEXT NOT NULL, code_version TEXT NOT NULL, hostname TEXT NOT NULL,
    error TEXT NOT NULL, PRIMARY KEY (run_id)) WITHOUT ROWID;
CREATE TABLE models (run_id TEXT NOT NULL, model TEXT NOT NULL, idx INTEGER NOT NULL, params INTEGER NOT NULL,
    status TEXT NOT NULL, diverged_step INTEGER, PRIMARY KEY (run_id, model)) WITHOUT ROWID;
CREATE TABLE steps (run_id TEXT NOT NULL, model TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL, loss REAL,
    train_err REAL, lr REAL, wall REAL, PRIMARY KEY (run_id, model, step)) WITHOUT ROWID;
CREATE TABLE evals (run_id TEXT NOT NULL, model TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL, train_loss REAL,
    train_err REAL, test_loss REAL, test_err REAL, wall REAL, PRIMARY KEY (run_id, model, step)) WITHOUT ROWID;
CREATE TABLE probes (run_id TEXT NOT NULL, model TEXT NOT NULL, step INTEGER NOT NULL, layer INTEGER NOT NULL,
    layer_name TEXT NOT NULL, grad_norm REAL, weight_norm REAL, update_ratio REAL, response_std REAL,
    PRIMARY KEY (run_id, model, step, layer)) WITHOUT ROWID;
CREATE TABLE lesions (run_id TEXT NOT NULL, model TEXT NOT NULL, block INTEGER NOT NULL, block_name TEXT NOT NULL,
    test_err REAL, PRIMARY KEY (run_id, model, block)) WITHOUT ROWID;
PRAGMA user_version = 1;
"""
V1_CONFIG = ('{"models": [{"family": "resnet", "depth": 8}], "data": {"source": "synthetic", "subset": 64, '
             '"test_subset": 32}, "optim": {"steps": 4, "batch_size": 16}, "device": "cpu", "bf16": true}')


def test_a_version_1_store_is_migrated_and_its_runs_stay_readable(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    for run_id, status in (("r20250101-000000-aaaa", "finished"), ("r20250101-000001-bbbb", "running")):
        conn.execute("INSERT INTO runs VALUES (?, 'old', '', ?, ?, '2025-01-01T00:00:00.000+00:00', "
                     "'2025-01-01T00:00:01.000+00:00', NULL, 'cpu', 'synthetic', '2.5', 'v1', 'host', '')",
                     (run_id, V1_CONFIG, status))
        conn.execute("INSERT INTO models VALUES (?, 'resnet8', 0, 78042, 'training', NULL)", (run_id,))
        conn.execute("INSERT INTO steps VALUES (?, 'resnet8', 0, 0.25, 2.3, 90.0, 0.1, 0.5)", (run_id,))
        conn.execute("INSERT INTO evals VALUES (?, 'resnet8', 0, 0.25, 2.3, 90.0, 2.3, 91.0, 0.5)", (run_id,))
    conn.commit()
    conn.close()

    with RunStore(path) as store:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        finished, died = "r20250101-000000-aaaa", "r20250101-000001-bbbb"
        assert store.status(finished) is RunState.FINISHED
        assert store.status(died) is RunState.INTERRUPTED  # version 1 trained in the web server: it died with it
        assert store.config(finished).precision == "bf16" and store.config(finished).labels == ["resnet8"]
        assert store.steps(finished).loss.tolist() == [2.3]
        evals = store.evals(finished)
        assert evals.test_err.tolist() == [91.0] and evals.test_images.isna().all()
        assert list(store.runs().columns) == list(COLUMNS["runs"])
        assert store.run(finished)["owner"] is None
        new = new_run(store)  # the migrated store takes new runs with every column
        store.append(new, evals=eval_rows("plain8", range(1)))
        assert store.evals(new).test_images.tolist() == [32]
    with RunStore(path) as store:  # opening again migrates nothing twice
        assert len(store.runs()) == 3


def test_a_store_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.sqlite"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer version"):
        RunStore(path)

