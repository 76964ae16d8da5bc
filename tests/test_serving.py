"""More than one app process on one host: two `streamlit run` servers on one run store serve the same live run and
the same lesson, and HAProxy with docker/haproxy.cfg's stickiness keeps a browser on one of them. Real servers, no
browser: the live route as live.js polls it, and a Streamlit session opened as a browser opens it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from email.message import Message
from pathlib import Path

import pytest

from bench.viewers import Page, open_page
from e2e import app_server, free_port
from explorer import lessons
from explorer.store import RunStore
from test_live import flush, new_run

TEACHER = "teacher-key-0000000000"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[dict, Message]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read()), answer.headers


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def session_elements(url: str, query: dict[str, str]) -> list[dict]:
    async def visit() -> list[dict]:
        page = Page()
        socket = await open_page(url, query, page)
        await socket.close()
        return page.elements

    return asyncio.run(visit())


@pytest.fixture
def two_servers(tmp_path):
    store_path = tmp_path / "runs.sqlite"
    env = {"EXPLORER_STORE": str(store_path), "EXPLORER_WORKERS": "0"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with app_server(tmp_path / "a", **env) as a, app_server(tmp_path / "b", **env) as b:
        yield RunStore(store_path), a, b


def test_two_processes_serve_one_live_run_and_one_lesson(two_servers):
    store, a, b = two_servers
    run_id = new_run(store)
    flush(store, run_id, 0, 40)
    views = "?views=errors:epoch:1&v=-1"
    on_a, _ = get(f"{a}/api/runs/{run_id}/live{views}")
    on_b, _ = get(f"{b}/api/runs/{run_id}/live{views}")
    assert on_a["status"] == on_b["status"] and on_a["charts"] == on_b["charts"]

    waiting = {}
    watchers = [threading.Thread(target=lambda s=server: waiting.__setitem__(
        s, get(f"{s}/api/runs/{run_id}/live?views=errors:epoch:1&v={on_a['v'] if s == a else on_b['v']}")[0]))
        for server in (a, b)]
    for thread in watchers:
        thread.start()
    time.sleep(0.5)
    flush(store, run_id, 40, 50)  # a worker's flush, seen by both processes' long polls
    for thread in watchers:
        thread.join(10)
    assert all(body["status"]["parts"][0] == "step 50 / 600" for body in waiting.values()) and len(waiting) == 2

    lesson_id = lessons.open_lesson(store, "deeper-plain", TEACHER).lesson_id
    tally, _ = get(f"{b}/api/lessons/{lesson_id}?v=-1")
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(get(f"{b}/api/lessons/{lesson_id}?v={tally['v']}")[0]))
    thread.start()
    time.sleep(0.3)
    voted = time.monotonic()
    assert post(f"{a}/api/lessons/{lesson_id}/vote", {"voter": "phone-0001", "choice": "plain56"})["ok"]
    thread.join(10)
    assert answer["counts"]["plain56"] == 1 and time.monotonic() - voted < 2.0  # B saw A's vote within a poll

    for server in (a, b):  # each serves a Streamlit session of the same view link and the same lesson
        elements = session_elements(server, {"page": "Lab", "run": run_id})
        assert {e["url"] for e in elements if e["kind"] in ("chart", "status")} == {f"/api/runs/{run_id}/live"}
        ballot = [e for e in session_elements(server, {"page": "Classroom", "lesson": lesson_id})
                  if e["kind"] == "ballot"]
        assert ballot and ballot[0]["url"] == f"/api/lessons/{lesson_id}"


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (apt-get install haproxy)")
def test_haproxy_keeps_a_browser_on_the_process_that_served_it(two_servers, tmp_path):
    store, a, b = two_servers
    port = free_port()
    config = (Path(__file__).resolve().parent.parent / "docker" / "haproxy.cfg").read_text()
    config = (config.replace("bind :8501", f"bind 127.0.0.1:{port}")
              .replace("app:8501", a.split("//")[1]).replace("app2:8501", b.split("//")[1]))
    (tmp_path / "haproxy.cfg").write_text(config)
    proxy = subprocess.Popen(["haproxy", "-f", str(tmp_path / "haproxy.cfg")], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.2)
        run_id = new_run(store)
        flush(store, run_id, 0, 10)
        served = [get(f"{url}/api/runs/{run_id}/live?v=-1")[1] for _ in range(4)]
        assert {h.get("X-Explorer-Server") for h in served} == {"app1", "app2"}  # new browsers are spread
        cookie = served[0].get("Set-Cookie").split(";")[0]
        pinned = {get(f"{url}/api/runs/{run_id}/live?v=-1", {"Cookie": cookie})[1].get("X-Explorer-Server")
                  for _ in range(4)}
        assert pinned == {served[0].get("X-Explorer-Server")}  # one browser stays on one process
        elements = session_elements(url, {"page": "Lab", "run": run_id})  # a websocket session through the proxy
        assert any(e["kind"] == "status" for e in elements)
    finally:
        proxy.terminate()
        proxy.wait(10)
