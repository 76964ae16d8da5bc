"""Lesion study (Veit et al. 2016, Fig. 3): remove one block of a trained net at test time and score it again.

A residual block removed leaves its shortcut, so information still flows through the net's many other paths and
the error rises by a little; a plain block removed leaves only a parameter-free reshaping of its input, and the
net falls to about chance. The removal itself is `models.lesioned`; the scoring is the trainer's evaluation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .device import DevicePolicy

if TYPE_CHECKING:  # views read BASELINE_BLOCK without PyTorch; a lesion study runs in a worker, with it
    from .data import ImageData
    from .models import ExplorerNet

BASELINE_BLOCK = -1  # the row of the intact net
BASELINE_NAME = "none (intact)"


def lesion_errors(model: ExplorerNet, data: ImageData, policy: DevicePolicy) -> list[dict]:
    """Test error (%) of `model` intact (block `BASELINE_BLOCK`) and with each block removed in turn: rows of
    ``block``, ``block_name`` and ``test_err`` ready for the store's lesions table (add ``model``). Scored in fp32
    so that small differences between lesions are not rounding."""
    from .models import lesioned
    from .trainer import evaluate

    policy = replace(policy, dtype=None)
    model = policy.to_device(model)

    def test_error() -> float:
        return float(evaluate(model, data.test_x, data.test_y, policy)[1])

    rows = [dict(block=BASELINE_BLOCK, block_name=BASELINE_NAME, test_err=test_error())]
    for k, (name, _) in enumerate(model.named_blocks()):
        with lesioned(model, k):
            rows.append(dict(block=k, block_name=name, test_err=test_error()))
    return rows
