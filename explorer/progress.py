"""A run's live progress: what the trainer publishes about once a second and every view (the pages, the CLI, the
queue's waiting times) reads back from the store. Plain data, no PyTorch: the web server reads it."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass

from .states import RunState


@dataclass(frozen=True)
class Progress:
    """A run's live state as the trainer last published it (a copy: callers never see it change)."""

    state: RunState
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    images_per_s: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    device: str = ""
    data_source: str = ""
    gpu_memory_bytes: int | None = None
    diverged: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "state": str(self.state)})

    @classmethod
    def from_json(cls, text: str | None, state: RunState) -> "Progress":
        """The stored progress, with the store's `state` (which outlives the trainer's last word). Malformed text
        gives a blank progress and a `RuntimeWarning` (once per text: callers poll it every second)."""
        try:
            raw = json.loads(text) if text else {}
            if not isinstance(raw, dict):
                raise TypeError(f"a JSON {type(raw).__name__}, not an object")
            known = {f for f in cls.__dataclass_fields__}
            values = {k: v for k, v in raw.items() if k in known and k != "state"}
            values["diverged"] = tuple(values.get("diverged", ()))
            return cls(state=state, **values)
        except (TypeError, ValueError) as error:
            warnings.warn(f"stored progress {str(text)[:80]!r} is malformed ({error}): showing a blank progress",
                          RuntimeWarning, stacklevel=2)
            return cls(state=state)
