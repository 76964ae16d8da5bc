"""What the pages share: the run store, the worker pool, this browser's owner key, the URL, and the runs.

The web server never trains: `submit` queues a run through `explorer.jobs` (or attaches to an identical one), the
embedded workers (`explorer.pool`) train it, and pages read its records and progress from the store. A run's
owner is the browser session that queued it: its key lives in the session and in the Lab's URL (``key=``), so a
reload keeps control; the view link (``?run=ID``) shows the run to anyone, the control link adds the key.

Every text that came from a visitor (a URL value, a run name) is shown through `plain`, never as Markdown.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Mapping

import pandas as pd
import streamlit as st

from explorer import jobs, sweep
from explorer.config import Config, ConfigError, display_name
from explorer.data import DataError
from explorer.memory import ResourceError
from explorer.pool import server_pool
from explorer.settings import SettingsError, settings
from explorer.states import Control, RunState
from explorer.store import RunStore, StoreError, valid_run_id
from explorer.progress import Progress
from explorer.ui.theme import url_params

RUN_KEY = "run"
OWNER_KEY = "key"
RECORDED_DIR = Path(__file__).resolve().parents[2] / "assets" / "recorded"
REFUSALS = (ConfigError, DataError, StoreError, ResourceError, jobs.JobRefused, SettingsError)
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def plain(text: object) -> str:
    """`text` escaped for st.markdown and friends: a visitor's text never becomes a link, an image or HTML."""
    return _MARKDOWN.sub(r"\\\1", str(text)[:500])


# --- the store and the workers -----------------------------------------------------------------------------------
@st.cache_resource
def get_store() -> RunStore:
    """One store per server process, holding the recorded runs of `RECORDED_DIR` too, so every page replays them
    like any other run."""
    store = RunStore()
    for run_id, bundle in recorded_runs().items():
        if not store.has_run(run_id):
            try:
                store.import_bundle(bundle)
            except StoreError as error:  # a broken bundle must not take the app down
                logging.getLogger(__name__).warning("recorded run skipped: %s", error)
    known = set(sweep.sweep_ids(store))
    for document in sorted(RECORDED_DIR.glob("*/*/sweep.json")):
        try:
            if json.loads(document.read_text())["sweep"]["sweep_id"] not in known:
                sweep.load_recorded(document.parent, store)
        except (StoreError, OSError, ValueError, KeyError, TypeError) as error:
            logging.getLogger(__name__).warning("recorded sweep skipped: %s", error)
    return store


def workers() -> object:
    """The embedded worker pool, started once per server process (EXPLORER_WORKERS=0: none); `server_pool` keeps
    the one pool, so no Streamlit cache is needed on top of it."""
    return server_pool(get_store())


def recorded_runs() -> dict[str, Path]:
    """Run id -> bundle folder of the runs recorded under assets/recorded/<cpu|gpu>/<preset>/."""
    bundles = sorted(RECORDED_DIR.glob("*/*/run.json"))
    return {json.loads(path.read_text())["run"]["run_id"]: path.parent for path in bundles}


def recorded_run_of(preset: str, kind: str | None = None) -> str | None:
    """The recorded run of a preset: on a GPU (``kind`` gpu) or a CPU; by default the GPU's when there is one."""
    found = {bundle.parent.name: run_id for run_id, bundle in recorded_runs().items() if bundle.name == preset}
    return found.get(kind) if kind else found.get("gpu") or found.get("cpu")


def recorded_facts(run_id: str) -> dict:
    """The verdict.json beside a recorded run (device, budget, verdict), if it is one."""
    bundle = recorded_runs().get(run_id)
    path = bundle / "verdict.json" if bundle else None
    return json.loads(path.read_text()) if path and path.exists() else {}


# --- ownership ----------------------------------------------------------------------------------------------------
def owner_key() -> str:
    """This browser session's owner key: from a control link (``key=``) if one was opened, else a new one."""
    state = st.session_state
    if OWNER_KEY not in state:
        from_url = st.query_params.get(OWNER_KEY, "")
        state[OWNER_KEY] = from_url if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", from_url or "") else jobs.new_owner_key()
    return state[OWNER_KEY]


def owns(run_id: str) -> bool:
    try:
        return jobs.holds_key(get_store().run(run_id), owner_key())
    except StoreError:
        return False


def submit(config: Config, preset: str = "") -> str | None:
    """Queue `config` for this session (or attach to an identical run); explain on the page when refused."""
    try:
        submission = jobs.submit(get_store(), config, owner_key(), preset=preset)
    except REFUSALS as error:
        st.error(f"Not started: {plain(error)}")
        return None
    if submission.attached:
        st.toast("An identical run is already here: you are watching it.", icon=":material/group:")
    return submission.run_id


def control(run_id: str, wish: Control) -> None:
    try:
        jobs.request(get_store(), run_id, owner_key(), wish)
    except REFUSALS as error:
        st.error(plain(error))


def resume(run_id: str) -> None:
    try:
        jobs.requeue(get_store(), run_id, owner_key())
    except REFUSALS as error:
        st.error(plain(error))


# --- a run as the pages see it ----------------------------------------------------------------------------------
def run_row(run_id: str | None) -> dict | None:
    """The stored row of a run (None for no run, a malformed id, or an unknown one)."""
    if not valid_run_id(run_id):
        return None
    try:
        return get_store().run(run_id)
    except StoreError:
        return None


def progress(row: Mapping) -> Progress:
    return Progress.from_json(row["progress"], RunState(row["status"]))


def stored_config(run_id: str) -> Config | None:
    try:
        return get_store().config(run_id)
    except (StoreError, ConfigError):
        return None


def sync_url(query: Mapping[str, str]) -> None:
    """Make the address bar show exactly `query` (written only when it changed, so the history stays clean)."""
    wanted = {key: str(value) for key, value in {**query, **url_params()}.items() if value not in (None, "")}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def url_run() -> str | None:
    """The run id of the URL, when it is well-formed and stored; otherwise say so (escaped) and return None."""
    value = st.query_params.get(RUN_KEY)
    if not value:
        return None
    if run_row(value) is None:
        st.warning(f"Run {plain(value[:40])} from the link is not in this app's run store: list the runs on the "
                   "Compare page, or start one in the Lab.")
        return None
    return value


def runs_table() -> pd.DataFrame:
    """Stored runs, newest first, with a ``models`` column (model names for people) and a display ``label``."""
    runs = get_store().runs()
    runs["models"] = [", ".join(_labels(text)) for text in runs["config"]]
    recorded = recorded_runs()
    runs["label"] = [_run_label(row, recorded.get(row.run_id)) for row in runs.itertuples()]
    return runs


def _labels(config_json: str) -> list[str]:
    try:
        return [display_name(label) for label in Config.from_json(config_json).labels]
    except ConfigError:
        return ["?"]


def _run_label(row, bundle: Path | None) -> str:
    title = row.name or row.preset or "run"
    origin = f"recorded ({bundle.parent.name.upper()})" if bundle else str(row.status)
    return f"{title} · {row.models} · {origin} · {row.created:%d %b %H:%M} · {row.run_id}"


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


def has_probes(run_id: str) -> bool:
    """Whether the run has per-layer probes: the trainer probes at step 0 whenever it probes at all (one indexed
    read)."""
    return run_row(run_id) is not None and not get_store().probes(run_id, step=0).empty


def is_polling(run_id: str | None) -> bool:
    """Whether the run may still change (waiting or held by a worker), so its views should refresh."""
    row = run_row(run_id)
    return row is not None and RunState(row["status"]).active


def hosted() -> bool:
    return settings().hosted
