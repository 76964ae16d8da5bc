"""The pieces the pages are made of: the data banner, a run's status line, its live charts and its downloads.

Everything comes from the store. A run's tables are held once per server and extended with only the rows recorded
since the last poll; its figures are cached per (run, last recorded step), so thirty browsers watching one run cost
one small read and one figure build per new step, not thirty full reads.
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from explorer import jobs
from explorer.checkpoints import weights_bytes
from explorer.config import Config, display_name
from explorer.estimate import format_seconds
from explorer.states import RunState
from explorer.store import RunStore, StoreError
from explorer.palette import twin_pair
from explorer.ui import charts, figures, live_diagram, session, status, theme
from explorer.ui.config_form import cifar10_location, sources_offered
from explorer.ui.live import element
from explorer.ui.live.feed import DIAGRAM, Feed, View
from explorer.ui.status import with_records
from explorer.ui.session import get_store, hosted, plain, progress, recorded_facts, run_row

X_AXES = {"epoch": "epochs", "step": "iterations", "wall": "seconds"}
LIVE_CHARTS = [["loss", "lr"], ["responses", "gradient_profile"]]
DIAGRAM_CAPTION = ("Each block coloured by the mean of its layers' probe signal, one log colour scale for both nets; "
                   "arcs are shortcuts (dashed: subsample and zero-pad). Long stages collapse their middle blocks.")


# --- data and workers ------------------------------------------------------------------------------------------
def data_status() -> None:
    """Sidebar lines on every page: where runs train (the live workers), and which data this server offers."""
    live = jobs.live_workers(get_store())
    devices = ", ".join(sorted({w["device"] for w in live}))
    busy = sum(1 for w in live if w["run_id"])
    workers = (f"Workers: {len(live)} ({busy} training) on {plain(devices)}" if live
               else "Workers: none running yet (the app starts one; or run `python -m explorer worker`)")
    st.sidebar.caption(f"{workers}  \nData: {plain(', '.join(sources_offered()))}")


def data_banner() -> None:
    """Say plainly when CIFAR-10 is missing, how to get it, and what runs instead."""
    if cifar10_location():
        return
    where = "" if hosted() else " in the data directory (`$EXPLORER_DATA_DIR`, default `./data`)"
    st.warning(
        f"**CIFAR-10 is not installed**{where}, so runs use the **built-in synthetic set** (CIFAR-shaped images "
        "generated in code, 10 classes). " + ("" if hosted() else
        "Put the official python version (`cifar-10-batches-py/`) or an image-folder copy (`train/<class>/`, "
        "`test/<class>/`) there, or choose the data set *cifar10* and the first run downloads it (170 MB). Any "
        "other image folder there is offered under its folder's name."), icon=":material/info:")


# --- a run's tables and figures, shared by every viewer --------------------------------------------------------
def run_tables(run_id: str) -> figures.RunTables:
    """The run's tables now, read once per server process for every viewer and extended with only the rows
    recorded since (`explorer.ui.live.feed`)."""
    return Feed.of(get_store()).tables(run_id)


def last_step(tables: figures.RunTables) -> int:
    return int(tables.steps["step"].max()) if len(tables.steps) else -1


@st.cache_resource(max_entries=256, ttl=3600, show_spinner=False)
def _figure(run_id: str, latest_step: int, status: str, name: str, x: str, scale: float, upto: int,
            _tables: figures.RunTables) -> tuple[charts.Figure, str]:
    """A chart of the run as of `latest_step` and its summary in numbers (`latest_step` is the cache key; `_tables`
    is that snapshot, not hashed)."""
    tables = _until(_tables, upto) if upto < latest_step else _tables
    spec = figures.CHARTS[name]
    return spec.build(tables, x, scale), spec.summary(tables)


def _until(tables: figures.RunTables, step: int) -> figures.RunTables:
    """The tables as they stood at `step` (the timeline scrubber of a finished run)."""
    def cut(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["step"] <= step] if len(frame) else frame

    return replace(tables, steps=cut(tables.steps), evals=cut(tables.evals), probes=cut(tables.probes))


def timeline(run_id: str, tables: figures.RunTables) -> int:
    """A scrubber that replays a finished run; returns the step to draw up to."""
    last = int(tables.steps["step"].max()) if len(tables.steps) else 0
    if last < 2:
        return last
    return st.slider("Timeline: the run as it stood at step", 0, last, last, step=max(1, last // 500),
                     key=f"timeline-{run_id}", help="Drag back to replay how the curves developed")


def show_run_charts(run_id: str, x: str, key: str, upto: int | None = None,
                    layout: list[list[str]] | None = None, tables: figures.RunTables | None = None) -> None:
    """The run's charts (registry entries), each with its caption and a one-sentence summary of its numbers."""
    tables = tables if tables is not None else run_tables(run_id)
    latest, status = last_step(tables), run_row(run_id)["status"]
    if tables.steps.empty:
        st.info("No steps recorded yet: the charts appear with the first ones.")
        return
    upto = latest if upto is None else upto
    shown = _until(tables, upto) if upto < latest else tables
    for names in layout or LIVE_CHARTS:
        names = [n for n in names if figures.has_data(figures.CHARTS[n], shown)]
        for column, name in zip(st.columns(max(1, len(names))), names):
            spec = figures.CHARTS[name]
            with column:
                figure, summary = _figure(run_id, latest, status, name, x, theme.scale(), upto, tables)
                theme.show_chart(figure, key=f"{key}-{name}", caption=spec.caption, summary=summary)


def diagram_panel(run_id: str, key: str, tables: figures.RunTables | None = None) -> None:
    """The block diagram, live: the twins' blocks coloured by a probe signal at a step the reader scrubs."""
    tables = tables if tables is not None else run_tables(run_id)
    if tables.probes.empty:
        st.caption("The block diagram colours in with the first probe.")
        return
    models = twin_pair(list(dict.fromkeys(tables.probes["model"])))
    steps = sorted(int(s) for s in tables.probes["step"].unique())
    signal_col, step_col = st.columns([2, 3])
    signal = signal_col.selectbox("Colour by", list(live_diagram.SIGNALS), format_func=live_diagram.SIGNALS.get,
                                  key=f"{key}-signal")
    step = step_col.select_slider("At step", steps, value=steps[-1], key=f"{key}-step") if len(steps) > 1 \
        else steps[0]
    theme.show_chart(live_diagram.diagram_figure(tables.probes, models, step, signal, theme.scale()),
                     key=f"{key}-diagram",
                     caption=DIAGRAM_CAPTION, summary=live_diagram.summary(tables.probes, models, step, signal))


# Slices the Lab offers: quick (a coarse plane) or fine (Li et al.'s 21x21 on 1,000 images).
LANDSCAPE_SIZES = {"quick": (11, 500), "fine": (21, 1000)}
STUDY_POLL_SECONDS = 5.0


def landscape_panel(run_id: str, key: str, owner: bool) -> None:
    """The loss-surface slices of a finished run (Li et al. 2018): drawn when computed; else, for its owner, priced
    and queued as a job for a free worker (never computed in the web server), drawn when it is done."""
    from explorer import landscape
    from explorer.device import precision_on

    store = get_store()
    tables = figures.RunTables.read(store, run_id)
    drawn = [name for name in ("landscape_1d", "landscape_2d") if figures.has_data(figures.CHARTS[name], tables)]
    for name in drawn:
        spec = figures.CHARTS[name]
        theme.show_chart(spec.build(tables, "epoch", theme.scale()), key=f"{key}-{name}", caption=spec.caption,
                         summary=spec.summary(tables))
    config = tables.config
    if config is None or len(drawn) == 2:
        return
    pending = [s for s in store.studies_of(run_id) if RunState(s["status"]).active]
    if pending:
        study_status(run_id, key)
        return
    failed = next((s for s in store.studies_of(run_id) if s["status"] == str(RunState.FAILED)), None)
    if failed:
        st.warning(f"The last slices asked for failed: {plain(failed['error'])}")
    models = twin_pair(config.labels)
    st.caption("Loss-surface slices (Li et al. 2018): the loss along the line from the initial to the trained "
               "weights, and on a plane of two filter-normalised random directions around the trained weights, for "
               f"{', '.join(display_name(m) for m in models)} side by side. A worker computes them when it has no "
               "run to train.")
    kind = jobs.device_kind(config, store)
    precision = precision_on(config.precision, kind)
    size = st.segmented_control("Slices", list(LANDSCAPE_SIZES), default="quick", required=True,
                                key=f"{key}-size", format_func=lambda k: "{} ({}×{} plane, {:,} images)".format(
                                    k, LANDSCAPE_SIZES[k][0], LANDSCAPE_SIZES[k][0], LANDSCAPE_SIZES[k][1]))
    grid, images = LANDSCAPE_SIZES[size or "quick"]
    specs = [landscape.SliceSpec("1d", tuple(models), grid=21, images=images),
             landscape.SliceSpec("2d", tuple(models), grid=grid, images=images)]
    seconds = sum(landscape.estimate_seconds(store, run_id, spec, kind, precision) for spec in specs)
    st.caption(f"Estimated at about {format_seconds(seconds)} on this server's {kind} (the cost model runs low for "
               "slices: allow up to four times as long).")
    if not owner:
        st.caption("Its owner can compute them here; or, on a machine with its checkpoint:")
    elif st.button("Compute the slices", key=f"{key}-compute", icon=":material/landscape:"):
        try:
            for spec in specs:
                jobs.request_landscape(store, run_id, session.owner_key(), spec)
            st.rerun()
        except session.REFUSALS as error:
            st.error(f"Not queued: {plain(error)}")
    st.code(f"python -m explorer landscape {run_id} --models {','.join(models)} --kind both", language="bash")


@st.fragment(run_every=STUDY_POLL_SECONDS)
def study_status(run_id: str, key: str) -> None:
    """Where the run's slices stand while a worker has them; the page redraws when they are done."""
    studies = get_store().studies_of(run_id)
    pending = [s for s in studies if RunState(s["status"]).active]
    if not pending:
        st.rerun()
    running = sum(s["status"] == str(RunState.RUNNING) for s in pending)
    st.info(f"Computing the loss-surface slices: {running} of {len(pending)} running, the rest queued for a free "
            f"worker (about {format_seconds(sum(s['estimate_s'] or 0 for s in pending))} in all). They appear here "
            "when done.", icon=":material/hourglass_top:")


def x_axis_picker(key: str) -> str:
    return st.segmented_control("x axis", list(X_AXES), format_func=X_AXES.get, default="epoch", key=key,
                                required=True, label_visibility="collapsed") or "epoch"


# --- status --------------------------------------------------------------------------------------------------
def status_line(run_id: str) -> RunState:
    """The run's status line as the store has it (see `explorer.ui.status`); returns its state."""
    row = run_row(run_id)
    if row is None:
        st.error("This run is no longer in the run store.")
        return RunState.FAILED
    state, p = RunState(row["status"]), progress(row)
    if p.total_steps == 0 and state.final:  # a recorded run: its progress is read off its records
        tables = run_tables(run_id)
        if len(tables.steps) and tables.config is not None:
            p = with_records(p, last_step(tables), float(tables.steps["epoch"].max()),
                             float(tables.steps["wall"].max()), tables.config.run_steps()[0],
                             tables.config.optim.batch_size)
    place = jobs.queue_place(get_store(), run_id) if state is RunState.QUEUED else None
    created = recorded_facts(run_id).get("created", "")
    line = status.status_line(row, p, place, recorded=created[:10])
    st.markdown(f"**{line.state}** · {plain(' · '.join(line.parts))}")
    if line.fraction is not None:
        st.progress(line.fraction)
    if line.notice:
        (st.error if line.notice_level == "error" else st.warning)(plain(line.notice))
    return state


def live_run(run_id: str, state: RunState, owner: bool, x: str, signal_key: str) -> None:
    """A run that is waiting or training, drawn by live elements: its status line, the error curves beside the
    block diagram, then loss, learning rate and the per-layer profiles. Each extends itself from the app's routes;
    this page reruns only when the run's state changes."""
    scale = theme.scale()
    element.status(run_id, str(state), owner, key=f"status-{run_id}")
    curves, diagram = st.columns([3, 2])
    with curves:
        live_chart(run_id, "errors", x, scale)
    with diagram:
        signal = st.selectbox("Colour by", list(live_diagram.SIGNALS), format_func=live_diagram.SIGNALS.get,
                              key=signal_key)
        element.chart(run_id, View(DIAGRAM, x, scale, signal), key=f"diagram-{run_id}")
        st.caption(DIAGRAM_CAPTION)
    for names in LIVE_CHARTS:
        for column, name in zip(st.columns(len(names)), names):
            with column:
                live_chart(run_id, name, x, scale)


def live_chart(run_id: str, name: str, x: str, scale: float) -> None:
    element.chart(run_id, View(name, x, scale), key=f"live-{run_id}-{name}")
    st.caption(figures.CHARTS[name].caption)


# --- downloads -----------------------------------------------------------------------------------------------
def cli_command(config: Config) -> str:
    """The command that reruns `config` headlessly: ``python -m explorer train`` with flags named like the URL keys."""
    flags = [f"--{key.replace('_', '-')} {shlex.quote(value)}" for key, value in config.to_query().items()]
    return " ".join(["python -m explorer train", *flags])


def _export_bytes(store: RunStore, run_id: str, fmt: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return store.export(run_id, Path(folder) / f"metrics.{fmt}", fmt).read_bytes()


def _weights(store: RunStore, run_id: str) -> bytes:
    try:
        return weights_bytes(store, run_id)
    except StoreError as error:
        return str(error).encode()


def downloads(run_id: str, config: Config, x: str) -> None:
    """Download buttons (built on click, from the store): metrics, the trained weights, the config, any chart, and
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
    if RunState(store.run(run_id)["status"]) in (RunState.FINISHED, RunState.STOPPED):
        buttons["Trained weights (.pt)"] = (lambda: _weights(store, run_id), f"{run_id}-weights.pt",
                                            "application/octet-stream")
    columns = st.columns(4)
    for i, (label, (data, file_name, mime)) in enumerate(buttons.items()):
        with columns[i % 4]:
            st.download_button(label, data, file_name=file_name, mime=mime, key=f"download-{run_id}-{i}",
                               on_click="ignore", width="stretch")
    chart_download(run_id, x)


def chart_download(run_id: str, x: str) -> None:
    """Any chart of the run as a standalone HTML page, or (where Kaleido and a browser are installed, off a hosted
    server) as a publication-size PNG or SVG."""
    from explorer.ui import static

    tables = run_tables(run_id)
    names = [name for name, spec in figures.CHARTS.items() if figures.has_data(spec, tables)]
    formats = ["html"] + (["png", "svg"] if not hosted() and static.can_render() else [])
    pick, fmt_col, button = st.columns([3, 1, 2], vertical_alignment="bottom")
    name = pick.selectbox("Chart", names, format_func=lambda n: figures.CHARTS[n].title, key=f"chart-{run_id}")
    fmt = fmt_col.selectbox("Format", formats, key=f"chart-format-{run_id}")
    if name is None:
        return

    def render() -> bytes | str:
        figure = figures.CHARTS[name].build(tables, x, 1.0)  # the tables this page shows, not a second read
        return charts.figure_html(figure) if fmt == "html" else static.figure_image(figure, fmt)

    mime = {"html": "text/html", "png": "image/png", "svg": "image/svg+xml"}[fmt]
    button.download_button("Download chart", render, file_name=f"{run_id}-{name}.{fmt}", mime=mime,
                           key=f"chart-download-{run_id}", on_click="ignore", width="stretch")
