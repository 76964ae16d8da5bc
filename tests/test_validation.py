"""The one validation layer (explorer/config.py) under thousands of random and hostile values, through every entry
point: URL queries (mapping and string), JSON (text and bytes), dicts, model labels, the dataclasses themselves and
the command line's flags. Each value either gives a valid Config, which survives the trip through JSON and through
a URL unchanged, or raises a named error (ConfigError, or the CLI's UsageError) whose message is not empty; nothing
else ever escapes. Then the cases reported in the issue, one by one."""

import json
import math
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer import cli
from explorer.config import (BLOCKS, CIFAR10_CLASSES, DEVICES, FAMILIES, INITS, OPTIMIZERS, ORDERS, PRECISIONS,
                             QUERY_KEYS, SCHEDULES, SHORTCUT_VARIANTS, SHORTCUTS, VGG_DEPTHS, WIDTHS, Config,
                             ConfigError, DataConfig, ModelConfig, OptimConfig)

NAMED = (ConfigError, cli.UsageError)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])

# --- values: hostile ones, and valid ones often enough that the round trips are exercised -------------------------
# (ints past 4,300 digits, which even repr() refuses, are written by hand below)
huge_ints = st.sampled_from([2**32, 2**63, 2**64, 10**30, -(10**30), 10**400, -(10**4000), -1])
hostile = st.one_of(
    st.none(), st.booleans(), st.integers(), huge_ints,
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([10.5, 1e30, 1e309, -0.0, 2.0, 16.0]),
    st.text(max_size=20), st.sampled_from(["", " ", "10", "1e30", "nan", "inf", "/etc", "../data", "a\x00b",
                                           "résumé", "x" * 2000, "resnet20", "cat,dog"]),
    st.lists(st.integers() | st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                               max_size=2),
)
depths = st.sampled_from([8, 14, 20, 32, 56, 110, 1202, 11, 29, 164, 1001, *VGG_DEPTHS, 21, 2402])
valid = {
    "family": st.sampled_from(FAMILIES), "depth": depths, "width": st.sampled_from(WIDTHS),
    "block": st.sampled_from(BLOCKS), "shortcut": st.sampled_from(SHORTCUTS),
    "shortcut_variant": st.sampled_from(SHORTCUT_VARIANTS), "order": st.sampled_from(ORDERS),
    "batchnorm": st.booleans(), "init": st.sampled_from(INITS), "zero_init_residual": st.booleans(),
    "source": st.sampled_from(["synthetic", "cifar10", "flowers", "my_images-2"]),
    "subset": st.integers(10, 10**6), "test_subset": st.integers(10, 10**6),
    "classes": st.lists(st.sampled_from(CIFAR10_CLASSES), unique=True, max_size=10).map(tuple),
    "augment": st.booleans(), "seed": st.integers(0, 2**32 - 1),
    "optimizer": st.sampled_from(OPTIMIZERS), "lr": st.floats(1e-6, 100), "momentum": st.floats(0, 0.999),
    "weight_decay": st.floats(0, 0.1), "batch_size": st.integers(1, 4096), "schedule": st.sampled_from(SCHEDULES),
    "warmup_epochs": st.floats(0, 1000), "epochs": st.floats(0, 10000) | st.integers(1, 100),
    "steps": st.integers(0, 10**7), "device": st.sampled_from(DEVICES), "threads": st.integers(0, 256),
    "precision": st.sampled_from(PRECISIONS), "probe_every": st.integers(0, 10**6),
    "eval_every": st.integers(0, 10**6), "eval_images": st.integers(10, 10**6),
    "name": st.text(st.characters(min_codepoint=32, exclude_characters="\x7f"), max_size=30),
}


def value_of(name: str) -> st.SearchStrategy:
    """Mostly valid values of the field `name`, else anything."""
    return st.one_of(*[valid[name]] * 5, hostile) if name in valid else hostile


def objects(cls: type, **extra: st.SearchStrategy) -> st.SearchStrategy:
    """Dicts of some of `cls`'s fields (and now and then an unknown one)."""
    names = [f.name for f in fields(cls) if f.name not in ("models", "data", "optim")]
    return st.fixed_dictionaries({}, optional={**{n: value_of(n) for n in names}, "bogus": hostile, **extra})


def label_of(**options) -> str:
    """The label of the model `options` describe, or the text of an invalid one."""
    try:
        return ModelConfig(**options).label
    except ConfigError:
        return f"{options['family']}{options['depth']}"


labels = st.one_of(
    st.builds(label_of, **{k: valid[k] for k in ("family", "depth", "width", "block", "shortcut", "order")}),
    st.sampled_from(["resnet20", "plain56", "resnet110-B-pre", "resnet164-bneck-C-w2", "vgg16", "resnet20-zi",
                     "resnet56-scaled-xavier-nobn", "resnet20-w0.25", "resnet2402", "resnet21", "vgg17", "", ","]),
    st.text(max_size=30), st.from_regex(r"(plain|resnet|vgg)\d{1,6}(-[A-Za-z0-9.]{1,6}){0,3}", fullmatch=True),
)
model_objects = objects(ModelConfig)
config_objects = objects(Config, models=st.lists(labels | model_objects, max_size=4) | hostile,
                         data=objects(DataConfig) | hostile, optim=objects(OptimConfig) | hostile,
                         bf16=st.booleans())
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)


def query_text(key: str) -> st.SearchStrategy:
    """Text a URL could carry for `key`: a valid value in its URL form, or anything."""
    if key == "models":
        return st.lists(labels, max_size=4).map(",".join) | st.text(max_size=30)
    path, _ = QUERY_KEYS.get(key, ((key,), str))
    return value_of(path[-1]).map(url_text) | st.text(max_size=30)


def url_text(value) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    try:
        return str(value)
    except ValueError:  # an int too long for str(): what a URL would carry instead
        return "9" * 5000


query_keys = st.sampled_from(["models", *QUERY_KEYS, "run", "key", "bf16", "colour", ""])
queries = st.dictionaries(query_keys, st.just(None), max_size=8).flatmap(
    lambda keys: st.fixed_dictionaries({k: query_text(k) for k in keys}))


# --- the property ------------------------------------------------------------------------------------------------
def check(make) -> Config | None:
    """`make()` gives a Config that round-trips through JSON and a URL, or raises a named error with a message."""
    try:
        config = make()
    except NAMED as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        return None
    assert isinstance(config, Config)
    assert Config.from_json(config.to_json()) == config
    assert Config.from_json(config.to_json(indent=None).encode()) == config
    assert Config.from_query(config.to_query()) == config
    assert Config.from_query(config.to_query_string()) == config
    assert config.fingerprint() == Config.from_json(config.to_json()).fingerprint()
    return config


def valid_or_none(make):
    try:
        return make()
    except ConfigError:
        return None


folder_classes = st.lists(st.text(st.characters(min_codepoint=32, exclude_characters="\x7f"), min_size=1, max_size=8),
                          min_size=2, max_size=5, unique=True).map(tuple)
models = st.lists(st.builds(lambda **o: valid_or_none(lambda: ModelConfig(**o)),
                            **{k: valid[k] for k in ("family", "depth", "width", "block", "shortcut",
                                                     "shortcut_variant", "order", "batchnorm", "init",
                                                     "zero_init_residual")}), min_size=1, max_size=5)
configs = st.builds(
    lambda models, data, optim, **run: valid_or_none(lambda: Config(
        models=tuple(dict.fromkeys(m for m in models if m is not None)), data=data(), optim=optim(), **run)),
    models=models,
    data=st.one_of(
        st.builds(lambda **d: lambda: DataConfig(**d), **{k: valid[k] for k in ("source", "subset", "test_subset",
                                                                               "classes", "augment", "seed")}),
        st.builds(lambda classes, **d: lambda: DataConfig(source="flowers", classes=classes, **d), folder_classes,
                  subset=valid["subset"])),
    optim=st.builds(lambda **o: lambda: OptimConfig(**o), **{f.name: valid[f.name] for f in fields(OptimConfig)}),
    **{k: valid[k] for k in ("device", "threads", "precision", "probe_every", "eval_every", "eval_images", "seed",
                             "name")},
).filter(lambda config: config is not None)


@FUZZ
@given(configs)
def test_every_valid_config_round_trips(config):
    check(lambda: config)


@FUZZ
@given(queries)
def test_url_query_mappings(query):
    check(lambda: Config.from_query(query))


@FUZZ
@given(st.one_of(queries.map(lambda q: "&".join(f"{k}={v}" for k, v in q.items())), st.text(max_size=60),
                 st.from_regex(r"\??([a-z_]{1,8}=[^&]{0,12}&?){0,5}", fullmatch=True)))
def test_url_query_strings(text):
    check(lambda: Config.from_query(text))


@FUZZ
@given(config_objects | json_values)
def test_json_text(raw):
    try:
        text = json.dumps(raw)
    except ValueError:  # a number Python cannot even print (over 4,300 digits): written by hand below
        return
    check(lambda: Config.from_json(text))


@settings(FUZZ, max_examples=300)
@given(st.one_of(config_objects.map(lambda raw: json.dumps(raw, default=str).encode("utf-8")),
                 config_objects.map(lambda raw: json.dumps(raw, ensure_ascii=False, default=str).encode("latin-1",
                                                                                                         "replace")),
                 st.binary(max_size=80), st.text(max_size=40).map(lambda t: t.encode("utf-16"))))
def test_json_bytes(raw):
    check(lambda: Config.from_json(raw))


@FUZZ
@given(config_objects | hostile)
def test_from_dict(raw):
    check(lambda: Config.from_dict(raw))


@FUZZ
@given(labels)
def test_model_labels(label):
    model = None

    def parse():
        nonlocal model
        model = ModelConfig.parse(label)
        return Config(models=(model,))

    if check(parse) is not None:
        assert ModelConfig.parse(model.label) == model


@FUZZ
@given(model_objects.filter(lambda d: "bogus" not in d), objects(DataConfig).filter(lambda d: "bogus" not in d),
       objects(OptimConfig).filter(lambda d: "bogus" not in d), objects(Config).filter(lambda d: "bogus" not in d))
def test_direct_construction(model, data, optim, run):
    check(lambda: Config(models=(ModelConfig(**model),), data=DataConfig(**data), optim=OptimConfig(**optim),
                         **run))


FLAGS = ["--models", *(f"--{flag}" for flag in cli.ARCH_FLAGS), *(f"--{key.replace('_', '-')}" for key in QUERY_KEYS),
         "--preset"]
SWITCHES = ["--no-bn", "--zero-init"]
PARSER = cli.build_parser()


def flag_value(flag: str) -> st.SearchStrategy:
    key = flag[2:].replace("-", "_")
    if flag == "--preset":
        return st.sampled_from(["degradation", "zero-init", "vgg", "nonsense", ""])
    if key in cli.ARCH_FLAGS:
        name = cli.ARCH_FLAGS[key][0]
        one = valid[name].map(url_text) if name in valid else st.text(max_size=8)
        return st.lists(one, max_size=3).map(",".join) | st.text(max_size=12)
    return query_text("models" if key == "models" else key)


argv_text = st.text(st.characters(exclude_characters="\x00"), max_size=20)  # a command line never holds NUL
flags = st.lists(st.sampled_from(FLAGS + SWITCHES), max_size=6).flatmap(lambda chosen: st.tuples(*(
    st.just([flag]) if flag in SWITCHES else
    st.tuples(flag_value(flag).filter(lambda v: "\x00" not in v) | argv_text, st.booleans()).map(
        lambda pair, flag=flag: [f"{flag}={pair[0]}"] if pair[1] else [flag, pair[0]])
    for flag in chosen)))


@FUZZ
@given(st.sampled_from(["describe", "train"]), flags)
def test_command_line_flags(command, chosen):
    argv = [command] + [token for pair in chosen for token in pair]

    def parse():
        return cli.config_from_args(PARSER.parse_args(argv))

    check(parse)


@FUZZ
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str), argv_text))
def test_budget_flag(text):
    try:
        budget = cli.parse_budget(text)
    except cli.UsageError as error:
        assert "--budget" in str(error)
        return
    assert 0 < budget <= 1e7 and math.isfinite(budget)


# --- the issue's cases ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, message", [
    ({"optim": {"steps": 10.5}}, "steps 10.5 is not a whole number"),
    ({"optim": {"batch_size": 16.0}}, "batch_size 16.0 is not a whole number"),
    ({"optim": {"batch_size": 10.5}}, "batch_size 10.5 is not a whole number"),
    ({"threads": 2.5}, "threads 2.5 is not a whole number"),
    ({"seed": "7"}, "seed '7' is not a whole number"),
    ({"seed": 1e30}, "seed 1e+30 is not a whole number"),
    ({"seed": 10**30}, "seed 1,000,000,000,000,000,000,000,000,000,000 is out of range"),
    ({"data": {"seed": 1e30}}, "data seed 1e+30 is not a whole number"),
    ({"seed": 2**64}, "is out of range: use a whole number from 0 to 4,294,967,295"),
    ({"models": [{"width": "2"}]}, "width '2' is not one of"),
    ({"models": [{"depth": "20"}]}, "depth '20' is not a whole number"),
    ({"optim": {"lr": float("nan")}}, "lr nan is out of range"),
    ({"optim": {"lr": 10**400}}, "is out of range: use a number from 1e-06 to 100"),
    ({"optim": {"lr": "0.1"}}, "lr '0.1' is not a number"),
    ({"models": []}, "no model to train"),
    ({"data": {"classes": []}}, None),  # valid: all classes
    ({"data": {"source": "/etc"}}, "is not a name"),
    ({"models": ["resnet2402"]}, "at most 1202"),
])
def test_json_cases_from_the_issue(raw, message):
    if message is None:
        check(lambda: Config.from_dict(raw))
        return
    with pytest.raises(ConfigError) as error:
        Config.from_json(json.dumps(raw))
    assert message in str(error.value)


def test_numbers_too_long_to_read_are_config_errors():
    with pytest.raises(ConfigError, match="too long"):
        Config.from_json('{"seed": ' + "1" * 5000 + "}")
    for raw in ({"seed": 10**5000}, {"optim": {"lr": 10**5000}}, {"models": [{"depth": 10**5000}]}):
        with pytest.raises(ConfigError, match="out of range|not a whole number|too deep"):
            Config.from_dict(raw)


def test_deep_nesting_latin1_and_empty_input_are_config_errors():
    for text in ("[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000, "", "null", "[]", "1e999"):
        with pytest.raises(ConfigError):
            Config.from_json(text)
    with pytest.raises(ConfigError, match="not UTF-8"):
        Config.from_json('{"name": "café"}'.encode("latin-1"))


@pytest.mark.parametrize("args, message", [
    (["train", "--seed", "18446744073709551616"], "seed"),
    (["train", "--seed", "1e30"], "seed"),
    (["describe", "--depth", ""], "--depth is empty"),
    (["describe", "--models", ",,,"], "--models is empty"),
    (["describe", "--depth", "2402"], "at most 1202"),
    (["train", "--data", "/etc"], "is not a name"),
    (["train", "--device", "tpu"], "device 'tpu' is not one of"),
    (["train", "--preset", "degradation", "--device", "tpu"], "device 'tpu'"),
    (["train", "--budget", "nan", "--models", "resnet8", "--steps", "1"], "--budget 'nan'"),
    (["train", "--budget", "-1", "--models", "resnet8", "--steps", "1"], "--budget '-1'"),
])
def test_command_line_cases_from_the_issue_exit_2(args, message, tmp_path, capsys):
    assert cli.main(["--store", str(tmp_path / "runs.sqlite"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_too_large_seed_on_the_command_line_says_it_is_out_of_range(tmp_path, capsys):
    assert cli.main(["--store", str(tmp_path / "runs.sqlite"), "describe", "--seed", "18446744073709551616"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_a_link_is_checked_as_a_whole_not_one_key_at_a_time():
    assert Config.from_query("epochs=0&steps=5").optim.steps == 5  # epochs 0 alone would train nothing
    base = Config(data=DataConfig(source="flowers", classes=("rose", "tulip")))
    assert Config.from_query("data=cifar10&classes=cat,dog", base=base).data.classes == ("cat", "dog")
    assert cli.config_from_args(cli.build_parser().parse_args(["train", "--epochs", "0", "--steps", "3"])
                                ).run_steps()[0] == 3


def test_text_a_link_cannot_carry_is_refused_or_normalised():
    assert Config(name="  my run ").name == "my run"
    with pytest.raises(ConfigError, match="comma"):
        DataConfig(source="flowers", classes=("a,b", "c"))
    with pytest.raises(ConfigError, match="control characters"):
        Config.from_json('{"name": "\\ud806"}')  # a lone surrogate: valid JSON, but no URL can encode it
    config = Config(optim=OptimConfig(lr=0.123456789012345))
    assert Config.from_query(config.to_query_string()) == config  # every digit of a float survives a link
