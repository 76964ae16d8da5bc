"""Predict, then reveal, in real browsers: a teacher and five students, each in their own browser context.

The teacher opens a lesson; the students open its link, vote from a phone-sized window (no horizontal scroll) and
see their vote counted on the projector; the teacher reveals the recorded run and everyone sees the answer, read
off the run. The teacher's view is sized for a 1280x720 projector: question, chart and answer fit without
scrolling. Skipped when Chromium or Playwright is missing.
"""

import re

import pytest

from e2e import CHROMIUM, CHROMIUM_ARGS, app_server

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")]
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
STUDENTS = 5
PROJECTOR = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}


def test_a_class_joins_by_code_votes_and_sees_the_reveal(tmp_path):
    with app_server(tmp_path, EXPLORER_WORKERS="0") as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        teacher = browser.new_context(viewport=PROJECTOR).new_page()
        teacher.set_default_timeout(90_000)
        teacher.goto(f"{url}/Classroom")
        teacher.locator(".st-key-open_lesson button").click()
        teacher.wait_for_url(re.compile(r"lesson=L[0-9a-f]+"))
        assert "key=" in teacher.url
        code = re.search(r"Lesson code: ([2-9A-Z]{5})", teacher.get_by_text("Lesson code:").inner_text())[1]
        join = teacher.locator("code").filter(has_text="/join/").first.text_content().strip()  # in an expander
        assert join.endswith(f"/join/{code}") and "\\" not in join and "127.0.0.1" not in join  # a phone can open it
        assert teacher.locator("img").first.is_visible()  # the QR code
        assert teacher.locator('[data-testid="stSidebar"]').is_hidden()  # the projector has no sidebar

        students = []
        for i in range(STUDENTS):
            student = browser.new_context(viewport=PHONE, is_mobile=True).new_page()
            student.set_default_timeout(90_000)
            student.goto(f"{url}/join/{code.lower()}")  # typed on a phone, any case
            option = "Plain-20 (the shallow one)" if i < 3 else "Plain-56 (the deep one)"
            student.locator(".rx-option", has_text=option).click()
            student.get_by_text(re.compile("^Your vote:")).wait_for()
            assert student.locator(".st-key-reveal_recorded").count() == 0  # students cannot reveal
            width = student.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"horizontal scroll on a phone: {width}"
            students.append(student)

        teacher.wait_for_function(  # the projector's tally counts every vote, without a page rerun
            "() => [...document.querySelectorAll('.rx-tally-count')].map(t => +t.textContent)"
            f".reduce((a, b) => a + b, 0) === {STUDENTS}", timeout=5_000)
        teacher.locator(".st-key-reveal_recorded button").click()
        answer = teacher.get_by_text(re.compile(r"^Answer: Plain-20"))
        answer.wait_for()
        chart = teacher.locator(".js-plotly-plot").first
        chart.wait_for()
        teacher.screenshot(path=str(tmp_path / "projector.png"))
        box, chart_box = answer.bounding_box(), chart.bounding_box()
        assert chart_box["y"] >= 0 and chart_box["y"] + chart_box["height"] <= PROJECTOR["height"], chart_box
        assert box["y"] + box["height"] <= PROJECTOR["height"], f"the answer is below the fold: {box}"
        teacher.get_by_text(re.compile(r"The class predicted \(5 votes\)")).first.wait_for()

        for student in students:
            student.get_by_text(re.compile(r"^Answer: Plain-20")).wait_for()
        students[3].get_by_text("You predicted: Plain-56 (the deep one)").wait_for()
        teacher.screenshot(path=str(tmp_path / "projector.png"))
        students[0].screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        browser.close()
