"""Sweeps: a named grid of runs (family × depth × seed, shortcut option × seed, ...), each member one model and one
seed, trained on this machine's queue or on a Ray cluster, summarised as mean, sd, min and max over seeds.

    from explorer import sweep
    spec = sweep.SweepSpec("Fig. 6", base, grid={"family": ["plain", "resnet"], "depth": [20, 32, 44, 56]}, seeds=3)
    sweep_id = sweep.start(store, spec, owner_key, backend="local")      # or backend="ray", ray_address="auto"
    sweep.status(store, sweep_id); sweep.stop(store, sweep_id, owner_key)
    sweep.table(store, sweep_id); sweep.summary(store, sweep_id); sweep.record(store, sweep_id, "assets/...")

`spec` plans members, `runs` keeps a sweep's life in the store, `tables` reads its results, `record` writes and
replays recorded sweeps, `ray_backend` (imported only for backend="ray") trains members as Ray tasks.
"""

from .record import load_recorded, record
from .runs import (BACKENDS, RayOptions, SweepStatus, estimates, member_rows, spec_of, start, status, stop, sweep_ids,
                   train_here, valid_sweep_id, wait)
from .spec import SweepError, SweepSpec, plan
from .tables import METRICS, summarize, summary, table

__all__ = ["BACKENDS", "METRICS", "RayOptions", "SweepError", "SweepSpec", "SweepStatus", "estimates", "load_recorded",
           "member_rows", "plan", "record", "spec_of", "start", "status", "stop", "summarize", "summary",
           "sweep_ids", "table", "train_here", "valid_sweep_id", "wait"]
