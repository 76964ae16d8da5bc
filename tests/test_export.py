"""TensorBoard export (explorer/export_tb.py): a tiny run written as event files and read back with TensorBoard's own
reader, which must find the store's values, steps and wall times."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorboard", reason="the tensorboard package is an optional extra (requirements-dev.txt)")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from explorer.cli import main  # noqa: E402
from explorer.export_tb import export_tensorboard, layer_tag  # noqa: E402
from explorer.store import RunStore  # noqa: E402
from support import tiny_config, train  # noqa: E402


def events(folder) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_exported_scalars_and_histograms_are_the_stores(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = train(store, tiny_config(steps=6, eval_every=3, probe_every=2))
    folder = export_tensorboard(store, run_id, tmp_path / "tb")
    start = pd.Timestamp(store.run(run_id)["started"]).timestamp()
    steps, evals, probes = store.steps(run_id), store.evals(run_id), store.probes(run_id)
    for model in ("plain8", "resnet8"):
        read = events(folder / model)
        mine = steps[steps["model"] == model]
        for tag, column in (("loss", "loss"), ("train_err", "train_err"), ("lr", "lr")):
            scalars = read.Scalars(tag)
            assert [s.step for s in scalars] == mine["step"].tolist()
            np.testing.assert_allclose([s.value for s in scalars], mine[column], rtol=1e-6)
        np.testing.assert_allclose([s.wall_time for s in read.Scalars("loss")], start + mine["wall"], rtol=0, atol=1e-3)
        tested = evals[evals["model"] == model]
        assert len(tested) >= 2
        np.testing.assert_allclose([s.value for s in read.Scalars("eval/test_err")], tested["test_err"], rtol=1e-6)
        np.testing.assert_allclose([s.value for s in read.Scalars("eval/train_err")], tested["train_err"], rtol=1e-6)
        probed = probes[probes["model"] == model]
        layers = int(probed["layer"].max()) + 1
        first = probed[probed["layer"] == 0]
        tag = layer_tag(model, 0, first["layer_name"].iloc[0], layers)
        assert tag == f"grad_norm/{model}/0.stem.conv"
        np.testing.assert_allclose([s.value for s in read.Scalars(tag)], first["grad_norm"], rtol=1e-6)
        histograms = read.Histograms(f"grad_norm/{model}")
        assert [h.step for h in histograms] == sorted(probed["step"].unique().tolist())
        last = probed[probed["step"] == probed["step"].max()]["grad_norm"]
        assert histograms[-1].histogram_value.num == layers
        assert histograms[-1].histogram_value.sum == pytest.approx(last.sum(), rel=1e-6)
        assert "config/text_summary" in read.Tags()["tensors"]


def test_exporting_again_replaces_the_earlier_files_and_the_cli_says_where(tmp_path, capsys):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = train(store, tiny_config(models=("resnet8",), steps=4))
    for _ in range(2):
        assert main(["--store", str(store.path), "tensorboard", run_id, "--logdir", str(tmp_path / "tb")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith(run_id) and "tensorboard --logdir" in captured.err
    assert len(list((tmp_path / "tb" / run_id / "resnet8").glob("events.out.tfevents.*"))) == 1
    assert len(events(tmp_path / "tb" / run_id / "resnet8").Scalars("loss")) == 4
    assert main(["--store", str(store.path), "tensorboard", "r20990101-000000-beef", "--logdir", str(tmp_path)]) == 2
    assert "unknown run id" in capsys.readouterr().err
