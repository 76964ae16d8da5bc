"""Screenshots of the views a newcomer and a class meet, for the closing note and the README: the Classroom's
teacher (projector, 1280x720) and student (phone, 390x844) views, Gradients' Fig. 7, Compare as it opens, the Lab's
live diagram, each in normal and presentation mode where it matters. Runs against any checkout (``--repo``), so the
same script photographs the code before and after a change.

    python -m bench.screenshots --out assets/screenshots [--repo PATH] [--data-dir data]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from e2e import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402

PROJECTOR = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}


def serve(repo: Path, folder: Path, data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "EXPLORER_STORE": str(folder / "runs.sqlite"), "EXPLORER_WORKERS": "0",
           "EXPLORER_DATA_DIR": data_dir, "PYTHONPATH": str(repo)}
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port",
                                str(port), "--server.headless", "true"], cwd=repo, env=env,
                               stdout=open(folder / "server.log", "wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return process, url
        except OSError:
            time.sleep(0.5)
    raise RuntimeError((folder / "server.log").read_text()[-2000:])


def settle(page, seconds: float = 4.0) -> None:
    page.get_by_role("heading").first.wait_for(timeout=120_000)
    time.sleep(seconds)


def shoot(page, out: Path, name: str, scroll_to: str | None = None) -> None:
    if scroll_to:
        target = page.get_by_text(scroll_to).first
        target.scroll_into_view_if_needed(timeout=30_000)
        time.sleep(1.5)
    page.screenshot(path=str(out / f"{name}.png"))
    print("wrote", out / f"{name}.png", flush=True)


def classroom(browser, url: str, out: Path) -> None:
    teacher = browser.new_page(viewport=PROJECTOR)
    teacher.goto(f"{url}/Classroom")
    settle(teacher, 2)
    teacher.get_by_role("button", name="Open the lesson").click()
    teacher.wait_for_url("**lesson=*", timeout=60_000)
    settle(teacher)
    shoot(teacher, out, "classroom-teacher-voting")
    lesson = teacher.url.split("lesson=")[1].split("&")[0]
    student = browser.new_context(viewport=PHONE, is_mobile=True).new_page()  # a phone: its own browser
    join = teacher.locator("a[href*='/join/']")
    if join.count():  # what a student does: follow the link the projector shows (its QR code)
        href = join.first.get_attribute("href")
        print("student follows", href, flush=True)
        student.goto(href)
    else:  # the code before join links
        student.goto(f"{url}/Classroom?lesson={lesson}")
    settle(student)
    options = student.locator(".rx-option")
    if options.count():
        options.first.click()  # the live ballot
    else:
        student.get_by_role("radio").first.click(force=True)  # the old page's radio and button
        student.get_by_role("button", name="Vote").click()
    time.sleep(3)
    shoot(student, out, "classroom-student-voting")
    teacher.get_by_role("button", name="Reveal the recorded run").click()
    settle(teacher, 8)
    shoot(teacher, out, "classroom-teacher-reveal")
    student.reload()
    settle(student, 8)
    shoot(student, out, "classroom-student-reveal")


def recorded_run(repo: Path, kind: str) -> str:
    """The run id of the classic demo recorded on a `kind` machine in `repo`'s checkout."""
    return json.loads((repo / "assets" / "recorded" / kind / "degradation" / "run.json").read_text())["run"]["run_id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "assets" / "screenshots"))
    parser.add_argument("--repo", default=str(REPO))
    parser.add_argument("--data-dir", default=str(REPO / "data"))
    parser.add_argument("--only", default="classroom,gradients,compare,presentation")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="screenshots-"))
    server, url = serve(Path(args.repo), folder, args.data_dir)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            warm = browser.new_page()
            warm.goto(url)
            settle(warm, 2)
            warm.close()
            if "classroom" in args.only:
                classroom(browser, url, out)
            wide = browser.new_page(viewport={"width": 1280, "height": 900})
            if "gradients" in args.only:
                wide.goto(f"{url}/Gradients?run={recorded_run(Path(args.repo), 'cpu')}")
                settle(wide, 6)
                shoot(wide, out, "gradients-fig7", scroll_to="Sort by size")
            if "compare" in args.only:
                wide.goto(f"{url}/Compare")
                settle(wide, 6)
                shoot(wide, out, "compare-opening")
                shoot(wide, out, "compare-sweeps", scroll_to="Sweeps")
            if "presentation" in args.only:
                wide.goto(f"{url}/Lab?run={recorded_run(Path(args.repo), 'gpu')}")
                settle(wide, 6)
                shoot(wide, out, "lab-diagram", scroll_to="Colour by")
                wide.get_by_text("Presentation mode").click()
                time.sleep(5)
                shoot(wide, out, "lab-presentation", scroll_to="Colour by")
            browser.close()
    finally:
        os.killpg(server.pid, 15)


if __name__ == "__main__":
    main()
