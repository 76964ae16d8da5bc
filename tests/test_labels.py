"""Contradictory model labels are refused in every entry point (issue 17 item 7): a label that gives an option twice
(``resnet20-B-B-C``, where the last option used to win) or gives one its family has no use for (``vgg16-B``, a
shortcut on a net without shortcuts) says two things at once, so it is a ConfigError whose message names the labels
it may have meant: in Python, JSON (labels and model objects), URL links, the command line (exit 2), the Lab's
link and the Architecture page's."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from explorer import cli
from explorer.config import Config, ConfigError, ModelConfig, model_grid
from explorer.ui import config_form, session

CONTRADICTIONS = [
    ("resnet20-B-B-C", "gives the shortcut option 3 times (B, B, C): give it once, e.g. resnet20-B or resnet20-C"),
    ("resnet20-B-C", "e.g. resnet20-B or resnet20-C"),
    ("resnet56-pre-pre", "gives the pre-activation option 2 times (pre, pre): give it once, e.g. resnet56-pre"),
    ("resnet20-bneck-incep", "gives the block 2 times"),
    ("resnet20-w0.5-w2", "gives the width 2 times"),
    ("resnet20-scaled-gated", "gives the shortcut variant 2 times"),
    ("vgg16-B", "VGG nets have no shortcuts, so 'B' does not apply: write vgg16"),
    ("vgg16-bneck-pre", "VGG nets have no blocks, so 'bneck' does not apply: write vgg16-pre"),
    ("plain20-C", "Plain nets have no shortcuts, so 'C' does not apply: write plain20"),
    ("plain56-zi", "Plain nets have no residual branches, so 'zi' does not apply: write plain56"),
    ("plain20-gated-nobn", "write plain20-nobn"),
]
LABELS = [label for label, _ in CONTRADICTIONS]


@pytest.mark.parametrize("label, message", CONTRADICTIONS)
def test_a_contradictory_label_is_refused_with_what_to_write(label, message):
    with pytest.raises(ConfigError) as error:
        ModelConfig.parse(label)
    assert message in str(error.value) and label in str(error.value)


def test_what_the_messages_suggest_is_valid():
    for suggestion in ("resnet20-B", "resnet20-C", "resnet56-pre", "vgg16", "vgg16-pre", "plain20", "plain56",
                       "plain20-nobn"):
        assert ModelConfig.parse(suggestion).label == suggestion
    assert ModelConfig.parse("resnet20-A").label == "resnet20"  # the default said once is not a contradiction


@pytest.mark.parametrize("label", LABELS)
def test_json_and_links_refuse_them(label):
    with pytest.raises(ConfigError, match="give it once|does not apply"):
        Config.from_json(json.dumps({"models": ["resnet8", label]}))
    with pytest.raises(ConfigError, match="give it once|does not apply"):
        Config.from_query({"models": f"resnet8,{label}"})


@pytest.mark.parametrize("fields, message", [
    ({"family": "vgg", "depth": 16, "shortcut": "B"}, "shortcut 'B' does not apply to VGG nets, which have no shortcuts"),
    ({"family": "vgg", "depth": 16, "block": "bottleneck"}, "block 'bottleneck' does not apply to VGG nets"),
    ({"family": "plain", "depth": 20, "shortcut_variant": "gated"}, "does not apply to Plain nets"),
    ({"family": "plain", "depth": 20, "zero_init_residual": True}, "which have no residual branches"),
])
def test_model_objects_that_contradict_themselves_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_json(json.dumps({"models": [fields]}))
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**fields)


def test_twins_and_grids_keep_only_the_options_a_family_has():
    assert ModelConfig.parse("resnet56-B-zi-pre").with_options(family="plain").label == "plain56-pre"
    assert [m.label for m in model_grid(family=["plain", "resnet"], depth=[20], shortcut=["B"])] == [
        "plain20", "resnet20-B"]
    with pytest.raises(ConfigError, match="shortcut 'B' applies to none of these models: VGG nets have no shortcuts"):
        model_grid(family=["vgg"], depth=[16], shortcut=["B"])


@pytest.mark.parametrize("command", ["describe", "train"])
@pytest.mark.parametrize("label, message", [CONTRADICTIONS[0], CONTRADICTIONS[6]])
def test_the_command_line_refuses_them_with_exit_2(command, label, message, tmp_path, capsys):
    assert cli.main(["--store", str(tmp_path / "runs.sqlite"), command, "--models", label, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_architecture_flags_apply_where_they_can_and_refuse_where_they_cannot(tmp_path, capsys):
    parse = cli.build_parser().parse_args
    models = cli.config_from_args(parse(["describe", "--family", "plain,resnet", "--shortcut", "B"])).labels
    assert models == ["plain20", "resnet20-B"]
    assert cli.main(["--store", str(tmp_path / "runs.sqlite"), "describe", "--family", "vgg", "--depth", "16",
                     "--shortcut", "B"]) == 2
    assert "applies to none of these models" in capsys.readouterr().err


@pytest.fixture
def app_store(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_STORE", str(tmp_path / "runs.sqlite"))
    monkeypatch.setenv("EXPLORER_WORKERS", "0")
    for cached in (session.get_store, config_form.cifar10_location, config_form.sources_offered):
        cached.clear()
    yield
    session.get_store.clear()


@pytest.mark.parametrize("page_name, shown", [("Lab", "is not valid"),
                                              ("Architecture", "The link's configuration is not valid")])
def test_the_pages_refuse_a_contradictory_link_and_say_why(page_name, shown, app_store):
    app = AppTest.from_string(f"from explorer.ui import nav\nfrom pages import PAGES\nnav.register(PAGES)\n"
                              f"from pages.{page_name} import page\npage()", default_timeout=120)
    app.query_params["models"] = "vgg16-B"
    app.run()
    assert not app.exception
    messages = " ".join(str(element.value) for element in [*app.error, *app.warning])
    assert shown in messages and "write vgg16" in messages
