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
    ("resnet20-w3", "width 3.0 is not one of 0.25, 0.5, 1, 2, 4"),
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
                    precision="bf16", seed=7, name="demo")
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
    ("lr=fast", "lr='fast' is not a number"),
    ("augment=maybe", "must be 0 or 1"),
    ("precision=fp16", "precision 'fp16' is not one of auto, fp32, bf16"),
    ("colour=red", "unknown URL parameter 'colour'"),
    ("lr=1000", "lr 1000 is out of range: use a number from 1e-06 to 100"),
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


def test_links_and_files_written_before_precision_still_read():
    assert Config.from_query("bf16=1").precision == "bf16"
    assert Config.from_query("bf16=0").precision == "fp32"
    assert Config.from_json('{"bf16": true}').precision == "bf16"
    assert Config.from_json('{"bf16": false}').precision == "fp32"
    for old_query, old_file in (("bf16=nan", '{"bf16": "no"}'), ("bf16=maybe", '{"bf16": [1]}')):
        for read in (lambda: Config.from_query(old_query), lambda: Config.from_json(old_file)):
            with pytest.raises(ConfigError, match="not a yes or no: write precision="):
                read()  # not silently fp32


def test_a_data_source_is_a_name_never_a_path():
    assert Config.from_query("data=flowers").data.source == "flowers"
    for path in ("/etc", "../data", "data/cifar", "~/images", "C:\\data"):
        with pytest.raises(ConfigError, match="is not a name"):
            Config.from_query({"data": path})


def test_display_names_are_what_a_student_reads():
    assert ModelConfig.parse("resnet56").display_name == "ResNet-56"
    assert ModelConfig.parse("plain20").display_name == "Plain-20"
    assert ModelConfig.parse("resnet56-zi").display_name == "ResNet-56 (identity at start)"
    assert ModelConfig.parse("resnet110-B-pre").display_name == "ResNet-110 (shortcut B, pre-activation)"


def test_fingerprint_ignores_the_name_only():
    base = Config(seed=1, name="mine")
    assert base.fingerprint() == Config(seed=1, name="yours").fingerprint()
    assert base.fingerprint() != Config(seed=2, name="mine").fingerprint()
    assert base.fingerprint() != Config(seed=1, precision="fp32", name="mine").fingerprint()


def test_evaluation_interval_draws_about_25_points_unless_set():
    config = Config(data=DataConfig(subset=1000), optim=OptimConfig(batch_size=100, epochs=10))
    assert config.run_steps() == (100, 10)
    assert config.evaluation_interval() == 4
    assert Config(optim=OptimConfig(steps=10)).evaluation_interval() == 1
    assert Config(optim=OptimConfig(steps=1000), eval_every=7).evaluation_interval() == 7
