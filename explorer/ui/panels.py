"""The pieces the pages are made of: the data banner, a run's status line, its live charts and its downloads.

A run's tables are read incrementally (only rows after the last step seen), so polling a 10,000-step run once a
second reads a few new rows, not the whole history.
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer import charts
from explorer.config import Config
from explorer.data import resolve_data_dir
from explorer.store import RunStore, StoreError
from explorer.trainer import device_name, resolve_device
from explorer.ui import theme
from explorer.ui.config_form import cifar10_location
from explorer.ui.session import get_store, job_of

X_AXES = {"epoch": "epochs", "step": "iterations", "wall": "seconds"}


# --- data ----------------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def device_label() -> str:
    """The device a run with ``device=auto`` trains on, in words (``cuda (NVIDIA H100 ...)``, ``cpu (2 threads)``)."""
    return device_name(resolve_device("auto"))


def data_status() -> None:
    """Two sidebar lines, on every page: the device runs use, and which data set and where it comes from."""
    found = cifar10_location()
    st.sidebar.caption(f"Device: {device_label()}  \nData: {found or 'built-in synthetic set (CIFAR-10 not found)'}")


def data_banner() -> None:
    """Say plainly when CIFAR-10 is missing, how to get it, and what runs instead."""
    if cifar10_location():
        return
    st.warning(
        f"**CIFAR-10 was not found** in `{resolve_data_dir()}`, so runs use the **built-in synthetic set** "
        "(CIFAR-shaped images generated in code, 10 classes). To train on the real "
        "images, put the official python version (`cifar-10-batches-py/`) or an image-folder copy (`train/<class>/`, "
        "`test/<class>/`) there or set `EXPLORER_DATA_DIR`; or choose the data set *cifar10* and the first run "
        "downloads it (170 MB).",
        icon=":material/info:",
    )


# --- a run's tables ------------------------------------------------------------------------------------------
@dataclass
class RunTables:
    steps: pd.DataFrame
    evals: pd.DataFrame
    probes: pd.DataFrame  # the last probe step only (the Gradients page reads the whole history)


def run_tables(run_id: str, probe_every: int) -> RunTables:
    """The run's steps and evaluations so far (cached per session, topped up with new rows) and its last probes."""
    store = get_store()
    cache = st.session_state.setdefault("run_tables", {})
    steps, evals = cache.get(run_id, (None, None))
    if steps is None or job_of(run_id) is not None:
        steps = _top_up(steps, lambda since: store.steps(run_id, since_step=since))
        evals = _top_up(evals, lambda since: store.evals(run_id, since_step=since))
        cache.clear()  # one run at a time per session: memory stays bounded
        cache[run_id] = steps, evals
    return RunTables(steps, evals, last_probes(store, run_id, probe_every, steps))


def read_tables(store: RunStore, run_id: str, probe_every: int) -> RunTables:
    """The same tables read afresh, without the session (download callbacks run outside the script thread)."""
    steps = store.steps(run_id)
    return RunTables(steps, store.evals(run_id), last_probes(store, run_id, probe_every, steps))


def _top_up(frame: pd.DataFrame | None, read: Callable[[int | None], pd.DataFrame]) -> pd.DataFrame:
    if frame is None or frame.empty:
        return read(None)
    new = read(int(frame["step"].max()))
    return pd.concat([frame, new], ignore_index=True) if len(new) else frame


def last_probes(store: RunStore, run_id: str, probe_every: int, steps: pd.DataFrame) -> pd.DataFrame:
    """Probe rows of the most recent probe step (probes run at steps that are multiples of `probe_every`)."""
    if probe_every <= 0 or steps.empty:
        return store.probes(run_id, step=-1)
    step = int(steps["step"].max()) // probe_every * probe_every
    probes = store.probes(run_id, step=step)
    return probes if len(probes) or step == 0 else store.probes(run_id, step=step - probe_every)


# --- status --------------------------------------------------------------------------------------------------
def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def status_line(run_id: str) -> str:
    """Show the run's state, step, epoch, speed, device, data source and ETA; return the state."""
    job = job_of(run_id)
    if job is not None:
        p = job.progress()
        st.markdown(
            f"**{p.state}** · step {p.step:,} / {p.total_steps:,} · epoch {p.epoch:.1f} · "
            f"{p.images_per_s:,.0f} images/s · {p.device} · {p.data_source or 'loading data'} · "
            f"{'ETA ' + _duration(p.eta_s) if p.state == 'running' else 'elapsed ' + _duration(p.elapsed_s)}"
        )
        st.progress(min(1.0, p.step / max(1, p.total_steps)))
        if p.diverged:
            st.warning(f"Diverged (loss became NaN or infinite; the others go on): {', '.join(p.diverged)}")
        if p.error:
            st.error(f"The run failed: {p.error}")
        return p.state
    try:
        row = get_store().run(run_id)
    except StoreError as error:
        st.error(str(error))
        return "missing"
    state = row["status"]
    if state in ("running", "paused", "created", "stopping"):
        state = "interrupted"  # recorded as live, but no trainer in this server holds it: the app restarted
    st.markdown(f"**{state}** · step {get_store().latest_step(run_id) + 1:,} recorded · {row['device']} · "
                f"{row['data_source']} · run {run_id}")
    if row["error"]:
        st.error(f"The run failed: {row['error']}")
    return state


# --- charts --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chart:
    """A chart of a run: how to build it from the run's tables, and what to look for."""

    title: str
    build: Callable[[RunTables, str, float], go.Figure]
    caption: str


LIVE_CHARTS: dict[str, Chart] = {
    "errors": Chart(
        "Error", lambda t, x, s: charts.error_figure(t.steps, t.evals, x, s),
        "Dashed: training error (per batch, running mean); solid: test error. Degradation: the deeper plain net "
        "(darker red) trains *worse* than the shallow one; the deeper residual net (darker blue) does not."),
    "loss": Chart(
        "Training loss", lambda t, x, s: charts.metric_figure(t.steps, "loss", x, s, smoothed=True),
        "Log scale, running mean. A flat deep-plain curve means optimisation is stuck, not overfitting."),
    "lr": Chart("Learning rate", lambda t, x, s: charts.lr_figure(t.steps, x, s),
                "The schedule every model shares: warm-up, then constant, step or cosine."),
    "response": Chart(
        "Layer responses", lambda t, x, s: charts.layer_profile(t.probes, "response_std", scale=s),
        "Std of each layer's response at the latest probe. He et al. 2015 (Fig. 7) found residual layers respond "
        "more weakly than plain ones: they learn small corrections to the identity."),
    "gradients": Chart(
        "Gradient norms", lambda t, x, s: charts.layer_profile(t.probes, "grad_norm", scale=s),
        "Gradient L2 norm per layer at the latest probe: compare the early layers with the late ones, plain "
        "against residual. The Gradients page shows them over time."),
}


def timeline(tables: RunTables, run_id: str, probe_every: int) -> RunTables:
    """A scrubber that replays a finished run: the tables as they stood at the chosen step."""
    last = int(tables.steps["step"].max()) if len(tables.steps) else 0
    if last < 2:
        return tables
    upto = st.slider("Timeline: the run as it stood at step", 0, last, last, step=max(1, last // 500),
                     key=f"timeline-{run_id}", help="Drag back to replay how the curves developed")
    if upto >= last:
        return tables
    steps = tables.steps[tables.steps["step"] <= upto]
    return RunTables(steps, tables.evals[tables.evals["step"] <= upto + 1],
                     last_probes(get_store(), run_id, probe_every, steps))


def x_axis_picker(key: str) -> str:
    return st.segmented_control("x axis", list(X_AXES), format_func=X_AXES.get, default="epoch", key=key,
                                required=True, label_visibility="collapsed") or "epoch"


def show_run_charts(tables: RunTables, x: str, key: str) -> None:
    """The live charts of a run: errors full width, then loss and lr, then the per-layer profiles."""
    if tables.steps.empty:
        st.info("No steps recorded yet: the charts appear with the first ones.")
        return
    layout = [["errors"], ["loss", "lr"], ["response", "gradients"]]
    for row in layout:
        for column, name in zip(st.columns(len(row)), row):
            chart = LIVE_CHARTS[name]
            if name in ("response", "gradients") and tables.probes.empty:
                continue
            with column:
                theme.show_chart(chart.build(tables, x, theme.scale()), key=f"{key}-{name}", caption=chart.caption)


# --- downloads -----------------------------------------------------------------------------------------------
def cli_command(config: Config) -> str:
    """The command that reruns `config` headlessly: ``python -m explorer train`` with flags named like the URL keys."""
    flags = [f"--{key.replace('_', '-')} {shlex.quote(value)}" for key, value in config.to_query().items()]
    return " ".join(["python -m explorer train", *flags])


def _export_bytes(store: RunStore, run_id: str, fmt: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return store.export(run_id, Path(folder) / f"metrics.{fmt}", fmt).read_bytes()


def downloads(run_id: str, config: Config, probe_every: int, x: str) -> None:
    """Download buttons (built on click, from the store): metrics, each chart as standalone HTML, the config, and
    the command line that reruns the run."""
    store = get_store()
    st.code(cli_command(config), language="bash", wrap_lines=True)
    st.caption("Or save the configuration and run `python -m explorer train --config run.json`.")
    buttons = {
        "Metrics (CSV)": (lambda: _export_bytes(store, run_id, "csv"), f"{run_id}.csv", "text/csv"),
        "Metrics (Parquet)": (lambda: _export_bytes(store, run_id, "parquet"), f"{run_id}.parquet",
                              "application/octet-stream"),
        "Configuration (JSON)": (config.to_json(), "run.json", "application/json"),
    }
    for name, chart in LIVE_CHARTS.items():
        buttons[f"{chart.title} chart (HTML)"] = (
            lambda chart=chart: charts.figure_html(chart.build(read_tables(store, run_id, probe_every), x, 1.0)),
            f"{run_id}-{name}.html", "text/html")
    columns = st.columns(4)
    for i, (label, (data, file_name, mime)) in enumerate(buttons.items()):
        with columns[i % 4]:
            st.download_button(label, data, file_name=file_name, mime=mime, key=f"download-{run_id}-{i}",
                               on_click="ignore", width="stretch")
