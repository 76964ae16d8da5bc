"""The app's own HTTP routes, served beside Streamlit's by `st.App` (streamlit_app.py).

- ``GET /api/runs/{run_id}/live?views=errors:epoch:1,diagram:epoch:1:grad_norm&v=N``: long-polled. A viewer that
  holds version N waits here until the run moves (at most `WAIT_SECONDS`), then gets what changed since N
  (`feed.LiveRun.payload`). One task per watched run polls the store every `POLL_SECONDS` for all its viewers.
- ``GET /api/lessons/{lesson_id}?v=N``: the same for a lesson's phase and tally; ``POST .../vote`` records a
  student's vote (JSON ``{"voter", "choice"}``) and wakes the tally at once; ``GET .../mine?voter=`` a voter's
  own vote.
- ``GET /api/assets/<name>-<hash>.<js|css>``: the plotly.js that ships with the plotly package and the live
  element's code, gzipped once and cached by browsers for a year, so no page loads anything from another host.
- ``GET /join/<code>``: a student's short link (the QR code on the projector) to the lesson with that code.
- ``GET /<Page>``: a first visit to a page's own address (a shared link, a reload) is sent to ``/?page=<Page>``,
  where the app's navigation opens that page (`explorer.ui.nav.follow_link`). Streamlit's client looks for its
  server under the page's path first (``/Lab/_stcore/health``: two 404s in the console), and a session's first
  run there can meet the old-style page router; at ``/`` neither happens.

Bad requests get a JSON ``{"error": ...}`` that says what to change, with status 400 or 404. Nothing here imports
Streamlit beyond the page table: the routes run in the server's event loop, and their store reads in worker
threads.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from explorer import lessons
from explorer.store import RunStore, StoreError
from explorer.ui.live.feed import Feed, FeedError, View
from explorer.ui.nav import PAGE_PARAM, PATHS

POLL_SECONDS = 0.25  # how often a watched run or lesson is read from the store (one indexed read while idle)
WAIT_SECONDS = 20.0  # the longest a poll is held open when nothing changes
IDLE_SECONDS = 60.0  # a watch with no poll for this long stops reading the store
MAX_VIEWS = 12
VOTER = re.compile(r"[A-Za-z0-9_-]{8,64}")
log = logging.getLogger(__name__)


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


class Watch:
    """Wakes everyone waiting on one subject (a run, a lesson) when its version moves: one task reads the store
    every `POLL_SECONDS` while anyone has asked within `IDLE_SECONDS`."""

    def __init__(self, refresh: Callable[[], bool]):
        self.refresh = refresh
        self.changed = asyncio.Event()
        self.asked = time.monotonic()
        self.task: asyncio.Task | None = None

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait(self, moved: Callable[[], bool], timeout: float) -> None:
        """Until `moved()` or `timeout` seconds; keeps the polling task alive."""
        self.asked = time.monotonic()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._poll())
        event = self.changed
        if moved():
            return
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    async def _poll(self) -> None:
        while time.monotonic() - self.asked < IDLE_SECONDS:
            try:
                if await to_thread.run_sync(self.refresh):
                    self.notify()
            except (StoreError, FeedError, lessons.LessonError) as error:  # deleted meanwhile: wake and stop
                log.info("live watch ends: %s", error)
                self.notify()
                return
            await asyncio.sleep(POLL_SECONDS)


class Routes:
    """The routes of one store (the app's: `RunStore()` from the settings)."""

    def __init__(self, store_factory: Callable[[], RunStore] = RunStore, base: str = ""):
        self._store_factory = store_factory
        self.base = f"/{base.strip('/')}" if base.strip("/") else ""
        self._store: RunStore | None = None
        self._watches: dict[str, Watch] = {}
        self._lessons: dict[str, LessonFeed] = {}

    @property
    def store(self) -> RunStore:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _watch(self, key: str, refresh: Callable[[], bool]) -> Watch:
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = Watch(refresh)
        return watch

    # --- a run ---------------------------------------------------------------------------------------------
    async def run_live(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            views = [View.parse(text) for text in request.query_params.get("views", "").split(",") if text]
            since = int(request.query_params.get("v", "-1"))
            if len(views) > MAX_VIEWS:
                raise FeedError(f"ask for at most {MAX_VIEWS} views")
            feed = Feed.of(self.store)
            live = await to_thread.run_sync(feed.run, run_id)
        except ValueError as error:  # FeedError, or a version that is not a number
            return _error(str(error), 404 if "not in this app" in str(error) else 400)
        watch = self._watch(f"run:{run_id}", live.refresh)
        if since >= live.version:
            await watch.wait(lambda: live.version != since, WAIT_SECONDS)
        return _json(await to_thread.run_sync(live.payload, views, since))

    # --- a lesson ------------------------------------------------------------------------------------------
    def _lesson(self, lesson_id: str) -> "LessonFeed":
        feed = self._lessons.get(lesson_id)
        if feed is None:
            feed = LessonFeed(self.store, lesson_id)
            feed.refresh()  # LessonError for an unknown id
            self._lessons[lesson_id] = feed
        return feed

    async def lesson(self, request: Request) -> Response:
        lesson_id = request.path_params["lesson_id"]
        try:
            since = int(request.query_params.get("v", "-1"))
            feed = await to_thread.run_sync(self._lesson, lesson_id)
        except ValueError as error:
            return _error(str(error), 404 if isinstance(error, lessons.LessonError) else 400)
        watch = self._watch(f"lesson:{lesson_id}", feed.refresh)
        if since >= feed.version:
            await watch.wait(lambda: feed.version != since, WAIT_SECONDS)
        return _json(feed.payload())

    async def vote(self, request: Request) -> Response:
        lesson_id = request.path_params["lesson_id"]
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error("send the vote as JSON (Content-Type: application/json)")
        try:
            body = json.loads(await request.body())
            voter, choice = str(body["voter"]), str(body["choice"])
        except (ValueError, KeyError, TypeError):
            return _error('send {"voter": "...", "choice": "..."}')
        if not VOTER.fullmatch(voter):
            return _error("voter must be 8 to 64 letters, digits, - or _")
        try:
            feed = await to_thread.run_sync(self._lesson, lesson_id)
            await to_thread.run_sync(lessons.vote, self.store, lesson_id, voter, choice)
            moved = await to_thread.run_sync(feed.refresh)
        except lessons.LessonError as error:
            return _error(str(error), 409 if "closed" in str(error) else 400)
        if moved:
            self._watch(f"lesson:{lesson_id}", feed.refresh).notify()
        return JSONResponse({"ok": True, "mine": choice}, headers={"Cache-Control": "no-store"})

    async def mine(self, request: Request) -> Response:
        voter = request.query_params.get("voter", "")
        if not VOTER.fullmatch(voter):
            return _error("voter must be 8 to 64 letters, digits, - or _")
        try:
            mine = await to_thread.run_sync(lessons.my_vote, self.store, request.path_params["lesson_id"], voter)
        except lessons.LessonError as error:
            return _error(str(error), 404)
        return JSONResponse({"mine": mine}, headers={"Cache-Control": "no-store"})

    def routes(self) -> list[Route]:
        base = self.base
        return [
            Route(f"{base}/api/runs/{{run_id}}/live", self.run_live),
            Route(f"{base}/api/lessons/{{lesson_id}}", self.lesson),
            Route(f"{base}/api/lessons/{{lesson_id}}/vote", self.vote, methods=["POST"]),
            Route(f"{base}/api/lessons/{{lesson_id}}/mine", self.mine),
            Route(f"{base}/api/assets/{{name}}", asset),
            *(Route(f"{base}/{path}", self.page_link) for path in PATHS),
            Route(f"{base}/join", self.join),
            Route(f"{base}/join/{{code}}", self.join),
        ]

    async def join(self, request: Request) -> Response:
        """A student's short link: ``/join/K7Q2P`` -> the Classroom page, which opens the lesson with that code."""
        code = request.path_params.get("code", "")[:12]
        return RedirectResponse(f"{self.base}/?{urlencode({PAGE_PARAM: 'Classroom', 'join': code})}",
                                status_code=307)

    async def page_link(self, request: Request) -> Response:
        """``/Lab?run=...`` -> ``/?page=Lab&run=...`` (see the module docstring)."""
        page = request.url.path.rstrip("/").rpartition("/")[2]
        query: dict[str, Any] = {PAGE_PARAM: page, **request.query_params}
        return RedirectResponse(f"{self.base}/?{urlencode(query)}", status_code=307)


class LessonFeed:
    """A lesson's phase, revealed run and tally as its viewers see them; `version` moves when any of them does."""

    def __init__(self, store: RunStore, lesson_id: str):
        self.store, self.lesson_id = store, lesson_id
        self.version = 0
        self._seen: tuple | None = None
        self._body = b""

    def refresh(self) -> bool:
        row = lessons.lesson_row(self.store, self.lesson_id)
        counts = lessons.tally(self.store, self.lesson_id)
        seen = (row["phase"], row["run_id"], tuple(counts.items()))
        if seen == self._seen:
            return False
        lesson = lessons.LESSONS[row["lesson"]]
        self.version += 1
        self._body = json.dumps({"v": self.version, "phase": row["phase"], "run_id": row["run_id"],
                                 "counts": counts, "total": sum(counts.values()),
                                 "options": lesson.options}).encode()
        self._seen = seen
        return True

    def payload(self) -> bytes:
        return self._body


# --- the browser code, served from this server ------------------------------------------------------------------
def _asset_sources() -> dict[str, tuple[Path, str]]:
    import plotly

    here = Path(__file__).resolve().parent
    return {"plotly.js": (Path(plotly.__file__).parent / "package_data" / "plotly.min.js", "text/javascript"),
            "live.js": (here / "live.js", "text/javascript"), "live.css": (here / "live.css", "text/css")}


def _versioned(name: str, path: Path) -> str:
    stem, dot, suffix = name.rpartition(".")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"/api/assets/{stem}-{digest}.{suffix}"


_SOURCES = _asset_sources()
ASSETS: dict[str, str] = {name: _versioned(name, path) for name, (path, _) in _SOURCES.items()}  # name -> URL path
_GZIPPED: dict[str, bytes] = {}


async def asset(request: Request) -> Response:
    """plotly.min.js (from the plotly package; 4.8 MB, 1.4 MB gzipped) and the live element's code, gzipped once
    per process and cached by browsers for a year: their URL changes with their content."""
    requested = f"/api/assets/{request.path_params['name']}"
    name = next((name for name, path in ASSETS.items() if path == requested), None)
    if name is None:
        return _error("no such asset", 404)
    if name not in _GZIPPED:
        path, _ = _SOURCES[name]
        _GZIPPED[name] = await to_thread.run_sync(lambda: gzip.compress(path.read_bytes(), compresslevel=6))
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
    media_type = _SOURCES[name][1]
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(_GZIPPED[name], media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(gzip.decompress(_GZIPPED[name]), media_type=media_type, headers=headers)


def routes(base: str = "") -> list[Route]:
    """Every route of the app beside Streamlit's, on the store the settings name, under the server's base path."""
    return Routes(base=base).routes()
