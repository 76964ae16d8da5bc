"""Recorded sweeps: a finished sweep as a folder the app replays without training.

    DIR/sweep.json                 the sweep row, its specification, the hardware, the budget, the summary table
    DIR/<model>-seed<k>[-<i>]/     one run bundle per member (`RunStore.export_bundle`: run.json and Parquet)

`load_recorded` imports the folder into a store (e.g. `RunStore.memory()`), members and sweep row alike, so every
page and table reads a recorded sweep as it reads a live one.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from ..store import RunStore, StoreError
from .rows import member_rows, spec_of, sweep_row
from .runs import status
from .spec import SweepError
from .tables import summarize, table

RECORD_FORMAT = 1


def record(store: RunStore, sweep_id: str, directory: str | Path) -> Path:
    """Write the ended sweep `sweep_id` to `directory` (see the module docstring); returns the folder."""
    current = status(store, sweep_id)
    if not current.state.final:
        raise SweepError(f"sweep {sweep_id} is still {current.state}: record it once it has ended "
                         f"(python -m explorer sweep-status {sweep_id})")
    directory = Path(directory)
    spec = spec_of(store, sweep_id)
    tidy = table(store, sweep_id)
    members, names = [], set()
    for member in member_rows(store, sweep_id):
        run = store.run(member["run_id"])
        config = store.config(member["run_id"])
        name = f"{config.models[0].label}-seed{config.seed}"
        name = name if name not in names else f"{name}-{len(names)}"
        names.add(name)
        store.export_bundle(member["run_id"], directory / name)
        members.append({"run_id": member["run_id"], "bundle": name, "status": member["status"],
                        "device": run["device"], "started": run["started"], "ended": run["ended"]})
    row = {k: v for k, v in sweep_row(store, sweep_id).items() if k not in ("owner", "key_hash")}
    seconds = tidy[tidy["metric"] == "train_seconds"]["value"]
    first = store.run(members[0]["run_id"]) if members else {}
    document = {
        "format": RECORD_FORMAT, "sweep": {**row, "spec": json.loads(row["spec"])}, "spec": spec.to_dict(),
        "budget_s": spec.budget_s, "members": members,
        "hardware": {"machine": f"{platform.machine()}, {platform.system()}", "cpus": os.cpu_count(),
                     "devices": sorted({m["device"] for m in members if m["device"]}),
                     "torch_version": first.get("torch_version", ""), "code_version": first.get("code_version", "")},
        "train_seconds": {"total": float(seconds.sum()), "longest_member": float(seconds.max() or 0.0)},
        "summary": json.loads(summarize(tidy).to_json(orient="records")),
    }
    (directory / "sweep.json").write_text(json.dumps(document, indent=2) + "\n")
    return directory


def load_recorded(directory: str | Path, store: RunStore) -> str:
    """Import a folder written by `record` into `store`; returns the sweep id."""
    directory = Path(directory)
    try:
        document = json.loads((directory / "sweep.json").read_text())
        sweep, members = document["sweep"], document["members"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StoreError(f"{directory} is not a recorded sweep ({error}): give a folder written by "
                         "`python -m explorer sweep ... --record DIR`") from None
    if document.get("format") != RECORD_FORMAT:
        raise StoreError(f"recorded sweep {directory.name} has format {document.get('format')!r}; this version reads "
                         f"format {RECORD_FORMAT}: record it again")
    sweep_id = sweep["sweep_id"]
    if store.has_sweep(sweep_id):
        raise StoreError(f"sweep {sweep_id} is already in the run store")
    for member in members:
        store.import_bundle(directory / member["bundle"])
    store.import_sweep({**sweep, "spec": json.dumps(sweep["spec"]), "owner": None, "key_hash": None})
    return sweep_id
