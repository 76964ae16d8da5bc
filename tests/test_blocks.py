"""A new block type from this file alone: a ResNeXt-style block (grouped 3x3 convolution, Xie et al. 2017) is
declared and registered here, then configured by label, planned, built, described, drawn (DOT and the live block
diagram) and trained with the real worker and trainer on the synthetic source; nothing else in the explorer names
it. Also: the registry refuses inconsistent declarations with a message that says what to fix."""

from __future__ import annotations

import math

import pytest
import torch

from explorer import blocks
from explorer.blocks import BlockType, BlockTypeError, Conv, Path, register
from explorer.config import ConfigError, ModelConfig, block_names, depth_options, depth_rule, valid_depths
from explorer.diagram import model_dot
from explorer.memory import model_footprint
from explorer.models import build_model, describe_config
from explorer.plan import plan_net
from explorer.states import RunState
from explorer.store import RunStore
from explorer.ui.config_form import block_help
from explorer.ui.live_diagram import boxes, diagram_figure
from support import tiny_config, train

GROUPS = 4


class ResNeXt(BlockType):
    """Aggregated residual transformations (Xie et al. 2017 Fig. 3c): 1x1 reduce to half the output, a grouped 3x3,
    1x1 restore."""

    name = "resnext"
    label = "rx"
    layers = 3
    expansion = 4
    deepest = 101
    memory_factor = 1.5
    summary = f"1x1, grouped 3x3 ({GROUPS} groups), 1x1, depth 9n+2 (Xie et al. 2017)"

    @classmethod
    def paths(cls, in_ch: int, out_ch: int, stride: int) -> tuple[Path, ...]:
        mid = out_ch // 2
        return ((Conv(in_ch, mid, 1), Conv(mid, mid, 3, stride, groups=GROUPS), Conv(mid, out_ch, 1)),)

    @classmethod
    def glyph(cls) -> str:
        return f"1×1 → 3×3/{GROUPS} → 1×1"


@pytest.fixture(autouse=True, scope="module")
def resnext():
    register(ResNeXt)
    yield ResNeXt
    blocks.unregister(ResNeXt.name)


def test_a_registered_block_is_a_configuration_choice():
    model = ModelConfig.parse("resnet11-rx-B")
    assert (model.block, model.depth, model.label) == ("resnext", 11, "resnet11-rx-B")
    assert "resnext" in block_names() and depth_rule("resnext") == "9n+2"
    assert valid_depths("resnet", "resnext")[-1] == 101 and 101 in depth_options("resnet", "resnext")
    assert model.display_name == "ResNet-11 (resnext, shortcut B)"
    with pytest.raises(ConfigError, match="not 9n\\+2 for resnext blocks: try 11 or 20"):
        ModelConfig.parse("resnet14-rx")
    assert "resnext: 1x1, grouped 3x3" in block_help()


def test_it_builds_plans_and_describes_alike():
    cfg = ModelConfig.parse("resnet11-rx-w0.5")
    net = build_model(cfg, seed=1)
    grouped = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == GROUPS]
    assert len(grouped) == 3  # one per block, one block per stage
    plain = build_model(ModelConfig.parse("plain11-rx-w0.5"), seed=1).state_dict()
    assert all(torch.equal(tensor, net.state_dict()[name]) for name, tensor in plain.items())  # twins
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    description = describe_config(cfg)
    assert description.params == sum(p.numel() for p in net.parameters()) == plan_net(cfg).params
    assert description.depth == net.depth == 11
    assert [row["kind"] for row in description.blocks[1:-1]] == ["resnext"] * 3
    saved, params = model_footprint(cfg)
    assert saved == round(1.5 * plan_net(cfg).saved_bytes()) and params == description.params


def test_it_is_drawn_with_its_groups_and_its_glyph():
    dot = model_dot(ModelConfig.parse("resnet38-rx"), collapse_after=2)
    assert "3×3 conv, 32, 4 groups" in dot and "3×3 conv, 64, /2, 4 groups" in dot
    assert dot.count("… 2 identical resnext blocks …\\n1×1 → 3×3/4 → 1×1") == 3
    assert "3×3/4" not in model_dot(ModelConfig.parse("resnet29-bneck"), collapse_after=2)


def test_it_trains_with_the_real_trainer_and_shows_in_the_live_diagram(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = train(store, tiny_config(models=("plain11-rx-w0.25", "resnet11-rx-w0.25"), steps=4, eval_every=2,
                                      probe_every=2))
    assert store.status(run_id) is RunState.FINISHED
    steps = store.steps(run_id)
    assert set(steps.model) == {"plain11-rx-w0.25", "resnet11-rx-w0.25"}
    assert steps.loss.map(math.isfinite).all()
    probes = store.probes(run_id)
    names = set(probes[probes.model == "resnet11-rx-w0.25"].layer_name)
    assert "stage2.0.layer2.conv" in names  # the grouped conv, probed like any other
    models = ["plain11-rx-w0.25", "resnet11-rx-w0.25"]
    assert [b.name for b in boxes(probes, models[1], 2, "grad_norm")] == [
        "stem", "stage1.0", "stage2.0", "stage3.0", "head"]
    figure = diagram_figure(probes, models, 2)
    hovers = [trace.get("hovertemplate") or "" for trace in figure["data"]]
    assert sum("stage2.0 (1×1 → 3×3/4 → 1×1)" in text for text in hovers) == 2  # one box per model


def test_the_registry_refuses_inconsistent_block_types():
    class Wrong(ResNeXt):
        name, label, layers = "wrong", "wr", 2

    with pytest.raises(BlockTypeError, match="declares 2 layers but its longest path has 3 convs"):
        register(Wrong)

    class Clash(ResNeXt):
        name, label = "clash", "bneck"

    with pytest.raises(BlockTypeError, match="label 'bneck' is taken"):
        register(Clash)
    assert "wrong" not in block_names() and "clash" not in block_names()
