"""One device policy (explorer/device.py): which device kind and precision a run gets is decided by two rules that
need no PyTorch, and everything asks them: the worker's DevicePolicy, the server's queue (jobs), the sizing of
presets, the worker's calibrations. GPUs are counted from the driver's entries and bf16 units from the CPU's flags,
so the web server answers without loading PyTorch."""

import pytest

from explorer import device, jobs, sizing
from explorer.config import AUTOCAST_DTYPES, Config, ConfigError
from explorer.device import (DevicePolicy, calibrated_precisions, cpu_has_bf16_units, device_kind, precision_on,
                             visible_gpus)
from explorer.store import RunStore


@pytest.fixture
def cpu_flags(tmp_path, monkeypatch):
    """Point the CPU's flags at a file the test writes; returns a function setting whether bf16 units exist."""
    info = tmp_path / "cpuinfo"

    def units(present: bool) -> None:
        info.write_text("flags\t\t: fpu sse2 avx2" + (" avx512_bf16 amx_bf16" if present else "") + "\n")
        cpu_has_bf16_units.cache_clear()

    monkeypatch.setattr(device, "CPU_INFO", info)
    yield units
    cpu_has_bf16_units.cache_clear()


@pytest.fixture
def gpus(tmp_path, monkeypatch):
    """Fake the NVIDIA driver's GPU entries; returns a function setting how many there are."""
    folder = tmp_path / "gpus"
    monkeypatch.setattr(device, "NVIDIA_GPUS", folder)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def count(n: int) -> None:
        folder.mkdir(exist_ok=True)
        for i in range(n):
            (folder / f"0000:0{i}:00.0").mkdir()

    return count


def test_auto_device_is_a_gpu_where_one_is_available():
    assert device_kind("auto", True) == "cuda" and device_kind("auto", False) == "cpu"
    assert device_kind("cpu", True) == "cpu" and device_kind("cuda", True) == "cuda"
    with pytest.raises(ConfigError, match="no CUDA GPU is available here .*: use device auto or cpu"):
        device_kind("cuda", False)
    with pytest.raises(ConfigError, match="device 'tpu' is not one of auto, cpu, cuda"):
        device_kind("tpu", True)


def test_auto_precision_is_bf16_where_it_is_fast(cpu_flags):
    cpu_flags(False)
    assert precision_on("auto", "cuda") == "bf16" and precision_on("auto", "cpu") == "fp32"
    assert precision_on("bf16", "cpu") == "bf16" and precision_on("fp32", "cuda") == "fp32"
    assert calibrated_precisions("cpu") == ("fp32", "bf16") and calibrated_precisions("cuda") == ("bf16", "fp32")
    cpu_flags(True)
    assert precision_on("auto", "cpu") == "bf16" and calibrated_precisions("cpu") == ("bf16", "fp32")
    assert set(calibrated_precisions("cpu")) == set(AUTOCAST_DTYPES)  # every precision gets timed


@pytest.mark.parametrize("units", [False, True])
def test_the_worker_and_the_server_agree_on_precision(units, cpu_flags, tmp_path):
    cpu_flags(units)
    store = RunStore(tmp_path / "runs.sqlite")
    for requested in ("auto", "fp32", "bf16"):
        config = Config(device="cpu", precision=requested)
        policy = DevicePolicy.resolve(config)
        assert policy.precision == precision_on(requested, "cpu")
        kind, cost = jobs.assess(config, store)
        assert (kind, cost.memory.device_kind) == ("cpu", "cpu")
    assert DevicePolicy.resolve(Config(device="cpu", precision="auto")).precision == ("bf16" if units else "fp32")


def test_gpus_are_counted_from_the_driver_and_cuda_visible_devices(gpus, monkeypatch):
    assert visible_gpus() == 0  # no driver entries
    gpus(4)
    assert visible_gpus() == 4
    for visible, shown in (("1,3", 2), ("", 0), ("0,-1,2", 1), ("0,1,2,3,4,5", 4)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert visible_gpus() == shown, visible


def test_the_queue_and_the_sizing_see_a_gpu_without_pytorch(gpus, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    assert jobs.device_kind(Config(), store) == "cpu" and sizing.device_kind("auto") == "cpu"
    assert sizing.device_kind("cuda") == "cuda"  # a GPU run can be sized anywhere, not queued
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        jobs.device_kind(Config(device="cuda"), store)
    jobs.register_worker(store, "w-gpu", "cuda", "cuda (H200)", 1)  # a GPU worker on another machine
    assert jobs.device_kind(Config(), store) == "cuda"
    jobs.unregister_worker(store, "w-gpu")
    gpus(1)  # this machine's own GPU, before its embedded worker registers
    assert jobs.device_kind(Config(), store) == "cuda" and sizing.device_kind("auto") == "cuda"
