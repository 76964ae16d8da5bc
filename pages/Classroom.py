"""Classroom: predict, then reveal. The teacher opens a lesson, the class votes from their phones, the projector shows
the tally live, and the teacher reveals the run with the class's votes drawn on it.

The teacher's view (a control link, ``?lesson=ID&key=...``) is laid out for a 1280x720 projector in large type:
question, tally or chart, and answer without scrolling. The students' view (``?lesson=ID``, or the lesson's
five-character code typed on this page) is one column that works on a phone. Votes live in the store, one per browser session; the answer is read off the run's numbers
(`explorer.lessons`).
"""

from __future__ import annotations

import secrets

import plotly.graph_objects as go
import streamlit as st

from explorer import jobs, lessons
from explorer.states import RunState
from explorer.ui import charts, figures, session, theme
from explorer.ui.app import main
from explorer.ui.session import plain

LESSON_KEY = "lesson"
VOTER = "voter"
PROJECTOR_HEIGHT = 330  # px of the key chart, so question, chart and answer fit a 1280x720 screen


def voter_id() -> str:
    return st.session_state.setdefault(VOTER, secrets.token_hex(8))


def tally_figure(counts: dict[str, int], lesson: lessons.Lesson, right: str | None, scale: float) -> go.Figure:
    labels = [lesson.options[k] for k in counts]
    colours = ["#1a7f37" if k == right else ("#9aa4ad" if right else "#0072B2") for k in counts]
    fig = go.Figure(go.Bar(x=list(counts.values()), y=labels, orientation="h", marker_color=colours,
                           text=list(counts.values()), textposition="auto", hoverinfo="skip"))
    fig.update_layout(yaxis=dict(autorange="reversed"), xaxis=dict(title_text="votes", rangemode="tozero"))
    return charts.style(fig, scale, height=60 + 45 * len(counts))


def votes_sentence(counts: dict[str, int], lesson: lessons.Lesson) -> str:
    total = sum(counts.values())
    parts = " · ".join(f"{n} {lesson.options[k].split(' (')[0]}" for k, n in counts.items())
    return f"The class predicted ({total} vote{'s' if total != 1 else ''}): {parts}"


def reveal_chart(row: dict, lesson: lessons.Lesson, counts: dict[str, int], height: int) -> None:
    """The lesson's chart of the revealed run, the class's votes written on it, and the answer from the numbers."""
    store = session.get_store()
    tables = figures.RunTables.read(store, row["run_id"])
    fig = figures.CHARTS[lesson.chart].build(tables, "epoch", theme.scale())
    fig.add_annotation(text=plain(votes_sentence(counts, lesson)).replace("\\", ""), xref="paper", yref="paper",
                       x=0, y=1.13, showarrow=False, align="left", font=dict(size=12 * theme.scale()))
    fig.update_layout(height=height, legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(fig, key="lesson-chart", config=theme.PLOTLY_CONFIG, theme=None)
    state = RunState(store.run(row["run_id"])["status"])
    if state.active:
        st.info("The run is still training: the answer is read off its numbers when it finishes.")
        return
    try:
        right, records = lessons.answer(store, row["lesson_id"])
    except lessons.LessonError as error:
        st.warning(plain(error))
        return
    share = counts.get(right, 0) / max(1, sum(counts.values()))
    st.success(f"**Answer: {lesson.options[right]}.** {figures.CHARTS[lesson.chart].summary(tables)} "
               f"{share:.0%} of the class predicted it.")


def teacher_start() -> None:
    st.title("Classroom: predict, then reveal")
    st.caption("Open a lesson: your class votes from their phones, you reveal a run with their votes drawn on it.")
    lesson_key = st.selectbox("Lesson", list(lessons.LESSONS), format_func=lambda k: lessons.LESSONS[k].title,
                              key="lesson_pick")
    lesson = lessons.LESSONS[lesson_key]
    st.markdown(f"**The question:** {lesson.question}")
    if st.button("Open the lesson", type="primary", icon=":material/how_to_vote:", key="open_lesson"):
        opened = lessons.open_lesson(session.get_store(), lesson_key, session.owner_key())
        session.sync_url({LESSON_KEY: opened.lesson_id, session.OWNER_KEY: session.owner_key()})
        st.rerun()


def student_join() -> None:
    """A student types the code the projector shows."""
    with st.form("join", border=False):
        code = st.text_input("A student? Type the lesson's code", max_chars=12, key="join_code",
                             placeholder="the five characters on the projector")
        if st.form_submit_button("Join", key="join"):
            try:
                row = lessons.lesson_by_code(session.get_store(), code)
            except lessons.LessonError as error:
                st.error(plain(error))
                return
            session.sync_url({LESSON_KEY: row["lesson_id"]})
            st.rerun()


def teacher_view(row: dict) -> None:
    lesson = lessons.LESSONS[row["lesson"]]
    theme.projector()
    student_link = f"{(st.context.url or '').split('?')[0]}?{LESSON_KEY}={row['lesson_id']}"
    st.markdown(f"### {lesson.question}")
    st.caption(f"Students open **{plain(student_link)}**, or type the code **{plain(row['code'])}** on the "
               "Classroom page, and vote. This page is the teacher's: keep its link.")
    store = session.get_store()

    @st.fragment(run_every=2.0)
    def live() -> None:
        current = lessons.lesson_row(store, row["lesson_id"])
        counts = lessons.tally(store, row["lesson_id"])
        if current["phase"] == lessons.VOTING:
            st.plotly_chart(tally_figure(counts, lesson, None, theme.scale()), key="tally",
                            config=theme.PLOTLY_CONFIG, theme=None)
        else:
            reveal_chart(current, lesson, counts, PROJECTOR_HEIGHT)

    live()
    current = lessons.lesson_row(store, row["lesson_id"])
    recorded = session.recorded_run_of(lesson.preset)
    with st.container(horizontal=True):
        if current["phase"] == lessons.VOTING:
            if recorded and st.button("Reveal the recorded run", type="primary", icon=":material/visibility:",
                                      key="reveal_recorded"):
                lessons.reveal(store, row["lesson_id"], session.owner_key(), recorded)
                st.rerun()
            if st.button("Reveal it live: train now", icon=":material/play_arrow:", key="reveal_live",
                         help="Queues the preset's run on this server's workers; the chart fills in as it trains"):
                from explorer.ui import config_form

                run_id = session.submit(config_form.preset_config(lesson.preset), preset=lesson.preset)
                if run_id:
                    lessons.reveal(store, row["lesson_id"], session.owner_key(), run_id)
                    st.rerun()
        elif st.button("Reopen the vote", icon=":material/replay:", key="reopen"):
            lessons.reopen(store, row["lesson_id"], session.owner_key())
            st.rerun()


def student_view(row: dict) -> None:
    lesson = lessons.LESSONS[row["lesson"]]
    store = session.get_store()
    st.markdown(f"#### {lesson.question}")

    @st.fragment(run_every=2.0)
    def live() -> None:
        current = lessons.lesson_row(store, row["lesson_id"])
        mine = lessons.my_vote(store, row["lesson_id"], voter_id())
        if current["phase"] == lessons.VOTING:
            options = list(lesson.options)
            choice = st.radio("Your prediction", options, format_func=lesson.options.get, key="vote_choice",
                              index=options.index(mine) if mine in options else None)
            if st.button("Vote", type="primary", disabled=choice is None, key="vote", width="stretch"):
                try:
                    lessons.vote(store, row["lesson_id"], voter_id(), choice)
                    st.toast("Vote recorded")
                except lessons.LessonError as error:
                    st.error(plain(error))
            mine = lessons.my_vote(store, row["lesson_id"], voter_id())
            st.caption(f"Your vote: **{plain(lesson.options[mine])}** (you can change it until the reveal)"
                       if mine else "You have not voted yet.")
        else:
            counts = lessons.tally(store, row["lesson_id"])
            reveal_chart(current, lesson, counts, 360)
            if mine:
                st.caption(f"You predicted: {plain(lesson.options[mine])}")

    live()


def page() -> None:
    lesson_id = st.query_params.get(LESSON_KEY)
    if not lesson_id:
        student_join()
        teacher_start()
        return
    try:
        row = lessons.lesson_row(session.get_store(), lesson_id)
    except lessons.LessonError as error:
        st.error(plain(error))
        return
    if jobs.holds_key(row, session.owner_key()):
        teacher_view(row)
    else:
        student_view(row)


if __name__ == "__main__":
    main()
