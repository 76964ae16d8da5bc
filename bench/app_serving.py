"""What serving the app costs, measured with a real `streamlit run` server and headless Chromium:

1. first point: seconds from pressing Train in the Lab to the first point on its chart (the worker warm, the data
   cache warm); target ≤ 3 s on a CPU;
2. throughput: images/s of the same run trained by the CLI alone and by the app's worker while one browser tab
   polls it, measured side by side in this run; target ratio ≥ 0.85. Two runs: the classic demo as the app sizes it
   on a CPU (one training thread, so the server and the browser have the other core), and the first version's
   full-width run on every core (where the server and the browser take cores from the trainer);
3. poll cost: the server process's CPU seconds per poll while a tab watches a live run with 4 models and 10,000
   recorded steps (a writer process appends a step every 0.2 s, as a run would); target ≤ 100 ms.

    python -m bench.app_serving [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from e2e import CHROMIUM, CHROMIUM_ARGS, app_server, first_visit  # noqa: E402

from explorer import jobs  # noqa: E402
from explorer.config import Config  # noqa: E402
from explorer.states import RunState  # noqa: E402
from explorer.store import RunStore  # noqa: E402
from explorer.trainer import Progress  # noqa: E402

POINTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(c => c._fullData ?
    c._fullData.reduce((n, t) => n + (t.x ? t.x.length : 0), 0) : 0).reduce((a, b) => a + b, 0)"""
# The classic demo as the app sizes it on a CPU (what a CPU user runs: quarter width, batch 32, one thread), cut to
# 400 steps; and the first version's configuration (full width, batch 64, bf16, every core), the 0.35.
THROUGHPUT_QUERIES = {
    "cpu-recipe": {"models": "plain20-w0.25,plain56-w0.25,resnet20-w0.25,resnet56-w0.25", "subset": "1000",
                   "test": "1000", "augment": "0", "lr": "0.05", "batch": "32", "warmup": "1", "steps": "400",
                   "device": "cpu", "threads": "1", "probe": "14", "eval": "26", "eval_images": "120",
                   "data": "synthetic"},
    "full-width": {"models": "plain20,plain56,resnet20,resnet56", "subset": "1000", "test": "200", "batch": "64",
                   "steps": "120", "data": "synthetic", "precision": "bf16"},
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(port_url: str) -> int:
    port = port_url.rsplit(":", 1)[1]
    out = subprocess.run(["pgrep", "-f", f"server.port {port}"], capture_output=True, text=True).stdout.split()
    return int(out[0])


FIRST_QUERIES = {  # what is trained for the first point: a tiny two-model run, or the classic demo as sized here
    "tiny": "models=plain8,resnet8&subset=200&test=100&batch=32&steps=400&data=synthetic",
    "demo": "&".join(f"{k}={v}" for k, v in THROUGHPUT_QUERIES["cpu-recipe"].items()),
}


def first_point(url: str, page, rounds: int, query: str = FIRST_QUERIES["tiny"]) -> list[float]:
    """Seconds from the Train click to the first chart point, `rounds` times (a fresh seed each: no attaching)."""
    times = []
    for i in range(rounds):
        page.goto(f"{url}/Lab?{query}&seed={100 + i}")
        page.get_by_role("heading", name="Lab").wait_for()
        started = time.monotonic()
        page.locator(".st-key-train button").click()
        confirm = page.locator(".st-key-start_slow button")  # a long run asks first
        try:
            confirm.wait_for(timeout=1_500)
            confirm.click()
        except Exception:
            pass  # no question asked: it started
        page.wait_for_function(f"() => ({POINTS_JS})() > 0", timeout=120_000)
        times.append(time.monotonic() - started)
        page.locator(".st-key-stop button").click()
        page.get_by_text("stopped").first.wait_for(timeout=60_000)
    return times


def images_per_s(store: RunStore, run_id: str) -> float:
    steps = store.steps(run_id)
    one = steps[steps.model == steps.model.iloc[0]]
    batch = store.config(run_id).optim.batch_size
    return (len(one) - 1) * batch / float(one.wall.max() - one.wall.min())


def throughput(url: str, store_path: Path, page, config: str) -> dict:
    """The same run on the CLI and in the app with a tab polling: images/s from each run's own wall clock."""
    query = dict(THROUGHPUT_QUERIES[config])
    cli = subprocess.run([sys.executable, "-m", "explorer", "--store", str(store_path), "train",
                          *[f"--{k.replace('_', '-')}={v}" for k, v in query.items() if k != "models"],
                          "--models", query["models"], "--seed", "1"], capture_output=True, text=True, cwd=REPO)
    store = RunStore(store_path)
    cli_run = cli.stdout.strip().splitlines()[-1]
    page.goto(f"{url}/Lab?" + "&".join(f"{k}={v}" for k, v in query.items()) + "&seed=2")
    page.get_by_role("heading", name="Lab").wait_for()
    page.locator(".st-key-train button").click()
    confirm = page.locator(".st-key-start_slow button")  # a long run asks first (the estimate may be uncalibrated)
    try:
        confirm.wait_for(timeout=5_000)
        confirm.click()
    except Exception:
        pass  # no question asked: it started
    try:
        page.wait_for_function(f"() => ({POINTS_JS})() > 0", timeout=180_000)
    except Exception:
        page.screenshot(path=str(store_path.parent / "throughput-timeout.png"), full_page=True)
        raise
    app_run = store.runs().run_id.iloc[0]
    deadline = time.monotonic() + 600
    while not store.status(app_run).final and time.monotonic() < deadline:
        time.sleep(1)
    cli_rate, app_rate = images_per_s(store, cli_run), images_per_s(store, app_run)
    return {"cli_images_per_s": round(cli_rate, 1), "app_images_per_s": round(app_rate, 1),
            "ratio": round(app_rate / cli_rate, 3)}


def fake_live_run(store: RunStore, steps: int = 10_000) -> tuple[str, threading.Event]:
    """A 'running' run with 4 models and `steps` recorded steps, and a thread appending one more every 0.2 s."""
    config = Config.from_query({"models": "plain20,plain56,resnet20,resnet56", "steps": str(steps * 2)})
    run_id = store.create_run(config, models=[dict(model=m, idx=i, params=1) for i, m in enumerate(config.labels)],
                              status=RunState.RUNNING, key_hash=jobs.key_hash("bench"), owner="bench")

    def rows(first: int, last: int) -> list[dict]:
        return [dict(model=m, step=s, epoch=s / 15, loss=2.0 - s / 10_000, train_err=50 - s / 400, lr=0.1,
                     wall=s * 0.1) for m in config.labels for s in range(first, last)]

    store.append(run_id, steps=rows(0, steps))
    stop = threading.Event()

    def writer() -> None:
        step = steps
        while not stop.wait(0.2):
            store.append(run_id, steps=rows(step, step + 1))
            store.set_progress(run_id, Progress(state=RunState.RUNNING, step=step + 1, total_steps=steps * 2))
            step += 1

    threading.Thread(target=writer, daemon=True).start()
    return run_id, stop


def poll_cost(url: str, store_path: Path, page, seconds: float = 60.0) -> dict:
    store = RunStore(store_path)
    run_id, stop = fake_live_run(store)
    page.goto(f"{url}/Lab?run={run_id}")
    page.wait_for_function(f"() => ({POINTS_JS})() > 0", timeout=120_000)
    time.sleep(5)
    pid = server_pid(url)
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    used, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
    stop.set()
    polls = elapsed / 1.0  # the Lab's live fragment reruns once a second
    return {"server_cpu_s": round(used, 2), "seconds": round(elapsed, 1),
            "cpu_ms_per_poll": round(1000 * used / polls, 1), "server_cores_busy": round(used / elapsed, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="first,throughput,poll")
    parser.add_argument("--first", default="tiny", choices=FIRST_QUERIES, help="what the first-point rounds train")
    parser.add_argument("--throughput", nargs="+", default=["cpu-recipe", "full-width"], choices=THROUGHPUT_QUERIES)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="bench-app-"))
    results: dict = {"load_before": os.getloadavg()}
    with app_server(folder) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(180_000)
        store_path = folder / "runs.sqlite"
        # a live worker before anything is timed (the poll measurement needs none)
        first_visit(browser, url, store_path, 120 if {"first", "throughput"} & set(args.only.split(",")) else 0)
        if "first" in args.only:
            times = first_point(url, page, args.rounds + 1, FIRST_QUERIES[args.first])[1:]  # the first round warms the worker's caches
            results["first_point_s"] = {"rounds": [round(t, 2) for t in times], "median": round(statistics.median(times), 2)}
            print("first point:", results["first_point_s"], flush=True)
        if "throughput" in args.only:
            for config in args.throughput:
                results[f"throughput_{config}"] = throughput(url, store_path, page, config)
                print(f"throughput ({config}):", results[f"throughput_{config}"], flush=True)
        if "poll" in args.only:
            results["poll"] = poll_cost(url, store_path, page)
            print("poll cost:", results["poll"], flush=True)
        browser.close()
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
