"""The Lab: set up any run, train plain and residual twins in lockstep, and watch them live.

The configuration and the run id live in the URL, so a reload or a shared link shows the same run and the same
settings. Training runs in the core's background trainer; this page only starts, pauses and stops it and polls
the store once a second while it runs.
"""

import streamlit as st

from explorer.ui import config_form, panels, session

session.require_navigation()
st.title("Lab")
st.caption("Train plain nets and their residual twins on identical batches, and watch the gap open.")
panels.data_banner()
run_id = session.init_lab()

with st.container(border=True):
    config_form.preset_picker(session.recorded_run_of, session.watch)
    with st.expander("Configuration", expanded=run_id is None):
        config = config_form.config_form()

job = session.job_of(run_id)
shown_state = job.state if job else None
with st.container(horizontal=True, vertical_alignment="center"):
    train = st.button("Train", type="primary", disabled=config is None, icon=":material/play_arrow:", key="train")
    if st.button("Pause", disabled=shown_state != "running", icon=":material/pause:", key="pause"):
        job.pause()
        st.rerun()
    if st.button("Resume", disabled=shown_state != "paused", icon=":material/resume:", key="resume"):
        job.resume()
        st.rerun()
    if st.button("Stop", disabled=job is None or not job.active, icon=":material/stop:", key="stop"):
        job.stop()
        st.rerun()
if train and session.train(config):  # after the row, so a refusal shows below the buttons
    st.rerun()
session.slow_run_notice()

if run_id is None:
    session.offer_active_job()
    st.info("Press **Train** to start: the models above train in lockstep, on the same batches in the same order. "
            "Or replay a recorded run of a preset.")
elif (run_config := session.stored_config(run_id)) is None:
    st.error(f"Run {run_id} is no longer in the run store: press Train to start a new one.")
else:
    x = panels.x_axis_picker("lab_x")
    polling = session.is_polling(run_id)

    @st.fragment(run_every=1.0 if polling else None)
    def live() -> None:
        state = panels.status_line(run_id)
        if job is not None and state != shown_state:
            st.rerun()  # paused, finished or stopped: redraw the buttons and stop polling
        tables = panels.run_tables(run_id, run_config.probe_every)
        if not polling:
            tables = panels.timeline(tables, run_id, run_config.probe_every)
        panels.show_run_charts(tables, x, key="lab")

    live()
    session.show_verdict(run_id)
    with st.expander("Downloads and the command line"):
        panels.downloads(run_id, run_config, run_config.probe_every, x)

session.sync_url({**(config or config_form.current_config()).to_query(), session.RUN_KEY: run_id or ""})
