"""The run store: every record of every run, the job queue, sweeps and the classroom, in one SQLite file.

The store is the only channel between the web server and the workers: the server enqueues runs, writes controls
(pause, resume, stop) and reads records; workers claim runs, renew their leases and write records. SQLite runs in
WAL mode, so writers append batches of rows while readers read, and readers never wait for a writer. Each thread
gets its own connection. Every write is one transaction: a killed writer loses at most the batch it had not
committed, and the file always opens.

The store is the only owner of its schema: no SQL is written outside this package (a test greps for it). The
queue (`explorer.jobs`), the workers, sweeps and lessons call named methods (``claim``, ``renew_lease``,
``reap_expired``, ``cast_vote``, ...), and every change of a run's status, whoever asks for it, is checked against
the life of a run (`states.TRANSITIONS`): a change it does not allow raises `IllegalTransition`.

Tables (errors are percentages 0-100, ``model`` is the `ModelConfig.label`):

    runs        run_id, name, preset, config (JSON), status (`RunState`), created, started, ended, device,
                data_source, torch_version, code_version, hostname, error, and the job's facts: owner, key_hash,
                fingerprint, device_kind, worker, lease_expires, control (`Control`), progress (JSON),
                estimate_s, peak_bytes, budget_s, sweep_id
    models      run_id, model, idx, params, status (`ModelState`), diverged_step
    steps       run_id, model, step, epoch, loss, train_err, lr, wall
    evals       run_id, model, step, epoch, train_loss, train_err, test_loss, test_err, test_images, wall
    probes      run_id, model, step, layer, layer_name, grad_norm, weight_norm, update_ratio, response_std
    lesions     run_id, model, block, block_name, test_err
    workers     worker_id, hostname, pid, device_kind, device, started, heartbeat, run_id
    calibration machine, device, precision, torch_version, measured, step_s, layer_s, gmac_s, memory_bytes
    sweeps      sweep_id, name, spec (JSON), backend, status, created, owner, key_hash, error
    lessons     lesson_id, lesson, key_hash, phase, run_id, created, code
    votes       lesson_id, voter, choice, created
    studies     study_id, run_id, kind, spec (JSON), status (`RunState`, `states.STUDY_TRANSITIONS`), device_kind,
                owner, key_hash, estimate_s, worker, lease_expires, created, ended, error

Reads return pandas DataFrames with exactly these columns, or plain rows (dicts) for the queue's own reads. A run
also travels as a bundle directory (`export_bundle` / `import_bundle`).

Modules: `schema` (tables, migrations), `base` (the file, connections, transactions, status changes), `runs` (a
run's records), `queue` (claims, leases, controls, workers), `sweeps`, `classroom`, `studies`, `bundles`.
"""

from __future__ import annotations

from .base import LIST_RUNS_HINT, IllegalTransition, StoreError, code_version, utc_now, valid_run_id
from .bundles import BUNDLE_FORMAT, Bundles
from .classroom import Classroom
from .queue import Claim, Held, Waiting
from .schema import COLUMNS, KEYS, METRIC_TABLES, RUN_TABLES, SCHEMA_VERSION
from .studies import Studies
from .sweeps import Sweeps, valid_sweep_id

__all__ = ["RunStore", "StoreError", "IllegalTransition", "Claim", "Held", "Waiting", "valid_run_id",
           "valid_sweep_id", "code_version", "utc_now", "COLUMNS", "KEYS", "METRIC_TABLES", "RUN_TABLES",
           "SCHEMA_VERSION", "BUNDLE_FORMAT", "LIST_RUNS_HINT"]


class RunStore(Sweeps, Bundles, Classroom, Studies):
    """All runs in one SQLite file (WAL mode, one connection per thread): see the module docstring."""
