"""He et al. 2015 Table 6 as a preset: its verdict on synthetic records (the paper's numbers, the half-point margin,
and no verdict for runs that are not the paper's setting), and `python -m explorer reproduce table6` end to end on
the CPU (--tiny: two steps on 64 images; --record: a short budgeted run exported as a bundle)."""

import json
from dataclasses import replace

import pytest

from explorer import paper
from explorer.cli import main
from explorer.config import Config, DataConfig, ModelConfig
from explorer.presets import PRESETS
from explorer.reproduce import tiny_run
from explorer.states import RunState
from explorer.store import RunStore
from support import store_finished_run

FULL = Config(models=(ModelConfig.parse("resnet20"), ModelConfig.parse("resnet56")),
              data=DataConfig(source="cifar10", subset=50_000, test_subset=10_000), device="cuda")


def verdict(store: RunStore, test_errors: tuple[float, float], config: Config = FULL):
    errors = {label: (1.0, test) for label, test in zip(config.labels, test_errors)}
    return PRESETS["table6"].evaluate(store, store_finished_run(store, errors, config=config))


def test_table6_reads_the_paper_and_allows_half_a_point():
    assert paper.table6_error("resnet20") == 8.75 and paper.table6_error("resnet56") == 6.97
    assert paper.table6_error("resnet20-w0.25") is None and paper.table6_error("plain20") is None
    with RunStore.memory() as store:
        held = verdict(store, (9.25, 7.4))
        assert held.held is True
        assert "8.75%" in held.figure and "target ≤ 9.25%" in held.figure and "ResNet-56 7.40%" in held.figure
        assert verdict(store, (9.0, 7.48)).held is False  # ResNet-56 misses by a hundredth
        assert verdict(store, (9.3, 7.0)).held is False


def test_table6_gives_no_verdict_outside_the_papers_setting():
    with RunStore.memory() as store:
        narrow = replace(FULL, models=tuple(replace(m, width=0.25) for m in FULL.models))
        judged = verdict(store, (60.0, 55.0), narrow)
        assert judged.held is None and "full-width" in judged.figure
        subset = replace(FULL, data=replace(FULL.data, subset=1000))
        judged = verdict(store, (8.0, 6.0), subset)
        assert judged.held is None and "1,000" in judged.figure and "50,000" in judged.figure
        assert PRESETS["table6"].evaluate(store, store_finished_run(store, {"resnet20": (1, 8.0)})).held is None


def test_reproduce_table6_tiny_runs_end_to_end_on_the_cpu(tmp_path, capsys):
    store_path, report = tmp_path / "runs.sqlite", tmp_path / "table6.html"
    assert main(["--store", str(store_path), "reproduce", "table6", "--tiny", "--device", "cpu", "--data",
                 "synthetic", "--out", str(report)]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    store = RunStore(store_path)
    assert store.status(run_id) is RunState.FINISHED
    assert store.config(run_id) == tiny_run(PRESETS["table6"].config(None, "cpu", "synthetic"))
    assert store.steps(run_id).step.max() == 1 and set(store.evals(run_id).model) == {"resnet20-w0.25",
                                                                                      "resnet56-w0.25"}
    assert "Table 6" in report.read_text()
    assert main(["--store", str(store_path), "reproduce", "table6", "--tiny", "--record"]) == 2  # not a recording


def test_reproduce_record_exports_the_run_as_a_bundle(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # assets/recorded/cpu/table6 lands here
    assert main(["--store", str(tmp_path / "runs.sqlite"), "reproduce", "table6", "--device", "cpu", "--data",
                 "synthetic", "--budget", "2", "--record", "--out", str(tmp_path / "report.html")]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    folder = tmp_path / "assets" / "recorded" / "cpu" / "table6"
    recorded = json.loads((folder / "verdict.json").read_text())
    assert recorded["run_id"] == run_id and recorded["preset"] == "table6" and recorded["held"] is None
    with RunStore.memory() as replay:
        assert replay.import_bundle(folder) == run_id


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_table6_preset_is_the_papers_recipe_compressed_on_a_gpu(device):
    config = PRESETS["table6"].config(None, device, "cifar10")
    assert config.labels == (["resnet20", "resnet56"] if device == "cuda" else ["resnet20-w0.25", "resnet56-w0.25"])
    if device == "cuda":  # He et al. 2015 §4.2 but 50 cosine epochs instead of 164 with steps at 50% and 75%
        optim = config.optim
        assert (optim.batch_size, optim.lr, optim.momentum, optim.weight_decay) == (128, 0.1, 0.9, 1e-4)
        assert config.data.subset == 50_000 and config.data.test_subset == 10_000 and config.data.augment
        assert optim.schedule == "cosine" and optim.epochs == 50
