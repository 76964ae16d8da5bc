import json
from html.parser import HTMLParser

import pytest

from explorer.config import Config, DataConfig, ModelConfig, OptimConfig
from explorer.presets import PRESETS, Preset
from explorer.reproduce import record, reproduce
from explorer.states import RunState
from explorer.store import RunStore
from explorer.trainer import Progress
from explorer.ui.report import write_report

TINY = Config(models=tuple(ModelConfig.parse(m) for m in ("plain8-w0.25", "plain14-w0.25", "resnet8-w0.25",
                                                          "resnet14-w0.25")),
              data=DataConfig(source="synthetic", subset=64, test_subset=32),
              optim=OptimConfig(batch_size=16, steps=4), eval_every=2, probe_every=2, device="cpu")


class Page(HTMLParser):
    """Collects a page's visible text, its div classes and its scripts."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.div_classes, self.scripts, self.sources, self._in_script = [], [], [], [], False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "div":
            self.div_classes += (dict(attrs).get("class") or "").split()
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")
        if tag in ("script", "link", "img") and ({"src", "href"} & set(dict(attrs))):
            self.sources.append(tag)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def test_reproduce_writes_a_self_contained_report_that_states_prediction_and_verdict(store, tmp_path):
    preset = PRESETS["degradation"]
    result = reproduce("degradation", config=TINY, store=store, out=tmp_path / "out" / "degradation.html")
    assert result.report_path == tmp_path / "out" / "degradation.html"
    progress = Progress.from_json(store.run(result.run_id)["progress"], store.status(result.run_id))
    assert progress.state is RunState.FINISHED and progress.step == progress.total_steps == 4
    assert result.estimate is not None and result.estimate.steps == 4
    html = result.report_path.read_text()
    page = Page(html)
    assert preset.prediction in page.visible and preset.watch in page.visible
    assert result.verdict.figure in page.visible
    badge = {True: "Prediction held", False: "Prediction did not hold", None: "Prediction no verdict"}
    assert badge[result.verdict.held] in page.visible
    assert page.div_classes.count("plotly-graph-div") == len(preset.charts)
    plotly_js = [s for s in page.scripts if "Plotly" in s and len(s) > 1_000_000]
    assert len(plotly_js) == 1  # plotly.js inlined once: the report opens offline
    assert page.sources == []  # nothing loaded from elsewhere
    for fact in (result.run_id, "synthetic CIFAR-shaped set", "torch", "report written on", '"batch_size": 16'):
        assert fact in page.visible
    assert store.run(result.run_id)["preset"] == "degradation"


def test_a_report_without_a_preset_has_default_charts_and_a_grey_badge(store, tmp_path):
    result = reproduce("degradation", config=TINY, store=store, out=tmp_path / "first.html")
    path = write_report(store, result.run_id, None, None, tmp_path / "plain.html")
    page = Page(path.read_text())
    assert "Prediction no verdict" in page.visible and "Prediction, stated" not in page.visible
    assert page.div_classes.count("plotly-graph-div") == 4


def test_cost_table_for_the_bottleneck_preset(store, tmp_path):
    models = ("resnet20-w0.25", "resnet20-bneck-w0.25", "resnet29-bneck-w0.25")
    config = Config(models=tuple(ModelConfig.parse(m) for m in models), data=TINY.data, optim=TINY.optim,
                    eval_every=2, probe_every=2, device="cpu")
    result = reproduce("bottleneck", config=config, store=store, out=tmp_path / "bottleneck.html")
    page = Page(result.report_path.read_text())
    assert "multiply-adds" in page.visible and "resnet29-bneck-w0.25" in page.visible
    assert set(result.verdict.details["costs"]) == set(models)


def test_record_exports_bundles_that_replay_to_the_same_verdict(store, tmp_path, monkeypatch):
    monkeypatch.setattr(Preset, "config", lambda self, budget_s=None, device="auto", data_source="synthetic",
                        calibration=None: TINY)
    results = record(["degradation"], out_dir=tmp_path / "recorded", budget_s=30, data_source="synthetic",
                     store=store, reports_dir=tmp_path / "reports")
    bundle = tmp_path / "recorded" / "degradation"
    assert (bundle / "run.json").is_file() and (bundle / "steps.parquet").is_file()
    assert (tmp_path / "reports" / "degradation.html").is_file()
    summary = json.loads((bundle / "verdict.json").read_text())
    assert summary["figure"] == results[0].verdict.figure and summary["budget_s"] == 30
    replay = RunStore.memory()
    run_id = replay.import_bundle(bundle)
    replayed = PRESETS["degradation"].evaluate(replay, run_id)
    assert replayed.held == results[0].verdict.held
    assert replayed.figure.split(":")[0] == results[0].verdict.figure.split(":")[0]
