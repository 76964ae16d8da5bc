"""One reader per watched run in this server process: the run's tables, its status line and its live charts, built
once per change for every viewer, and the bytes each viewer's poll receives: only what it does not hold yet.

Cost model (bench/viewers.py measures it). The run's worker writes rows about once a second. `LiveRun.refresh`
costs one primary-key read of the run's row while nothing moved; after a flush it reads the rows recorded since
the last one and counts which tables changed. A chart (a `View`: registry chart, x axis, font scale) is rebuilt only
when a table it reads changed, and only when someone asks for it; its figure is a plain dict
(`explorer.ui.charts`), so a rebuild costs milliseconds. A viewer's poll names the version it holds; the answer is
`patch`: per trace, how many points to keep and which to append (or the whole trace, or the whole figure when its
shape changed). Answers are cached per (views, version held), so thirty viewers at the same version cost one
encoding, and each poll after that is a dictionary lookup.

Nothing here imports Streamlit: the pages (`explorer.ui.panels`) and the HTTP routes (`explorer.ui.live.api`) share
one `Feed` per store.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Mapping

import pandas as pd

from explorer import jobs
from explorer.palette import twin_pair
from explorer.states import RunState
from explorer.store import RunStore, StoreError, valid_run_id
from explorer.ui import figures, live_diagram
from explorer.ui.charts import Figure
from explorer.ui.status import progress_of, status_line, with_records

HISTORY = 8  # figures kept per view: a viewer more than this many changes behind gets the whole figure again
PAYLOADS = 64  # encoded answers kept per run version
SUMMARY_SECONDS = 5.0  # a live chart's sentence in numbers is recomputed at most this often (it costs more than
# the chart itself: bench/viewers.py)
DIAGRAM = "diagram"
SIGNALS = tuple(live_diagram.SIGNALS)
SORT_KEYS = {"steps": ["model", "step"], "evals": ["model", "step"], "probes": ["model", "step", "layer"]}
EMPTY = {"steps": "No steps recorded yet: the charts appear with the first ones.",
         "evals": "No evaluation yet: test error appears after the first one.",
         "probes": "The per-layer views colour in with the first probe.",
         "lesions": "The lesion study runs when training ends."}
ARRAYS = ("x", "y", "text", "customdata")  # a trace's columns, which grow as a run does


class FeedError(ValueError):
    """A live view cannot be served as asked; the message says what to change."""


@dataclass(frozen=True)
class View:
    """One live chart as a viewer asks for it: a registry chart (or the block diagram), its x axis, font scale and,
    for the diagram, the probe signal its blocks are coloured by."""

    chart: str
    x: str = "epoch"
    scale: float = 1.0
    signal: str = "grad_norm"
    height: int = 0  # pixels; 0: the chart's own (a projector's layout asks for less)

    @property
    def key(self) -> str:
        return f"{self.chart}:{self.x}:{self.scale:g}:{self.signal}" + (f":{self.height}" if self.height else "")

    @classmethod
    def parse(cls, text: str) -> "View":
        """A view from its key (``errors:epoch:1:grad_norm``; later fields may be left out)."""
        parts = str(text).split(":")
        chart, x, scale, signal, height = (parts + ["", "epoch", "1", "grad_norm", "0"][len(parts):])[:5]
        if chart not in figures.CHARTS and chart != DIAGRAM:
            raise FeedError(f"unknown chart {chart[:40]!r}: choose one of {', '.join([*figures.CHARTS, DIAGRAM])}")
        if x not in ("epoch", "step", "wall"):
            raise FeedError(f"x axis {x[:20]!r} is not epoch, step or wall")
        if signal not in SIGNALS:
            raise FeedError(f"signal {signal[:20]!r} is not one of {', '.join(SIGNALS)}")
        try:
            size = float(scale)
        except ValueError:
            size = math.nan
        if not 0.5 <= size <= 3:
            raise FeedError(f"font scale {scale[:20]!r} is not a number from 0.5 to 3")
        if not (height.isdigit() and (height == "0" or 150 <= int(height) <= 2000)):
            raise FeedError(f"height {height[:20]!r} is not 0 or a number of pixels from 150 to 2000")
        return cls(chart, x, size, signal, int(height))

    @property
    def reads(self) -> tuple[str, ...]:
        return ("probes",) if self.chart == DIAGRAM else figures.CHARTS[self.chart].reads


# --- figures held and what a viewer still needs -------------------------------------------------------------------
def _common_prefix(a: list, b: list) -> int:
    """How many leading items two columns share (list comparisons run in C; bisection on the first mismatch)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    if a[:n - 1] == b[:n - 1]:  # the usual case: only the last point (kept while thinning) moved
        return n - 1
    low, high = 0, n  # a[:low] == b[:low], a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if a[:middle] == b[:middle] else (low, middle)
    return low


def patch(held: Figure, now: Figure) -> dict[str, Any]:
    """What turns figure `held` into `now`: per changed trace, the points to keep and those to append (or the whole
    trace where anything but its columns changed), the new layout where it changed, or ``full`` when the traces
    differ in number (a model's first evaluation, a divergence marker)."""
    if "data" not in held or "data" not in now or len(held["data"]) != len(now["data"]):
        return {"full": now}
    change: dict[str, Any] = {}
    if held["layout"] != now["layout"]:
        change["layout"] = now["layout"]
    traces = []
    for i, (old, new) in enumerate(zip(held["data"], now["data"])):
        if old == new:
            continue
        columns = [k for k in ARRAYS if isinstance(old.get(k), list) and isinstance(new.get(k), list)]
        if {k: v for k, v in old.items() if k not in columns} != {k: v for k, v in new.items() if k not in columns}:
            traces.append({"i": i, "trace": new})
            continue
        keep = min(_common_prefix(old[k], new[k]) for k in columns)
        traces.append({"i": i, "keep": keep, "add": {k: new[k][keep:] for k in columns}})
    if traces:
        change["traces"] = traces
    return change


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON; a stray NaN or infinity (invalid in JSON) becomes null."""
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        return json.dumps(_finite(payload), separators=(",", ":"), allow_nan=False).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- one run --------------------------------------------------------------------------------------------------
def _extended(store: RunStore, run_id: str, name: str, old: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """`old` with the rows recorded since. Each model's rows of a table arrive in step order, so everything after
    the step every model has reached is read again (rows a flush rewrote included); a model with no rows yet
    means a full read."""
    if old.empty or set(models["model"]) - set(old["model"].unique()):
        return getattr(store, name)(run_id)
    since = int(old.groupby("model")["step"].max().min())
    new = getattr(store, name)(run_id, since_step=since)
    kept = old[old["step"] <= since]
    if new.empty:
        return kept if len(kept) < len(old) else old
    return pd.concat([kept, new], ignore_index=True).sort_values(SORT_KEYS[name], kind="stable", ignore_index=True)


def _stamp(frame: pd.DataFrame) -> tuple:
    """What tells a table changed: its length and last step (models: their states)."""
    if frame.empty:
        return (0,)
    if "step" in frame:
        return len(frame), int(frame["step"].max())
    return tuple(map(tuple, frame.astype(str).to_numpy()))


class LiveRun:
    """A run as this server process last read it, and what its viewers hold. Thread-safe: Streamlit sessions and
    the HTTP routes' worker threads share it."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.lock = threading.Lock()
        self.version = 0
        self.row: dict[str, Any] = {}
        self.tables: figures.RunTables | None = None
        self.status: dict[str, Any] = {}
        self._seen: tuple | None = None
        self._stamps: dict[str, tuple] = {}  # table -> what it looked like at the last read
        self._changes: dict[str, int] = {}  # table -> how many times it changed
        self._built: dict[str, tuple[tuple, Figure]] = {}
        self._history: dict[str, list[tuple[int, Figure]]] = {}
        self._summaries: dict[str, tuple[int, str, tuple, float]] = {}
        self._payloads: OrderedDict[tuple, bytes] = OrderedDict()

    # --- reading the store ----------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Read the run's row and, when its status, progress or queue place moved, the rows recorded since.
        Returns whether anything changed (then `version` went up)."""
        row = self.store.run(self.run_id)
        state = RunState(row["status"])
        place = jobs.queue_place(self.store, self.run_id) if state is RunState.QUEUED else None
        seen = (row["status"], row["progress"], row["device"], row["error"], place)
        with self.lock:
            if seen == self._seen:
                return False
            full = not self.row or self.row["status"] != row["status"]
            self._read(full)
            self.row, self._seen = row, seen
            self.status = self._status(row, place)
            self.version += 1
            self._payloads.clear()
            return True

    def _read(self, full: bool) -> None:
        """A full read when the status changed (a resumed run may rewrite rows; a finished one gains its lesion
        study), else the held tables plus the rows recorded since."""
        held = self.tables
        if full or held is None:
            tables = figures.RunTables.read(self.store, self.run_id)
        else:
            models = self.store.models(self.run_id)
            tables = replace(held, models=models, **{
                name: _extended(self.store, self.run_id, name, getattr(held, name), models) for name in SORT_KEYS})
        for name in ("steps", "evals", "probes", "lesions", "models"):
            stamp = _stamp(getattr(tables, name))
            if self._stamps.get(name) != stamp:
                self._stamps[name] = stamp
                self._changes[name] = self._changes.get(name, 0) + 1
        self.tables = tables

    def _status(self, row: Mapping, place: jobs.QueuePlace | None) -> dict[str, Any]:
        p = progress_of(row)
        tables = self.tables
        state = RunState(row["status"])
        if p.total_steps == 0 and state.final and tables is not None and len(tables.steps) and tables.config:
            total, _ = tables.config.run_steps()  # a recorded run: its progress is read off its records
            p = with_records(p, int(tables.steps["step"].max()), float(tables.steps["epoch"].max()),
                             float(tables.steps["wall"].max()), total, tables.config.optim.batch_size)
        line = status_line(row, p, place)
        return {"state": str(line.state), "parts": list(line.parts), "fraction": line.fraction, "notice": line.notice,
                "level": line.notice_level, "final": state.final, "live": state.live, "waiting": state.waiting}

    # --- charts ------------------------------------------------------------------------------------------------
    def _version_of(self, view: View) -> tuple:
        return tuple(self._changes.get(name, 0) for name in view.reads)

    def _build(self, view: View) -> Figure:
        fig = self._draw(view)
        if view.height and "layout" in fig:
            fig["layout"]["height"] = view.height
        return fig

    def _draw(self, view: View) -> Figure:
        tables = self.tables
        if view.chart == DIAGRAM:
            if tables.probes.empty:
                return {"empty": EMPTY["probes"]}
            models = twin_pair(list(dict.fromkeys(tables.probes["model"])))
            step = int(tables.probes["step"].max())
            return live_diagram.diagram_figure(tables.probes, models, step, view.signal, view.scale)
        spec = figures.CHARTS[view.chart]
        if not figures.has_data(spec, tables):
            return {"empty": EMPTY.get(spec.needs, "No data yet.")}
        return spec.build(tables, view.x, view.scale)

    def _figure(self, view: View) -> Figure:
        stamp = self._version_of(view)
        built = self._built.get(view.key)
        if built is not None and built[0] == stamp:
            return built[1]
        fig = self._build(view)
        self._built[view.key] = (stamp, fig)
        history = self._history.setdefault(view.key, [])
        history.append((self.version, fig))
        del history[:-HISTORY]
        return fig

    def _held(self, view: View, since: int) -> Figure | None:
        """The figure of `view` a viewer at version `since` holds (None: none, or too old to patch)."""
        held = [fig for version, fig in self._history.get(view.key, []) if version <= since]
        return held[-1] if held else None

    def _summary(self, view: View) -> tuple[int, str]:
        """(version it changed at, text) of the view's sentence in numbers, recomputed at most every
        `SUMMARY_SECONDS` while the run is live."""
        stamp = self._version_of(view)
        last = self._summaries.get(view.key)
        fresh = last is not None and (last[2] == stamp or (time.monotonic() - last[3] < SUMMARY_SECONDS
                                                           and not self.status.get("final")))
        if fresh:
            return last[0], last[1]
        text = self._summary_text(view)
        version = last[0] if last is not None and last[1] == text else self.version
        self._summaries[view.key] = (version, text, stamp, time.monotonic())
        return version, text

    def _summary_text(self, view: View) -> str:
        tables = self.tables
        if view.chart == DIAGRAM:
            if tables.probes.empty:
                return ""
            models = twin_pair(list(dict.fromkeys(tables.probes["model"])))
            return live_diagram.summary(tables.probes, models, int(tables.probes["step"].max()), view.signal)
        spec = figures.CHARTS[view.chart]
        return spec.summary(tables) if figures.has_data(spec, tables) else ""

    # --- what a viewer receives --------------------------------------------------------------------------------
    def payload(self, views: list[View], since: int) -> bytes:
        """The answer to a viewer that holds version `since` of `views` (-1: nothing): the version now, the status
        line, and per view the patch to apply and the sentence in numbers where they changed."""
        with self.lock:
            key = (tuple(view.key for view in views), since)
            cached = self._payloads.get(key)
            if cached is not None:
                return cached
            charts, summaries = {}, {}
            for view in views:
                fig = self._figure(view)
                held = self._held(view, since)
                if held is not fig:
                    charts[view.key] = {"full": fig} if held is None or "empty" in held or "empty" in fig \
                        else patch(held, fig)
                changed, text = self._summary(view)
                if changed > since or held is None:
                    summaries[view.key] = text
            body = encode({"v": self.version, "status": self.status, "charts": charts, "summaries": summaries})
            self._payloads[key] = body
            while len(self._payloads) > PAYLOADS:
                self._payloads.popitem(last=False)
            return body

    def current_tables(self) -> figures.RunTables:
        with self.lock:
            return self.tables


class Feed:
    """The live runs of one store in this process (at most `capacity`, least recently asked for dropped first)."""

    _shared: dict[str, "Feed"] = {}
    _shared_lock = threading.Lock()

    def __init__(self, store: RunStore, capacity: int = 64):
        self.store, self.capacity = store, capacity
        self._runs: OrderedDict[str, LiveRun] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, store: RunStore) -> "Feed":
        """The process's feed of `store`'s file (pages and routes share one)."""
        with cls._shared_lock:
            feed = cls._shared.get(str(store.path))
            if feed is None:
                feed = cls._shared[str(store.path)] = cls(store)
            return feed

    def run(self, run_id: str) -> LiveRun:
        """The live run `run_id`, read from the store the first time (`FeedError` for an unknown id)."""
        if not valid_run_id(run_id):
            raise FeedError(f"{str(run_id)[:40]!r} is not a run id")
        with self._lock:
            live = self._runs.get(run_id)
            if live is not None:
                self._runs.move_to_end(run_id)
                return live
        live = LiveRun(self.store, run_id)
        try:
            live.refresh()
        except StoreError:
            raise FeedError(f"run {run_id} is not in this app's run store") from None
        with self._lock:
            live = self._runs.setdefault(run_id, live)
            while len(self._runs) > self.capacity:
                self._runs.popitem(last=False)
        return live

    def tables(self, run_id: str) -> figures.RunTables:
        """The run's tables now (read incrementally; what the pages draw)."""
        live = self.run(run_id)
        live.refresh()
        return live.current_tables()
