"""The block diagram (explorer/diagram.py) and the Architecture page: shortcuts drawn by kind, layer order, collapsing
of very deep nets, DOT validity, and the cost arithmetic against `describe_config`."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from explorer.config import ModelConfig
from explorer.diagram import DiagramError, bottleneck_arithmetic, cost_table, format_count, model_dot
from explorer.models import describe_config

ROOT = Path(__file__).resolve().parents[1]
NODE = re.compile(r"^\s*(n\d+) \[label=(<.*>|\"(?:[^\"\\]|\\.)*\")", re.M)
EDGE = re.compile(r"^\s*(n\d+) -> (n\d+)(?: \[(.*)\])?;$", re.M)


def dot_of(label: str, **options) -> str:
    return model_dot(ModelConfig.parse(label), **options)


def graph(dot: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Node id -> label, and (tail, head, attributes) per edge."""
    nodes = dict(NODE.findall(dot))
    edges = [(tail, head, attrs or "") for tail, head, attrs in EDGE.findall(dot)]
    return nodes, edges


def shortcut_labels(dot: str) -> list[str]:
    return [re.search(r'label="([^"]*)"', attrs)[1] for _, _, attrs in graph(dot)[1] if 'class="shortcut"' in attrs]


def merges(dot: str) -> list[str]:
    nodes, _ = graph(dot)
    return [node for node, label in nodes.items() if label in ('"+"', '"½ (x + F)"', '"(1−g)·x + g·F"')]


def successors(dot: str, node: str) -> list[str]:
    nodes, edges = graph(dot)
    return [nodes[head] for tail, head, _ in edges if tail == node]


def residual_blocks(label: str) -> int:
    return sum(row["block"] is not None for row in describe_config(ModelConfig.parse(label)).blocks)


# --- shortcuts ---------------------------------------------------------------------------------------------------
def test_plain_twin_has_no_shortcuts_and_the_residual_net_one_per_block():
    plain, residual = dot_of("plain20"), dot_of("resnet20")
    assert shortcut_labels(plain) == [] and merges(plain) == []
    assert len(shortcut_labels(residual)) == residual_blocks("resnet20") == 9
    assert len(merges(residual)) == 9
    # the twins draw the same convs: the residual net adds only merges, post-addition ReLUs and shortcuts
    assert plain.count("3×3 conv, ") == residual.count("3×3 conv, ") == 19


@pytest.mark.parametrize("label, expected", [
    ("resnet20", {"identity": 7, "A: subsample+zero-pad": 2}),
    ("resnet20-B", {"identity": 7, "B: 1x1 conv": 2}),
    ("resnet20-C", {"C: 1x1 conv": 9}),
])
def test_shortcut_options_are_labelled_by_kind(label, expected):
    dot = dot_of(label)
    labels = shortcut_labels(dot)
    assert {kind: labels.count(kind) for kind in set(labels)} == expected
    projections = dot.count('class="shortcut-projection"')
    assert projections == sum(n for kind, n in expected.items() if "1x1" in kind)
    if label == "resnet20":  # option A changes shape without weights: a dashed edge, no 1x1 conv node
        assert "1×1 conv" not in dot and dot.count('style="dashed"') >= 2


def test_projection_shortcut_is_a_1x1_conv_node_with_its_stride():
    assert "1×1 conv, 32, /2" in dot_of("resnet20-B") and "1×1 conv, 64, /2" in dot_of("resnet20-B")


# --- layer order and variants ------------------------------------------------------------------------------------
def test_original_order_puts_relu_after_the_addition_and_preact_puts_none():
    relu_only = re.compile(r'^<<TABLE[^>]*><TR><TD[^>]*>ReLU</TD></TR></TABLE>>$')
    original, preact = dot_of("resnet20"), dot_of("resnet20-pre")
    for merge in merges(original):
        assert any(relu_only.match(label) for label in successors(original, merge))
    for merge in merges(preact):
        assert not any(relu_only.match(label) for label in successors(preact, merge))
    bn_relu_conv = re.compile(r">BN</TD><TD[^>]*>ReLU</TD><TD[^>]*>3×3 conv")
    assert bn_relu_conv.search(preact) and not bn_relu_conv.search(original)
    assert re.search(r">3×3 conv, 16</TD><TD[^>]*>BN</TD><TD[^>]*>ReLU<", original)


def test_without_batch_norm_no_bn_cell_is_drawn():
    assert ">BN<" in dot_of("resnet20") and ">BN<" not in dot_of("resnet20-nobn")


def test_scaled_and_gated_shortcuts():
    scaled, gated = dot_of("resnet20-scaled"), dot_of("resnet20-gated")
    assert all(label.endswith("× 0.5") for label in shortcut_labels(scaled)) and len(merges(scaled)) == 9
    assert '"½ (x + F)"' in scaled
    assert gated.count(">sigmoid<") == 9 and gated.count('class="gate"') == 18
    assert all(label.endswith("(1 − g)") for label in shortcut_labels(gated))


def test_inception_block_fans_out_into_four_parallel_branches():
    dot = dot_of("resnet20-incep")
    nodes, edges = graph(dot)
    concats = [node for node, label in nodes.items() if ">concat<" in label]
    assert len(concats) == 9
    assert all(sum(head == concat for _, head, _ in edges) == 4 for concat in concats)
    assert dot.count("3×3 max pool") == 9 and dot.count("5×5 conv") == 9


def test_vgg_is_a_chain_with_max_pools_and_no_shortcuts():
    dot = dot_of("vgg11")
    assert dot.count("2×2 max pool, /2") == 5 and shortcut_labels(dot) == []
    assert dot.count("3×3 conv, ") == 8 and dot.count(">fc, ") == 3
    assert "#009E73" in dot and "#0072B2" not in dot  # the VGG family colour


def test_family_colours_are_okabe_ito():
    assert "#D55E00" in dot_of("plain20") and "#0072B2" not in dot_of("plain20")
    assert "#0072B2" in dot_of("resnet20")


# --- shapes, costs and collapsing ----------------------------------------------------------------------------------
def test_edges_carry_the_tensor_shapes_where_they_change():
    edge_labels = {m for _, _, attrs in graph(dot_of("resnet20"))[1] for m in re.findall(r'label="([\d×]+)"', attrs)}
    assert {"3×32×32", "16×32×32", "32×16×16", "64×8×8", "64", "10"} <= edge_labels


def test_each_block_and_the_whole_net_show_parameters_and_multiply_adds():
    desc = describe_config(ModelConfig.parse("resnet20"))
    dot = dot_of("resnet20")
    first = desc.blocks[1]
    assert f"basic 1.1\\l{format_count(first['params'])} params\\l{format_count(first['macs'])} MACs" in dot
    assert f"stem · {format_count(desc.blocks[0]['params'])} params" in dot
    assert f"{format_count(desc.params)} params · {format_count(desc.macs)} multiply-adds" in dot


def test_deep_stages_collapse_into_one_node():
    dot = dot_of("resnet56")  # 9 blocks per stage: two kept at the start, one at the end
    assert dot.count("… 6 identical basic blocks …") == 3
    assert len(shortcut_labels(dot)) == 9
    assert "basic 1.9\\l" in dot and "basic 1.3\\l" not in dot
    assert "identical" not in dot_of("resnet56", collapse_after=9)
    assert "identical" not in dot_of("resnet20", collapse_after=2)  # hiding one block would save nothing


def test_resnet1202_stays_small():
    dot = dot_of("resnet1202")
    nodes, edges = graph(dot)
    assert len(nodes) < 150 and len(edges) < 200
    assert dot.count("… 197 identical basic blocks …") == 3
    assert "basic 3.200" in dot and "1202 layers" in dot


def test_blocks_detail_draws_one_node_per_block():
    layers, blocks = graph(dot_of("resnet20"))[0], graph(dot_of("resnet20", detail="blocks"))[0]
    assert len(blocks) < len(layers)
    assert sum("3×3, 32, /2 → 3×3, 32" in label for label in blocks.values()) == 1
    assert len(shortcut_labels(dot_of("resnet20", detail="blocks"))) == 9


@pytest.mark.parametrize("options, message", [(dict(detail="convs"), "detail"), (dict(collapse_after=1), "2 or more")])
def test_bad_options_say_what_to_change(options, message):
    with pytest.raises(DiagramError, match=message):
        dot_of("resnet20", **options)


@pytest.mark.parametrize("label", ["resnet20-B-pre", "resnet20-incep-C-gated", "vgg16-nobn", "resnet56-bneck"])
def test_dot_is_valid(label):
    dot = dot_of(label)
    nodes, edges = graph(dot)
    assert dot.count("{") == dot.count("}")
    assert {end for tail, head, _ in edges for end in (tail, head)} <= set(nodes)
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and not done.stderr, done.stderr


def test_bottleneck_arithmetic_reproduces_googlenet_5x5():
    sums = bottleneck_arithmetic()
    assert sums["direct_macs"] == 5 * 5 * 192 * 32 * 28 * 28 == 120_422_400
    assert (sums["reduce_macs"], sums["conv_macs"]) == (2_408_448, 10_035_200)
    assert sums["bottleneck_macs"] == 12_443_648
    assert sums["saving"] == pytest.approx(9.68, abs=0.01)
    assert (sums["direct_params"], sums["bottleneck_params"]) == (153_600, 192 * 16 + 25 * 16 * 32)
    assert "120.4M" in sums["text"] and "(2.4M)" in sums["text"] and "(10.0M)" in sums["text"]
    with pytest.raises(DiagramError, match="reduce_ch"):
        bottleneck_arithmetic(reduce_ch=0)


def test_cost_table_matches_describe_config():
    labels = ["resnet20", "resnet29-bneck", "plain20-incep"]
    table = cost_table([ModelConfig.parse(label) for label in labels])
    for label in labels:
        desc = describe_config(ModelConfig.parse(label))
        rows = table[table["model"] == label]
        total = rows[rows["kind"] == "total"].iloc[0]
        parts = rows[rows["kind"] != "total"]
        assert (total["params"], total["macs"]) == (desc.params, desc.macs)
        assert (parts["params"].sum(), parts["macs"].sum()) == (desc.params, desc.macs)
    bottleneck = table[(table["model"] == "resnet29-bneck") & (table["kind"] == "bottleneck")].iloc[0]
    assert bottleneck["blocks"] == 9
    assert bottleneck["params_per_block"] == pytest.approx(bottleneck["params"] / 9)


# --- the page ------------------------------------------------------------------------------------------------------
def architecture_page(root: str) -> None:  # the script AppTest runs: the page alone, without the app's navigation
    import sys

    sys.path.insert(0, root)
    from pages import Architecture

    Architecture.page()


def run_page(models: str):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_function(architecture_page, args=(str(ROOT),), default_timeout=120)
    app.query_params["models"] = models
    return app.run()


@pytest.mark.parametrize("models", ["resnet20", "resnet1202"])
def test_page_renders_the_twins_from_the_url(models):
    app = run_page(models)
    assert not app.exception and not app.error
    residual = describe_config(ModelConfig.parse(models))
    assert len(app.get("graphviz_chart")) == 2
    assert [h.value for h in app.subheader][:2] == [f"Plain twin: {models.replace('resnet', 'plain')}",
                                                     f"Residual net: {models}"]
    values = [(m.label, m.value) for m in app.metric]
    assert ("Parameters", format_count(residual.params)) in values
    assert ("Layers", str(residual.depth)) in values


def test_page_keeps_blocks_per_stage_when_the_block_changes():
    app = run_page("resnet20,plain20")
    app.selectbox(key="arch_block").set_value("bottleneck").run()
    assert not app.exception
    assert app.query_params["models"] == "resnet29-bneck"  # n = 3 blocks per stage: 6n+2 = 20 -> 9n+2 = 29
    assert len(app.get("graphviz_chart")) == 2
