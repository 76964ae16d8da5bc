"""Architecture: the block diagram of any configuration, its plain and residual twins side by side, and what the
blocks cost (basic against bottleneck, and the 1x1-convolution arithmetic behind the bottleneck).

The net comes from the URL (the first label of ``models=``, as the Lab writes it), so a Lab link opens the same
net here; changing it writes the label back. The picker is local to this page: the Lab's form
(`explorer.ui.config_form`) edits a list of models, this page one. Drawing is `explorer.diagram`; this file only
lays it out.
"""

from dataclasses import replace

import pandas as pd
import streamlit as st

from explorer.config import (BLOCKS, DEEPEST, ORDERS, SHORTCUT_VARIANTS, SHORTCUTS, VGG_DEPTHS, WIDTHS, Config, ConfigError,
                             ModelConfig, blocks_per_stage, depth_of, depth_rule)
from explorer.diagram import (DETAILS, bottleneck_arithmetic, cost_table, described, format_count, format_shape,
                              model_dot)
from explorer.ui import config_form
from explorer.ui.session import plain

KEY = "arch_"
LAST = KEY + "last"  # the last valid net: its depth carries over when the family or block changes, its init stays
FIELDS = ("family", "block", "depth", "width", "shortcut", "shortcut_variant", "order", "batchnorm")
TWIN_TITLES = {"plain": "Plain twin", "resnet": "Residual net", "vgg": "VGG (no residual twin)"}


# --- the picker ------------------------------------------------------------------------------------------------
def url_model() -> ModelConfig:
    """The first net of the URL's configuration (ResNet-20 without one, or when the link is not valid)."""
    try:
        return Config.from_query(st.query_params.to_dict()).models[0]
    except ConfigError as error:
        st.warning(f"The link's configuration is not valid ({plain(error)}); showing ResNet-20 instead.")
        return ModelConfig()


def depth_options(family: str, block: str, extra: tuple[int, ...] = ()) -> list[int]:
    return list(VGG_DEPTHS) if family == "vgg" else config_form.depth_options(block, extra)


def keep_depth() -> None:
    """When the family or block changes, keep the blocks per stage (ResNet-110 ↔ ResNet-164 both have 18), or
    take the nearest valid depth when moving to or from VGG."""
    state, last = st.session_state, st.session_state[LAST]
    family, block, depth = state[KEY + "family"], state[KEY + "block"], state[KEY + "depth"]
    if family != "vgg" and last.family != "vgg":
        state[KEY + "depth"] = depth_of(block, blocks_per_stage(last.family, last.depth, last.block))
    else:
        state[KEY + "depth"] = min(depth_options(family, block), key=lambda d: abs(d - depth))


def pick_model() -> ModelConfig | None:
    """One net's architecture as widgets, seeded from the URL; None (after saying why) when it is not valid."""
    state = st.session_state
    if any(KEY + name not in state for name in FIELDS):  # first visit, or back from another page
        state[LAST] = url_model()
        for name in FIELDS:
            state[KEY + name] = getattr(state[LAST], name)
    family, block = state[KEY + "family"], state[KEY + "block"]
    residual_only = {"disabled": family == "vgg", "help": "VGG has no shortcuts" if family == "vgg" else None}
    left, middle, right, last = st.columns(4)
    left.selectbox("Family", ["plain", "resnet", "vgg"], key=KEY + "family", on_change=keep_depth,
                   format_func=config_form.FAMILY_NAMES.get)
    left.selectbox("Block", BLOCKS, key=KEY + "block", on_change=keep_depth, disabled=family == "vgg",
                   help="bottleneck: 1x1-3x3-1x1, depth 9n+2 (He et al. 2015 Fig. 5); inception: four parallel "
                   "branches (Szegedy et al. 2014)")
    unit = "VGG configuration" if family == "vgg" else depth_rule(block)
    middle.select_slider(f"Depth ({unit})", depth_options(family, block, (state[KEY + "depth"],)), key=KEY + "depth")
    middle.select_slider("Width", WIDTHS, key=KEY + "width", format_func=lambda w: f"{w:g}×")
    right.selectbox("Shortcut", SHORTCUTS, key=KEY + "shortcut", format_func=config_form.SHORTCUT_NAMES.get,
                    **residual_only)
    right.selectbox("Shortcut variant", SHORTCUT_VARIANTS, key=KEY + "shortcut_variant", **residual_only)
    last.selectbox("Order", ORDERS, key=KEY + "order",
                   format_func={"original": "original: conv-BN-ReLU", "preact": "pre-activation: BN-ReLU-conv"}.get)
    last.toggle("Batch norm", key=KEY + "batchnorm")
    values = {name: state[KEY + name] for name in FIELDS}
    if family == "vgg":  # VGG has no blocks or shortcuts: keep its label free of their options
        values.update(block="basic", shortcut="A", shortcut_variant="identity", zero_init_residual=False)
    try:
        model = replace(state[LAST], **values)
    except ConfigError as error:
        st.error(plain(error))
        return None
    state[LAST] = model
    if st.query_params.get("models") != model.label:
        st.query_params["models"] = model.label
    return model


def twins(model: ModelConfig) -> list[ModelConfig]:
    """The plain net and its residual twin (same convs, BN and ReLUs), or the VGG net alone."""
    if model.family == "vgg":
        return [model]
    plain = replace(model, family="plain", shortcut="A", shortcut_variant="identity", zero_init_residual=False)
    return [plain, replace(model, family="resnet")]


# --- cached drawing and tables ---------------------------------------------------------------------------------
@st.cache_data(max_entries=64, show_spinner="Drawing the network…")
def dot_of(model: ModelConfig, collapse_after: int, detail: str) -> str:
    return model_dot(model, collapse_after=collapse_after, detail=detail)


@st.cache_data(max_entries=64, show_spinner=False)
def block_table(model: ModelConfig) -> pd.DataFrame:
    rows = pd.DataFrame(described(model).blocks)
    return pd.DataFrame({"block": rows["name"], "kind": rows["kind"], "in": rows["in_shape"].map(format_shape),
                         "out": rows["out_shape"].map(format_shape), "shortcut": rows["shortcut"],
                         "params": rows["params"], "multiply-adds": rows["macs"]})


@st.cache_data(max_entries=16, show_spinner="Counting the cost of each block type…")
def costs(models: tuple[ModelConfig, ...]) -> pd.DataFrame:
    return cost_table(models)


COUNT = st.column_config.NumberColumn(format="compact")


# --- the page --------------------------------------------------------------------------------------------------
def page() -> None:
    st.title("Architecture")
    st.caption("Any net the Lab can train, drawn block by block the way He et al. 2015 (Fig. 3) draws them: each node "
               "is one weighted layer with its operations in order, each block a box with its parameters and "
               "multiply-adds. A link from the Lab opens its first net here.")

    with st.container(border=True):
        model = pick_model()
        view_left, view_right = st.columns([1, 3])
        detail = view_left.segmented_control("Detail", DETAILS, key=KEY + "detail", default="layers",
                                             help="layers: every conv with its BN and ReLU; blocks: one box per block")
        collapse_after = view_right.slider("Blocks drawn per stage before the middle ones collapse", 2, 12, 3,
                                           key=KEY + "collapse",
                                           help="Very deep nets (ResNet-110, ResNet-1202) keep the first and last blocks "
                                           "of each stage and one '… k identical blocks …' box for the rest")
    if model is None:
        st.stop()
    detail = detail or "layers"

    nets = twins(model)
    descriptions = [described(net) for net in nets]
    columns = st.columns(len(nets), gap="large")
    for column, net, desc in zip(columns, nets, descriptions):
        with column:
            st.subheader(f"{TWIN_TITLES[net.family]}: {net.label}")
            params, macs, depth = st.columns(3)
            extra = desc.params - descriptions[0].params
            params.metric("Parameters", format_count(desc.params), delta=f"+{format_count(extra)}" if extra else None,
                          delta_color="off", help="Extra parameters of a residual net sit in its 1×1 projection "
                          "shortcuts (options B and C) and gates; identity shortcuts add none")
            macs.metric("Multiply-adds", format_count(desc.macs), help="Per 32×32 image, convs and linear layers")
            depth.metric("Layers", desc.depth, help="Weighted layers on the longest path: the depth in the name")
            st.graphviz_chart(dot_of(net, collapse_after, detail), width="stretch")
    if len(nets) == 2:
        st.caption("**What to look for:** the two drawings are the same column of layers; the residual net only adds "
                   "the curved shortcuts that carry each block's input to its addition (⊕), so with option A it has "
                   "not a single extra parameter. A dashed shortcut subsamples and zero-pads where the width doubles; "
                   "options B and C pass through a 1×1 conv instead. In pre-activation order each layer reads BN → "
                   "ReLU → conv and nothing follows the addition, so the shortcut path stays a clean identity from "
                   "block to block (He et al. 2016).")
    else:
        st.caption("**What to look for:** VGG is one long chain of 3×3 convs with a 2×2 max pool after each stage, "
                   "and three fully connected layers on top: nothing carries a signal past a layer, which is why "
                   "deeper plain chains become hard to optimise.")

    st.subheader(f"Block by block: {model.label}")
    st.dataframe(block_table(model), hide_index=True, width="stretch",
                 column_config={"params": COUNT, "multiply-adds": COUNT})
    st.caption("One row per block, the stem and the head included: where the shapes change, the shortcut must change "
               "too (option A pads with zeros, B/C project with a 1×1 conv). Cost per block is flat within a stage and "
               "the stages cost about the same: each halves the map and doubles the width.")

    st.subheader("Basic against bottleneck blocks")
    n = blocks_per_stage(model.family, model.depth, model.block) or 3  # VGG has no n: compare at ResNet-20's
    n = min(n, blocks_per_stage("resnet", DEEPEST["bottleneck"], "bottleneck"))  # 1202 basic: the 1001 bottleneck
    compared = tuple(replace(model, family="resnet", block=block, depth=depth_of(block, n))
                     for block in ("basic", "bottleneck"))
    table = costs(compared)
    totals = table[table["kind"] == "total"].set_index("model")
    basic, bottleneck = (totals.loc[m.label] for m in compared)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "params": st.column_config.NumberColumn("parameters", format="compact"),
        "macs": st.column_config.NumberColumn("multiply-adds", format="compact"),
        "params_per_block": st.column_config.NumberColumn("parameters per block", format="compact"),
        "macs_per_block": st.column_config.NumberColumn("multiply-adds per block", format="compact"),
    })
    st.caption(f"**What to look for:** with the same {n} blocks per stage, the bottleneck net is "
               f"{compared[1].depth} layers deep instead of {compared[0].depth} and its blocks output 4× the channels, "
               f"yet it costs {bottleneck['macs'] / basic['macs']:.2f}× the multiply-adds and "
               f"{bottleneck['params'] / basic['params']:.2f}× the parameters: the 1×1 convs shrink the width to a "
               "quarter before the 3×3 conv and restore it after (He et al. 2015 Fig. 5).")

    st.subheader("What a 1×1 convolution saves")
    fields = st.columns(5)
    defaults = dict(in_ch=192, out_ch=32, reduce_ch=16, k=5, hw=28)
    labels = dict(in_ch="Input channels", out_ch="Output channels", reduce_ch="1×1 reduces to", k="Kernel", hw="Map size")
    sizes = {name: int(column.number_input(labels[name], 1, 2048, value, key=KEY + name))
             for column, (name, value) in zip(fields, defaults.items())}
    sums = bottleneck_arithmetic(**sizes)
    straight, reduced, saving = st.columns(3)
    straight.metric(f"Multiply-adds, {sizes['k']}×{sizes['k']} conv alone", f"{sums['direct_macs'] / 1e6:,.1f}M")
    reduced.metric("Multiply-adds, 1×1 reduction first", f"{sums['bottleneck_macs'] / 1e6:,.1f}M",
                   delta=f"{sums['bottleneck_params'] - sums['direct_params']:+,} weights", delta_color="off")
    saving.metric("Saving", f"{sums['saving']:.1f}× fewer")
    st.markdown(sums["text"])
    st.caption("**What to look for:** the cost of a conv is k·k·C_in·C_out per output pixel, so shrinking C_in with a "
               "cheap 1×1 conv first divides the expensive k×k term. GoogLeNet's 5×5 branch (the defaults, Szegedy et "
               "al. 2014) and ResNet's bottleneck block both rely on it.")

