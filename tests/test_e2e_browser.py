"""The app in a real browser: `streamlit run` on a free port, driven by Playwright in Debian's headless Chromium.

The first page opened is a deep link into the Lab on a fresh server (the case an old-style multipage router would
get wrong), with a tiny configuration on the synthetic set; it presses Train, waits until the error chart gains
points (trained by the app's own worker process), checks that a second visitor with the view link watches without
controls, presses Stop, reloads, and finds the run again with its controls (the owner's key is in the URL).
A screenshot goes to $E2E_SCREENSHOT_DIR (else the test's tmp folder). Skipped when Chromium or Playwright is
missing.
"""

import os
import re
from pathlib import Path

import pytest

from e2e import CHROMIUM, CHROMIUM_ARGS, app_server

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


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> str:
    with app_server(tmp_path_factory.mktemp("e2e")) as url:
        yield url


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.set_default_timeout(120_000)
    return page


def test_a_fresh_servers_first_visitor_deep_links_without_errors(tmp_path, browser):
    """The first visit after a server starts opens /Learn, then a run's view link: no "Page not found" dialog, no
    console error, nothing fetched from another host."""
    with app_server(tmp_path, EXPLORER_WORKERS="0") as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors, elsewhere = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)
        page.goto(f"{url}/Learn")
        page.get_by_role("heading", name="Why deeper nets got worse").first.wait_for(timeout=120_000)
        recorded = re.search(r"Reference run (r\d{8}-\d{6}-[0-9a-f]+)", page.get_by_text("Reference run").first.inner_text())[1]
        page.goto(f"{url}/Lab?run={recorded}")
        page.get_by_role("heading", name="Lab").wait_for(timeout=120_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        assert "/Lab" in page.url and f"run={recorded}" in page.url
        assert page.locator('[role="dialog"]').count() == 0
        assert errors == [] and elsewhere == []


def test_train_watch_stop_reload_in_a_real_browser(app_url, browser, page, tmp_path):
    page.goto(app_url + TINY_LAB)
    page.get_by_role("heading", name="Lab").wait_for()
    page.locator(".st-key-train button").click()
    page.wait_for_url(re.compile(r"[?&]run=r.*[?&]key=|[?&]key=.*[?&]run=r"))
    run_id = re.search(r"[?&]run=([^&]+)", page.url)[1]
    assert "models=plain8%2Cresnet8" in page.url or "models=plain8,resnet8" in page.url

    page.wait_for_function(f"() => ({POINTS_JS})() > 0")
    first = page.evaluate(POINTS_JS)
    page.wait_for_function(f"() => ({POINTS_JS})() > {first}")  # the live chart gains points

    viewer = browser.new_page(viewport={"width": 1400, "height": 1400})  # another visitor, with the view link
    viewer.set_default_timeout(120_000)
    viewer.goto(f"{app_url}/Lab?run={run_id}")
    viewer.get_by_text("You are watching").wait_for()
    assert viewer.locator(".st-key-stop").count() == 0
    viewer.close()

    page.locator(".st-key-stop button").click()
    status = page.get_by_text(re.compile(r"^stopped · step"))
    status.wait_for()

    page.reload()
    page.get_by_role("heading", name="Lab").wait_for()
    page.get_by_text(re.compile(r"^stopped · step")).wait_for()
    assert run_id in page.url
    page.locator(".st-key-restart button").wait_for()  # the owner (key in the URL) can resume it
    page.wait_for_function(f"() => ({POINTS_JS})() > 0")
    folder = Path(os.environ.get("E2E_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "lab.png"), full_page=True)
    assert (folder / "lab.png").stat().st_size > 10_000
