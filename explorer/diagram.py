"""Block diagrams of any configuration as Graphviz DOT, and the cost arithmetic that goes with them.

`model_dot` draws a network the way He et al. 2015 Fig. 3 does, read top to bottom: the stem, one cluster per
stage, one cluster per block, the head. Each weighted layer is one node whose cells give its operations in order,
so the post-activation ``conv | BN | ReLU`` of He et al. 2015 and the pre-activation ``BN | ReLU | conv`` of
He et al. 2016 (with no ReLU after the addition) read differently at a glance; without batch norm the BN cells
disappear. A residual block adds a merge node and its shortcut, drawn as a thick curved edge in the family colour:
identity, option A (subsample + zero-pad, dashed), options B/C through their 1x1 projection node, the 0.5 scaling
or the sigmoid gate of He et al. 2016 Fig. 2. A plain twin is the same drawing without merges or shortcuts.
Inception blocks fan out into their four parallel branches (Szegedy et al. 2014 Fig. 2b); VGG is a chain of
convs and max pools. Tensor shapes label the edges where they change; parameters and multiply-adds label every
block, stage and the whole net. A stage with more than ``collapse_after`` blocks keeps its first and last blocks
(``collapse_after`` of them) and one "… k identical blocks …" node for the k >= 2 in between, so ResNet-1202
stays under fifty nodes.

The structure and the numbers are read from the net's plan (`explorer.plan`), the same plan its modules are built
from, so the drawing cannot drift from the network that trains, and drawing needs no PyTorch. A block is drawn
from its type's paths (`explorer.blocks`): one chain, or parallel paths joined by a concat node; a collapsed run of
blocks names them by the block type's glyph.
`cost_table` compares block types by parameters and multiply-adds; `bottleneck_arithmetic` spells out why a 1x1
reduction in front of a 5x5 conv saves an order of magnitude (Szegedy et al. 2014 §4).
"""

from __future__ import annotations

import functools
import html
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Literal, Sequence

import pandas as pd

from .blocks import Conv, conv_macs
from .config import ModelConfig
from .palette import FAMILY_COLORS
from .plan import BlockPlan, LayerPlan, ModelDescription, NetPlan, PoolPlan, StagePlan, describe_config, plan_net

Detail = Literal["blocks", "layers"]
DETAILS: tuple[str, ...] = ("blocks", "layers")
Shape = tuple[int, ...]

FONT = "Helvetica"
EDGE_GREY = "#606060"
CELL_FILLS = {"BN": "#E8E8E8", "ReLU": "#FFFFFF", "sigmoid": "#FFFFFF", "pool": "#F2F2F2", "other": "#FFFFFF"}
COLLAPSE_FILL = "#F4F4F4"
MAIN = {"group": "main"}


class DiagramError(ValueError):
    """A diagram cannot be drawn as asked; the message says what to change."""


def format_count(n: float) -> str:
    """Three significant digits and an SI suffix: 432, 4.67k, 270k, 40.6M, 2.83G."""
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= threshold:
            value = n / threshold
            return f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return f"{n:g}"


def format_shape(shape: Sequence[int]) -> str:
    return "×".join(str(d) for d in shape)


def _tint(color: str, amount: float) -> str:
    """``color`` mixed with white: amount 0 is white, 1 is the colour itself."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - (255 - c) * amount):02X}" for c in rgb)


def described(cfg: ModelConfig, num_classes: int = 10) -> ModelDescription:
    """`describe_config`, memoised: the diagram, the cost table and the page share one trace per config (the rows
    are shared too, so treat them as read-only)."""
    return _described(cfg, num_classes)  # positional, so that every way of calling hits the same cache entry


@functools.lru_cache(maxsize=32)
def _described(cfg: ModelConfig, num_classes: int) -> ModelDescription:
    return describe_config(cfg, num_classes)


def _collapse_split(collapse_after: int) -> tuple[int, int]:
    """How many blocks a collapsed stage keeps at its start and at its end."""
    return (collapse_after + 1) // 2, collapse_after // 2


def _collapses(blocks: int, collapse_after: int) -> bool:
    """Whether a stage of ``blocks`` blocks collapses: only when that hides at least two blocks behind one node."""
    return blocks > collapse_after + 1


# --- operations of one node ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    """One cell of a layer node: ``kind`` picks the fill (conv, BN, ReLU, sigmoid, pool, fc)."""

    kind: str
    text: str


BN, RELU, SIGMOID = Op("BN", "BN"), Op("ReLU", "ReLU"), Op("sigmoid", "sigmoid")


def _stride_text(stride: int) -> str:
    return f", /{stride}" if stride > 1 else ""


def _groups_text(groups: int) -> str:
    return f", {groups} groups" if groups > 1 else ""


def _conv_op(conv: Conv) -> Op:
    k = conv.kernel
    return Op("conv", f"{k}×{k} conv, {conv.out_ch}{_stride_text(conv.stride)}{_groups_text(conv.groups)}")


def layer_ops(layer: LayerPlan) -> list[Op]:
    """The operations of one layer in execution order (conv-BN-ReLU, or BN-ReLU-conv when pre-activated)."""
    bn = [BN] if layer.bn else []
    if layer.preact:
        return (bn + [RELU] if layer.activate else []) + [_conv_op(layer.conv)]
    return [_conv_op(layer.conv)] + bn + ([RELU] if layer.activate else [])


def _pool_op(pool: PoolPlan) -> Op:
    return Op("pool", f"{pool.pool.kernel}×{pool.pool.kernel} max pool{_stride_text(pool.pool.stride)}")


# --- DOT assembly ----------------------------------------------------------------------------------------------
@dataclass
class _Dot:
    """A DOT document under construction: nodes get sequential ids and remember their output shape."""

    lines: list[str] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)
    indent: int = 1
    shapes: dict[str, Shape] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    clusters: int = 0

    def emit(self, line: str) -> None:
        self.lines.append("  " * self.indent + line)

    def node(self, label: str, shape_out: Shape, *, changes_shape: bool, **attrs: str) -> str:
        node_id = f"n{len(self.shapes)}"
        self.shapes[node_id] = shape_out
        if changes_shape:
            self.changed.add(node_id)
        self.emit(f"{node_id} [{_attrs(label=label, **attrs)}];")
        return node_id

    def edge(self, tail: str, head: str, **attrs: str) -> None:
        """An edge labelled with the tensor it carries when the tail node changed the shape."""
        if tail in self.changed and "label" not in attrs:
            attrs["label"] = format_shape(self.shapes[tail])
        # at the top level: an edge inside a cluster would pull its end nodes into that cluster
        self.edges.append(f"  {tail} -> {head}" + (f" [{_attrs(**attrs)}]" if attrs else "") + ";")

    @contextmanager
    def cluster(self, label: str, **attrs: str) -> Iterator[None]:
        """A box around what is drawn inside; its label's lines are left-justified at its top-left corner, so short
        lines stay clear of the arrows running down the middle."""
        self.clusters += 1
        self.emit(f"subgraph cluster_{self.clusters} {{")
        self.indent += 1
        label = _quote(label + "\n", newline="\\l")
        self.emit(f"label={label}; {_attrs(labeljust='l', **attrs, sep='; ')};")
        yield
        self.indent -= 1
        self.emit("}")


def _quote(text: str, newline: str = "\\n") -> str:
    """A quoted DOT string; ``newline`` ends each line: \\n centres it, \\l left-justifies it."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", newline) + '"'


def _attrs(sep: str = ", ", **attrs: str) -> str:
    """DOT attributes; a value wrapped in <...> is an HTML-like label, anything else is quoted."""
    def value(v: str) -> str:
        return v if v.startswith("<") and v.endswith(">") else _quote(v)
    return sep.join(f"{key}={value(str(v))}" for key, v in attrs.items())


def _cells(ops: Sequence[Op], color: str, caption: str = "") -> str:
    """An HTML-like label: one row of cells, the operations left to right in execution order, and an optional
    caption row under them."""
    fills = {"conv": _tint(color, 0.22), "fc": _tint(color, 0.22), **CELL_FILLS}
    cells = "".join(f'<TD BGCOLOR="{fills.get(op.kind, fills["other"])}">{html.escape(op.text)}</TD>' for op in ops)
    if caption:
        cells += (f'</TR><TR><TD COLSPAN="{len(ops)}" BORDER="0"><FONT POINT-SIZE="9" COLOR="{color}">'
                  f"{html.escape(caption)}</FONT></TD>")
    return (f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3" COLOR="{EDGE_GREY}">'
            f"<TR>{cells}</TR></TABLE>>")


# --- the drawing -----------------------------------------------------------------------------------------------
class _Drawing:
    """Walks a net's plan in forward order and writes its diagram into a `_Dot`."""

    def __init__(self, cfg: ModelConfig, num_classes: int, collapse_after: int, detail: Detail):
        self.cfg, self.collapse_after, self.detail = cfg, collapse_after, detail
        self.plan: NetPlan = plan_net(cfg, num_classes)
        self.desc = described(cfg, num_classes)
        self.color = FAMILY_COLORS[cfg.family]
        self.block_rows = {row["name"]: row for row in self.desc.blocks}
        self.dot = _Dot()

    # nodes
    def unit(self, ops: Sequence[Op], shape_in: Shape, shape_out: Shape, main: bool = True, caption: str = "") -> str:
        """A layer node; nodes on the main path share a group, which keeps that path a straight column."""
        return self.dot.node(_cells(ops, self.color, caption), shape_out, changes_shape=shape_out != shape_in,
                             shape="plain", **MAIN if main else {})

    def path(self, parts: Sequence[LayerPlan | PoolPlan], src: str, trailing: Sequence[Op] = (),
             main: bool = True) -> str:
        """A chain of layers and max pools from node ``src``; ``trailing`` ops join the last node."""
        for i, part in enumerate(parts):
            ops = layer_ops(part) if isinstance(part, LayerPlan) else [_pool_op(part)]
            node = self.unit([*ops, *(trailing if i == len(parts) - 1 else ())], self.dot.shapes[src],
                             part.out_shape, main)
            self.dot.edge(src, node)
            src = node
        return src

    # blocks
    def block_caption(self, row: dict, sep: str = " · ") -> str:
        stage, index = row["stage"], int(row["name"].rsplit(".", 1)[1]) + 1
        return f"{row['kind']} {stage}.{index}{sep}{_cost(row, sep)}"

    def branch(self, block: BlockPlan, row: dict, src: str, trailing: Sequence[Op]) -> str:
        if self.detail == "blocks":
            summary = " | ".join(" → ".join(_short(part) for part in path) for path in block.paths)
            label = f"{summary}\n{self.block_caption(row)}"
            return self._summary_node(label, src, block.out_shape)
        if len(block.paths) == 1:
            return self.path(block.paths[0], src, trailing)
        ends = [self.path(path, src, main=False) for path in block.paths]
        concat = self.unit([Op("other", "concat"), *trailing], self.dot.shapes[ends[0]], block.out_shape)
        for end in ends:
            self.dot.edge(end, concat)
        return concat

    def _summary_node(self, label: str, src: str, shape_out: Shape) -> str:
        node = self.dot.node(label, shape_out, changes_shape=shape_out != self.dot.shapes[src], shape="box",
                             style="rounded,filled", fillcolor=_tint(self.color, 0.18), color=self.color, **MAIN)
        self.dot.edge(src, node)
        return node

    def block(self, block: BlockPlan, src: str) -> str:
        row = self.block_rows[block.name]
        post_relu = [] if block.preact or self.detail == "blocks" else [RELU]
        if self.detail == "blocks":
            return self._residual(block, row, src, src, post_relu) if block.residual else \
                self.branch(block, row, src, post_relu)
        with self.dot.cluster(self.block_caption(row, "\n"), style="rounded", color="#BBBBBB", fontsize="9",
                              fontcolor=self.color):
            inner = src
            if block.preact:
                pre_ops = ([BN] if block.pre_bn else []) + [RELU]
                inner = self.unit(pre_ops, self.dot.shapes[src], self.dot.shapes[src])
                self.dot.edge(src, inner)
            if block.residual:
                return self._residual(block, row, src, inner, post_relu)
            return self.branch(block, row, inner, post_relu)

    def _residual(self, block: BlockPlan, row: dict, x: str, inner: str, post_relu: list[Op]) -> str:
        """y = merge(shortcut(x), F(x)); pre-activated blocks that change shape take the shortcut after BN-ReLU."""
        out_shape = block.out_shape
        residual = self.branch(block, row, inner, ())
        merge_text = {"identity": "+", "scaled": "½ (x + F)", "gated": "(1−g)·x + g·F"}[block.variant]
        merge = self.dot.node(merge_text, out_shape, changes_shape=False, shape="circle" if merge_text == "+" else
                              "box", style="rounded", color=self.color, fontcolor=self.color, margin="0.04",
                              width="0.3", height="0.3", **MAIN)
        self.dot.edge(residual, merge)
        skip_src = inner if block.changes_shape else x
        shortcut = dict(color=self.color, fontcolor=self.color, penwidth="2.4", fontsize="9", tailport="e",
                        headport="e", weight="0")  # weight 0: the shortcut does not pull the main column sideways
        scale = " · (1 − g)" if block.gate is not None else " × 0.5" if block.variant == "scaled" else ""
        label = row["shortcut"] + scale
        if block.shortcut is not None:
            ops = layer_ops(block.shortcut) if self.detail == "layers" else [_conv_op(block.shortcut.conv)]
            projection = self.dot.node(_cells(ops, self.color), out_shape, changes_shape=False, shape="plain")
            self.dot.edge(skip_src, projection, **{"class": "shortcut", "label": label, **shortcut, "headport": "n"})
            self.dot.edge(projection, merge, **{"class": "shortcut-projection", "label": format_shape(out_shape),
                                                **shortcut, "tailport": "s"})
        else:
            style = "dashed" if block.changes_shape else "solid"
            self.dot.edge(skip_src, merge, **{"class": "shortcut", "label": label, "style": style, **shortcut})
        if block.gate is not None:
            ops = [_conv_op(block.gate), SIGMOID]
            gate = self.dot.node(_cells(ops, self.color), out_shape, changes_shape=False, shape="plain")
            self.dot.edge(inner, gate, **{"class": "gate", "color": self.color, "style": "dotted", "weight": "0"})
            self.dot.edge(gate, merge, **{"class": "gate", "label": "g", "color": self.color, "style": "dotted",
                                          "fontcolor": self.color})
        if not post_relu:
            return merge
        relu = self.unit(post_relu, out_shape, out_shape)
        self.dot.edge(merge, relu)
        return relu

    def collapsed(self, blocks: list[BlockPlan], src: str) -> str:
        rows = [self.block_rows[block.name] for block in blocks]
        params, macs = sum(r["params"] for r in rows), sum(r["macs"] for r in rows)
        label = (f"… {len(rows)} identical {blocks[0].kind} blocks …\n{blocks[0].type.glyph()}\n"
                 f"{format_count(params)} params · {format_count(macs)} MACs")
        shape = self.dot.shapes[src]
        node = self.dot.node(label, shape, changes_shape=False, shape="box", style="dashed,rounded,filled",
                             fillcolor=COLLAPSE_FILL, color=self.color, fontcolor="#333333", **{"class": "collapsed"},
                             **MAIN)
        self.dot.edge(src, node, style="dashed")
        return node

    # stages
    def stage(self, stage: StagePlan, src: str, stem: LayerPlan | None) -> str:
        rows = [self.block_rows[block.name] for block in stage.blocks]
        params = sum(r["params"] for r in rows) + (self.block_rows["stem"]["params"] if stem is not None else 0)
        width = rows[0]["out_shape"] if rows else stem.out_shape if stem is not None else self.dot.shapes[src]
        label = f"stage {stage.index}\n{format_shape(width)}\n{format_count(params)} params"
        head, tail = _collapse_split(self.collapse_after)
        hidden = list(stage.blocks[head:len(rows) - tail]) if _collapses(len(rows), self.collapse_after) else []
        with self.dot.cluster(label, style="rounded,filled", fillcolor=_tint(self.color, 0.06), color=self.color,
                              fontcolor=self.color, fontsize="10"):
            if stem is not None:
                src = self.stem(stem, src)
            for block in stage.blocks:
                if hidden and hidden[0].index <= block.index <= hidden[-1].index:
                    if block.index == hidden[-1].index:
                        src = self.collapsed(hidden, src)
                    continue
                src = self.block(block, src)
            if stage.pool is not None:
                src = self.path([stage.pool], src)
        return src

    def stem(self, stem: LayerPlan, src: str) -> str:
        """The first conv, captioned with its cost (a one-node box would be too narrow for a caption)."""
        caption = "stem · " + _cost(self.block_rows["stem"], " · ")
        node = self.unit(layer_ops(stem), self.dot.shapes[src], stem.out_shape, caption=caption)
        self.dot.edge(src, node)
        return node

    def head(self, src: str) -> str:
        """(The final BN-ReLU of pre-activation nets,) global average pooling and the classifier; the last node
        carries the head's cost."""
        row = self.block_rows["head"]
        shape = self.dot.shapes[src]
        if self.cfg.order == "preact":
            final_ops = ([BN] if self.plan.final_bn else []) + [RELU]
            node = self.unit(final_ops, shape, shape)
            self.dot.edge(src, node)
            src = node
        node = self.unit([Op("pool", "global avg pool")], shape, (shape[0],))
        self.dot.edge(src, node)
        src = node
        for i, (_, out_features) in enumerate(self.plan.linears):
            last = i == len(self.plan.linears) - 1
            ops = [Op("fc", f"fc, {out_features}")] + ([] if last else [RELU])
            node = self.unit(ops, self.dot.shapes[src], (out_features,),
                             caption="head · " + _cost(row, " · ") if last else "")
            self.dot.edge(src, node)
            src = node
        return src

    def draw(self) -> str:
        d = self.desc
        title = (f"{d.label} · {d.depth} layers · {format_count(d.params)} params · "
                 f"{format_count(d.macs)} multiply-adds per 32×32 image")
        graph = _attrs(label=title, labelloc="t", fontname=FONT, fontsize="13", fontcolor=self.color, rankdir="TB",
                       nodesep="0.25", ranksep="0.22")
        self.dot.emit(f"graph [{graph}];")
        self.dot.emit(f"node [{_attrs(fontname=FONT, fontsize='10')}];")
        edge = _attrs(fontname=FONT, fontsize="8", color=EDGE_GREY, fontcolor=EDGE_GREY, arrowsize="0.6")
        self.dot.emit(f"edge [{edge}];")
        src = self.dot.node(f"image {format_shape((3, 32, 32))}", (3, 32, 32), changes_shape=True, shape="box",
                            style="rounded", color=EDGE_GREY, **MAIN)
        vgg = self.cfg.family == "vgg"
        if not vgg:  # the VGG stem is the first conv of stage 1
            src = self.stem(self.plan.stem, src)
        for stage in self.plan.stages:
            src = self.stage(stage, src, self.plan.stem if vgg and stage.index == 1 else None)
        scores = self.head(src)
        self.dot.edge(scores, self.dot.node("class scores", (), changes_shape=False, shape="box", style="rounded",
                                            color=EDGE_GREY, **MAIN))
        return "digraph model {\n" + "\n".join(self.dot.lines + self.dot.edges) + "\n}\n"


def _cost(row: dict, sep: str) -> str:
    return f"{format_count(row['params'])} params{sep}{format_count(row['macs'])} MACs"


def _short(part: LayerPlan | PoolPlan) -> str:
    """Paper notation for the block summary: ``3×3, 16`` (plus ``/2`` when strided) or ``pool``."""
    if isinstance(part, LayerPlan):
        c = part.conv
        return f"{c.kernel}×{c.kernel}, {c.out_ch}{_stride_text(c.stride)}{_groups_text(c.groups)}"
    return "pool"


def model_dot(cfg: ModelConfig, *, collapse_after: int = 3, detail: Detail = "layers", num_classes: int = 10) -> str:
    """Graphviz DOT source of ``cfg``'s network. ``detail`` "layers" draws every conv with its BN and ReLU;
    "blocks" draws one node per block. Stages with more than ``collapse_after`` blocks show only their first and
    last blocks (``collapse_after`` in all) around a "… k identical blocks …" node, when k is 2 or more."""
    if detail not in DETAILS:
        raise DiagramError(f"detail {detail!r} is not one of {', '.join(DETAILS)}")
    if collapse_after < 2:
        raise DiagramError(f"collapse_after {collapse_after} is too small: use 2 or more (the first and last block)")
    return _Drawing(cfg, num_classes, collapse_after, detail).draw()


# --- costs -----------------------------------------------------------------------------------------------------
COST_COLUMNS = ("model", "kind", "blocks", "params", "macs", "params_per_block", "macs_per_block")


def cost_table(configs: Sequence[ModelConfig], num_classes: int = 10) -> pd.DataFrame:
    """Parameters and multiply-adds per block type of each config (stem, its blocks, head) and a ``total`` row
    per config equal to `describe_config`'s totals. Per-block columns are means over the blocks of that type
    (empty on the total rows)."""
    rows = []
    for cfg in configs:
        desc = described(cfg, num_classes)
        blocks = pd.DataFrame(desc.blocks)
        for kind, group in blocks.groupby("kind", sort=False):
            rows.append(dict(model=cfg.label, kind=kind, blocks=len(group), params=int(group["params"].sum()),
                             macs=int(group["macs"].sum())))
        rows.append(dict(model=cfg.label, kind="total", blocks=len(blocks), params=desc.params, macs=desc.macs))
    table = pd.DataFrame(rows, columns=list(COST_COLUMNS[:5]))
    kinds = table["kind"] != "total"
    table["params_per_block"] = (table["params"] / table["blocks"]).where(kinds)
    table["macs_per_block"] = (table["macs"] / table["blocks"]).where(kinds)
    return table


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def bottleneck_arithmetic(in_ch: int = 192, out_ch: int = 32, reduce_ch: int = 16, k: int = 5,
                          hw: int = 28) -> dict[str, float | int | str]:
    """Multiply-adds of a k x k conv in_ch → out_ch on an hw x hw map, straight or behind a 1x1 reduction to
    ``reduce_ch`` channels. The defaults are GoogLeNet's inception (3a) 5x5 branch (Szegedy et al. 2014 Table 1):
    120.4M straight, 2.4M + 10.0M = 12.4M with the reduction."""
    for name, value in dict(in_ch=in_ch, out_ch=out_ch, reduce_ch=reduce_ch, k=k, hw=hw).items():
        if not isinstance(value, int) or value < 1:
            raise DiagramError(f"{name} {value!r} must be a positive integer")
    direct = conv_macs(in_ch, out_ch, k, hw, hw)
    reduce = conv_macs(in_ch, reduce_ch, 1, hw, hw)
    conv = conv_macs(reduce_ch, out_ch, k, hw, hw)
    bottleneck = reduce + conv
    m = _millions
    text = (f"{k}×{k} conv {in_ch}→{out_ch} on {hw}×{hw}: {k}·{k}·{in_ch}·{out_ch}·{hw}·{hw} = {m(direct)} "
            f"multiply-adds. With a 1×1 reduction to {reduce_ch} channels first: 1×1 {in_ch}→{reduce_ch} "
            f"({m(reduce)}) + {k}×{k} {reduce_ch}→{out_ch} ({m(conv)}) = {m(bottleneck)}, "
            f"{direct / bottleneck:.1f}× fewer.")
    return dict(in_ch=in_ch, out_ch=out_ch, reduce_ch=reduce_ch, k=k, hw=hw,
                direct_macs=direct, reduce_macs=reduce, conv_macs=conv, bottleneck_macs=bottleneck,
                saving=direct / bottleneck,
                direct_params=conv_macs(in_ch, out_ch, k, 1, 1),  # a conv's weights are its MACs at one position
                bottleneck_params=conv_macs(in_ch, reduce_ch, 1, 1, 1) + conv_macs(reduce_ch, out_ch, k, 1, 1),
                text=text)
