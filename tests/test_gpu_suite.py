"""bench/gpu_suite.py, the one script a lent GPU machine runs, on this CPU with tiny inputs: it must finish inside
its two minutes, run every section without an error, and write results.json and the recorded runs' bundles, so that
the few minutes of a GPU lease are never spent finding a bug the CPU could have found."""

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ["environment", "data", "cuda tests", "calibration", "memory model", "lockstep variants", "overhead",
            "classic demo", "depth sweep", "compile"]


def test_the_tiny_suite_runs_every_section_and_writes_its_results_and_bundles(tmp_path):
    out = tmp_path / "out"
    # one torch thread, as every test here: on a shared 2-core machine a second thread only spins
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OUT": ""}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "bench/gpu_suite.py", "--device", "cpu", "--tiny", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - started
    log = (out / "suite.log").read_text() if (out / "suite.log").exists() else done.stdout
    assert done.returncode == 0, log[-3000:] + done.stderr[-3000:]
    assert wall < 120, f"the tiny suite took {wall:.0f} s (target under 2 minutes):\n{log[-1500:]}"

    results = json.loads((out / "results.json").read_text())
    sections = results["sections"]
    assert list(sections) == SECTIONS
    errors = {name: s["error"] for name, s in sections.items() if "error" in s}
    assert not errors
    skipped = [name for name, s in sections.items() if "skipped" in s]
    assert "classic demo" not in skipped, f"skipped for lack of time: {skipped}\n{log[-1500:]}"
    assert results["tiny"] is True and results["device"] == "cpu"

    with tarfile.open(out / "bundles.tar.gz") as archive:
        names = archive.getnames()
        assert "gpu/degradation/run.json" in names
        bundle = json.load(archive.extractfile("gpu/degradation/run.json"))
    assert bundle["run"]["status"] == "finished" and bundle["run"]["preset"] == "degradation"
    assert bundle["run"]["key_hash"] is None  # a recorded run carries no owner's key
