"""The app in a real browser: `streamlit run` on a free port, driven by Playwright in Debian's headless Chromium.

Opens the Lab with a tiny configuration on the synthetic set (from the URL), presses Train, waits until the error
chart gains points, presses Stop, reloads, and finds the run again. A screenshot goes to $E2E_SCREENSHOT_DIR
(else the test's tmp folder). Skipped when Chromium or Playwright is missing.
"""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking",
                 "--disable-component-update"]
REPO = Path(__file__).resolve().parent.parent
TINY_LAB = "/Lab?models=plain8,resnet8&subset=200&test=100&batch=32&steps=600&eval=10&probe=5&threads=1"
# Points drawn in the first chart (the error chart); plotly keeps the decoded arrays in _fullData.
POINTS_JS = """() => {
    const chart = document.querySelector('.js-plotly-plot');
    return chart && chart._fullData ? chart._fullData.reduce((n, trace) => n + (trace.x ? trace.x.length : 0), 0) : 0;
}"""

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> str:
    """A streamlit server on its own store and an empty data directory (so it trains on the synthetic set)."""
    folder = tmp_path_factory.mktemp("e2e")
    port = free_port()
    env = {**os.environ, "EXPLORER_STORE": str(folder / "runs.sqlite"), "EXPLORER_DATA_DIR": str(folder / "data")}
    log = open(folder / "server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start: {(folder / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def page():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.set_default_timeout(120_000)
        yield page
        browser.close()


def test_train_watch_stop_reload_in_a_real_browser(app_url, page, tmp_path):
    page.goto(app_url + TINY_LAB)
    page.get_by_role("heading", name="Lab").wait_for()
    page.locator(".st-key-train button").click()
    page.wait_for_url(re.compile(r"[?&]run=r"))
    run_id = re.search(r"[?&]run=([^&]+)", page.url)[1]
    assert "models=plain8%2Cresnet8" in page.url or "models=plain8,resnet8" in page.url

    page.wait_for_function(f"() => ({POINTS_JS})() > 0")
    first = page.evaluate(POINTS_JS)
    page.wait_for_function(f"() => ({POINTS_JS})() > {first}")  # the live chart gains points

    page.locator(".st-key-stop button").click()
    status = page.get_by_text(re.compile(r"^stopped · step"))
    status.wait_for()

    page.reload()
    page.get_by_role("heading", name="Lab").wait_for()
    page.get_by_text(re.compile(r"^stopped · step")).wait_for()
    assert run_id in page.url
    page.wait_for_function(f"() => ({POINTS_JS})() > 0")
    folder = Path(os.environ.get("E2E_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "lab.png"), full_page=True)
    assert (folder / "lab.png").stat().st_size > 10_000
