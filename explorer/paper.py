"""The papers' own numbers that our runs are drawn against, each with its citation: one fact in one place.

He et al. 2015 report CIFAR-10 test errors of their residual nets in Table 6; the plain nets' errors appear only as
curves in Fig. 6 (no table), so no plain-net number is given here, and none may be read off the figure and added.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

HE_2015 = "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016 (arXiv:1512.03385, 2015)"
HE_2015_TABLE6 = "He et al. 2015, Table 6"


@dataclass(frozen=True)
class Reference:
    """One published number: a model's error in percent, where it comes from, and how it was aggregated."""

    family: str
    depth: int
    metric: str  # a column name of our records: ``test_err``
    value: float  # percent
    source: str  # short label shown on charts
    note: str = ""


# Table 6: classification error on the CIFAR-10 test set, 64k iterations at batch 128, augmentation as in §4.2.
# ResNet-110 is the best of 5 runs; the paper gives their mean ± std beside it.
CIFAR10_RESNET: tuple[Reference, ...] = (
    Reference("resnet", 20, "test_err", 8.75, HE_2015_TABLE6),
    Reference("resnet", 32, "test_err", 7.51, HE_2015_TABLE6),
    Reference("resnet", 44, "test_err", 7.17, HE_2015_TABLE6),
    Reference("resnet", 56, "test_err", 6.97, HE_2015_TABLE6),
    Reference("resnet", 110, "test_err", 6.43, HE_2015_TABLE6, note="best of 5 runs; mean 6.61 ± 0.16"),
)


TABLE6_MARGIN = 0.5  # points above Table 6 within which a run reproduces it (issue 18: ResNet-20 ≤ 9.25%, -56 ≤ 7.47%)
# §4.2 trains on CIFAR-10's 50k training images and tests on its 10k test images; a 45k/5k train/val split only
# chose the schedule (stop at 64k iterations).
TABLE6_TRAIN_IMAGES, TABLE6_TEST_IMAGES = 50_000, 10_000


def table6_error(label: str) -> float | None:
    """Table 6's test error (%) of the net a model label names, when it is one the paper trained exactly (full
    width, option A, basic blocks, post-activation: ``resnet20`` ... ``resnet110``), else None."""
    matches = (ref.value for ref in CIFAR10_RESNET if ref.metric == "test_err" and label == f"{ref.family}{ref.depth}")
    return next(matches, None)


def reference_frame(references: tuple[Reference, ...] = CIFAR10_RESNET) -> pd.DataFrame:
    """The references as a table: family, depth, metric, value, source, note (what `sweep_figure` draws)."""
    return pd.DataFrame([vars(r) for r in references], columns=["family", "depth", "metric", "value", "source", "note"])
