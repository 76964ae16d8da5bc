"""Estimates against the time runs took: the classic demo and five presets as the Lab sizes them on this machine,
each estimate read as a visitor meets it (three page loads: on a fresh server, half-way, and at the end), and each
run then trained by a worker of the app.

Set-up as users run it: a `streamlit run` server (EXPLORER_WORKERS=0) and one worker (`python -m explorer worker`) on
a fresh store, real CIFAR-10. A page load is a light client opening the Lab's link of the configuration over
Streamlit's websocket (bench/viewers.py) and reading the estimate line it draws; the same moment's estimate in
seconds comes from `jobs.assess`, the function the Lab calls. The runs are then queued one after another with
`jobs.submit`; measured is the wall time from the worker's claim to the run's end (what a visitor waits), and the
training time the trainer reported. Target: every estimate within ±30% of the measured wall time, the same on every
page load.

    python -m bench.estimates [--presets degradation,depth-sweep,shortcuts,preact,no-bn,zero-init] [--data cifar10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.viewers import Page, open_page, server, worker  # noqa: E402
from explorer import jobs  # noqa: E402
from explorer.config import Config  # noqa: E402
from explorer.presets import PRESETS  # noqa: E402
from explorer.progress import Progress  # noqa: E402
from explorer.states import RunState  # noqa: E402
from explorer.store import RunStore  # noqa: E402

ESTIMATE = re.compile(r"Estimate: about ([\d.]+) (s|min|h) for ([\d,]+) steps")
UNIT = {"s": 1, "min": 60, "h": 3600}


def page_estimate(url: str, config: Config) -> tuple[str, float | None]:
    """The Lab's estimate line for `config` as a new visitor's page draws it, and its seconds (rounded as shown)."""
    async def visit() -> Page:
        page = Page()
        socket = await open_page(url, {"page": "Lab", **config.to_query()}, page)
        await socket.close()
        return page

    texts = asyncio.run(visit()).texts
    line = next((t for t in texts if t.startswith("Estimate:") or "cannot start here" in t), "(no estimate line)")
    match = ESTIMATE.search(line)
    return line, float(match[1]) * UNIT[match[2]] if match else None


def load(url: str, store: RunStore, configs: dict[str, Config], when: str) -> dict[str, dict]:
    loads = {}
    for key, config in configs.items():
        line, shown = page_estimate(url, config)
        _, cost = jobs.assess(config, store)
        loads[key] = {"when": when, "page": line, "shown_s": shown, "seconds": round(cost.seconds, 1),
                      "calibrated": cost.calibrated}
        print(f"  {key:18s} {when:9s} {cost.seconds:7.0f} s  page: {line[:110]}", flush=True)
    return loads


def train(store: RunStore, config: Config, timeout: float = 3600) -> dict:
    """Queue `config` and wait for its end: wall seconds from claim to end, and the trainer's own training time."""
    run_id = jobs.submit(store, config, "bench-estimates", attach=False).run_id
    deadline = time.monotonic() + timeout
    while not store.status(run_id).final:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run_id} did not finish")
        time.sleep(1)
    row = store.run(run_id)
    if RunState(row["status"]) is not RunState.FINISHED:
        raise RuntimeError(f"{run_id} ended {row['status']}: {row['error']}")
    started, ended = (datetime.fromisoformat(row[k]) for k in ("started", "ended"))
    progress = Progress.from_json(row["progress"], RunState.FINISHED)
    return {"run_id": run_id, "wall_s": round((ended - started).total_seconds(), 1),
            "training_s": round(progress.elapsed_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="degradation,depth-sweep,shortcuts,preact,no-bn,zero-init")
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--data-dir", default=str(REPO / "data"))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-estimates-"))
    store_path = folder / "runs.sqlite"
    env = {**os.environ, "EXPLORER_STORE": str(store_path), "EXPLORER_WORKERS": "0",
           "EXPLORER_DATA_DIR": args.data_dir, "PYTHONUNBUFFERED": "1"}
    os.environ.update({k: env[k] for k in ("EXPLORER_STORE", "EXPLORER_DATA_DIR")})
    keys = args.presets.split(",")
    configs = {key: PRESETS[key].config(device="cpu", data_source=args.data) for key in keys}
    store = RunStore(store_path)
    results: dict = {"load_before": os.getloadavg(), "rows": {key: {"loads": []} for key in keys}}
    with server(folder, env, None) as (url, _), worker(store_path, env, None):
        print("page loads on a fresh server:", flush=True)
        for key, row in load(url, store, configs, "fresh").items():
            results["rows"][key]["loads"].append(row)
        for i, key in enumerate(keys):
            if i == len(keys) // 2:
                print("page loads half-way:", flush=True)
                for k, row in load(url, store, configs, "half-way").items():
                    results["rows"][k]["loads"].append(row)
            measured = train(store, configs[key])
            results["rows"][key].update(measured)
            print(f"{key}: {json.dumps(measured)}", flush=True)
        print("page loads at the end:", flush=True)
        for key, row in load(url, store, configs, "end").items():
            results["rows"][key]["loads"].append(row)
    print(f"\n{'preset':18s} {'measured wall':>13s} {'training':>9s}   estimates (fresh / half-way / end), error")
    for key, row in results["rows"].items():
        estimates = [load["seconds"] for load in row["loads"]]
        errors = [e / row["wall_s"] - 1 for e in estimates]
        row["errors"] = [round(e, 3) for e in errors]
        print(f"{key:18s} {row['wall_s']:12.0f}s {row['training_s']:8.0f}s   "
              + " / ".join(f"{e:.0f} s ({err:+.0%})" for e, err in zip(estimates, errors)))
    results["load_after"] = os.getloadavg()
    (folder / "estimates.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
