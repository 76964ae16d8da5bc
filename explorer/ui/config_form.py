"""Every field of a `Config` as a widget, so the Lab can set up any run the core can train.

Widgets keep typed values under ``cfg_<URL key>`` (the keys of `config.QUERY_KEYS`) and are read back through
`Config.from_query`, the parser of shared links and CLI flags, so the form, the URL and the command line cannot
disagree. The models are a list of labels (``plain20,plain56,resnet20,resnet56``): the architecture controls
rebuild that list as a grid (families x depths, depths by the block type's rule), and any list the grid cannot express
(a preset comparing shortcut options A/B/C, say) can be typed or loaded from a link.

Widget state is dropped when the user switches pages, so the last valid configuration is kept under `CONFIG_KEY`
and seeds the widgets whenever they come back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import streamlit as st

from explorer.blocks import DEFAULT_BLOCK, block_type
from explorer.config import (CIFAR10_CLASSES, DEVICES, INITS, MIN_IMAGES, OPTIMIZERS, ORDERS, PRECISIONS, QUERY_KEYS,
                             SCHEDULES, SHORTCUT_VARIANTS, SHORTCUTS, VGG_DEPTHS, WIDTHS, Config, ConfigError,
                             ModelConfig, block_names, depth_options, depth_unit, model_grid)
from explorer.data.sources import DataError, available_sources, find_cifar10, source_classes, source_sizes
from explorer.device import AUTO_PRECISION

CONFIG_KEY = "lab_config"
PREFIX = "cfg_"
MODELS_KEY = PREFIX + "models"
DATA_NOTES_KEY = "lab_data_notes"  # (source, notes): why the form lowered a subset to what the source holds
LIMITED = {"subset": (0, "training"), "test": (1, "test")}  # URL key -> (index in SourceSizes.limits, which images)


@dataclass(frozen=True)
class Field:
    """One widget for one URL key: ``kind`` is select, slider (over `options`), number, toggle, classes or text."""

    key: str
    label: str
    kind: str
    options: tuple = ()
    help: str = ""


FIELD_GROUPS: dict[str, tuple[Field, ...]] = {
    "Data": (
        Field("data", "Data set", "source", (),
              "synthetic: built in; cifar10: the real images; other names: image folders this server offers"),
        Field("subset", "Training images", "slider", (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000),
              "A class-balanced subset: small subsets train fast and still show degradation"),
        Field("test", "Test images", "slider", (100, 200, 500, 1000, 2000, 5000, 10000)),
        Field("classes", "Classes (none: all)", "classes", CIFAR10_CLASSES),
        Field("augment", "Augmentation (pad-4 crop + flip)", "toggle"),
        Field("data_seed", "Subset seed", "number"),
    ),
    "Training": (
        Field("opt", "Optimizer", "select", OPTIMIZERS),
        Field("lr", "Learning rate", "slider", (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)),
        Field("momentum", "Momentum", "slider", (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)),
        Field("wd", "Weight decay", "slider", (0.0, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3)),
        Field("batch", "Batch size", "slider", tuple(2 ** k for k in range(13)),
              "1 to 4,096, what a link or the command line accepts: the paper trains with 128"),
        Field("schedule", "Schedule", "select", SCHEDULES,
              "step: lr/10 at 50% and 75% of training (He et al. 2015); cosine: smoothly to 0"),
        Field("warmup", "Warm-up epochs", "slider", (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
              "Linear warm-up from lr/10: deep nets need it at lr 0.1 (He et al. 2015 §4.2 for ResNet-110)"),
        Field("epochs", "Epochs", "slider", (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 164.0)),
        Field("steps", "Steps (0: use epochs)", "number", (), "Above 0, the run lasts this many iterations"),
    ),
    "Run": (
        Field("device", "Device", "select", DEVICES, "auto: the GPU when there is one"),
        Field("threads", "CPU threads (0: all)", "number"),
        Field("precision", "Precision", "select", PRECISIONS,
              f"auto: {AUTO_PRECISION}"),
        Field("probe", "Probe layers every (steps, 0: never)", "number", (),
              "Per-layer gradient norms and response std, for the Gradients page"),
        Field("eval", "Evaluate every (steps, 0: about 25 times per run)", "number"),
        Field("eval_images", "Images per evaluation (the last one scores the whole test subset)", "number"),
        Field("seed", "Seed", "number", (), "Same seed, same config: the same curves"),
        Field("name", "Run name", "text"),
    ),
}
FIELDS: tuple[Field, ...] = tuple(f for group in FIELD_GROUPS.values() for f in group)
FAMILY_NAMES = {"plain": "plain (no shortcuts)", "resnet": "residual (ResNet)", "vgg": "VGG-style plain"}
SHORTCUT_NAMES = {"A": "A: identity, zero-padded channels", "B": "B: 1x1 projection where shapes change",
                  "C": "C: 1x1 projection everywhere"}


# --- values between a Config and the widgets ---------------------------------------------------------------
def _value(config: Config, key: str) -> Any:
    value: Any = config
    for name in QUERY_KEYS[key][0]:
        value = getattr(value, name)
    return list(value) if isinstance(value, tuple) else value


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(value)
    return repr(value) if isinstance(value, float) else str(value)


def block_help() -> str:
    """What each block type is, one line each, for a block picker's help."""
    return "  \n".join(f"{name}: {block_type(name).summary}" for name in block_names())


def _architecture_values(config: Config) -> dict[str, Any]:
    nets = [m for m in config.models if m.family != "vgg"]
    vggs = [m for m in config.models if m.family == "vgg"]
    first = (nets or vggs)[0]
    residual = next((m for m in nets if m.residual), first)
    depths = sorted({m.depth for m in nets}) or [20]
    return {
        "families": list(dict.fromkeys(m.family for m in config.models)),
        "shallow": depths[0],
        "deep": depths[-1],
        "vgg_depth": vggs[0].depth if vggs else 16,
        "block": first.block if nets else DEFAULT_BLOCK,
        "shortcut": residual.shortcut,
        "variant": residual.shortcut_variant,
        "order": first.order,
        "batchnorm": first.batchnorm,
        "init": first.init,
        "zero_init": residual.zero_init_residual,
        "width": first.width,
        "models": ",".join(config.labels),
    }


def widget_values(config: Config) -> dict[str, Any]:
    """Session-state key -> value for every widget of the form, showing `config`."""
    values = {PREFIX + key: value for key, value in _architecture_values(config).items()}
    values.update({PREFIX + f.key: _value(config, f.key) for f in FIELDS})
    return values


def load_config(config: Config) -> Config:
    """Show `config` in the form, its subsets lowered to what its source holds (with a note saying so); returns
    what the form shows. Call it from a widget callback or before the form is drawn."""
    config, notes = fit_to_data(config)
    st.session_state[CONFIG_KEY] = config
    st.session_state[DATA_NOTES_KEY] = (config.data.source, notes)
    st.session_state.update(widget_values(config))
    return config


def current_config() -> Config:
    """The last valid configuration of the form (the default one before the first)."""
    return st.session_state.get(CONFIG_KEY) or Config()


def config_from_widgets() -> Config:
    """Read the widgets back through `Config.from_query`; raises `ConfigError` with what to change."""
    state = st.session_state
    query = {"models": state[MODELS_KEY]}
    query.update({f.key: _query_text(state[PREFIX + f.key]) for f in FIELDS})
    return Config.from_query(query)


# --- subsets bounded by the data ---------------------------------------------------------------------------
def data_limits(source: str, classes: Sequence[str]) -> dict[str, int]:
    """URL key (subset, test) -> the largest class-balanced subset of `classes` (empty: all) that `source` holds,
    counted without decoding; {} for a source that is not here (a run on it is refused when queued)."""
    try:
        sizes = source_sizes(source)
    except DataError:
        return {}
    limits = sizes.limits(classes)
    return {key: max(MIN_IMAGES, limits[index]) for key, (index, _) in LIMITED.items()}


def _fit_note(source: str, key: str, value: int, limit: int) -> str:
    label = next(f.label for f in FIELDS if f.key == key)
    return (f"{label} lowered from {value:,} to {limit:,}: the data set {source} holds at most {limit:,} "
            f"{LIMITED[key][1]} images in a class-balanced set of these classes.")


def fit_to_data(config: Config) -> tuple[Config, list[str]]:
    """`config` with its subsets lowered to what its data source holds, and a note for each one lowered."""
    fitted: dict[str, int] = {}
    notes = []
    for key, limit in data_limits(config.data.source, config.data.classes).items():
        field_name = QUERY_KEYS[key][0][-1]
        value = getattr(config.data, field_name)
        if value > limit:
            fitted[field_name] = limit
            notes.append(_fit_note(config.data.source, key, value, limit))
    return (replace(config, data=replace(config.data, **fitted)) if fitted else config), notes


def _fit_widgets_to_data() -> None:
    """Lower the subset sliders to what the chosen source holds (after the source or the classes changed)."""
    state = st.session_state
    source = state[PREFIX + "data"]
    notes = []
    for key, limit in data_limits(source, state[PREFIX + "classes"]).items():
        if state[PREFIX + key] > limit:
            notes.append(_fit_note(source, key, state[PREFIX + key], limit))
            state[PREFIX + key] = limit
    if notes:
        state[DATA_NOTES_KEY] = (source, notes)


def _forget_data_notes() -> None:
    st.session_state.pop(DATA_NOTES_KEY, None)


def _show_data_notes() -> None:
    source, notes = st.session_state.get(DATA_NOTES_KEY, ("", []))
    if source == st.session_state[PREFIX + "data"]:
        for note in notes:
            st.info(note, icon=":material/straighten:")


def bounded_options(options: tuple, limit: int) -> list:
    """A slider's steps up to `limit`, the most the data holds, which becomes the last step."""
    if limit >= max(options):
        return list(options)
    below = [o for o in options if o < limit]
    if len(below) < 2:  # a small data set gets steps of its own
        below = sorted({max(MIN_IMAGES, limit // 4), max(MIN_IMAGES, limit // 2)} - {limit})
    return [*below, limit]


# --- the model list as a grid ------------------------------------------------------------------------------
def grid_models(values: dict[str, Any]) -> tuple[ModelConfig, ...]:
    """The models the architecture controls describe: each chosen family at the shallow and the deep depth."""
    depths = sorted({values["shallow"], values["deep"]})
    shared = dict(batchnorm=[values["batchnorm"]], init=[values["init"]], width=[values["width"]])
    stacked = dict(depth=depths, block=[values["block"]], order=[values["order"]], **shared)
    models: tuple[ModelConfig, ...] = ()
    if "plain" in values["families"]:
        models += model_grid(family=["plain"], **stacked)
    if "resnet" in values["families"]:
        models += model_grid(family=["resnet"], **stacked, shortcut=[values["shortcut"]],
                             shortcut_variant=[values["variant"]], zero_init_residual=[values["zero_init"]])
    if "vgg" in values["families"]:
        models += model_grid(family=["vgg"], depth=[values["vgg_depth"]], **shared)
    return models


def _architecture_state() -> dict[str, Any]:
    return {key: st.session_state[PREFIX + key] for key in _architecture_values(Config()) if key != "models"}


def _rebuild_models() -> None:
    """Callback of every architecture control: keep the depths valid for the block, then rewrite the list."""
    state = st.session_state
    options = depth_options("resnet", state[PREFIX + "block"])
    for key in (PREFIX + "shallow", PREFIX + "deep"):
        state[key] = min(options, key=lambda d: abs(d - state[key]))
    state[MODELS_KEY] = ",".join(m.label for m in grid_models(_architecture_state()))


# --- drawing -----------------------------------------------------------------------------------------------
def _seed_widgets() -> None:
    for key, value in widget_values(current_config()).items():
        st.session_state.setdefault(key, value)


def _with_current(options: tuple, key: str, ordered: bool) -> list:
    current = st.session_state[PREFIX + key]
    merged = [*options, current] if current not in options else list(options)
    return sorted(merged) if ordered else merged


def _number_label(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _draw_field(f: Field) -> None:
    key = PREFIX + f.key
    if f.kind == "select":
        st.selectbox(f.label, _with_current(f.options, f.key, ordered=False), key=key, help=f.help or None)
    elif f.kind == "slider":
        _draw_slider(f)
    elif f.kind == "number":
        st.number_input(f.label, min_value=0, step=1, key=key, help=f.help or None)
    elif f.kind == "toggle":
        st.toggle(f.label, key=key, help=f.help or None)
    elif f.kind == "classes":
        names = source_classes(st.session_state[PREFIX + "data"]) or list(f.options)
        st.session_state[key] = [c for c in st.session_state[key] if c in names]
        st.multiselect(f.label, names, key=key, help=f.help or None)
    elif f.kind == "source":
        sources = sources_offered()
        options = _with_current(tuple(sources), f.key, ordered=False)
        st.selectbox(f.label, options, key=key, help=f.help or None, on_change=_forget_data_notes,
                     format_func=lambda name: f"{name}: {sources.get(name, 'not available here')}")
    else:
        st.text_input(f.label, key=key, help=f.help or None)


def _draw_slider(f: Field) -> None:
    """A select slider; the subset sliders stop at what the chosen data source holds."""
    state = st.session_state
    limit = None
    if f.key in LIMITED:
        limit = data_limits(state[PREFIX + "data"], state[PREFIX + "classes"]).get(f.key)
    options = tuple(bounded_options(f.options, limit)) if limit else f.options
    st.select_slider(f.label, _with_current(options, f.key, ordered=True), key=PREFIX + f.key,
                     format_func=_number_label, help=f.help or None,
                     on_change=_forget_data_notes if f.key in LIMITED else None)
    if limit is not None and limit < max(f.options):
        st.caption(f"At most {limit:,}: what {state[PREFIX + 'data']} holds in a class-balanced set of these classes")


def _draw_models() -> None:
    state = st.session_state
    rebuild: dict[str, Callable[[], None]] = {"on_change": _rebuild_models}
    left, right = st.columns(2)
    with left:
        st.multiselect("Families", ["plain", "resnet", "vgg"], key=PREFIX + "families",
                       format_func=FAMILY_NAMES.get, **rebuild)
        block = state[PREFIX + "block"]
        options = depth_options("resnet", block, (state[PREFIX + "shallow"], state[PREFIX + "deep"]))
        rule = depth_unit("resnet", block)
        st.select_slider(f"Shallow depth ({rule} layers)", options, key=PREFIX + "shallow", **rebuild)
        st.select_slider(f"Deep depth ({rule} layers)", options, key=PREFIX + "deep",
                         help="Each family trains at both depths; set both alike for one depth", **rebuild)
        if "vgg" in state[PREFIX + "families"]:
            st.select_slider("VGG depth", VGG_DEPTHS, key=PREFIX + "vgg_depth", **rebuild)
        st.select_slider("Width multiplier", WIDTHS, key=PREFIX + "width", format_func=lambda w: f"{w:g}x",
                         **rebuild)
    with right:
        st.selectbox("Block", block_names(), key=PREFIX + "block", help=block_help(), **rebuild)
        st.selectbox("Shortcut option", SHORTCUTS, key=PREFIX + "shortcut", format_func=SHORTCUT_NAMES.get,
                     help="He et al. 2015 Table 3", **rebuild)
        st.selectbox("Shortcut variant", SHORTCUT_VARIANTS, key=PREFIX + "variant",
                     help="He et al. 2016 Table 1: identity, constant scaling 0.5, or a learned gate", **rebuild)
        st.selectbox("Order", ORDERS, key=PREFIX + "order", help="preact: BN-ReLU-conv (He et al. 2016)", **rebuild)
        st.selectbox("Initialisation", INITS, key=PREFIX + "init", **rebuild)
        st.toggle("BatchNorm", key=PREFIX + "batchnorm", **rebuild)
        st.toggle("Zero-init residual branches", key=PREFIX + "zero_init",
                  help="Each residual block starts as the identity", **rebuild)
    st.text_input("Models trained in lockstep", key=MODELS_KEY,
                  help="Labels, comma-separated: e.g. plain20,resnet56-B,resnet110-pre. The controls above rewrite "
                  "this list; type here for combinations they cannot express.")


def config_form() -> Config | None:
    """Draw the form in tabs and return its configuration, or None after explaining what is wrong."""
    _seed_widgets()
    _fit_widgets_to_data()
    _show_data_notes()
    tabs = st.tabs(["Models", *FIELD_GROUPS])
    with tabs[0]:
        _draw_models()
    for tab, group in zip(tabs[1:], FIELD_GROUPS.values()):
        with tab:
            columns = st.columns(2)
            for i, f in enumerate(group):
                with columns[i % 2]:
                    _draw_field(f)
    try:
        config = config_from_widgets()
    except ConfigError as error:
        st.error(f"{error}")
        return None
    st.session_state[CONFIG_KEY] = config
    return config


# --- presets -----------------------------------------------------------------------------------------------
PRESET_KEY = "lab_preset"
PICKED_PRESET_KEY = "preset_choice"


def presets() -> dict:
    try:
        from explorer.presets import PRESETS
    except ImportError:  # the presets module is optional for the form
        return {}
    return PRESETS


@st.cache_data(ttl=30, show_spinner=False)
def sources_offered() -> dict[str, str]:
    """Data sources a run may name here (looked up at most every 30 s): name -> what it is, no paths."""
    return available_sources()


@st.cache_data(ttl=30, show_spinner=False)
def cifar10_location() -> str | None:
    """Where CIFAR-10 is (a description), or None; looked up at most every 30 s."""
    location = find_cifar10()
    return location.description if location else None


def preset_config(key: str) -> Config:
    """The preset's configuration for where it will train (a GPU when a GPU worker is up): real CIFAR-10 when
    it is here, else the synthetic set."""
    from explorer.jobs import device_kind
    from explorer.ui.session import get_store

    kind = device_kind(Config(), get_store())
    return presets()[key].config(budget_s=None, device=kind,
                                  data_source="cifar10" if cifar10_location() else "synthetic")


DEMO_PRESET = "degradation"


def load_default() -> None:
    """Show the classic demo in the form (He et al. 2015 Fig. 1: plain-20/56 and ResNet-20/56 in lockstep), as its
    preset when there is one."""
    if DEMO_PRESET in presets():
        load_preset(DEMO_PRESET)
    else:
        load_config(Config(models=model_grid(family=["plain", "resnet"], depth=[20, 56])))


def preset_of(config: Config) -> str:
    """The key of the preset the form was loaded from, while the form still shows exactly its configuration."""
    key, loaded = st.session_state.get(PRESET_KEY, ("", None))
    return key if loaded == config else ""


def load_preset(key: str) -> None:
    """Show the preset's configuration in the form and remember which preset it came from."""
    st.session_state[PRESET_KEY] = (key, load_config(preset_config(key)))


def preset_picker(recorded: Callable[[str], str | None], replay: Callable[[str], None]) -> None:
    """Pick a paper experiment, load its configuration into the form, and show what to watch and expect; when
    `recorded` knows a recorded run of the preset, offer to `replay` it instead of training."""
    available = presets()
    if not available:
        return
    st.selectbox("Preset: an experiment from the papers", list(available), key=PICKED_PRESET_KEY,
                 format_func=lambda key: available[key].title)
    run_id = recorded(st.session_state[PICKED_PRESET_KEY])
    with st.container(horizontal=True):
        st.button("Load preset", on_click=lambda: load_preset(st.session_state[PICKED_PRESET_KEY]),
                  key="load_preset", icon=":material/tune:")
        st.button("Replay recorded run", on_click=replay, args=(run_id,), disabled=run_id is None,
                  key="replay_recorded", icon=":material/history:",
                  help="A run recorded on real CIFAR-10: opens at once, no training" if run_id
                  else "No recorded run for this preset")
    key = preset_of(current_config())
    if key:
        preset = available[key]
        st.markdown(f"**What to watch:** {preset.watch}  \n**Prediction:** {preset.prediction}")
        if preset.on_cpu and current_config().device == "cpu":
            st.info(f"**What a CPU run shows:** {preset.on_cpu}", icon=":material/memory:")
