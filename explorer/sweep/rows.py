"""A sweep as the run store holds it: its ``sweeps`` row and its members' runs rows (reads only).

Kept free of torch, like `explorer.store` itself: the sweep's Ray coordinator imports this, and its process starts
with every sweep.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..store import RunStore, StoreError
from .spec import SweepSpec

SWEEP_ID = re.compile(r"s\d{8}-\d{6}-[0-9a-f]{4,8}")
SWEEP_COLUMNS = ("sweep_id", "name", "spec", "backend", "status", "created", "owner", "key_hash", "error")
MEMBER_COLUMNS = ("run_id", "status", "config", "error", "estimate_s", "budget_s")
LIST_SWEEPS_HINT = "list the sweeps with `python -m explorer sweep-status`"


def valid_sweep_id(sweep_id: object) -> bool:
    return isinstance(sweep_id, str) and SWEEP_ID.fullmatch(sweep_id) is not None


def sweep_row(store: RunStore, sweep_id: str) -> dict[str, Any]:
    rows = store.read(f"SELECT {', '.join(SWEEP_COLUMNS)} FROM sweeps WHERE sweep_id = ?", (sweep_id,)) \
        if valid_sweep_id(sweep_id) else []
    if not rows:
        raise StoreError(f"unknown sweep id {str(sweep_id)[:40]!r} in the run store: {LIST_SWEEPS_HINT}")
    return dict(zip(SWEEP_COLUMNS, rows[0]))


def sweep_ids(store: RunStore) -> list[str]:
    """Every sweep, newest first."""
    return [s for (s,) in store.read("SELECT sweep_id FROM sweeps ORDER BY created DESC, sweep_id DESC")]


def spec_of(store: RunStore, sweep_id: str) -> SweepSpec:
    return SweepSpec.from_dict(json.loads(sweep_row(store, sweep_id)["spec"]))


def member_rows(store: RunStore, sweep_id: str) -> list[dict[str, Any]]:
    """The sweep's runs (run_id, status, config JSON, error, estimate_s, budget_s), in the order they were created."""
    sweep_row(store, sweep_id)
    return [dict(zip(MEMBER_COLUMNS, row)) for row in store.read(
        f"SELECT {', '.join(MEMBER_COLUMNS)} FROM runs WHERE sweep_id = ? ORDER BY created, run_id", (sweep_id,))]
