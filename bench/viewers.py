"""A class watching one live run: what each viewer costs the server, how late each viewer's chart is, how fast the
worker trains beside them, and how soon a class's votes reach the tally.

Set-up (the configuration users run): a `streamlit run` server (EXPLORER_WORKERS=0) on core 0, a worker
(`python -m explorer worker`) on core 1, the classic demo as the app sizes it on a CPU (the degradation preset:
four quarter-width nets, batch 32, one thread) on real CIFAR-10, submitted with `jobs.submit` as the Lab does.

Viewers are light clients that behave as the Lab page does in a browser: each opens the run's view link over
Streamlit's websocket (one script run, its elements read from the page it receives), then long-polls the app's
live route with exactly the views that page mounted, applies every patch to the figures it holds, and counts the
points of the error chart. They run in one asyncio process on the server's core, so the worker's core is its own
(``--unpinned`` drops all pinning). `--chromium N` adds N real Chromium tabs to check a light client against a
browser: their polls per second and script reruns should match.

Per number of viewers it prints: server cores busy (CPU seconds of the server process per second, read from
/proc), the viewers' own CPU, polls and script reruns per viewer per second, chart lag (seconds from a step's
progress landing in the store to a viewer receiving it; p50/p95 over all viewers and polls), how many viewers'
charts grew, and the worker's images/s against the same run's first steps on the CLI alone (side by side in this
run). `--voters N` then opens a lesson, N light students vote within two seconds, and a teacher's tally poll reports
when all N votes are in.

    python -m bench.viewers [--viewers 1,30,100] [--seconds 30] [--voters 30] [--chromium 1] [--data cifar10]
    python -m bench.viewers --tiny   # a synthetic two-model run, a few viewers: the bench itself, in a test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlencode

import websockets

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from explorer import jobs, lessons  # noqa: E402
from explorer.config import Config  # noqa: E402
from explorer.presets import PRESETS  # noqa: E402
from explorer.store import RunStore  # noqa: E402

TINY_QUERY = {"models": "plain8,resnet8", "subset": "500", "test": "200", "batch": "32", "steps": "3000",
              "probe": "20", "data": "synthetic", "threads": "1", "device": "cpu"}


# --- processes -------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pinned(core: int | None, command: list[str]) -> list[str]:
    return command if core is None else ["taskset", "-c", str(core), *command]


@contextmanager
def server(folder: Path, env: dict[str, str], core: int | None) -> Iterator[tuple[str, int]]:
    """A `streamlit run` server on a free port: (its URL, its pid)."""
    port = _free_port()
    log = open(folder / "server.log", "wb")
    process = subprocess.Popen(_pinned(core, [sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                                              "--server.port", str(port), "--server.address", "127.0.0.1",
                                              "--server.headless", "true"]),
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((folder / "server.log").read_text()[-2000:])
                time.sleep(0.5)
        yield url, process.pid
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)
        log.close()


@contextmanager
def worker(store: Path, env: dict[str, str], core: int | None) -> Iterator[int]:
    process = subprocess.Popen(_pinned(core, [sys.executable, "-m", "explorer", "--store", str(store), "worker"]),
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        yield process.pid
    finally:
        os.killpg(process.pid, 15)
        process.wait(60)


def images_per_s(store: RunStore, run_id: str, first_step: int, last_step: int) -> float:
    """The run's training speed between two of its steps, from its own wall clock (first model's rows)."""
    steps = store.steps(run_id)
    one = steps[steps.model == steps.model.iloc[0]].set_index("step")["wall"]
    last_step = min(last_step, int(one.index.max()))
    batch = store.config(run_id).optim.batch_size
    return (last_step - first_step) * batch / float(one[last_step] - one[first_step])


def cli_speed(config: Config, folder: Path, env: dict[str, str], core: int | None, steps: int) -> float:
    """The same run (the same configuration, so the same evaluation and probe schedule) on the command line alone,
    stopped with Ctrl-C after `steps` steps: its speed from step 10 on."""
    store_path = folder / "cli.sqlite"
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in config.to_query().items()]
    process = subprocess.Popen(_pinned(core, [sys.executable, "-m", "explorer", "--store", str(store_path), "train",
                                              *flags]), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        runs = RunStore(store_path).runs() if store_path.exists() else None
        if runs is not None and len(runs) and RunStore(store_path).latest_step(runs.run_id.iloc[0]) >= steps:
            break
    process.send_signal(2)
    process.wait(120)
    store = RunStore(store_path)
    run_id = store.runs().run_id.iloc[0]
    return images_per_s(store, run_id, 10, store.latest_step(run_id))


# --- what lands in the store ---------------------------------------------------------------------------------------
class Landings:
    """When each progress step first appeared in the store (read every 20 ms): the clock chart lag counts from."""

    def __init__(self, store_path: Path, run_id: str):
        self.store, self.run_id = RunStore(store_path), run_id
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self.stop.wait(0.02):
            progress = json.loads(self.store.run(self.run_id)["progress"] or "{}")
            self.seen.setdefault(int(progress.get("step", 0)), time.monotonic())


# --- a light viewer --------------------------------------------------------------------------------------------------
def _rerun(query: str) -> bytes:
    from streamlit.proto.BackMsg_pb2 import BackMsg

    message = BackMsg()
    message.rerun_script.query_string = query
    return message.SerializeToString()


@dataclass
class Page:
    elements: list[dict] = field(default_factory=list)  # the live elements' data
    texts: list[str] = field(default_factory=list)  # every Markdown, caption and alert body drawn
    runs: int = 0  # script runs this session did (first load included)


async def open_page(url: str, query: dict[str, str], page: Page, timeout: float = 120.0) -> websockets.ClientConnection:
    """A Streamlit session on `query` (``page=Lab&run=...``), as a browser opens it: until its script finished."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    socket_ = await websockets.connect(url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"],
                                       max_size=None, open_timeout=timeout)
    await socket_.send(_rerun(urlencode(query)))
    deadline = time.monotonic() + timeout
    while True:
        message = ForwardMsg()
        message.ParseFromString(await asyncio.wait_for(socket_.recv(), deadline - time.monotonic()))
        kind = message.WhichOneof("type")
        if kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            element = message.delta.new_element
            kind = element.WhichOneof("type")
            if kind == "bidi_component":
                page.elements.append(json.loads(element.bidi_component.json))
            elif kind in ("markdown", "alert"):
                page.texts.append(getattr(element, kind).body)
        elif kind == "script_finished":
            page.runs += 1
            if message.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
                return socket_


async def count_reruns(socket_: websockets.ClientConnection, page: Page) -> None:
    """Keeps the session open and counts any further script run the server does for it (a live page does none)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async for raw in socket_:
        message = ForwardMsg()
        message.ParseFromString(raw)
        if message.WhichOneof("type") == "script_finished":
            page.runs += 1


@dataclass
class Watch:
    polls: int = 0
    lags: list[float] = field(default_factory=list)
    first_points: int = 0
    points: int = 0
    failures: int = 0


def _apply(held: dict, change: dict) -> dict:
    if "full" in change:
        return change["full"]
    data = list(held.get("data", []))
    for trace in change.get("traces", []):
        if "trace" in trace:
            data[trace["i"]] = trace["trace"]
        else:
            updated = dict(data[trace["i"]])
            for column, added in trace["add"].items():
                updated[column] = updated.get(column, [])[:trace["keep"]] + added
            data[trace["i"]] = updated
    return {"data": data, "layout": change.get("layout", held.get("layout"))}


async def watch_run(http, base: str, page: Page, landings: Landings, watch: Watch, until: float) -> None:
    """Long-poll the live route with the views the page mounted, as live.js does, holding the figures."""
    url = next(e["url"] for e in page.elements if e["kind"] in ("chart", "status"))
    views = sorted({e["view"] for e in page.elements if e["kind"] == "chart"})
    errors = next(v for v in views if v.startswith("errors:"))
    held: dict[str, dict] = {}
    version = -1
    while time.monotonic() < until:
        try:
            answer = await http.get(base + url, params={"views": ",".join(views), "v": version}, timeout=60)
            body = answer.json()
        except Exception:
            watch.failures += 1
            await asyncio.sleep(1)
            continue
        now = time.monotonic()
        watch.polls += 1
        version = body["v"]
        for key, change in body["charts"].items():
            held[key] = _apply(held.get(key, {}), change)
        step = int(body["status"]["parts"][0].split()[1].replace(",", "")) if body["status"]["parts"] else 0
        if step in landings.seen and watch.polls > 1:
            watch.lags.append(now - landings.seen[step])
        points = sum(len(t.get("x", [])) for t in held.get(errors, {}).get("data", []))
        watch.first_points = watch.first_points or points
        watch.points = points


async def viewers_round(url: str, run_id: str, count: int, seconds: float, landings: Landings, server_pid: int
                        ) -> dict:
    """`count` light viewers of the run's view link for `seconds`: the server's CPU, the viewers', lag, growth."""
    import httpx2 as httpx

    pages = [Page() for _ in range(count)]
    sockets = await asyncio.gather(*(open_page(url, {"page": "Lab", "run": run_id}, page) for page in pages))
    loaded_runs = [page.runs for page in pages]
    counters = [asyncio.create_task(count_reruns(s, p)) for s, p in zip(sockets, pages)]
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(limits=limits) as http:
        warm_until = time.monotonic() + 3
        warm = [Watch() for _ in pages]
        await asyncio.gather(*(watch_run(http, url, p, landings, w, warm_until) for p, w in zip(pages, warm)))
        watches = [Watch() for _ in pages]
        own_before, server_before, started = time.process_time(), cpu_seconds(server_pid), time.monotonic()
        until = started + seconds
        await asyncio.gather(*(watch_run(http, url, p, landings, w, until) for p, w in zip(pages, watches)),
                             asyncio.sleep(seconds))  # a round of 0 viewers: the server's cost with nobody watching
        elapsed = time.monotonic() - started
        server_cpu, own_cpu = cpu_seconds(server_pid) - server_before, time.process_time() - own_before
    for task in counters:
        task.cancel()
    for socket_ in sockets:
        await socket_.close()
    lags = sorted(lag for w in watches for lag in w.lags)
    grew = sum(w.points > w.first_points for w in watches)
    return {
        "viewers": count, "seconds": round(elapsed, 1), "server_cores": round(server_cpu / elapsed, 3),
        "viewer_process_cores": round(own_cpu / elapsed, 3),
        "polls_per_viewer_per_s": round(sum(w.polls for w in watches) / max(count, 1) / elapsed, 2),
        "reruns_per_viewer_per_s": round(sum(p.runs - r for p, r in zip(pages, loaded_runs))
                                         / max(count, 1) / elapsed, 3),
        "lag_p50_s": round(lags[len(lags) // 2], 2) if lags else None,
        "lag_p95_s": round(lags[int(len(lags) * 0.95)], 2) if lags else None,
        "charts_grew": f"{grew}/{count}", "failures": sum(w.failures for w in watches),
    }


async def class_votes(url: str, store: RunStore, voters: int) -> dict:
    """A lesson opened by a teacher, `voters` students who open its link and vote within two seconds, and the
    teacher's tally poll: seconds from the last vote's answer to the tally showing every vote."""
    import httpx2 as httpx

    lesson_id = lessons.open_lesson(store, "deeper-plain", "bench-teacher-key-0000").lesson_id
    pages = [Page() for _ in range(voters)]
    sockets = await asyncio.gather(*(open_page(url, {"page": "Classroom", "lesson": lesson_id}, p) for p in pages))
    ballot = next(e for e in pages[0].elements if e["kind"] == "ballot")
    tallied: dict[str, float] = {}
    last_vote = 0.0

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=voters + 10)) as http:
        async def teacher() -> None:
            version = -1
            while True:
                body = (await http.get(url + ballot["url"], params={"v": version}, timeout=60)).json()
                version = body["v"]
                if body["total"] >= voters:
                    tallied["at"] = time.monotonic()
                    return

        async def student(i: int) -> None:
            nonlocal last_vote
            await asyncio.sleep(random.uniform(0, 2))
            answer = await http.post(f"{url}{ballot['url']}/vote", json={"voter": f"bench-student-{i:04d}",
                                                                         "choice": random.choice(list(ballot["options"]))})
            answer.raise_for_status()
            last_vote = max(last_vote, time.monotonic())

        tally = asyncio.create_task(teacher())
        await asyncio.gather(*(student(i) for i in range(voters)))
        await asyncio.wait_for(tally, 30)
    for socket_ in sockets:
        await socket_.close()
    return {"voters": voters, "in_tally": sum(lessons.tally(store, lesson_id).values()),
            "seconds_after_last_vote": round(tallied["at"] - last_vote, 3)}


def chromium_check(url: str, run_id: str, seconds: float, tabs: int, server_pid: int) -> dict:
    """Real Chromium tabs on the view link: their live polls per second, script reruns (charts drawn) and the
    server's cores busy while they watch."""
    sys.path.insert(0, str(REPO / "tests"))
    from e2e import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        polls, frames = [0], [0]
        for _ in range(tabs):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: polls.__setitem__(0, polls[0] + ("/live?" in r.url)))
            page.on("websocket", lambda ws: ws.on("framereceived", lambda _: frames.__setitem__(0, frames[0] + 1)))
            page.goto(f"{url}/Lab?run={run_id}")
            page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        time.sleep(3)
        polls[0], frames[0] = 0, 0
        busy = cpu_seconds(server_pid)
        time.sleep(seconds)
        busy = cpu_seconds(server_pid) - busy
        browser.close()
    return {"tabs": tabs, "polls_per_tab_per_s": round(polls[0] / tabs / seconds, 2),
            "websocket_frames_per_tab_per_s": round(frames[0] / tabs / seconds, 2),
            "server_cores": round(busy / seconds, 3)}


def wait_running(store: RunStore, run_id: str, steps: int = 30, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.status(run_id).final:
            raise RuntimeError(f"the run ended early: {store.run(run_id)['error']}")
        if store.latest_step(run_id) >= steps:
            return
        time.sleep(0.5)
    raise RuntimeError("the run did not start training")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="1,30,100", help="comma-separated viewer counts, one round each")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per round")
    parser.add_argument("--voters", type=int, default=30)
    parser.add_argument("--chromium", type=int, default=0, help="real Chromium tabs to compare with (0: none)")
    parser.add_argument("--data", default="cifar10", help="data source of the demo run")
    parser.add_argument("--data-dir", default=str(REPO / "data"))
    parser.add_argument("--unpinned", action="store_true", help="no taskset: server, worker and viewers float")
    parser.add_argument("--cli-steps", type=int, default=150, help="steps of the CLI baseline (0: skip it)")
    parser.add_argument("--tiny", action="store_true", help="synthetic two-model run, short rounds (for a test)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.viewers.split(",") if n]
    server_core, worker_core = (None, None) if args.unpinned or (os.cpu_count() or 1) < 2 else (0, 1)
    folder = Path(tempfile.mkdtemp(prefix="bench-viewers-"))
    store_path = folder / "runs.sqlite"
    env = {**os.environ, "EXPLORER_STORE": str(store_path), "EXPLORER_WORKERS": "0",
           "EXPLORER_DATA_DIR": args.data_dir, "PYTHONUNBUFFERED": "1"}
    os.environ.update({k: env[k] for k in ("EXPLORER_STORE", "EXPLORER_DATA_DIR")})
    config = (Config.from_query(TINY_QUERY) if args.tiny
              else PRESETS["degradation"].config(device="cpu", data_source=args.data))
    results: dict = {"load_before": os.getloadavg(), "config": config.to_query(),
                     "pinned": server_core is not None, "rounds": []}
    if args.cli_steps:
        results["cli_images_per_s"] = round(cli_speed(config, folder, env, worker_core, args.cli_steps), 1)
        print("CLI alone:", results["cli_images_per_s"], "images/s", flush=True)
    store = RunStore(store_path)
    with server(folder, env, server_core) as (url, server_pid), worker(store_path, env, worker_core):
        if server_core is not None:
            os.sched_setaffinity(0, {server_core})  # the light viewers share the server's core
        run_id = jobs.submit(store, config, "bench-viewers-owner").run_id
        wait_running(store, run_id)
        landings = Landings(store_path, run_id)
        for count in counts:
            if store.status(run_id).final:
                print("the run finished: no more rounds", flush=True)
                break
            first = store.latest_step(run_id)
            row = asyncio.run(viewers_round(url, run_id, count, args.seconds, landings, server_pid))
            row["worker_images_per_s"] = round(images_per_s(store, run_id, first, store.latest_step(run_id)), 1)
            if "cli_images_per_s" in results:
                row["app_over_cli"] = round(row["worker_images_per_s"] / results["cli_images_per_s"], 3)
            results["rounds"].append(row)
            print(json.dumps(row), flush=True)
        if args.chromium and not store.status(run_id).final:
            first = store.latest_step(run_id)
            results["chromium"] = chromium_check(url, run_id, args.seconds, args.chromium, server_pid)
            results["chromium"]["worker_images_per_s"] = round(
                images_per_s(store, run_id, first, store.latest_step(run_id)), 1)
            if "cli_images_per_s" in results:
                results["chromium"]["app_over_cli"] = round(
                    results["chromium"]["worker_images_per_s"] / results["cli_images_per_s"], 3)
            print("chromium:", json.dumps(results["chromium"]), flush=True)
        if args.voters:
            results["votes"] = asyncio.run(class_votes(url, store, args.voters))
            print("votes:", json.dumps(results["votes"]), flush=True)
        landings.stop.set()
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
