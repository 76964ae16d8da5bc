"""The embedded worker pool: the app's own `python -m explorer worker` processes, so one command serves everything.

`streamlit run streamlit_app.py` starts one worker per GPU (each sees one GPU through CUDA_VISIBLE_DEVICES), or
one on a CPU machine; EXPLORER_WORKERS overrides the count (0: start none, run workers yourself, e.g. on other
machines sharing the store's disk). The pool restarts a worker that dies (after a pause, so a worker that cannot
start does not spin), reaps runs whose worker died (their lease lapsed), and stops its workers when the server
exits. Workers are separate processes: a crash, an out-of-memory kill or a segfault in training never takes the
web server down, and training never competes with the server's interpreter.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import jobs
from .device import visible_gpus
from .settings import settings
from .store import RunStore

SUPERVISE_SECONDS = 1.0
RESTART_PAUSE_SECONDS = 5.0


def default_worker_count() -> int:
    configured = settings().workers
    if configured is not None:
        return configured
    return max(1, visible_gpus())


@dataclass
class _Slot:
    index: int
    env: dict[str, str]
    process: subprocess.Popen | None = None
    started: float = 0.0


@dataclass
class WorkerPool:
    """A supervised set of worker processes on one store (see the module docstring)."""

    store_path: Path
    count: int
    log_dir: Path | None = None
    slots: list[_Slot] = field(default_factory=list)

    def __post_init__(self) -> None:
        gpus = visible_gpus()  # counted without PyTorch: the web server does not load it
        for i in range(self.count):
            env = dict(os.environ, EXPLORER_STORE=str(self.store_path), PYTHONUNBUFFERED="1")
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
            self.slots.append(_Slot(i, env))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="explorer-pool", daemon=True)

    def start(self) -> "WorkerPool":
        for slot in self.slots:
            self._spawn(slot)
        self._thread.start()
        atexit.register(self.stop)
        return self

    def _spawn(self, slot: _Slot) -> None:
        log = (open(self.log_dir / f"worker-{slot.index}.log", "a") if self.log_dir else subprocess.DEVNULL)
        slot.process = subprocess.Popen(
            [sys.executable, "-m", "explorer", "--store", str(self.store_path), "worker", "--parent",
             str(os.getpid())], env=slot.env, stdout=log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent)
        slot.started = time.monotonic()

    def _supervise(self) -> None:
        store = RunStore(self.store_path)
        while not self._stop.wait(SUPERVISE_SECONDS):
            jobs.reap(store)
            for slot in self.slots:
                if slot.process is not None and slot.process.poll() is not None \
                        and time.monotonic() - slot.started > RESTART_PAUSE_SECONDS:
                    self._spawn(slot)

    def stop(self) -> None:
        """Stop the workers: a SIGTERM stops each one's run cleanly (checkpointed, resumable)."""
        self._stop.set()
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.terminate()
        for slot in self.slots:
            if slot.process is not None:
                try:
                    slot.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    slot.process.kill()


def start_pool(store: RunStore, count: int | None = None) -> WorkerPool | None:
    """Start the embedded pool for `store` (None when EXPLORER_WORKERS=0)."""
    count = default_worker_count() if count is None else count
    if count <= 0:
        return None
    log_dir = store.path.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return WorkerPool(store.path, count, log_dir).start()


_server_pools: dict[Path, WorkerPool | None] = {}
_server_lock = threading.Lock()


def server_pool(store: RunStore) -> WorkerPool | None:
    """The web server's one pool for `store`, started on first call: by the app's startup (streamlit_app.py) or by
    its first page, whichever comes first."""
    with _server_lock:
        if store.path not in _server_pools:
            _server_pools[store.path] = start_pool(store)
        return _server_pools[store.path]


def stop_server_pools() -> None:
    """Stop the server's pools (the app's shutdown). Under `st.App`, uvicorn re-raises SIGTERM after shutting down,
    so the process dies of the signal and `atexit` never runs: without this a `docker stop` left the run being
    trained `running` until a later reap called it interrupted, instead of stopped at a checkpoint."""
    with _server_lock:
        pools = [pool for pool in _server_pools.values() if pool is not None]
        _server_pools.clear()
    for pool in pools:
        pool.stop()
