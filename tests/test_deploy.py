"""The container recipe, tested without Docker (no engine runs on the development machines): docker/entrypoint.sh
starts the app, whose health endpoint then passes the Dockerfile's own HEALTHCHECK command, and a standalone worker,
which registers in the store the environment names, trains a queued run and leaves cleanly on SIGTERM; the
Dockerfile, docker-compose.yml, .dockerignore and requirements-cloud.txt hold what a deployment relies on (parsing
the compose file needs PyYAML). About 35 s on a busy 2-core box, almost all of it the two processes starting.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from explorer import jobs
from explorer.states import RunState
from explorer.store import RunStore
from e2e import free_port
from support import submit, tiny_config, wait_for

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
START_SECONDS = 90  # a cold Streamlit or torch import on a loaded machine


def container_env(folder: Path, **extra: str) -> dict[str, str]:
    """What `docker run -e ...` would give the entrypoint, pointed at `folder` instead of /data, with this
    interpreter first on PATH (the image's `python`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPLORER_", "STREAMLIT_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               EXPLORER_STORE=str(folder / "runs" / "explorer.sqlite"), EXPLORER_CACHE_DIR=str(folder / "cache"),
               EXPLORER_DATA_DIR=str(folder / "datasets"), **extra)
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([str(ENTRYPOINT), *args], env=env, cwd="/", stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM, as `docker stop` sends it; returns the exit status."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"process {process.pid} ignored SIGTERM for {timeout:.0f} s")


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip() if " " in line.strip() else "")
            for line in text.splitlines() if line.strip()]


def healthcheck_command() -> str:
    """The Dockerfile's HEALTHCHECK command (shell form), without its options."""
    args = next(rest for name, rest in dockerfile_instructions() if name == "HEALTHCHECK")
    return args.split("CMD", 1)[1].strip()


# --- (a) the app ---------------------------------------------------------------------------------------------------
def test_entrypoint_starts_the_app_and_the_healthcheck_follows_it(tmp_path):
    port = free_port()
    env = container_env(tmp_path, STREAMLIT_SERVER_PORT=str(port), STREAMLIT_SERVER_ADDRESS="127.0.0.1",
                        EXPLORER_WORKERS="1")
    store = RunStore(Path(env["EXPLORER_STORE"]))
    run_id = submit(store, tiny_config(steps=100_000, eval_every=1000))  # trains until the server stops
    server = start([], env, tmp_path / "app.log")  # no argument: the image's CMD is `app`, the default
    health = f"http://127.0.0.1:{port}/_stcore/health"
    try:
        def answers() -> bool:
            assert server.poll() is None, f"the app exited: {(tmp_path / 'app.log').read_text()[-2000:]}"
            try:
                return urllib.request.urlopen(health, timeout=2).read() == b"ok"
            except OSError:
                return False

        wait_for(answers, timeout=START_SECONDS, interval=0.5)
        assert "streamlit" in " ".join(command_line(server.pid)), "the entrypoint must exec the server (PID 1)"
        for folder in (tmp_path / "runs", tmp_path / "cache", tmp_path / "datasets"):
            assert folder.is_dir(), f"the entrypoint did not create {folder}"
        check = subprocess.run(["sh", "-c", healthcheck_command()], env=env, capture_output=True, timeout=30)
        assert check.returncode == 0, check.stderr.decode()[-1000:]
        # the server's own worker starts with it (no page visited) and trains the queued run
        wait_for(lambda: store.status(run_id) is RunState.RUNNING, timeout=START_SECONDS, interval=0.2)
    finally:
        status = stop(server)
    # uvicorn (under st.App) shuts down, then re-raises the SIGTERM: 143 in a container, -15 here
    assert status in (0, -signal.SIGTERM), (tmp_path / "app.log").read_text()[-2000:]
    assert store.status(run_id) is RunState.STOPPED, "docker stop must checkpoint the run being trained"
    assert jobs.live_workers(store) == []
    down = subprocess.run(["sh", "-c", healthcheck_command()], env=env, capture_output=True, timeout=30)
    assert down.returncode != 0, "the health check passed with the app stopped"


# --- (b) a standalone worker ---------------------------------------------------------------------------------------
def test_entrypoint_worker_trains_from_the_store_and_leaves_on_sigterm(tmp_path):
    env = container_env(tmp_path)
    store = RunStore(Path(env["EXPLORER_STORE"]))
    run_id = submit(store, tiny_config(steps=4, eval_every=2))
    worker = start(["worker", "--device", "cpu"], env, tmp_path / "worker.log")
    try:
        def registered() -> bool:
            assert worker.poll() is None, f"the worker exited: {(tmp_path / 'worker.log').read_text()[-2000:]}"
            return any(w["pid"] == worker.pid for w in jobs.live_workers(store))

        wait_for(registered, timeout=START_SECONDS, interval=0.2)  # same pid: the entrypoint exec'd the worker
        assert command_line(worker.pid)[1:4] == ["-m", "explorer", "worker"]
        wait_for(lambda: store.status(run_id) is RunState.FINISHED, timeout=START_SECONDS, interval=0.2)
    finally:
        status = stop(worker)
    assert status == 0, (tmp_path / "worker.log").read_text()[-2000:]
    assert jobs.live_workers(store) == [], "a worker stopped by SIGTERM must unregister"


# --- (c) the recipe files ------------------------------------------------------------------------------------------
def test_dockerfile_has_what_a_deployment_relies_on():
    instructions = dockerfile_instructions()
    values = {}
    for name, rest in instructions:
        values.setdefault(name, []).append(rest)
    args = dict(rest.split("=", 1) for rest in values["ARG"] if "=" in rest)
    assert values["FROM"] == ["${BASE_IMAGE}"], values["FROM"]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["BASE_IMAGE"]), args["BASE_IMAGE"]
    assert "8501" in values["EXPOSE"][0].split()
    assert "/_stcore/health" in healthcheck_command() and "127.0.0.1" in healthcheck_command()
    assert any("/data" in v for v in values["VOLUME"])
    users = values["USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the app must not run as root"
    assert shlex.split(values["ENTRYPOINT"][0].strip("[]").replace(",", " ")) == ["/app/docker/entrypoint.sh"]
    assert ENTRYPOINT.is_file() and os.access(ENTRYPOINT, os.X_OK)
    assert any(arg.startswith("TORCH_VARIANT=cpu") for arg in values["ARG"]), "CPU torch must be the default"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/${TORCH_VARIANT}"
    assert args["TORCH_REQUIREMENTS"].strip('"').split() == [
        "torch==${TORCH_VERSION}+${TORCH_VARIANT}", "torchvision==${TORCHVISION_VERSION}+${TORCH_VARIANT}"], \
        "by default torch and torchvision must be the variant's own builds (+cpu), not PyPI's CUDA ones"
    runs = " ".join(values["RUN"])
    torch_install = runs.index('pip install --index-url "${TORCH_INDEX_URL}" ${TORCH_REQUIREMENTS}')
    requirements = runs.index("-r requirements.txt")
    assert torch_install < requirements and "-c /etc/torch-constraint.txt" in runs[requirements:], \
        "torch must be installed first and requirements.txt under a constraint that keeps it"


def test_offline_build_passes_only_arguments_the_dockerfile_declares():
    script = REPO / "docker" / "build-offline.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    passed = set(re.findall(r"--build-arg (\w+)=", script.read_text()))
    declared = {rest.split("=", 1)[0] for name, rest in dockerfile_instructions() if name == "ARG"}
    assert passed and passed <= declared, f"build-offline.sh passes {passed - declared}, which the Dockerfile ignores"


def requirements(path: Path) -> dict[str, str]:
    """Package name -> its specifier, from a requirements file (options and comments skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", line.split("#")[0].strip())
        if match and not line.startswith("-"):
            found[match[1].lower()] = match[2].strip()
    return found


def test_cloud_requirements_follow_the_app_with_the_image_cpu_torch():
    app, cloud = requirements(REPO / "requirements.txt"), requirements(REPO / "requirements-cloud.txt")
    assert set(app) == set(cloud), f"requirements.txt and requirements-cloud.txt differ in {set(app) ^ set(cloud)}"
    args = dict(rest.split("=", 1) for name, rest in dockerfile_instructions() if name == "ARG" and "=" in rest)
    assert cloud["torch"] == f"=={args['TORCH_VERSION']}+cpu"
    assert cloud["torchvision"] == f"=={args['TORCHVISION_VERSION']}+cpu"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in (REPO / "requirements-cloud.txt").read_text()


def test_dockerignore_keeps_the_app_and_drops_the_heavy_folders():
    patterns = [line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        parts = Path(path).parts
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatch(prefix, p) or fnmatch.fnmatch(prefix, p.removeprefix("**/"))
                   or (p.startswith("**/") and fnmatch.fnmatch(Path(prefix).name, p.removeprefix("**/")))
                   for p in patterns for prefix in prefixes)  # as Docker: only **/ patterns match below the root

    for needed in ("streamlit_app.py", "explorer/store.py", "explorer/data/sources.py", "pages/Lab.py",
                   "requirements.txt", ".streamlit/config.toml", "docker/entrypoint.sh", "assets/recorded"):
        assert not ignored(needed), f".dockerignore drops {needed}, which the image needs"
    for heavy in (".venv", "runs", "data", ".git", ".gpu", "reports", "out", "explorer/__pycache__/x.pyc"):
        assert ignored(heavy), f".dockerignore lets {heavy} into the build context"


def test_compose_shares_one_store_between_the_app_and_its_workers():
    yaml = pytest.importorskip("yaml", reason="PyYAML parses docker-compose.yml (pip install pyyaml)")
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    proxy, worker = services.pop("proxy"), services["worker"]
    apps = [services["app"], services["app2"]]
    for app in apps:
        assert str(app["environment"]["EXPLORER_WORKERS"]) == "0", "the apps must leave training to the workers"
        assert "/_stcore/health" in " ".join(app["healthcheck"]["test"]) and "ports" not in app
    assert any(str(port).endswith(":8501") for port in proxy["ports"]), "browsers reach the apps through the proxy"
    config = (REPO / "docker" / "haproxy.cfg").read_text()
    assert re.search(r"server\s+\S+\s+app:8501", config) and re.search(r"server\s+\S+\s+app2:8501", config)
    assert worker["command"][0] == "worker" and "replicas" in worker["deploy"]
    volumes = {name: {v for v in service["volumes"] if v.endswith(":/data")} for name, service in services.items()}
    assert len(set.union(*volumes.values())) == 1 and all(volumes.values()), \
        f"every service must mount the same volume at /data: {volumes}"
