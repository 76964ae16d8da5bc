"""Crash drills: kill -9 a worker mid-run, five times, and Ctrl-C the command line, three times.

kill -9: a worker process (`python -m explorer worker`, checkpoints every 2 s) trains a run on the synthetic set; at a
random moment it is SIGKILLed. Measured: seconds until the run reads `interrupted` (the lease lapses and a reaper
marks it; target ≤ 10 s), whether every record flushed before the kill is still there, and, after resuming with a
fresh worker, whether the run's records equal those of an uninterrupted run of the same configuration (wall times
aside). Ctrl-C: SIGINT to `python -m explorer train`; measured: exit code (target 130), seconds to exit, and the
run's state (target `stopped`, resumable).

    python -m bench.drill [--kills 5] [--interrupts 3]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from explorer import jobs
from explorer.config import Config
from explorer.states import RunState
from explorer.store import RunStore

REPO = Path(__file__).resolve().parent.parent
QUERY = {"models": "plain8,resnet8", "subset": "256", "test": "64", "batch": "32", "steps": "400", "eval": "40",
         "probe": "10", "data": "synthetic", "threads": "1", "eval_images": "64"}
COLUMNS = {"steps": ["model", "step", "loss", "train_err", "lr"], "evals": ["model", "step", "train_err", "test_err"],
           "probes": ["model", "step", "layer", "grad_norm", "response_std"]}


def records(store: RunStore, run_id: str) -> dict[str, pd.DataFrame]:
    return {t: getattr(store, t)(run_id)[c].reset_index(drop=True) for t, c in COLUMNS.items()}


def same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> bool:
    return all(a[t].equals(b[t]) for t in COLUMNS)


def worker(store_path: Path) -> subprocess.Popen:
    env = dict(os.environ, EXPLORER_CHECKPOINT_SECONDS="2", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "explorer", "--store", str(store_path), "worker", "--device", "cpu"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_drill(store_path: Path, reference: dict[str, pd.DataFrame], rng: random.Random) -> dict:
    store = RunStore(store_path)
    run_id = jobs.submit(store, Config.from_query(QUERY), "drill", attach=False).run_id
    process = worker(store_path)
    while store.latest_step(run_id) < 5:
        time.sleep(0.1)
    time.sleep(rng.uniform(1.0, 8.0))
    before = {t: len(f) for t, f in records(store, run_id).items()}
    step_at_kill = store.latest_step(run_id)
    process.kill()
    process.wait()
    killed = time.monotonic()
    while store.status(run_id) is not RunState.INTERRUPTED:
        jobs.reap(store)  # what every worker, the app's pool and `explorer runs` do
        time.sleep(0.2)
        if time.monotonic() - killed > 60:
            break
    detected = time.monotonic() - killed
    kept = all(len(f) >= before[t] for t, f in records(store, run_id).items())
    jobs.requeue(store, run_id, "drill")
    resumed = worker(store_path)
    while not store.status(run_id).final:
        time.sleep(0.2)
    resumed.terminate()
    resumed.wait()
    return {"killed_at_step": step_at_kill, "interrupted_after_s": round(detected, 1), "records_kept": kept,
            "final": str(store.status(run_id)), "identical_to_uninterrupted": same(records(store, run_id), reference)}


def interrupt_drill(store_path: Path, rng: random.Random) -> dict:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in QUERY.items() if k != "models"]
    process = subprocess.Popen([sys.executable, "-m", "explorer", "--store", str(store_path), "train",
                                "--models", QUERY["models"], *flags, "--seed", str(rng.randint(1, 10_000))],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = RunStore(store_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = store.runs([RunState.RUNNING])
        if len(running) and store.latest_step(running.run_id.iloc[0]) > 5:
            break
        time.sleep(0.1)
    run_id = store.runs([RunState.RUNNING]).run_id.iloc[0]
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    return {"exit_code": process.returncode, "exit_after_s": round(time.monotonic() - sent, 1),
            "state": str(store.status(run_id)), "says_how_to_resume": "resume" in err}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--interrupts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="drill-"))
    store_path = folder / "runs.sqlite"
    store = RunStore(store_path)
    print(f"load {os.getloadavg()[0]:.2f}; reference run (uninterrupted)...", flush=True)
    reference_id = jobs.submit(store, Config.from_query(QUERY), "drill", attach=False).run_id
    ref = worker(store_path)
    while not store.status(reference_id).final:
        time.sleep(0.2)
    ref.terminate()
    ref.wait()
    reference = records(store, reference_id)
    for i in range(args.kills):
        print(f"kill -9 #{i + 1}:", kill_drill(store_path, reference, rng), flush=True)
    for i in range(args.interrupts):
        print(f"Ctrl-C #{i + 1}:", interrupt_drill(store_path, rng), flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
