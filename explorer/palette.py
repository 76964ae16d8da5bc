"""Colours and order of models, one convention for every chart, diagram and report.

Okabe-Ito colour-blind-safe hues per family (plain = vermillion, resnet = blue, vgg = bluish green); within a
family, deeper nets are drawn darker. Models sort plain, resnet, vgg, and shallow to deep.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

import numpy as np

from .config import ConfigError, ModelConfig

FAMILY_COLORS: dict[str, str] = {"plain": "#D55E00", "resnet": "#0072B2", "vgg": "#009E73"}
FAMILY_TITLES: dict[str, str] = {"plain": "Plain nets", "resnet": "Residual nets", "vgg": "VGG-style nets"}
OTHER_COLOR = "#7F7F7F"


@lru_cache(maxsize=4096)  # called per row and per trace by every live chart rebuild: parse each label once
def family_of(label: str) -> str:
    """The family of a model label (``plain56-pre`` -> ``plain``); ``other`` when it is not a model label."""
    try:
        return ModelConfig.parse(label).family
    except ConfigError:
        return "other"


@lru_cache(maxsize=4096)
def depth_of(label: str) -> int:
    try:
        return ModelConfig.parse(label).depth
    except ConfigError:
        return 0


def mix(color: str, target: str, amount: float) -> str:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
    goal = np.array([int(target[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
    mixed = np.round(rgb + (goal - rgb) * amount).astype(int)
    return "#" + "".join(f"{v:02X}" for v in mixed)


def model_colors(labels: Iterable[str]) -> dict[str, str]:
    """Label -> colour: the family's hue, lighter for shallower and darker for deeper nets of that family."""
    by_family: dict[str, list[str]] = {}
    for label in dict.fromkeys(labels):
        by_family.setdefault(family_of(label), []).append(label)
    colors = {}
    for family, members in by_family.items():
        base = FAMILY_COLORS.get(family, OTHER_COLOR)
        members.sort(key=lambda m: (depth_of(m), m))
        for rank, label in enumerate(members):
            # shallowest: 45% towards white; deepest: 25% towards black
            t = rank / (len(members) - 1) if len(members) > 1 else 0.5
            shade = 0.45 - 0.7 * t
            colors[label] = mix(base, "#FFFFFF", shade) if shade > 0 else mix(base, "#000000", -shade)
    return colors


def families(labels: Iterable[str]) -> list[str]:
    present = {family_of(label) for label in labels}
    return [f for f in (*FAMILY_COLORS, "other") if f in present]




def model_order(label: str) -> tuple[int, int, str]:
    families_ = (*FAMILY_COLORS, "other")
    return families_.index(family_of(label)), depth_of(label), label


def twin_pair(labels: list[str]) -> list[str]:
    """The deepest plain net and the residual net of the same depth (else the first two models): the pair a
    side-by-side view compares."""
    plain = sorted((m for m in labels if family_of(m) == "plain"), key=depth_of)
    for candidate in reversed(plain):
        match = [m for m in labels if family_of(m) == "resnet" and depth_of(m) == depth_of(candidate)]
        if match:
            return [candidate, match[0]]
    return labels[:2]
