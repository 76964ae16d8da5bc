"""A sweep as the run store holds it: its ``sweeps`` row, its members' runs rows, and its state derived from them.

A sweep is running while any member is waiting or training; then finished (every member finished or diverged: a
diverged deep plain net is a result), failed (a member failed, or the sweep could not start) or stopped (its owner
stopped it, or members were cancelled or interrupted). Kept free of torch, like `explorer.store` itself: the
sweep's Ray coordinator imports this, and its process starts with every sweep.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from ..states import RunState
from ..store import RunStore, valid_sweep_id
from .spec import SweepSpec

__all__ = ["derive", "member_rows", "settle", "spec_of", "sweep_ids", "sweep_row", "valid_sweep_id"]


def sweep_row(store: RunStore, sweep_id: str) -> dict[str, Any]:
    return store.sweep_row(sweep_id)


def sweep_ids(store: RunStore) -> list[str]:
    """Every sweep, newest first."""
    return store.sweep_ids()


def spec_of(store: RunStore, sweep_id: str) -> SweepSpec:
    return SweepSpec.from_dict(json.loads(sweep_row(store, sweep_id)["spec"]))


def member_rows(store: RunStore, sweep_id: str) -> list[dict[str, Any]]:
    """The sweep's runs (run_id, status, config JSON, error, estimate_s, budget_s), in the order they were created."""
    return store.sweep_members(sweep_id)


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
        store.set_sweep_status(sweep_id, state, error)
    return row, members, state, error
