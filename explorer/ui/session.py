"""What the pages share: the run store, the URL, the job registry and the list of stored runs.

Training never happens in Streamlit's script thread: `start_run` hands the configuration to `explorer.jobs`, whose
background trainer writes to the store, and the pages only read the store. The run id travels in the URL (key
``run``), so a reload or a second tab with the same link finds the same run again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping

import pandas as pd
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from explorer import jobs
from explorer.config import Config, ConfigError
from explorer.data import DataError
from explorer.estimate import Estimate, estimate_seconds
from explorer.presets import Verdict
from explorer.store import RunStore, StoreError, import_bundle
from explorer.trainer import Trainer
from explorer.ui import config_form

RUN_KEY = "run"
POLLING_STATES = ("loading", "running", "stopping")
RECORDED_DIR = Path(__file__).resolve().parents[2] / "assets" / "recorded"


def require_navigation() -> None:
    """Make sure the page runs inside the entry script (its navigation, sidebar and page config).

    Streamlit serves a folder named ``pages/`` as an old-style multipage app until the entry script first calls
    `st.navigation` in the server process, so the first visitor of a fresh server who opens a link such as
    ``/Lab?run=...`` would get the page alone. Switching that mode off and rerunning runs the entry script, which
    resolves the same page by its URL path.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


@st.cache_resource
def get_store() -> RunStore:
    """One store per server process ($EXPLORER_STORE, else ./runs/explorer.sqlite; a connection per thread), holding
    the recorded runs of `RECORDED_DIR` too, so every page replays them like any other run."""
    store = RunStore()
    stored = set(store.runs()["run_id"])
    for run_id, bundle in recorded_runs().items():
        if run_id not in stored:
            try:
                import_bundle(bundle, into=store)
            except StoreError as error:  # a broken bundle must not take the app down
                logging.getLogger(__name__).warning("recorded run skipped: %s", error)
    return store


def recorded_runs() -> dict[str, Path]:
    """Run id -> bundle folder of the runs recorded under assets/recorded/<preset>/ (see explorer.reproduce)."""
    bundles = sorted(RECORDED_DIR.glob("*/run.json"))
    return {json.loads(path.read_text())["run"]["run_id"]: path.parent for path in bundles}


def recorded_run_of(preset: str) -> str | None:
    """The recorded run of a preset, if one was recorded."""
    return next((run_id for run_id, bundle in recorded_runs().items() if bundle.name == preset), None)


def sync_url(query: Mapping[str, str]) -> None:
    """Make the address bar show exactly `query` (written only when it changed, so the history stays clean)."""
    wanted = {key: str(value) for key, value in query.items() if value not in (None, "")}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def start_run(config: Config, preset: str = "") -> str | None:
    """Start a background job and return its run id, or explain on the page why it could not start."""
    try:
        with st.spinner("Loading data and building the models…"):
            return jobs.start_job(config, get_store(), preset=preset).run_id
    except jobs.JobBusy as busy:
        st.warning(f"Not started: {busy}.")
    except (ConfigError, DataError, StoreError) as error:
        st.error(f"Not started: {error}")
    except Exception as error:  # a page must explain, never crash: e.g. out of memory while building the models
        st.error(f"Not started: {type(error).__name__}: {error}")
    return None


def job_of(run_id: str | None) -> Trainer | None:
    return jobs.get_job(run_id) if run_id else None


def is_polling(run_id: str | None) -> bool:
    """Whether the run is changing now, so its views should refresh (not while paused or finished)."""
    job = job_of(run_id)
    return job is not None and job.state in POLLING_STATES


def stored_config(run_id: str) -> Config | None:
    try:
        return get_store().config(run_id)
    except (StoreError, ConfigError):
        return None


def runs_table() -> pd.DataFrame:
    """Stored runs, newest first, with a ``models`` column (comma-joined labels) and a display ``label``."""
    runs = get_store().runs()
    runs["models"] = [", ".join(_labels(text)) for text in runs["config"]]
    runs["label"] = [_run_label(row) for row in runs.itertuples()]
    return runs


def _labels(config_json: str) -> list[str]:
    try:
        return Config.from_json(config_json).labels
    except ConfigError:
        return [str(m) for m in json.loads(config_json).get("models", [])]


def _run_label(row) -> str:
    title = row.name or row.preset or "run"
    return f"{title} · {row.models} · {row.status} · {row.created:%d %b %H:%M} · {row.run_id}"


def pick_runs(key: str, runs: pd.DataFrame, default: list[str], multi: bool = True,
              label: str = "Runs") -> list[str]:
    """A picker over `runs` (a `runs_table`); returns the chosen run ids (the newest one by default)."""
    if runs.empty:
        st.info("No stored runs yet: start one in the Lab, or run `python -m explorer train` in a terminal.")
        return []
    names = dict(zip(runs["run_id"], runs["label"]))
    chosen = [r for r in default if r in names] or list(runs["run_id"][:1])
    if multi:
        return st.multiselect(label, list(names), default=chosen, format_func=names.get, key=key)
    picked = st.selectbox(label, list(names), index=list(names).index(chosen[0]), format_func=names.get, key=key)
    return [picked] if picked else []


# --- the Lab's run -------------------------------------------------------------------------------------------
LAB_RUN = "lab_run"
SLOW_NOTICE = "slow_notice"
SLOW_SECONDS = 300.0  # runs predicted to take longer than this ask before they start


def init_lab() -> str | None:
    """On the first visit of a session, take the configuration and run id from the URL (or the run's stored
    configuration, or the default demo); afterwards keep what the session holds. Returns the Lab's run id."""
    state = st.session_state
    if config_form.CONFIG_KEY not in state:
        query = st.query_params.to_dict()
        run_id = query.get(RUN_KEY) or None
        if run_id and stored_config(run_id) is None:
            st.warning(f"Run {run_id} from the link is not in this app's run store; start it again with Train.")
            run_id = None
        config = None
        if set(query) - {RUN_KEY}:
            try:
                config = Config.from_query(query)
            except ConfigError as error:
                st.error(f"The link's settings are not valid: {error}. Showing the default configuration instead.")
        config = config or (run_id and stored_config(run_id))
        if config:
            config_form.load_config(config)
        else:
            config_form.load_default()
        state[LAB_RUN] = run_id
    return state.get(LAB_RUN)


def watch(run_id: str) -> None:
    """Make `run_id` the Lab's run and its configuration the form's (callable from a widget callback)."""
    st.session_state[LAB_RUN] = run_id
    config_form.load_config(stored_config(run_id) or config_form.current_config())


@st.cache_data(max_entries=64, show_spinner=False)
def _estimate(config_json: str) -> Estimate:
    config = Config.from_json(config_json)
    return estimate_seconds(config, config.device)


def train(config: Config, confirmed: bool = False) -> str | None:
    """Start `config` as the Lab's run, unless another job runs or it would be slow and is not `confirmed`."""
    busy = jobs.active_job()
    if busy is not None:
        st.warning(f"Not started: run {busy.run_id} is still training. Stop it first (open it in the Lab) or wait "
                   "for it to finish.")
        return None
    if not confirmed:
        with st.spinner("Timing a few steps to estimate how long this run takes…"):
            estimate = _estimate(config.to_json())
        if estimate.seconds > SLOW_SECONDS:
            st.session_state[SLOW_NOTICE] = (config, estimate)
            return None
    st.session_state.pop(SLOW_NOTICE, None)
    run_id = start_run(config, preset=config_form.preset_of(config))
    if run_id:
        st.session_state[LAB_RUN] = run_id
    return run_id


def slow_run_notice() -> None:
    """After Train on a run too slow for this machine: how long it would take, and a button to start anyway."""
    notice = st.session_state.get(SLOW_NOTICE)
    if notice is None or notice[0] != config_form.current_config():
        return
    config, estimate = notice
    st.warning(f"This run would take {estimate.summary()}. Shrink the subset, epochs or depths, or start it anyway.")
    if st.button("Start anyway", key="start_slow") and train(config, confirmed=True):
        st.rerun()


def offer_active_job() -> None:
    """When another tab or visitor is training, say so and offer to watch that run here."""
    busy = jobs.active_job()
    if busy is not None and busy.run_id:
        st.info(f"Run {busy.run_id} ({', '.join(busy.config.labels)}) is training right now.")
        st.button("Watch it", on_click=watch, args=(busy.run_id,), key="watch_active")


@st.cache_data(max_entries=16, show_spinner=False)
def _verdict(preset: str, run_id: str, status: str) -> Verdict:
    return config_form.presets()[preset].evaluate(get_store(), run_id)


def show_verdict(run_id: str) -> None:
    """After a preset's run: its prediction, the measured figure, and whether the prediction held."""
    row = get_store().run(run_id)
    preset = config_form.presets().get(row["preset"])
    if preset is None or row["status"] not in ("finished", "stopped"):
        return
    verdict = _verdict(preset.key, run_id, row["status"])
    if verdict.held is None:
        st.info(f"**{preset.title}:** {verdict.figure}")
    elif verdict.held:
        st.success(f"**Prediction held.** {preset.prediction} Measured: {verdict.figure}")
    else:
        st.warning(f"**Prediction did not hold on this run.** {preset.prediction} Measured: {verdict.figure}")


def latest_twin_run() -> tuple[str, int] | None:
    """The newest stored run that trains plain and residual nets side by side: (run id, probe interval)."""
    store = get_store()
    for run_id, config_json in zip(*(store.runs()[c] for c in ("run_id", "config"))):
        try:
            config = Config.from_json(config_json)
        except ConfigError:
            continue
        families = {m.family for m in config.models}
        if {"plain", "resnet"} <= families and store.latest_step(run_id) >= 0:
            return run_id, config.probe_every
    return None
