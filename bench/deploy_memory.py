"""Memory of a one-container deployment (Streamlit Community Cloud, a small Docker host): the app's server process
plus its embedded worker, idle and while training the classic demo on the synthetic set, as the platform's memory
limit sees them. docs/DEPLOY.md quotes its figures.

docker/entrypoint.sh starts the app on a fresh store with the hosted settings (EXPLORER_HOSTED=1, and the memory
limit of --limit); one headless-Chromium tab opens the Learn page, whose first run starts the embedded worker; after
--idle seconds, `python -m explorer train --preset degradation --data synthetic --queue` queues the classic demo on
the same store and the worker trains it for --train seconds. The job cap is lifted (EXPLORER_MAX_JOB_SECONDS=3600):
on a slow or busy machine the hosted 10 minutes refuse the full demo, and the cap changes no byte of its memory.
Every second this samples, from /proc, the RSS (what `ps -o rss` prints) and the PSS (shared pages split between
the processes that map them) of the server and of each worker.

    python -m bench.deploy_memory [--idle 60] [--train 120] [--out bench/results/deploy_memory.json]
    OMP_NUM_THREADS=1 python -m bench.deploy_memory ...   # as docs/DEPLOY.md advises for Community Cloud
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from e2e import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402



def memory_of(pid: int) -> tuple[float, float] | None:
    """(RSS, PSS) of a process in MiB, or None once it has gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields["Rss"].split()[0]) / 1024, int(fields["Pss"].split()[0]) / 1024


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def sample(server: int, phase: str, started: float) -> dict:
    row: dict = {"t": round(time.monotonic() - started, 1), "phase": phase}
    for name, pid in [("server", server)] + [(f"worker{i}", p) for i, p in enumerate(children_of(server))]:
        memory = memory_of(pid)
        if memory:
            row[name] = {"rss": round(memory[0], 1), "pss": round(memory[1], 1)}
    row["total_rss"] = round(sum(v["rss"] for k, v in row.items() if isinstance(v, dict)), 1)
    row["total_pss"] = round(sum(v["pss"] for k, v in row.items() if isinstance(v, dict)), 1)
    return row


def summary(rows: list[dict], phase: str) -> dict:
    chosen = [r for r in rows if r["phase"] == phase and any(k.startswith("worker") for k in r)]
    peak = {key: max(r[key] for r in chosen) for key in ("total_rss", "total_pss")}
    for part in ("server", "worker0"):
        peak[f"{part}_rss"] = max(r[part]["rss"] for r in chosen if part in r)
    return {"samples": len(chosen), **peak,
            "median_total_pss": sorted(r["total_pss"] for r in chosen)[len(chosen) // 2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds sampled with the worker idle")
    parser.add_argument("--train", type=float, default=120.0, help="seconds sampled while it trains")
    parser.add_argument("--limit", default="1.5GB", help="EXPLORER_MEMORY_LIMIT of the hosted app")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "deploy_memory.json")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="deploy-memory-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPLORER_", "STREAMLIT_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               EXPLORER_STORE=str(folder / "runs" / "explorer.sqlite"), EXPLORER_CACHE_DIR=str(folder / "cache"),
               EXPLORER_DATA_DIR=str(folder / "datasets"), EXPLORER_HOSTED="1", EXPLORER_MEMORY_LIMIT=args.limit,
               EXPLORER_MAX_JOB_SECONDS="3600",
               STREAMLIT_SERVER_PORT=str(port), STREAMLIT_SERVER_ADDRESS="127.0.0.1")
    log = open(folder / "app.log", "wb")
    server = subprocess.Popen([str(REPO / "docker" / "entrypoint.sh")], env=env, stdout=log, stderr=subprocess.STDOUT)
    rows: list[dict] = []
    started = time.monotonic()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            deadline = time.monotonic() + 120
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/Learn", timeout=10_000)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            while not children_of(server.pid):  # the page's first run starts the embedded worker
                assert time.monotonic() < deadline, "the app started no worker"
                time.sleep(0.5)
            idle_until = time.monotonic() + args.idle
            while time.monotonic() < idle_until:
                rows.append(sample(server.pid, "idle", started))
                time.sleep(1)
            queued = subprocess.run([sys.executable, "-m", "explorer", "train", "--preset", "degradation", "--data",
                                     "synthetic", "--queue"], env=env, capture_output=True, text=True)
            print(queued.stdout.strip(), queued.stderr.strip(), sep="\n")
            if queued.returncode:
                raise SystemExit(f"the classic demo was not queued (exit {queued.returncode})")
            train_until = time.monotonic() + args.train
            while time.monotonic() < train_until:
                rows.append(sample(server.pid, "training", started))
                time.sleep(1)
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    result = {"idle": summary(rows, "idle"), "training": summary(rows, "training"),
              "load_average": os.getloadavg(), "cpus": os.cpu_count(), "limit": args.limit,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "samples": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
