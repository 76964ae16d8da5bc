import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from explorer.cli import main


def run_cli(*args: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer", "--store", str(tmp_path / "runs.sqlite"), *args],
                          capture_output=True, text=True, timeout=300)


def test_describe_json_gives_params_and_layers(capsys):
    assert main(["describe", "--family", "resnet", "--depth", "56", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["params"] == 853_018
    assert len(described["layers"]) == 56


def test_describe_table_names_the_model(capsys):
    assert main(["describe", "--models", "plain20"]) == 0
    assert "plain20" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["describe", "--depth", "21"], "try 20 or 26"),
    (["describe", "--models", "resnet20", "--depth", "56"], "not both"),
    (["describe", "--depth", "deep"], "comma list of int"),
    (["train", "--preset", "nonsense"], "unknown preset 'nonsense'"),
    (["train", "--models", "resnet8", "--lr", "fast"], "lr='fast' is not a number"),
    (["train", "--models", "resnet8", "--data", "/no/such/dir", "--steps", "1"], "is not a name"),
    (["train", "--models", "resnet8", "--data", "nosuchroot", "--steps", "1", "--device", "cpu"],
     "unknown data source 'nosuchroot'"),
    (["describe", "--depth", ""], "--depth is empty"),
    (["describe", "--models", ",,,"], "--models is empty"),
    (["train", "--models", "resnet8", "--steps", "1", "--budget", "nan"], "--budget 'nan'"),
    (["train", "--config", "/no/such/config.json"], "No such file"),
    (["export", "r-missing", "--out", "x.csv"], "r-missing"),
    (["frobnicate"], "invalid choice"),
    (["describe", "--preset", ""], "unknown preset ''"),
    (["reproduce", "degradation", "--out", "/proc/report.html"], "choose a writable --out"),  # before training
    (["record", "degradation", "--out-dir", "/proc/recorded"], "choose a writable --out-dir"),
])
def test_bad_input_exits_2_with_one_line(args, message, tmp_path, capsys):
    assert main(["--store", str(tmp_path / "runs.sqlite"), *args]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_the_entry_point_prints_no_traceback(tmp_path):
    result = run_cli("train", "--models", "resnet21", tmp_path=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: depth 21 is not 6n+2 for basic blocks: try 20 or 26"


TINY_RUN = ["--data", "synthetic", "--subset", "64", "--test", "32", "--batch", "16", "--device", "cpu",
            "--threads", "1"]


def cli(tmp_path, capsys, *args: str) -> tuple[int, str, str]:
    """main() in this process (a subprocess would spend seconds importing torch): exit code, stdout, stderr."""
    code = main(["--store", str(tmp_path / "runs.sqlite"), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_runs_lists_exports_and_saves_weights(tmp_path, capsys):
    code, out, err = cli(tmp_path, capsys, "train", "--family", "plain,resnet", "--depth", "8", "--steps", "4",
                         *TINY_RUN)
    assert code == 0, err
    run_id = out.strip().splitlines()[-1]
    assert "step 4/4" in err and "finished" in err

    code, out, _ = cli(tmp_path, capsys, "runs", "--json")
    assert code == 0
    assert [(r["run_id"], r["status"]) for r in json.loads(out)] == [(run_id, "finished")]

    for fmt in ("csv", "parquet"):
        path = tmp_path / f"metrics.{fmt}"
        assert cli(tmp_path, capsys, "export", run_id, "--format", fmt, "--out", str(path))[0] == 0
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        assert set(frame["model"]) == {"plain8", "resnet8"}
        assert frame.groupby("model").step.max().tolist() == [3, 3]

    weights = tmp_path / "weights.pt"
    assert cli(tmp_path, capsys, "weights", run_id, "--out", str(weights))[0] == 0
    state = torch.load(weights, weights_only=True)
    assert sorted(state) == ["plain8", "resnet8"]
    from explorer.config import ModelConfig
    from explorer.models import build_model

    untrained = build_model(ModelConfig.parse("resnet8"), seed=0)
    initial = {k: v.clone() for k, v in untrained.state_dict().items()}
    untrained.load_state_dict(state["resnet8"])  # strict: every parameter and buffer of the net
    assert not torch.equal(initial["classifier.0.weight"], state["resnet8"]["classifier.0.weight"])  # trained


def test_a_diverged_run_exits_1_with_the_reason(tmp_path, capsys, monkeypatch):
    import explorer.trainer

    monkeypatch.setattr(explorer.trainer, "loss_bound", lambda classes: -1.0)  # every loss counts as exploded
    code, _, err = cli(tmp_path, capsys, "train", "--models", "resnet8", "--steps", "3", *TINY_RUN)
    assert code == 1
    assert "diverged" in err.strip().splitlines()[-1] and "lower the learning rate" in err


def test_controlling_a_run_needs_its_owner_key(tmp_path, capsys):
    code, out, _ = cli(tmp_path, capsys, "train", "--models", "resnet8", "--steps", "2", "--queue", *TINY_RUN)
    assert code == 0
    run_id = out.strip().splitlines()[-1]
    code, _, err = cli(tmp_path, capsys, "control", run_id, "stop", "--key", "someone-else")
    assert code == 2 and "owner's link" in err
    code, out, _ = cli(tmp_path, capsys, "control", run_id, "stop")  # this machine's command line owns it
    assert code == 0 and "stop requested" in out
    code, out, _ = cli(tmp_path, capsys, "runs", "--json")
    assert json.loads(out)[0]["status"] == "cancelled"  # stopped before a worker claimed it


def write_pets(root) -> None:
    """A flat ImageFolder: 5 PNGs of a colour per class, no train/ or test/ (4 train, 1 test each)."""
    from PIL import Image

    for name, colour in (("cat", (200, 40, 40)), ("dog", (40, 200, 40))):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (36, 36), colour).save(root / name / f"{i:04d}.png")


def test_data_dir_reaches_the_checks_and_the_worker_without_the_environment(tmp_path, capsys, monkeypatch):
    import os

    write_pets(tmp_path / "mypets")
    before = os.environ["EXPLORER_DATA_DIR"]  # the tests' empty data directory
    flags = ["--models", "resnet8", "--data", "mypets", "--batch", "4", "--steps", "2", "--device", "cpu",
             "--threads", "1"]
    code, out, err = cli(tmp_path, capsys, "--data-dir", str(tmp_path / "mypets"), "train", *flags,
                         "--subset", "8", "--test", "2")
    assert code == 0, err
    assert "finished" in err and os.environ["EXPLORER_DATA_DIR"] == before
    code, _, err = cli(tmp_path, capsys, "--data-dir", str(tmp_path / "mypets"), "train", *flags, "--subset", "10",
                       "--test", "2")
    assert code == 2 and "use subset <= 8" in err  # refused before it is queued
    code, _, err = cli(tmp_path, capsys, "train", *flags, "--subset", "8", "--test", "2")
    assert code == 2 and "unknown data source 'mypets'" in err  # without --data-dir it is not here
    code, out, _ = cli(tmp_path, capsys, "runs", "--json")
    assert [r["status"] for r in json.loads(out)] == ["finished"]


def test_a_malformed_stored_progress_is_shown_blank_and_said(tmp_path):
    from explorer.cli.follow import progress_line
    from explorer.states import RunState
    from explorer.trainer import Progress

    with pytest.warns(RuntimeWarning, match="stored progress '\\[1, 2\\]' is malformed"):
        blank = Progress.from_json("[1, 2]", RunState.RUNNING)
    assert "step 0/0" in progress_line(blank)
    with pytest.warns(RuntimeWarning, match="malformed"):
        Progress.from_json('{"step": "many", "diverged": 3}', RunState.RUNNING)
