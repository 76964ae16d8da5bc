"""The bottleneck block: 1x1 reduce, 3x3, 1x1 restore to 4x the width (He et al. 2015 Fig. 5), depth 9n+2."""

from __future__ import annotations

from . import BlockType, Conv, Path, register


@register
class Bottleneck(BlockType):
    name = "bottleneck"
    label = "bneck"
    layers = 3
    expansion = 4
    deepest = 1001  # the pre-activation ResNet-1001 (He et al. 2016)
    summary = "1x1-3x3-1x1 with 4x expansion, depth 9n+2 (He et al. 2015 Fig. 5)"

    @classmethod
    def paths(cls, in_ch: int, out_ch: int, stride: int) -> tuple[Path, ...]:
        mid = out_ch // cls.expansion
        # the stride sits on the 3x3 conv, as in torchvision ("ResNet v1.5"), not on the first 1x1
        return ((Conv(in_ch, mid, 1), Conv(mid, mid, 3, stride), Conv(mid, out_ch, 1)),)
