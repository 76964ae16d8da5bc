"""Runs as jobs: a fair queue in the run store, owners and their keys, leases, controls, deduplication.

Everything here is a store transaction, so the web server, the CLI and any number of worker processes (on this
machine or others sharing the store's disk) agree without talking to each other. This module is the queue's policy
(fair order, caps, leases' length, what a refusal says); the store owns the rows and every status change:

- `submit` checks a configuration against the machine (memory guard, hosted caps, the per-owner and global
  queue caps, where a sweep's waiting members count as one request) and enqueues it, unless an identical request
  (same configuration, data and code) is already queued, training or finished: then it attaches to that run.
  Thirty students pressing the same button start one job and all watch it.
- `claim` hands a worker the next run in round-robin order over owners (one owner's ten queued runs wait their turn
  behind other owners' first ones) under a lease that the worker renews every second (`renew`); `reap` marks runs
  whose lease expired `interrupted` (the worker died: kill -9, out of memory, a reboot), keeping every record.
- `request` sets a run's control (pause, resume, stop); the worker that holds it reads it at its next renewal.
  Controlling a run needs its owner's key: the view link (``?run=ID``) shows a run to anyone, the control link
  (``?run=ID&key=SECRET``) is given to its owner only. The store keeps a hash of the key, never the key.
- A stopped or interrupted run can be `requeue`d: a worker resumes it from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Config, ConfigError
from . import device as device_policy
from .data import DataError, check_fits, data_fingerprint
from .estimate import LEARN_FROM, Calibration, Estimate, calibration_for, estimate, learned
from .memory import check
from .settings import settings
from .states import Control, RunState
from .store import RunStore, Waiting, code_version

if TYPE_CHECKING:
    from .landscape import SliceSpec

LEASE_SECONDS = 5.0  # a worker renews every second; a run whose lease lapsed this long ago is interrupted
WORKER_STALE_SECONDS = 30.0
CLI_OWNER_KEY = "local-command-line"  # the CLI runs on the machine itself: its owner is the machine's user


class JobRefused(RuntimeError):
    """A request was not queued (a cap, a limit, a refused control); the message says what to do instead."""


class NotOwner(JobRefused):
    """Controlling a run needs its owner's key."""


@dataclass(frozen=True)
class Submission:
    run_id: str
    attached: bool  # an identical run already existed: this request joined it
    estimate: Estimate


def new_owner_key() -> str:
    return secrets.token_urlsafe(16)


def owner_of(key: str) -> str:
    """The public name of an owner (shown in queues), derived from the key."""
    return "o-" + hashlib.sha256(("owner:" + key).encode()).hexdigest()[:10]


def key_hash(key: str) -> str:
    return hashlib.sha256(("control:" + key).encode()).hexdigest()


def holds_key(row: dict, key: str | None) -> bool:
    return bool(key) and bool(row.get("key_hash")) and hmac.compare_digest(row["key_hash"], key_hash(key))


# --- submitting ---------------------------------------------------------------------------------------------------
def device_kind(config: Config, store: RunStore) -> str:
    """Where `config` will train: ``cpu`` or ``cuda`` (`explorer.device.device_kind`'s rule)."""
    return device_policy.device_kind(config.device, _gpu_available(store))


def _gpu_available(store: RunStore) -> bool:
    """A GPU is available to a queued run when a live worker registered one, or when this machine shows one (its
    embedded workers may not have registered yet). Asked without PyTorch: the server never loads it."""
    return device_policy.visible_gpus() > 0 or any(kind == "cuda" for kind in live_worker_kinds(store))


def calibration(store: RunStore, kind: str, precision: str, threads: int = 0) -> Calibration:
    """This machine's calibration of `kind` and `precision` (on a CPU, for `threads` threads; 0: all of them),
    corrected by the runs it finished lately (`estimate.learned`)."""
    rows = store.calibration_rows()
    machine = socket.gethostname()
    if kind == "cpu":  # 0 threads is PyTorch's default: the most any calibration here used
        counts = [int(r["device"].split("(")[1].split()[0]) for r in rows
                  if r["machine"] == machine and r["device"].startswith("cpu (")]
        device = device_policy.cpu_name(threads or max(counts, default=os.cpu_count() or 1))
    else:
        device = None
    timed = calibration_for(rows, kind, precision, machine=machine, device=device)
    return learned(timed, _finished_here(store, timed.device, precision))


def _finished_here(store: RunStore, device: str, precision: str) -> list[tuple[Config, float]]:
    """The runs this machine finished on `device` in `precision`, newest first: (configuration, training seconds).
    Only runs submitted to this store (they have an owner): an imported recording keeps the hostname it was made on,
    but not the code or the load it was trained under."""
    from .progress import Progress

    finished = store.runs([RunState.FINISHED])
    mine = finished[(finished["hostname"] == socket.gethostname()) & (finished["device"] == device)
                    & finished["owner"].notna()]
    out = []
    for row in mine.itertuples():
        try:
            config = Config.from_json(row.config)
        except ConfigError:
            continue
        if device_policy.precision_on(config.precision, row.device_kind or "cpu") == precision:
            out.append((config, Progress.from_json(row.progress, RunState.FINISHED).elapsed_s))
        if len(out) == 2 * LEARN_FROM:  # enough for `learned`, which skips the short ones
            break
    return out


def assess(config: Config, store: RunStore) -> tuple[str, Estimate]:
    """Where `config` would train and what it would cost, refusing (`ResourceError`, `JobRefused`) what this
    server does not allow. Milliseconds: arithmetic on the stored calibration."""
    kind = device_kind(config, store)
    cal = calibration(store, kind, device_policy.precision_on(config.precision, kind), config.threads)
    cost = estimate(config, cal)
    check(config, kind, cal.precision, device_memory=cal.memory_bytes)
    cap = settings().max_job_seconds
    if cap is not None and cost.seconds > cap:
        raise JobRefused(f"this run would take {cost.summary()}; this server runs jobs of up to {cap / 60:.0f} min: "
                         "use fewer epochs, a smaller subset or shallower models")
    return kind, cost


def submit(store: RunStore, config: Config, owner_key: str, *, preset: str = "", budget_s: float | None = None,
           sweep_id: str | None = None, status: RunState = RunState.QUEUED, attach: bool = True,
           data_dir: str | os.PathLike | None = None) -> Submission:
    """Queue `config` for the owner of `owner_key` (or attach to an identical run); see the module docstring.
    `data_dir` replaces the operator's data directory (the CLI's --data-dir)."""
    if budget_s is not None and not (budget_s > 0 and budget_s < 1e7):
        raise ConfigError(f"budget {budget_s!r} is not a positive number of seconds")
    check_fits(config.data, data_dir)  # an unknown source, an empty folder or too large a subset: here, not in a worker
    kind, cost = assess(config, store)
    try:
        data = data_fingerprint(config.data.source, data_dir)
    except DataError:
        data = f"{config.data.source}-unavailable"
    fingerprint = hashlib.sha256(
        f"{config.fingerprint()}|{data}|{code_version()}|{preset}|{budget_s}|{kind}".encode()).hexdigest()
    cfg = settings()
    owner = owner_of(owner_key)
    from .memory import model_footprint  # parameter counts, traced without building a net

    models = [{"model": m.label, "idx": i, "params": model_footprint(m, len(config.data.classes) or 10)[1]}
              for i, m in enumerate(config.models)]

    def admit() -> None:  # in the store's transaction with the insert: simultaneous requests queue one run
        if status is not RunState.QUEUED or (sweep_id is not None and store.sweep_has_runs(sweep_id)):
            return  # a sweep's members count as one request
        waiting = store.waiting_counts()
        if waiting.get(owner, 0) >= cfg.max_queued_per_owner:
            raise JobRefused(f"you already have {waiting[owner]} runs waiting (at most "
                             f"{cfg.max_queued_per_owner}): wait for one to start, or cancel one")
        if sum(waiting.values()) >= cfg.max_queued:
            raise JobRefused(f"the queue is full ({sum(waiting.values())} runs waiting): try again in a few minutes")

    run_id, attached = store.enqueue(config, fingerprint=fingerprint, attach=attach and sweep_id is None,
                                     admit=admit, preset=preset, data_source=config.data.source, models=models,
                                     status=status, owner=owner, key_hash=key_hash(owner_key), device_kind=kind,
                                     estimate_s=cost.seconds, peak_bytes=cost.memory.total, budget_s=budget_s,
                                     sweep_id=sweep_id, control=str(Control.RUN))
    return Submission(run_id=run_id, attached=attached, estimate=cost)


# --- the queue seen from a worker -----------------------------------------------------------------------------------
def _fair_order(rows: list[Waiting], busy: dict[str, int]) -> list[str]:
    """Run ids of queued (run_id, owner, created, ...) rows in round-robin order over owners: an owner's k-th
    waiting run (counting the ones already training) comes after every owner's (k-1)-th; ties go by age."""
    seen: dict[str, int] = dict(busy)
    ranked = []
    for run_id, owner, created, *_ in sorted(rows, key=lambda r: r[2]):
        rank = seen.get(owner, 0)
        seen[owner] = rank + 1
        ranked.append((rank, created, run_id))
    return [run_id for *_, run_id in sorted(ranked)]


def claim(store: RunStore, worker_id: str, kind: str, run_id: str | None = None) -> tuple[str, bool] | None:
    """Atomically take the next queued run this worker's device can train (or the named one) under a lease;
    returns (run id, resume?) or None. Resume is true for a run that trained before (stopped or interrupted)."""
    if run_id is None:
        return store.claim_next(worker_id, kind, LEASE_SECONDS, _fair_order)
    return store.claim(run_id, worker_id, LEASE_SECONDS)


def has_waiting(store: RunStore, kind: str) -> bool:
    """Whether a run is queued for a device of `kind`."""
    return store.has_queued(kind)


def renew(store: RunStore, run_id: str, worker_id: str) -> Control | None:
    """Extend the worker's lease on its run and return the owner's wish; None when the lease was lost (the run
    was reaped as interrupted, or another worker holds it), so the worker must stop without writing more."""
    return store.renew_lease(run_id, worker_id, LEASE_SECONDS)


def reap(store: RunStore) -> list[str]:
    """Mark runs whose worker stopped renewing its lease `interrupted`, and forget workers long silent."""
    lost = store.reap_expired("its worker stopped answering (killed or crashed); every record up to its last flush "
                              "is kept, and it can be resumed")
    store.reap_studies("its worker stopped answering (killed or crashed): ask for the slices again")
    store.forget_silent_workers(WORKER_STALE_SECONDS)
    return lost


# --- workers' registry -------------------------------------------------------------------------------------------
def register_worker(store: RunStore, worker_id: str, kind: str, device: str, pid: int) -> None:
    store.register_worker(worker_id, kind, device, pid)


def worker_idle(store: RunStore, worker_id: str) -> None:
    store.worker_idle(worker_id)


def unregister_worker(store: RunStore, worker_id: str) -> None:
    store.unregister_worker(worker_id)


def live_workers(store: RunStore) -> list[dict]:
    return store.live_workers(WORKER_STALE_SECONDS / 3)


def live_worker_kinds(store: RunStore) -> list[str]:
    return [w["device_kind"] for w in live_workers(store)]


# --- the owner's controls ----------------------------------------------------------------------------------------
def _owned(store: RunStore, run_id: str, key: str | None) -> dict:
    row = store.run(run_id)
    if not holds_key(row, key):
        raise NotOwner(f"run {run_id} can only be controlled with its owner's link (the one with key=): you can "
                       "watch it, or start your own")
    return row


def request(store: RunStore, run_id: str, key: str | None, control: Control) -> None:
    """Ask the worker holding `run_id` to run, pause or stop; a queued run that is stopped is cancelled."""
    _owned(store, run_id, key)
    status = store.request_control(run_id, control)
    if not status.live and not (status.waiting and control is Control.STOP):
        raise JobRefused(f"run {run_id} is {status}: there is nothing to {control} now")


def requeue(store: RunStore, run_id: str, key: str | None) -> None:
    """Put a stopped or interrupted run back in the queue; its worker resumes it from the last checkpoint."""
    row = _owned(store, run_id, key)
    status = RunState(row["status"])
    if not status.resumable:
        raise JobRefused(f"run {run_id} is {status}: only stopped or interrupted runs can be resumed")
    store.requeue(run_id)


# --- studies of finished runs --------------------------------------------------------------------------------------
STUDY_LEASE_SECONDS = 60.0  # a worker renews a study's lease every few points; one that lapsed this long failed


@dataclass(frozen=True)
class StudyRequest:
    study_id: str
    attached: bool  # the same study was already asked for: this request joined it
    estimate_s: float


def request_landscape(store: RunStore, run_id: str, key: str | None, spec: "SliceSpec") -> StudyRequest:
    """Queue the loss-surface slices `spec` of a finished run for a free worker: its owner only, priced first and
    held to this server's cap on a job's length (a hosted server's `EXPLORER_MAX_JOB_SECONDS`)."""
    from .checkpoints import checkpoint_path
    from .landscape import estimate_seconds

    row = _owned(store, run_id, key)
    status = RunState(row["status"])
    if status not in (RunState.FINISHED, RunState.STOPPED):
        raise JobRefused(f"run {run_id} is {status}: slices are cut through a finished (or stopped) run's weights")
    if not checkpoint_path(store, run_id).exists():
        raise JobRefused(f"run {run_id} kept no trained weights on this server (a recorded run, or its checkpoint "
                         "was removed): train it here, then ask for its slices")
    config = store.config(run_id)
    kind = device_kind(config, store)
    seconds = estimate_seconds(store, run_id, spec, kind, device_policy.precision_on(config.precision, kind))
    cap = settings().max_job_seconds
    if cap is not None and seconds > cap:
        raise JobRefused(f"these slices would take about {seconds / 60:.0f} min; this server runs jobs of up to "
                         f"{cap / 60:.0f} min: ask for a coarser grid or fewer images")
    study_id, attached = store.request_study(run_id, "landscape", spec.to_json(), kind, owner_of(key),
                                             key_hash(key), seconds)
    return StudyRequest(study_id, attached, seconds)


# --- what a waiting page shows --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueuePlace:
    position: int  # 1: next to start
    ahead_seconds: float  # estimated training time of the runs ahead and of those training now, per worker
    workers: int


def queue_place(store: RunStore, run_id: str) -> QueuePlace | None:
    """Where a queued run stands, or None when it is not waiting."""
    row = store.run(run_id)
    if row["status"] != str(RunState.QUEUED):
        return None
    kind = row["device_kind"]
    queued = store.queued_runs(kind)
    training = store.held_runs(kind)
    busy: dict[str, int] = {}
    for held in training:
        busy[held.owner] = busy.get(held.owner, 0) + 1
    order = _fair_order(queued, busy)
    estimates = {r.run_id: r.estimate_s for r in queued}
    position = order.index(run_id) + 1 if run_id in order else len(order)
    ahead = sum(estimates.get(r) or 0.0 for r in order[:position - 1])
    ahead += sum(_remaining(held.estimate_s, held.progress) for held in training)
    workers = max(1, sum(1 for k in live_worker_kinds(store) if k == kind))
    return QueuePlace(position=position, ahead_seconds=ahead / workers, workers=workers)


def _remaining(estimate_s: float | None, progress: str | None) -> float:
    from .progress import Progress

    p = Progress.from_json(progress, RunState.RUNNING)
    if p.eta_s is not None:
        return p.eta_s
    return estimate_s or 0.0
