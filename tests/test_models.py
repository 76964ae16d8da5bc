"""Architectures: the paper's parameter counts, twins, shortcut options, init, lesions, descriptions."""

import json
import math

import pytest
import torch
from torch import nn

from explorer.config import ModelConfig
from explorer.models import (ModelError, build_model, conv_macs, describe_config, inception_cost, inception_split,
                             lesioned, option_a)

PAPER_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}  # He et al. 2015 Table 6


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread; two threads on a busy 2-core machine spin-wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cfg(label: str) -> ModelConfig:
    return ModelConfig.parse(label)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def block_io(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Logits and (input, output) of every block in one no-grad forward."""
    io = []
    hooks = [b.register_forward_hook(lambda m, i, o: io.append((i[0], o))) for b in model.blocks()]
    with torch.no_grad():
        logits = model(x)
    for hook in hooks:
        hook.remove()
    return logits, io


@pytest.mark.parametrize("family", ["resnet", "plain"])
@pytest.mark.parametrize("depth", PAPER_PARAMS)
def test_parameter_counts_match_the_paper(family, depth):
    model = build_model(ModelConfig(family=family, depth=depth))
    assert n_params(model) == PAPER_PARAMS[depth]
    assert len(model.layers()) == model.depth == depth


def test_resnet1202_builds_with_1202_layers():
    model = build_model(ModelConfig(depth=1202)).eval()
    n = 200  # stem + stage 1 + stage 2 (first block, then the rest) + stage 3 + classifier
    expected = 464 + n * 4_672 + 13_952 + (n - 1) * 18_560 + 55_552 + (n - 1) * 73_984 + 650
    assert n_params(model) == expected == 19_421_274  # the paper's 19.4M
    assert len(model.layers()) == model.depth == 1202 and len(model.blocks()) == 3 * n
    with torch.no_grad():  # about 0.4 s on one thread
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert describe_config(model.config).params == expected


@pytest.mark.parametrize("label", ["resnet20", "resnet20-B", "resnet11-bneck-pre-C", "resnet8-incep-gated-w0.5"])
def test_twins_share_every_common_tensor(label):
    residual = cfg(label)
    plain = residual.with_options(family="plain")
    r = build_model(residual, seed=3).state_dict()
    p = build_model(plain, seed=3).state_dict()
    assert set(p) <= set(r)
    assert all(".shortcut." in name or ".gate." in name for name in set(r) - set(p))
    for name, tensor in p.items():
        assert torch.equal(tensor, r[name]), name
    assert torch.equal(build_model(plain, seed=3).state_dict()["stem.conv.weight"], p["stem.conv.weight"])
    assert not torch.equal(build_model(plain, seed=4).state_dict()["stem.conv.weight"], p["stem.conv.weight"])


def test_shortcut_options_add_projections_where_expected():
    models = {option: build_model(ModelConfig(shortcut=option)) for option in "ABC"}
    projections = {o: sum(info.kind == "projection" for info in m.layers()) for o, m in models.items()}
    assert projections == {"A": 0, "B": 2, "C": 9}
    # B: a 1x1 conv and its BN at the two stage changes; C: on all nine blocks
    assert n_params(models["B"]) - n_params(models["A"]) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert n_params(models["C"]) - n_params(models["A"]) == (
        3 * (16 * 16 + 2 * 16) + (16 * 32 + 2 * 32) + 2 * (32 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
        + 2 * (64 * 64 + 2 * 64))
    x = torch.randn(2, 3, 32, 32)
    assert all(m(x).shape == (2, 10) for m in models.values())
    assert n_params(build_model(cfg("plain20").with_options(shortcut="C"))) == PAPER_PARAMS[20]  # no shortcuts
    bottleneck = build_model(cfg("resnet20-bneck-B"))  # the 16 → 64 expansion into stage 1 needs one too
    assert [info.name for info in bottleneck.layers() if info.kind == "projection"] == [
        "stage1.0.shortcut.conv", "stage2.0.shortcut.conv", "stage3.0.shortcut.conv"]


@pytest.mark.parametrize("label", ["resnet20-C-gated", "resnet11-bneck-B-pre", "resnet8-incep-B", "vgg11-w0.25"])
def test_layers_are_listed_in_forward_order(label):
    model = build_model(cfg(label))
    layers = model.layers()
    fired = []
    hooks = [info.response.register_forward_hook(lambda m, i, o, name=info.name: fired.append(name))
             for info in layers]
    model(torch.randn(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert fired == [info.name for info in layers]
    assert [info.index for info in layers] == list(range(len(layers)))


def test_layer_info_points_at_responses_stages_and_blocks():
    original = {info.name: info for info in build_model(cfg("resnet20-B")).layers()}
    assert isinstance(original["stage2.0.layer1.conv"].response, nn.BatchNorm2d)
    assert (original["stage2.0.layer1.conv"].stage, original["stage2.0.layer1.conv"].block) == (2, 3)
    assert original["stage2.0.shortcut.conv"].kind == "projection"
    assert list(original).index("stage2.0.shortcut.conv") == list(original).index("stage2.0.layer2.conv") + 1
    assert (original["stem.conv"].stage, original["stem.conv"].block) == (0, None)
    assert (original["classifier.0"].kind, original["classifier.0"].stage) == ("linear", 4)
    for label in ("resnet20-pre", "resnet20-nobn"):
        assert all(info.response is info.module for info in build_model(cfg(label)).layers())


@pytest.mark.parametrize("label,block,signed", [
    ("resnet20-zi", 1, False),  # post-activation: y = relu(x + 0) is x for x >= 0
    ("resnet20-zi-nobn", 1, False),
    ("resnet20-bneck-zi", 1, False),
    ("resnet14-incep-zi", 1, False),
    ("resnet20-zi-pre", 1, True),
    ("resnet20-bneck-zi-pre", 3, True),
])
def test_zero_init_residual_makes_blocks_identity_and_still_learns(label, block, signed):
    model = build_model(cfg(label))
    unit = model.blocks()[block]
    x = torch.randn(2, unit.in_ch, 8, 8)
    x = x if signed else x.abs()
    torch.testing.assert_close(unit(x), x, atol=1e-6, rtol=0)
    model(torch.randn(2, 3, 32, 32)).square().sum().backward()
    zeroed = [layer.output_gain for layer in unit.final_layers()]
    assert all(gain.abs().sum() == 0 and gain.grad.abs().sum() > 0 for gain in zeroed)


def test_zero_init_shape_changing_block_is_its_option_a_shortcut():
    down = build_model(cfg("resnet20-zi")).blocks()[3]
    x = torch.rand(2, 16, 8, 8)
    torch.testing.assert_close(down(x), option_a(x, 32, 2), atol=1e-6, rtol=0)
    assert option_a(x, 32, 2).shape == (2, 32, 4, 4) and option_a(x, 32, 2)[:, 16:].abs().sum() == 0


@pytest.mark.parametrize("label", ["resnet20", "resnet20-pre", "plain20-pre", "resnet20-B-pre", "resnet11-bneck-pre"])
def test_both_orders_forward_and_backward(label):
    model = build_model(cfg(label))
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert (model.final_bn is not None) == label.endswith("-pre")


def test_scaled_and_gated_merges():
    scaled = build_model(cfg("resnet20-scaled")).eval()
    block, x = scaled.blocks()[1], torch.rand(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(0.5 * (x + block.branch(x))))
    gated = build_model(cfg("resnet20-gated")).eval()
    block = gated.blocks()[1]
    assert all(b.gate.bias.eq(-6).all() for b in gated.blocks())  # He et al. 2016 Table 1
    with torch.no_grad():
        g = torch.sigmoid(block.gate(x))
        torch.testing.assert_close(block(x), torch.relu((1 - g) * x + g * block.branch(x)))
        assert g.mean() < 0.1  # the gate starts mostly on the shortcut
    for label in ("resnet20-scaled", "resnet20-gated", "resnet20-gated-pre-B"):
        model = build_model(cfg(label))
        model(torch.randn(4, 3, 32, 32)).logsumexp(1).sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        gates = [b.gate.weight.grad for b in model.blocks() if b.gate is not None]
        assert len(gates) == (9 if "gated" in label else 0) and all(g.abs().sum() > 0 for g in gates)


def _skip_original(block, x):
    return torch.relu(option_a(x, block.out_ch, block.stride))


def _skip_preact_projection(block, x):
    return block.shortcut(torch.relu(block.pre_bn(x)))


@pytest.mark.parametrize("label,k,skip", [
    ("resnet20", 4, _skip_original),
    ("resnet20", 3, _skip_original),  # stride 2: subsample and zero-pad
    ("plain20", 3, lambda b, x: option_a(x, b.out_ch, b.stride)),
    ("plain20-pre", 4, lambda b, x: x),
    ("resnet20-B-pre", 3, _skip_preact_projection),
    ("resnet20-scaled", 1, lambda b, x: torch.relu(0.5 * x)),
    ("vgg11-w0.25", 2, lambda b, x: option_a(x, b.out_ch, 1)),
])
def test_lesion_removes_exactly_block_k(label, k, skip):
    model = build_model(cfg(label)).eval()
    x = torch.randn(4, 3, 32, 32)
    logits, intact = block_io(model, x)
    with lesioned(model, k) as same:
        assert same is model
        lesioned_logits, io = block_io(model, x)
    for (_, before), (_, after) in zip(intact[:k], io[:k]):
        assert torch.equal(before, after)
    block_in, block_out = io[k]
    with torch.no_grad():
        torch.testing.assert_close(block_out, skip(model.blocks()[k], block_in))
    assert not torch.allclose(logits, lesioned_logits)
    assert torch.equal(block_io(model, x)[0], logits)  # restored on exit


def test_lesion_rejects_a_missing_block():
    with pytest.raises(ModelError, match="blocks 0 to 8"):
        with lesioned(build_model(ModelConfig()), 9):
            pass


def test_resnet164_bottleneck_has_about_1_7m_parameters():
    described = describe_config(cfg("resnet164-bneck-pre"))  # He et al. 2016 Table 2: 1.7M
    assert described.depth == 164 == len(described.layers)
    assert abs(described.params / 1.7e6 - 1) < 0.05
    model = build_model(cfg("resnet29-bneck"))
    assert model.depth == 29 == len(model.layers()) and len(model.blocks()) == 9
    assert model.blocks()[0].out_ch == 64 and model.blocks()[-1].out_ch == 256  # 4x the inner 16 / 64
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_vgg_depth_counts_convs_and_linears(depth):
    model = build_model(ModelConfig(family="vgg", depth=depth, width=0.25))
    layers = model.layers()
    assert len(layers) == model.depth == depth
    assert [info.kind for info in layers].count("linear") == 3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_inception_blocks_concatenate_to_the_stage_width():
    model = build_model(cfg("resnet8-incep-B-w0.5"))
    x = torch.randn(2, 3, 32, 32)
    _, io = block_io(model.eval(), x)
    for block, (block_in, block_out) in zip(model.blocks(), io):
        assert sum(inception_split(block.out_ch)) == block.out_ch
        side = block_in.shape[2] // block.stride
        assert block_out.shape[1:] == (block.out_ch, side, side)
    assert model.depth == 8 and len(model.layers()) == 1 + 3 * 6 + 2 + 1  # six convs a block, two projections
    with pytest.raises(ModelError, match="larger width"):
        inception_split(3)


def test_one_by_one_reductions_cut_the_cost():
    assert conv_macs(192, 32, 5, 28, 28) == 120_422_400  # 5x5 conv 192 → 32 on 28x28
    assert conv_macs(192, 16, 1, 28, 28) + conv_macs(16, 32, 5, 28, 28) == 12_443_648  # through 16 channels first
    cost = inception_cost(192, 256, 28, reduce_ch=16)
    assert cost.naive["5x5"] == conv_macs(192, 64, 5, 28, 28) and cost.naive["1x1"] == cost.bottleneck["1x1"]
    assert cost.bottleneck_total < cost.naive_total / 3
    block = describe_config(cfg("resnet20-incep")).blocks[5]  # stage2.1: 32 → 32 on 16x16, identity shortcut
    assert (block["name"], block["shortcut"]) == ("stage2.1", "identity")
    assert block["macs"] == inception_cost(32, 32, 16).bottleneck_total


@pytest.mark.parametrize("label", ["resnet20", "resnet56-B-pre", "resnet11-bneck-C", "resnet8-incep-gated",
                                   "vgg11-w0.5", "plain20-nobn", "resnet20-w2-xavier"])
def test_describe_totals_and_shapes_match_the_built_model(label):
    model = build_model(cfg(label)).eval()
    described = model.describe()
    assert described.params == n_params(model) == sum(row["params"] for row in described.blocks)
    assert described.macs == sum(row["macs"] for row in described.layers)
    assert described.macs == sum(row["macs"] for row in described.blocks)
    assert described.depth == model.config.depth
    assert [row["name"] for row in described.layers] == [info.name for info in model.layers()]
    if model.config.block != "inception":
        extra = sum(row["kind"] in ("projection", "gate") for row in described.layers)
        assert len(described.layers) == model.config.depth + extra
    _, io = block_io(model, torch.randn(1, 3, 32, 32))
    rows = described.blocks[1:-1]
    assert [row["kind"] for row in (described.blocks[0], described.blocks[-1])] == ["stem", "head"]
    assert [(row["in_shape"], row["out_shape"]) for row in rows] == [
        (list(i.shape[1:]), list(o.shape[1:])) for i, o in io]
    assert json.loads(json.dumps(described.to_dict()))["params"] == described.params
    table = described.table()
    assert model.config.label in table and f"{described.params:,}" in table
    assert len(table.splitlines()) == len(described.blocks) + 2  # header and totals


def test_describe_resnet20_multiply_adds_and_shortcuts():
    described = describe_config(ModelConfig())
    # stem 3→16 at 32², stage 1: six 16→16, stage 2: one 16→32 and five 32→32 at 16², stage 3 alike at 8², fc
    assert described.macs == 442_368 + 6 * 2_359_296 + 2 * (1_179_648 + 5 * 2_359_296) + 640 == 40_551_040
    assert [row["shortcut"] for row in described.blocks[1:-1]] == (
        ["identity"] * 3 + ["A: subsample+zero-pad", "identity", "identity"] * 2)
    assert [row["shortcut"] for row in describe_config(cfg("plain20")).blocks[1:-1]] == ["none"] * 9


def test_without_batchnorm_convs_get_biases():
    model = build_model(cfg("plain20-nobn"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(info.module.bias is not None for info in model.layers())
    bn_params, conv_biases = 32 + 6 * (32 + 64 + 128), 16 + 6 * (16 + 32 + 64)
    assert n_params(model) == PAPER_PARAMS[20] - bn_params + conv_biases
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


@pytest.mark.parametrize("init,std", [("kaiming", math.sqrt(2 / (64 * 9))), ("xavier", math.sqrt(2 / (2 * 64 * 9)))])
def test_conv_init_follows_the_chosen_rule(init, std):
    model = build_model(ModelConfig(depth=8, init=init))
    weight = model.stage3[0].layer2.conv.weight  # 64 → 64, 3x3
    assert abs(weight.std().item() / std - 1) < 0.05
    assert model.stage3[0].layer2.bn.weight.eq(1).all() and model.stage3[0].layer2.bn.bias.eq(0).all()


@pytest.mark.parametrize("label", ["resnet20", "resnet8-incep-B"])
def test_channels_last_gives_the_same_outputs(label):
    model = build_model(cfg(label)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), expected, atol=1e-5, rtol=1e-4)


def test_bad_num_classes_is_a_named_error():
    with pytest.raises(ModelError, match="at least 2"):
        build_model(ModelConfig(), num_classes=1)
