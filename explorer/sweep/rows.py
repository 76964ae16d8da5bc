"""A sweep as the run store holds it: its ``sweeps`` row, its members' runs rows, and its state derived from them.

A sweep is running while any member is waiting or training; then finished (every member finished or diverged: a
diverged deep plain net is a result), failed (a member failed, or the sweep could not start) or stopped (its owner
stopped it, or members were cancelled or interrupted). Kept free of torch, like `explorer.store` itself: the
sweep's Ray coordinator imports this, and its process starts with every sweep.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from ..states import RunState
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


def derive(stored: str, states: Counter) -> RunState:
    """A sweep's state from what its row says (`stored`: running, stopped, failed) and its members' states."""
    if not states or any(RunState(s).active for s in states):
        return RunState.RUNNING if stored == str(RunState.RUNNING) or states else RunState(stored)
    if stored in (str(RunState.STOPPED), str(RunState.FAILED)):
        return RunState(stored)
    if states.get(str(RunState.FAILED)):
        return RunState.FAILED
    if set(states) <= {str(RunState.FINISHED), str(RunState.DIVERGED)}:
        return RunState.FINISHED
    return RunState.STOPPED


def settle(store: RunStore, sweep_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], RunState, str]:
    """The sweep's row, members, derived state and error; once it has ended, its row records that state and, for a
    failed sweep without an error of its own, the first failed member's."""
    row = sweep_row(store, sweep_id)
    members = member_rows(store, sweep_id)
    state = derive(row["status"], Counter(m["status"] for m in members))
    error = row["error"] or ""
    failed = [m for m in members if m["status"] == str(RunState.FAILED)]
    if state is RunState.FAILED and not error and failed:
        error = f"{len(failed)} of {len(members)} members failed, e.g. {failed[0]['run_id']}: {failed[0]['error']}"
    if state.final and (row["status"] != str(state) or (row["error"] or "") != error):
        with store.transaction() as conn:
            conn.execute("UPDATE sweeps SET status = ?, error = ? WHERE sweep_id = ?", (str(state), error, sweep_id))
    return row, members, state, error
