"""Sweeps: a named grid of runs (family × depth × seed, shortcut option × seed, ...), each member one model and one
seed, trained on this machine's queue or on a Ray cluster, summarised as mean, sd, min and max over seeds.

    from explorer import sweep
    spec = sweep.SweepSpec("Fig. 6", base, grid={"family": ["plain", "resnet"], "depth": [20, 32, 44, 56]}, seeds=3)
    sweep_id = sweep.start(store, spec, owner_key, backend="local")      # or backend="ray", ray_address="auto"
    sweep.status(store, sweep_id); sweep.stop(store, sweep_id, owner_key)
    sweep.table(store, sweep_id); sweep.summary(store, sweep_id); sweep.record(store, sweep_id, "assets/...")

Modules: `spec` plans members, `rows` reads a sweep's rows, `runs` keeps its life in the store (start, status,
stop), `tables` reads its results, `recorded` writes and replays recorded sweeps; `ray_backend`, `coordinator` and
`member_task` (imported only for backend="ray") train members as Ray tasks. The names below load their module on
first use, so the Ray coordinator, which needs only `rows`, starts without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "SweepSpec": "spec", "SweepError": "spec", "RayOptions": "spec", "plan": "spec",
    "valid_sweep_id": "rows", "sweep_ids": "rows", "spec_of": "rows", "member_rows": "rows",
    "BACKENDS": "runs", "SweepStatus": "runs", "start": "runs", "status": "runs", "stop": "runs", "wait": "runs",
    "train_here": "runs", "estimates": "runs",
    "METRICS": "tables", "table": "tables", "summarize": "tables", "summary": "tables",
    "record": "recorded", "load_recorded": "recorded",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .recorded import load_recorded, record
    from .rows import member_rows, spec_of, sweep_ids, valid_sweep_id
    from .runs import BACKENDS, SweepStatus, estimates, start, status, stop, train_here, wait
    from .spec import RayOptions, SweepError, SweepSpec, plan
    from .tables import METRICS, summarize, summary, table


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
