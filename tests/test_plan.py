"""The architecture as data (explorer/plan.py) against the real PyTorch modules built from it, over a wide grid of
configurations: module names, parameters per layer and per block, output shapes traced through a forward pass,
depth, multiply-adds, and the bytes autograd saves for the backward pass as its saved-tensor hooks count them
(the memory model's input, which the web server now reads from the plan without PyTorch)."""

import itertools
from dataclasses import replace

import pytest
import torch
from torch import nn

from explorer.config import (BLOCKS, SHORTCUT_VARIANTS, SHORTCUTS, VGG_DEPTHS, ConfigError, ModelConfig, depth_of,
                             model_grid)
from explorer.memory import model_footprint
from explorer.models import Block, ConvLayer, ExplorerNet, ModelError
from explorer.plan import LayerPlan, PoolPlan, plan_net


def small_grid() -> list[ModelConfig]:
    """Every block, shortcut, merge, order and batch-norm choice at one block per stage and a quarter width, the
    plain twins, and every VGG configuration in both orders."""
    residual = model_grid(family=["resnet"], block=list(BLOCKS), shortcut=list(SHORTCUTS),
                          shortcut_variant=list(SHORTCUT_VARIANTS), order=["original", "preact"],
                          batchnorm=[True, False], width=[0.25])
    residual = tuple(replace(m, depth=depth_of(m.block, 1)) for m in residual)
    plain = model_grid(family=["plain"], depth=[8], block=["basic", "inception"], order=["original", "preact"],
                       batchnorm=[True, False], width=[0.25])
    vgg = model_grid(family=["vgg"], depth=list(VGG_DEPTHS), order=["original", "preact"], width=[0.25])
    return [*residual, *plain, *vgg]


SPECIAL = ["resnet20", "resnet56-B-pre", "resnet20-w4", "plain32-nobn-w2", "resnet20-bneck-C-gated-w0.5",
           "resnet14-incep-B-pre-scaled-w0.5", "resnet8-zi-xavier", "vgg16-nobn-w0.5", "vgg11-pre-w0.5"]
GRID = [*small_grid(), *(ModelConfig.parse(label) for label in SPECIAL)]
CLASSES = {"resnet20": 100, "vgg11-pre-w0.5": 2, "resnet8-zi-xavier": 3}


def meta_net(cfg: ModelConfig, classes: int) -> ExplorerNet:
    with torch.device("meta"):
        return ExplorerNet(cfg, classes)


def traced_saved_bytes(model: ExplorerNet) -> int:
    """Bytes autograd saves in one training-mode forward of one image, each tensor once, parameters excluded: the
    memory model's measure before it was read from the plan. A pre-activated VGG's final batch norm sees a 1x1 map,
    which one image cannot normalise, so there the count is extrapolated from two and three images (it is linear in
    the batch: activations grow with it, statistics and weight views do not)."""
    cfg = model.config
    if cfg.family == "vgg" and cfg.order == "preact" and cfg.batchnorm:
        return 2 * _saved(model, 2) - _saved(model, 3)
    return _saved(model, 1)


def _saved(model: ExplorerNet, images: int) -> int:
    parameters = {id(p) for p in model.parameters()}
    saved: dict[int, int] = {}
    keep: list[torch.Tensor] = []  # ids stay unique while the forward's tensors are alive

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in parameters:
            keep.append(tensor)
            saved[id(tensor)] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.empty(images, 3, 32, 32, device="meta"))
    return sum(saved.values())


def traced_shapes(model: ExplorerNet) -> dict[str, tuple[tuple, tuple]]:
    """(input, output) shape of every named module, batch dimension dropped, from a forward of zero images on
    uninitialised CPU memory (shapes only)."""
    model = model.to_empty(device="cpu").eval()
    shapes = {}
    hooks = [module.register_forward_hook(
        lambda m, i, o, name=name: shapes.__setitem__(name, (tuple(i[0].shape[1:]), tuple(o.shape[1:]))))
        for name, module in model.named_modules() if name]
    with torch.no_grad():
        model(torch.empty(0, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    return shapes


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("cfg", GRID, ids=[m.label for m in GRID])
def test_plan_is_the_built_net(cfg):
    classes = CLASSES.get(cfg.label, 10)
    plan, net = plan_net(cfg, classes), meta_net(cfg, classes)
    modules = dict(net.named_modules())
    parts = {part.name: part for block in plan.blocks() for path in block.paths for part in path}
    parts.update({stage.pool.name: stage.pool for stage in plan.stages if stage.pool is not None})
    layers = {**{p.name: p for p in parts.values() if isinstance(p, LayerPlan)}, "stem": plan.stem,
              **{b.shortcut.name: b.shortcut for b in plan.blocks() if b.shortcut is not None}}
    assert set(layers) == {name for name, m in modules.items() if isinstance(m, ConvLayer)}
    assert {p.name for p in parts.values() if isinstance(p, PoolPlan)} == {
        name for name, m in modules.items() if isinstance(m, nn.MaxPool2d)}
    assert [b.name for b in plan.blocks()] == [name for name, _ in net.named_blocks()]

    description = plan.describe()
    assert [row["name"] for row in description.layers] == [info.name for info in net.layers()]
    assert [(row["kind"], row["stage"], row["block"]) for row in description.layers] == [
        (info.kind, info.stage, info.block) for info in net.layers()]
    for row in description.layers:
        assert row["params"] == numel(modules[row["name"]]), row["name"]
    for block in plan.blocks():
        assert block.params == numel(modules[block.name]), block.name
        assert block.path_depth == modules[block.name].path_depth
    assert plan.params == description.params == numel(net)
    assert plan.depth == description.depth == net.depth
    assert plan.macs == description.macs == sum(row["macs"] for row in description.layers)

    shapes = traced_shapes(meta_net(cfg, classes))
    for name, layer in layers.items():
        assert shapes[name] == (layer.in_shape, layer.out_shape), name
    for block in plan.blocks():
        assert shapes[block.name] == (block.in_shape, block.out_shape), block.name
    assert shapes["classifier"][1] == (classes,)
    for row in description.layers:
        assert tuple(row["out_shape"]) == shapes[row["name"]][1], row["name"]

    assert plan.saved_bytes() == traced_saved_bytes(net)


@pytest.mark.parametrize("label", ["resnet1202", "resnet1001-bneck-pre-B"])
def test_the_deepest_nets_plan_exactly(label):
    """Built in full on the meta device; their saved bytes traced on twins of two and three blocks per stage (a
    full trace takes half a minute) and extrapolated, which is exact: every later block of a stage saves the same."""
    cfg = ModelConfig.parse(label)
    plan, net = plan_net(cfg), meta_net(cfg, 10)
    assert plan.depth == net.depth == cfg.depth and plan.params == numel(net)
    two, three = (traced_saved_bytes(meta_net(replace(cfg, depth=depth_of(cfg.block, n)), 10)) for n in (2, 3))
    n = (cfg.depth - 2) // (3 * cfg.unit.layers)
    assert plan.saved_bytes() == three + (n - 3) * (three - two)
    assert model_footprint(cfg) == (plan.saved_bytes(), plan.params)  # the built-in memory factor is 1


def test_paper_facts_from_the_plan_alone():
    assert plan_net(ModelConfig(depth=56)).params == 853_018  # He et al. 2015 Table 6
    assert plan_net(ModelConfig(depth=1202)).params == 19_421_274
    assert plan_net(ModelConfig(depth=20)).macs == 40_551_040
    assert plan_net(ModelConfig.parse("vgg11")).depth == 11


def test_an_impossible_net_is_a_named_error():
    with pytest.raises(ModelError, match="at least 2"):
        plan_net(ModelConfig(), 1)
    with pytest.raises(ConfigError):
        ModelConfig(depth=21)


def test_twins_share_their_plan_but_the_shortcuts():
    for label in ("resnet20-B-pre", "resnet14-incep-C-gated"):
        residual = ModelConfig.parse(label)
        plain = residual.with_options(family="plain")
        for r, p in itertools.zip_longest(plan_net(residual).blocks(), plan_net(plain).blocks()):
            assert (r.name, r.paths) == (p.name, p.paths)
            assert r.residual and not p.residual


def test_blocks_are_generic_modules_of_their_plan():
    net = meta_net(ModelConfig.parse("resnet8-incep"), 10)
    block = net.blocks()[0]
    assert isinstance(block, Block) and block.kind == "inception" and len(block.paths) == 4
    assert [type(m).__name__ for m in block.paths[3]] == ["MaxPool2d", "ConvLayer"]
