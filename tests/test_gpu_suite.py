"""bench/gpu_suite.py, the one script a lent GPU machine runs, on this CPU with tiny inputs: every section runs
without an error (the app's path with a real worker process included), and it writes results.json, the targets and
the recorded runs' bundles, so that the few minutes of a GPU lease are never spent finding a bug the CPU could have
found."""

import json
import os
import resource
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ["environment", "data", "cuda tests", "calibration", "lockstep variants", "overhead", "app path", "table6",
            "classic demo", "classic demo, batch 32", "memory model"]


def test_the_tiny_suite_runs_every_section_and_writes_its_results_and_bundles(tmp_path):
    out = tmp_path / "out"
    # one torch thread, as every test here: on a shared 2-core machine a second thread only spins
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OUT": ""}
    started, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "bench/gpu_suite.py", "--device", "cpu", "--tiny", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    wall, after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # its worker and pytest included
    log = (out / "suite.log").read_text() if (out / "suite.log").exists() else done.stdout
    assert done.returncode == 0, log[-3000:] + done.stderr[-3000:]
    # the target is well under a minute; on a shared machine the wall clock measures the neighbours, CPU time does not
    assert cpu < 60 and wall < 240, f"the tiny suite took {cpu:.0f} s of CPU, {wall:.0f} s of wall:\n{log[-1500:]}"

    results = json.loads((out / "results.json").read_text())
    sections = results["sections"]
    assert list(sections) == SECTIONS
    assert not {name: s["error"] for name, s in sections.items() if "error" in s}
    assert not [name for name, s in sections.items() if "skipped" in s], log[-1500:]
    assert results["tiny"] is True and results["device"] == "cpu"

    variants = sections["lockstep variants"]["result"]
    assert set(variants["lockstep_images_per_s"]) == {"separate", "twins"}  # whole-step graphs need a GPU
    assert variants["trainer_layout"] in ("separate", "twins") and variants["large_batch"] == 32
    app = sections["app path"]["result"]
    assert app["status"] == "stopped" and app["warm_up_status"] == "finished" and app["steps"] > 0
    assert 0 < app["first_point_s"] < 60 and app["reader"] == "RunTables.read"
    table6 = sections["table6"]["result"]
    assert table6["verdict"]["held"] is None and "full-width" in table6["verdict"]["figure"]
    large = sections["classic demo, batch 32"]["result"]
    assert large["batch"] == 2 * sections["classic demo"]["result"]["batch"]
    assert large["lr"] == 2 * sections["classic demo"]["result"]["lr"] and large["warmup_epochs"] == 2
    assert set(results["targets"]) >= {"criterion_s", "trainer_over_bare", "first_point_s", "table6_test_err"}

    with tarfile.open(out / "bundles.tar.gz") as archive:
        names = archive.getnames()
        for bundle in ("degradation-batch16", "degradation-batch32", "table6"):
            assert f"gpu/{bundle}/run.json" in names and f"gpu/{bundle}/verdict.json" in names
        recorded = {bundle: json.load(archive.extractfile(f"gpu/{bundle}/run.json"))["run"]
                    for bundle in ("degradation-batch16", "table6")}
    assert recorded["degradation-batch16"]["status"] == "finished" and recorded["table6"]["preset"] == "table6"
    assert recorded["degradation-batch16"]["key_hash"] is None  # a recorded run carries no owner's key
