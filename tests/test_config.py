import pytest

from explorer.config import (Config, ConfigError, DataConfig, ModelConfig, OptimConfig, model_grid,
                             valid_depths)


def test_label_round_trip_for_every_option():
    models = [
        ModelConfig(),
        ModelConfig(family="plain", depth=56),
        ModelConfig(family="vgg", depth=16),
        ModelConfig(depth=110, shortcut="B", order="preact", batchnorm=False, init="xavier"),
        ModelConfig(depth=164, block="bottleneck", shortcut="C", width=2.0, zero_init_residual=True),
        ModelConfig(depth=20, block="inception", shortcut_variant="gated", width=0.5),
        ModelConfig(depth=32, shortcut_variant="scaled"),
    ]
    for model in models:
        assert ModelConfig.parse(model.label) == model
    assert ModelConfig().label == "resnet20"
    assert ModelConfig(family="plain", depth=56, order="preact").label == "plain56-pre"


@pytest.mark.parametrize("label, message", [
    ("resnet21", "depth 21 is not 6n+2 for basic blocks: try 20 or 26"),
    ("resnet3", "try 8"),
    ("resnet21-bneck", "not 9n+2 for bottleneck blocks: try 20 or 29"),
    ("vgg17", "use 11, 13, 16 or 19"),
    ("resnet20-Q", "unknown option 'Q'"),
    ("densenet20", "must start with plain, resnet or vgg"),
    ("resnet20-w3", "width 3 is not one of"),
])
def test_bad_model_labels_say_what_to_change(label, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+").replace("(", r"\(")):
        ModelConfig.parse(label)


def test_depth_rules_match_the_paper():
    assert valid_depths("resnet")[:5] == [8, 14, 20, 26, 32]
    assert 1202 in valid_depths("plain")
    assert valid_depths("resnet", "bottleneck")[:3] == [11, 20, 29]
    assert 164 in valid_depths("resnet", "bottleneck")
    assert valid_depths("vgg") == [11, 13, 16, 19]


def test_json_round_trip():
    config = Config(models=model_grid(family=["plain", "resnet"], depth=[20, 56]),
                    data=DataConfig(source="cifar10", subset=2000, classes=("cat", "dog"), augment=False),
                    optim=OptimConfig(optimizer="adam", lr=0.003, warmup_epochs=2, schedule="step"),
                    bf16=True, seed=7, name="demo")
    assert Config.from_json(config.to_json()) == config


def test_query_round_trip_is_compact():
    config = Config(models=model_grid(family=["plain", "resnet"], depth=[20, 56]),
                    optim=OptimConfig(lr=0.05), data=DataConfig(classes=("cat", "dog")), seed=3)
    query = config.to_query_string()
    assert query == "models=plain20,plain56,resnet20,resnet56&classes=cat,dog&lr=0.05&seed=3"
    assert Config.from_query(query) == config
    assert Config.from_query("?" + query + "&run=r123") == config  # the app's run id is not configuration


def test_query_overrides_a_base():
    base = Config(seed=5, optim=OptimConfig(lr=0.2))
    assert Config.from_query({"lr": "0.01"}, base=base) == Config(seed=5, optim=OptimConfig(lr=0.01))


@pytest.mark.parametrize("query, message", [
    ("models=resnet21", "try 20 or 26"),
    ("lr=fast", "lr='fast' is not a valid float"),
    ("bf16=maybe", "must be 0 or 1"),
    ("colour=red", "unknown URL parameter 'colour'"),
    ("lr=1000", "lr 1000.0 is out of range"),
    ("models=resnet20,resnet20", "listed twice"),
    ("classes=cat,unicorn", "unknown class 'unicorn'"),
    ("classes=cat", "at least two classes"),
    ("epochs=0", "nothing to train"),
    ("device=tpu", "device 'tpu' is not one of"),
])
def test_bad_queries_raise_config_error(query, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_query(query)


def test_bad_json_raises_config_error():
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_json("{models")
    with pytest.raises(ConfigError, match="unknown OptimConfig field 'lrate'"):
        Config.from_json('{"optim": {"lrate": 0.1}}')


def test_model_grid_is_the_cross_product_in_order():
    grid = model_grid(family=["plain", "resnet"], depth=[20, 56])
    assert [m.label for m in grid] == ["plain20", "plain56", "resnet20", "resnet56"]
