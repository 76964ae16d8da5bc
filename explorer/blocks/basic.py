"""The basic block: two 3x3 convs (He et al. 2015 Fig. 2 and §4.2), depth 6n+2 on CIFAR."""

from __future__ import annotations

from . import BlockType, Conv, Path, register


@register
class Basic(BlockType):
    name = "basic"
    label = ""
    layers = 2
    deepest = 1202  # ResNet-1202 (He et al. 2015 §4.2)
    summary = "two 3x3 convs, depth 6n+2 (He et al. 2015)"

    @classmethod
    def paths(cls, in_ch: int, out_ch: int, stride: int) -> tuple[Path, ...]:
        return ((Conv(in_ch, out_ch, 3, stride), Conv(out_ch, out_ch, 3)),)
