"""The Lab: set up any run, queue it, and watch plain and residual twins train in lockstep, live.

The configuration, the run id and (for its owner) the run's key live in the URL, so a reload or a shared link shows
the same run and the same settings. Training happens in a worker process: this page queues runs, sends the owner's
controls through the store; while the run waits or trains, live elements draw it (explorer/ui/live), which poll the
app's own routes, so a viewer costs the server a cached answer per change, not a script rerun per second.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from explorer import jobs
from explorer.config import Config
from explorer.estimate import Estimate
from explorer.states import Control, RunState
from explorer.ui import config_form, panels, session
from explorer.ui.session import plain

LAB_RUN = "lab_run"
BAD_FIELDS = "lab_bad_fields"  # link fields that did not parse: key -> (value, why, the form's value then)
SLOW_NOTICE = "slow_notice"
SLOW_SECONDS = 300.0  # runs predicted to take longer than this ask before they start


def init_lab() -> str | None:
    """On the first visit of a session, take the configuration and run id from the URL (or the run's stored
    configuration, or the default demo); afterwards keep what the session holds. Returns the Lab's run id."""
    state = st.session_state
    if config_form.CONFIG_KEY not in state:
        run_id = session.url_run()
        query = {k: v for k, v in st.query_params.to_dict().items() if k not in (session.RUN_KEY, session.OWNER_KEY)}
        config = None
        if query:
            config, bad = Config.from_query_keeping(query)
            state[BAD_FIELDS] = {key: (str(query[key]), reason, config.to_query().get(key)) for key, reason in
                                 bad.items()}
        config = config or (run_id and replayable(session.stored_config(run_id)))
        if config:
            config_form.load_config(config)
        else:
            config_form.load_default()
        state[LAB_RUN] = run_id
    return state.get(LAB_RUN)


def bad_fields(config: Config | None) -> bool:
    """Say which fields of the link were not valid (the others are in the form) and whether any is still unfixed:
    a field counts as fixed once the form's value for it changes, or when its default is accepted."""
    state = st.session_state
    pending = state.get(BAD_FIELDS, {})
    if config is not None:
        now = config.to_query()
        pending = {key: f for key, f in pending.items() if now.get(key) == f[2]}
    for key, (value, reason, _) in pending.items():
        with st.container(horizontal=True, vertical_alignment="center"):
            st.error(f"The link's **{plain(key)}={plain(value[:40])}** is not valid: {plain(reason)}. Its other "
                     "settings are in the form; set this one there (Train waits until you do).",
                     icon=":material/link_off:")
            if st.button("Keep the form's value", key=f"accept-{key}"):
                pending = {k: f for k, f in pending.items() if k != key}
                state[BAD_FIELDS] = pending
                st.rerun()
    state[BAD_FIELDS] = pending
    return bool(pending)


def replayable(config: Config | None) -> Config | None:
    """A stored run's configuration for this machine's form: a run recorded on a GPU is shown with device auto, so
    replaying it does not greet a CPU server with a refusal."""
    return replace(config, device="auto") if config is not None and config.device != "auto" else config


def watch(run_id: str | None) -> None:
    """Make `run_id` the Lab's run and its configuration the form's (callable from a widget callback)."""
    st.session_state[LAB_RUN] = run_id
    if run_id:
        config_form.load_config(replayable(session.stored_config(run_id)) or config_form.current_config())


@st.cache_data(ttl=60, max_entries=64, show_spinner=False)
def _assess(config_json: str) -> tuple[str, Estimate | None, str]:
    """Where a configuration would train, its estimate, or why this server refuses it (arithmetic: milliseconds)."""
    try:
        kind, cost = jobs.assess(Config.from_json(config_json), session.get_store())
        return kind, cost, ""
    except session.REFUSALS as error:
        return "", None, str(error)


def estimate_line(config: Config, replaying: bool = False) -> Estimate | None:
    """The estimate of `config`, or why this server refuses it: an error when the visitor is setting up a run, a
    quiet note when the form only shows a stored run being replayed (nobody asked to train it again)."""
    _, cost, refusal = _assess(config.to_json())
    if refusal and replaying:
        st.caption(f"Training this configuration again is not possible on this server: {plain(refusal)}")
        return None
    if refusal:
        st.error(f"This run cannot start here: {plain(refusal)}")
        return None
    st.caption(f"Estimate: {cost.summary()}.")
    return cost


def train(config: Config, cost: Estimate | None, confirmed: bool = False) -> str | None:
    """Queue `config` as the Lab's run, unless it would be slow and is not `confirmed`."""
    if cost is None:
        return None
    if not confirmed and cost.seconds > SLOW_SECONDS and not session.hosted():
        st.session_state[SLOW_NOTICE] = config
        return None
    st.session_state.pop(SLOW_NOTICE, None)
    run_id = session.submit(config, preset=config_form.preset_of(config))
    if run_id:
        st.session_state[LAB_RUN] = run_id
    return run_id


def slow_run_notice(cost: Estimate | None) -> None:
    """After Train on a run too slow for this machine: how long it would take, and a button to start anyway."""
    if st.session_state.get(SLOW_NOTICE) != config_form.current_config() or cost is None:
        return
    st.warning(f"This run would take {cost.summary()}. Shrink the subset, epochs or depths, or start it anyway.")
    if st.button("Start anyway", key="start_slow") and train(config_form.current_config(), cost, confirmed=True):
        st.rerun()


def control_buttons(run_id: str | None, state: RunState | None, owner: bool, config: Config | None,
                    cost: Estimate | None) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        clicked = st.button("Train", type="primary", disabled=config is None or cost is None,
                            icon=":material/play_arrow:", key="train")
        buttons = {  # key -> (label, shown when, what it asks, icon)
            "pause": ("Pause", state is RunState.RUNNING, lambda: session.control(run_id, Control.PAUSE),
                      ":material/pause:"),
            "resume": ("Resume", state is RunState.PAUSED, lambda: session.control(run_id, Control.RUN),
                       ":material/resume:"),
            "stop": ("Stop", state is not None and state.live, lambda: session.control(run_id, Control.STOP),
                     ":material/stop:"),
            "cancel": ("Cancel", state is not None and state.waiting,
                       lambda: session.control(run_id, Control.STOP), ":material/cancel:"),
            "restart": ("Resume from checkpoint", state is not None and state.resumable,
                        lambda: session.resume(run_id), ":material/restart_alt:"),
        }
        for key, (label, shown, action, icon) in buttons.items():
            if shown and owner and st.button(label, icon=icon, key=key):
                action()
                st.rerun()
        if state is not None and state.active and not owner:
            st.caption("You are watching: only its owner's link can pause or stop this run.")
    if clicked and train(config, cost):  # after the row, so a refusal shows below the buttons
        st.rerun()


def share_links(run_id: str, owner: bool) -> None:
    view = f"?{session.RUN_KEY}={run_id}"
    st.markdown(f"**View link** (share it: anyone sees this run live): `{view}`")
    if owner:
        st.markdown(f"**Control link** (keep it: it can pause and stop the run): "
                    f"`{view}&{session.OWNER_KEY}={session.owner_key()}`")


def show_verdict(run_id: str) -> None:
    """After a preset's run: its prediction, the measured figure, and whether the prediction held."""
    row = session.run_row(run_id)
    preset = config_form.presets().get(row["preset"]) if row else None
    if preset is None or RunState(row["status"]) not in (RunState.FINISHED, RunState.STOPPED):
        return
    verdict = preset.evaluate(session.get_store(), run_id)
    if verdict.held is None:
        st.info(f"**{preset.title}:** {verdict.figure}")
    elif verdict.held:
        st.success(f"**Prediction held.** {preset.prediction} Measured: {verdict.figure}")
    else:
        st.warning(f"**Prediction did not hold on this run.** {preset.prediction} Measured: {verdict.figure}")


def page() -> None:
    st.title("Lab")
    st.caption("Train plain nets and their residual twins on identical batches, and watch the gap open.")
    panels.data_banner()
    run_id = init_lab()
    with st.container(border=True):
        config_form.preset_picker(lambda key: session.recorded_run_of(key), watch)
        with st.expander("Configuration", expanded=run_id is None):
            config = config_form.config_form()
        replaying = run_id is not None and config == replayable(session.stored_config(run_id))
        cost = estimate_line(config, replaying) if config is not None else None
        if bad_fields(config):
            cost = None  # Train stays disabled until the link's bad fields are set

    row = session.run_row(run_id)
    state = RunState(row["status"]) if row else None
    owner = row is not None and session.owns(run_id)
    control_buttons(run_id, state, owner, config, cost)
    slow_run_notice(cost)

    if row is None:
        st.info("Press **Train** to start: the models above train in lockstep, on the same batches in the same "
                "order. Or replay a recorded run of a preset.")
    else:
        x = panels.x_axis_picker("lab_x")
        if state.active:  # drawn by live elements that extend themselves: no rerun per poll
            panels.live_run(run_id, state, owner, x, signal_key="lab-signal")
        else:
            panels.status_line(run_id)
            tables = panels.run_tables(run_id)
            upto = panels.timeline(run_id, tables)
            curves, diagram = st.columns([3, 2])
            with curves:
                panels.show_run_charts(run_id, x, "lab-top", upto, layout=[["errors"]], tables=tables)
            with diagram:
                panels.diagram_panel(run_id, "lab", tables)
            panels.show_run_charts(run_id, x, "lab", upto, tables=tables)
        show_verdict(run_id)
        if state.final and state is not RunState.FAILED:
            with st.expander("Loss landscape (Li et al. 2018)"):
                panels.landscape_panel(run_id, "lab-landscape", owner)
        with st.expander("Links, downloads and the command line"):
            share_links(run_id, owner)
            panels.downloads(run_id, session.stored_config(run_id) or config_form.current_config(), x)
    query = (config or config_form.current_config()).to_query()
    key = session.owner_key() if owner else ""
    session.sync_url({**query, session.RUN_KEY: run_id or "", session.OWNER_KEY: key})

