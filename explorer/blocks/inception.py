"""The Inception block: GoogLeNet's module with dimension reductions (Szegedy et al. 2014 Fig. 2b), two layers deep:
1x1; 1x1 → 3x3; 1x1 → 5x5; 3x3 max pool → 1x1, concatenated to the block width. Stride-2 blocks stride the spatial
convs, the lone 1x1 and the pool."""

from __future__ import annotations

from dataclasses import dataclass

from . import BlockType, Conv, ModelError, Path, Pool, conv_macs, register


def inception_split(out_ch: int) -> tuple[int, int, int, int]:
    """Output channels of the 1x1, 3x3, 5x5 and pool branches: a quarter each, the 1x1 takes the remainder."""
    if out_ch < 4:
        raise ModelError(f"an Inception block needs at least 4 channels, not {out_ch}: use a larger width")
    quarter = out_ch // 4
    return out_ch - 3 * quarter, quarter, quarter, quarter


def inception_reduce(branch_ch: int) -> int:
    """Channels of the 1x1 reduction before a 3x3 or 5x5 conv: half its output (GoogLeNet 3a: 16 → 32 for 5x5)."""
    return max(1, branch_ch // 2)


@register
class Inception(BlockType):
    name = "inception"
    label = "incep"
    layers = 2
    deepest = 1202
    summary = "four parallel branches, 1x1 | 3x3 | 5x5 | pool, depth 6n+2 (Szegedy et al. 2014)"

    @classmethod
    def paths(cls, in_ch: int, out_ch: int, stride: int) -> tuple[Path, ...]:
        c1, c3, c5, cp = inception_split(out_ch)
        r3, r5 = inception_reduce(c3), inception_reduce(c5)
        return ((Conv(in_ch, c1, 1, stride),),
                (Conv(in_ch, r3, 1), Conv(r3, c3, 3, stride)),
                (Conv(in_ch, r5, 1), Conv(r5, c5, 5, stride)),
                (Pool(3, stride, 1), Conv(in_ch, cp, 1)))


@dataclass(frozen=True)
class InceptionCost:
    """Multiply-adds per branch of an Inception module, naive (3x3 and 5x5 straight on the input) and with 1x1
    reductions before them (Szegedy et al. 2014 Fig. 2a vs 2b). Both keep the pool branch's 1x1 projection so that
    the outputs have the same width."""

    naive: dict[str, int]
    bottleneck: dict[str, int]

    @property
    def naive_total(self) -> int:
        return sum(self.naive.values())

    @property
    def bottleneck_total(self) -> int:
        return sum(self.bottleneck.values())


def inception_cost(in_ch: int, out_ch: int, hw: int, reduce_ch: int | None = None) -> InceptionCost:
    """Cost of one Inception module with the explorer's branch split on an hw x hw output map; ``reduce_ch``
    overrides the width of both 1x1 reductions."""
    c1, c3, c5, cp = inception_split(out_ch)
    r3 = reduce_ch or inception_reduce(c3)
    r5 = reduce_ch or inception_reduce(c5)
    shared = {"1x1": conv_macs(in_ch, c1, 1, hw, hw), "pool proj": conv_macs(in_ch, cp, 1, hw, hw)}
    naive = {"3x3": conv_macs(in_ch, c3, 3, hw, hw), "5x5": conv_macs(in_ch, c5, 5, hw, hw)}
    reduced = {"3x3": conv_macs(in_ch, r3, 1, hw, hw) + conv_macs(r3, c3, 3, hw, hw),
               "5x5": conv_macs(in_ch, r5, 1, hw, hw) + conv_macs(r5, c5, 5, hw, hw)}
    return InceptionCost(naive={**shared, **naive}, bottleneck={**shared, **reduced})
