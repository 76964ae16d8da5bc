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


def test_a_class_votes_and_sees_the_reveal(tmp_path):
    with app_server(tmp_path, EXPLORER_WORKERS="0") as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        teacher = browser.new_context(viewport=PROJECTOR).new_page()
        teacher.set_default_timeout(90_000)
        teacher.goto(f"{url}/Classroom")
        teacher.locator(".st-key-open_lesson button").click()
        teacher.wait_for_url(re.compile(r"lesson=L[0-9a-f]+"))
        lesson = re.search(r"lesson=(L[0-9a-f]+)", teacher.url)[1]
        assert "key=" in teacher.url
        teacher.get_by_text("Students open").wait_for()

        students = []
        for i in range(STUDENTS):
            student = browser.new_context(viewport=PHONE, is_mobile=True).new_page()
            student.set_default_timeout(90_000)
            student.goto(f"{url}/Classroom?lesson={lesson}")
            option = "Plain-20 (the shallow one)" if i < 3 else "Plain-56 (the deep one)"
            student.get_by_text(option).click()
            student.locator(".st-key-vote button").click()
            student.get_by_text(re.compile("^Your vote:")).wait_for()
            assert student.locator(".st-key-reveal_recorded").count() == 0  # students cannot reveal
            width = student.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"horizontal scroll on a phone: {width}"
            students.append(student)

        teacher.wait_for_function(  # the projector's tally counts every vote (the bar labels are the counts)
            "() => [...document.querySelectorAll('.js-plotly-plot text.bartext')].map(t => +t.textContent)"
            f".reduce((a, b) => a + b, 0) === {STUDENTS}")
        teacher.locator(".st-key-reveal_recorded button").click()
        answer = teacher.get_by_text(re.compile(r"^Answer: Plain-20"))
        answer.wait_for()
        teacher.screenshot(path=str(tmp_path / "projector.png"))
        box, chart = answer.bounding_box(), teacher.locator(".js-plotly-plot").first.bounding_box()
        assert chart["y"] >= 0 and chart["y"] + chart["height"] <= PROJECTOR["height"], chart
        assert box["y"] + box["height"] <= PROJECTOR["height"], f"the answer is below the fold: {box}"
        assert teacher.evaluate("() => document.documentElement.scrollHeight") <= PROJECTOR["height"] + 120
        teacher.get_by_text(re.compile(r"The class predicted \\(5 votes\\)|60% of the class")).first.wait_for()

        for student in students:
            student.get_by_text(re.compile(r"^Answer: Plain-20")).wait_for()
        teacher.screenshot(path=str(tmp_path / "projector.png"))
        students[0].screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        browser.close()
