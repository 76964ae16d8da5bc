"""Classroom: predict, then reveal. The teacher opens a lesson, the class joins from their phones (a QR code or a
five-letter code on the projector), votes, watches the tally fill in live, and the teacher reveals the run with the
class's votes beside it and the answer read off the run's numbers (`explorer.lessons`).

The teacher's view (``?lesson=ID&key=...``, the control link) is laid out for a 1280x720 projector without the
sidebar: question and tally or chart on the left, the join box and the teacher's buttons on the right, the answer
above the fold. The students' view (``?lesson=ID``, or ``/join/CODE``) is one column for a phone. Tally, ballot and
the revealed run's chart are live elements (explorer/ui/live): a vote goes straight to the app's route and the tally
moves within a poll, with no script rerun per student; the page reruns only at the reveal.
"""

from __future__ import annotations

import io
import socket
from urllib.parse import urlsplit

import segno
import streamlit as st

from explorer import jobs, lessons
from explorer.settings import settings
from explorer.states import RunState
from explorer.ui import session, theme
from explorer.ui.live import element
from explorer.ui.live.feed import View
from explorer.ui.session import plain

LESSON_KEY = "lesson"
JOIN_KEY = "join"
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"}
PROJECTOR_HEIGHT = 290  # px of the revealed chart: question, votes, chart and answer fit a 1280x720 projector


# --- the join link ---------------------------------------------------------------------------------------------
def network_address() -> str | None:
    """This machine's address on its network (no packet is sent: a UDP socket only picks its route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
        except OSError:
            return None


def public_base() -> tuple[str, str]:
    """The app's address as students reach it, and a warning when it had to be guessed: EXPLORER_PUBLIC_URL when
    set, else the address this browser used (a proxy's included), with a loopback host swapped for this machine's
    network address (a phone cannot open the teacher's 127.0.0.1)."""
    configured = settings().public_url
    if configured:
        return configured, ""
    url = urlsplit(st.context.url or "http://localhost:8501/")
    base = st.get_option("server.baseUrlPath").strip("/")
    path = f"/{base}" if base else ""
    host = url.hostname or "localhost"
    if host not in LOOPBACK:
        return f"{url.scheme}://{url.netloc}{path}", ""
    address = network_address()
    port = f":{url.port}" if url.port else ""
    if address is None:
        return f"{url.scheme}://{url.netloc}{path}", "Phones cannot reach this loopback address: set EXPLORER_PUBLIC_URL."
    return f"{url.scheme}://{address}{port}{path}", (
        f"Not {host}: phones get this machine's address (or set EXPLORER_PUBLIC_URL).")


def qr_png(url: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="png", scale=6, border=2)
    return buffer.getvalue()


def join_box(row: dict) -> None:
    """QR code, the short code and the address students type."""
    base, warning = public_base()
    link = f"{base}/join/{row['code']}"
    st.image(qr_png(link), width=150)
    st.markdown(f"Join at **{plain(base.split('://', 1)[1])}/join**  \nLesson code: **{row['code']}**")
    if warning:
        st.caption(f":material/wifi_off: {plain(warning)}")
    with st.expander("The students' link"):
        st.code(link, language=None, wrap_lines=True)  # copyable; never Markdown, so never a mangled auto-link


# --- the reveal --------------------------------------------------------------------------------------------------
def votes_sentence(counts: dict[str, int], lesson: lessons.Lesson) -> str:
    total = sum(counts.values())
    parts = " · ".join(f"{n} {lesson.options[k].split(' (')[0]}" for k, n in counts.items())
    return f"The class predicted ({total} vote{'s' if total != 1 else ''}): {parts}"


def reveal(row: dict, lesson: lessons.Lesson, owner: bool, height: int = 0) -> None:
    """The lesson's chart of the revealed run (live while it trains), the class's votes above it, and the answer
    from the run's numbers once it has finished."""
    store = session.get_store()
    counts = lessons.tally(store, row["lesson_id"])
    run_id = row["run_id"]
    state = RunState(store.run(run_id)["status"])
    st.caption(f"**{plain(votes_sentence(counts, lesson))}**")
    element.chart(run_id, View(lesson.chart, "epoch", theme.scale(), height=height), key=f"reveal-{run_id}",
                  summary=False)  # the answer below says the numbers that matter
    if state.active:
        element.status(run_id, str(state), owner, key=f"reveal-status-{run_id}")
        st.info("The run is still training: the answer is read off its numbers when it finishes.")
        return
    try:
        right, records = lessons.answer(store, row["lesson_id"])
    except lessons.LessonError as error:
        st.warning(plain(error))
        return
    share = counts.get(right, 0) / max(1, sum(counts.values()))
    evidence = lesson.evidence(records)
    st.success(f"**Answer: {lesson.options[right]}.** {evidence[0].upper()}{evidence[1:]}. "
               f"{share:.0%} of the class predicted it.")


# --- the teacher -------------------------------------------------------------------------------------------------
def teacher_start() -> None:
    st.title("Classroom: predict, then reveal")
    st.caption("Open a lesson: your class joins from their phones with a code, votes, and you reveal a run with "
               "their votes beside it.")
    lesson_key = st.selectbox("Lesson", list(lessons.LESSONS), format_func=lambda k: lessons.LESSONS[k].title,
                              key="lesson_pick")
    lesson = lessons.LESSONS[lesson_key]
    st.markdown(f"**The question:** {lesson.question}")
    if st.button("Open the lesson", type="primary", icon=":material/how_to_vote:", key="open_lesson"):
        lesson_id = lessons.open_lesson(session.get_store(), lesson_key, session.owner_key()).lesson_id
        session.sync_url({LESSON_KEY: lesson_id, session.OWNER_KEY: session.owner_key()})
        st.rerun()
    st.divider()
    st.markdown("**A student?** Enter the code on your teacher's screen.")
    join_form()


def teacher_view(row: dict) -> None:
    lesson = lessons.LESSONS[row["lesson"]]
    store = session.get_store()
    theme.projector()
    st.markdown(f"### {lesson.question}")
    main, side = st.columns([5, 2], gap="medium")
    with side:  # the buttons first: the join box may grow (a network warning), the buttons stay above the fold
        teacher_buttons(row, lesson)
        join_box(row)
    with main:
        if row["phase"] == lessons.VOTING:
            element.tally(row["lesson_id"], row["phase"], key=f"tally-{row['lesson_id']}")
        else:
            reveal(lessons.lesson_row(store, row["lesson_id"]), lesson, owner=True, height=PROJECTOR_HEIGHT)


def teacher_buttons(row: dict, lesson: lessons.Lesson) -> None:
    store = session.get_store()
    if row["phase"] != lessons.VOTING:
        if st.button("Reopen the vote", icon=":material/replay:", key="reopen", width="stretch"):
            lessons.reopen(store, row["lesson_id"], session.owner_key())
            st.rerun()
        return
    recorded = session.recorded_run_of(lesson.preset)
    if recorded and st.button("Reveal the recorded run", type="primary", icon=":material/visibility:",
                              key="reveal_recorded", width="stretch"):
        lessons.reveal(store, row["lesson_id"], session.owner_key(), recorded)
        st.rerun()
    if st.button("Reveal it live: train now", icon=":material/play_arrow:", key="reveal_live", width="stretch",
                 help="Queues the preset's run on this server's workers; the chart fills in as it trains"):
        from explorer.ui import config_form

        run_id = session.submit(config_form.preset_config(lesson.preset), preset=lesson.preset)
        if run_id:
            lessons.reveal(store, row["lesson_id"], session.owner_key(), run_id)
            st.rerun()


# --- a student ---------------------------------------------------------------------------------------------------
def join_form() -> None:
    """Where a student who typed the short address enters the lesson code."""
    with st.form("join", border=True):
        code = st.text_input("Lesson code (on your teacher's screen)", max_chars=12, key="join_code")
        if st.form_submit_button("Join", type="primary"):
            try:
                row = lessons.lesson_by_code(session.get_store(), code)
            except lessons.LessonError as error:
                st.error(plain(error))
                return
            session.sync_url({LESSON_KEY: row["lesson_id"]})
            st.rerun()


def student_view(row: dict) -> None:
    lesson = lessons.LESSONS[row["lesson"]]
    st.markdown(f"#### {lesson.question}")
    element.ballot(row["lesson_id"], row["phase"], lesson.options, key=f"ballot-{row['lesson_id']}")
    if row["phase"] != lessons.VOTING:
        reveal(row, lesson, owner=False)


def join(code: str) -> None:
    """A student's `/join/CODE` link (or the bare `/join`): open the lesson with that code, else ask for one."""
    st.title("Join a lesson")
    if code:
        try:
            row = lessons.lesson_by_code(session.get_store(), code)
            session.sync_url({LESSON_KEY: row["lesson_id"]})
            st.rerun()
        except lessons.LessonError as error:
            st.error(plain(error))
    join_form()


def page() -> None:
    lesson_id = st.query_params.get(LESSON_KEY)
    if not lesson_id:
        if JOIN_KEY in st.query_params:
            join(st.query_params.get(JOIN_KEY, ""))
        else:
            teacher_start()
        return
    try:
        row = lessons.lesson_row(session.get_store(), lesson_id)
    except lessons.LessonError as error:
        st.error(plain(error))
        join_form()
        return
    if jobs.holds_key(row, session.owner_key()):
        teacher_view(row)
    else:
        student_view(row)
