import json
import subprocess
import sys

import pandas as pd
import pytest

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
    (["train", "--models", "resnet8", "--lr", "fast"], "not a valid float"),
    (["train", "--models", "resnet8", "--data", "/no/such/dir", "--steps", "1"], "/no/such/dir"),
    (["train", "--config", "/no/such/config.json"], "No such file"),
    (["export", "r-missing", "--out", "x.csv"], "r-missing"),
    (["frobnicate"], "invalid choice"),
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


def test_train_runs_lists_and_exports(tmp_path):
    result = run_cli("train", "--family", "plain,resnet", "--depth", "8", "--data", "synthetic", "--subset", "64",
                     "--test", "32", "--batch", "16", "--steps", "4", "--device", "cpu", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    assert "step 4/4" in result.stderr

    listed = run_cli("runs", "--json", tmp_path=tmp_path)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]

    for fmt in ("csv", "parquet"):
        out = tmp_path / f"metrics.{fmt}"
        assert run_cli("export", run_id, "--format", fmt, "--out", str(out), tmp_path=tmp_path).returncode == 0
        frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
        assert set(frame["model"]) == {"plain8", "resnet8"}
