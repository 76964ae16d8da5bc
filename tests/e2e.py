"""The app in a real browser for the end-to-end tests: a `streamlit run` server on a free port with its own store,
and Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking",
                 "--disable-component-update"]
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def app_server(folder: Path, **env: str) -> Iterator[str]:
    """A streamlit server on its own store and an empty data directory (so it trains on the synthetic set)."""
    port = free_port()
    environment = {**os.environ, "EXPLORER_STORE": str(folder / "runs.sqlite"),
                   "EXPLORER_DATA_DIR": str(folder / "data"), **env}
    log = open(folder / "server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start: {(folder / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:  # the server and its embedded workers (its process group): none trains on after the test
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def first_visit(browser, url: str, store_path: Path, worker_timeout_s: float = 120.0) -> None:
    """Open the app once, as a first visitor would, and wait for the worker that visit starts (the app starts its
    embedded pool on a session's first run). The first visit after a server starts may see Streamlit's "Page not
    found" dialog while the old-style router of pages/ hands over to st.navigation: this visit takes it."""
    from explorer import jobs
    from explorer.store import RunStore

    page = browser.new_page()
    page.goto(url)
    page.get_by_role("heading").first.wait_for(timeout=120_000)
    page.close()
    deadline = time.monotonic() + worker_timeout_s
    while not jobs.live_workers(RunStore(store_path)) and time.monotonic() < deadline:
        time.sleep(0.5)
