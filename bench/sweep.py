"""The same 8-member sweep (plain/resnet × two depths × two seeds) on the local backend and on a local Ray instance,
side by side, plus how many records per second the head's one writer takes in through Ray.

Both backends train one member at a time on one CPU thread (local: one worker in this process; Ray: a one-CPU
instance, so one task at a time), so the difference is what Ray adds: the sweep's coordinator actor (one per
sweep), dispatching each task, and every record sent to the coordinator instead of written in place. Rounds
alternate backends so drift in machine load hits both; medians are printed. The first Ray round is reported apart:
it also starts the task's worker process. Target: Ray wall time within 1.2× of local. Ray starts its workers at
niceness 15, so on a machine shared with other jobs its members train slower than the local rounds (nice 0) for that
reason alone; ``RAY_worker_niceness=0`` compares like with like.

Figures: wall seconds per sweep; the members' own training seconds (their last record's ``wall``); overhead per
member, (wall - training) / members; peak RSS of this process (the head's driver, which also trains the local
rounds) and of the coordinator actor; and the writer's throughput: step rows per second appended to the store through
actor calls from a task, in batches of a second's records of a fast member.

    python -m bench.sweep --rounds 3 --steps 40 --depths 8,14
    RAY_worker_niceness=0 python -m bench.sweep --rounds 3 --steps 40 --depths 8,14
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away local instance needs no token

import ray  # noqa: E402

from explorer import sweep  # noqa: E402
from explorer.config import Config, DataConfig, ModelConfig, OptimConfig  # noqa: E402
from explorer.store import RunStore  # noqa: E402
from explorer.sweep.coordinator import NAMESPACE, coordinator_name  # noqa: E402
from explorer.worker import Worker  # noqa: E402

OWNER = "bench-sweep"
POLL_SECONDS = 0.25  # how often the driver reads the sweep's state: each read reaps and settles, so not too often


def spec(depths: list[int], steps: int, subset: int, batch: int) -> sweep.SweepSpec:
    base = Config(models=(ModelConfig(),), data=DataConfig(source="synthetic", subset=subset, test_subset=200),
                  optim=OptimConfig(batch_size=batch, steps=steps), probe_every=0, eval_every=max(1, steps // 5),
                  eval_images=200, device="cpu", threads=1)
    return sweep.SweepSpec("bench", base=base, grid={"family": ["plain", "resnet"], "depth": depths}, seeds=2)


def peak_rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS


def training_seconds(store: RunStore, sweep_id: str) -> float:
    tidy = sweep.table(store, sweep_id)
    return float(tidy[tidy["metric"] == "train_seconds"]["value"].sum())


def run_local(the_spec: sweep.SweepSpec, folder: Path) -> dict:
    store = RunStore(folder / "local.sqlite")
    reset_peak_rss()
    started = time.perf_counter()
    sweep_id = sweep.start(store, the_spec, OWNER)
    sweep.train_here(store, sweep_id, Worker(store, "cpu"))
    final = sweep.wait(store, sweep_id, poll=POLL_SECONDS)
    wall = time.perf_counter() - started
    assert final.state.value == "finished", final.line()
    return {"wall": wall, "train": training_seconds(store, sweep_id), "driver_rss": peak_rss_mb()}


class _CoordinatorMemory:
    """Polls the peak RSS of a sweep's coordinator actor while it lives (it exits when the sweep ends)."""

    def __init__(self, sweep_id: str):
        self.peak = float("nan")
        self.pid = ray.get(ray.get_actor(coordinator_name(sweep_id), namespace=NAMESPACE).pid.remote())
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.wait(0.1):
            try:
                self.peak = peak_rss_mb(self.pid)
            except (OSError, ValueError):
                return

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak


def run_ray(the_spec: sweep.SweepSpec, folder: Path) -> dict:
    store = RunStore(folder / "ray.sqlite")
    reset_peak_rss()
    started = time.perf_counter()
    sweep_id = sweep.start(store, the_spec, OWNER, backend="ray")
    launched = time.perf_counter() - started
    memory = _CoordinatorMemory(sweep_id)
    final = sweep.wait(store, sweep_id, poll=POLL_SECONDS)
    wall = time.perf_counter() - started
    assert final.state.value == "finished", final.line()
    return {"wall": wall, "launch": launched, "train": training_seconds(store, sweep_id),
            "driver_rss": peak_rss_mb(), "coordinator_rss": memory.stop()}


@ray.remote(num_cpus=0)
class _Writer:
    """The coordinator's write path alone: an actor appending step rows to a store on the head's disk."""

    def __init__(self, path: str, run_id: str):
        self.store, self.run_id = RunStore(path), run_id

    def append(self, steps: list[dict]) -> None:
        self.store.append(self.run_id, steps=steps)


@ray.remote(num_cpus=1)
def _flood(writer, batches: int, rows: int, label: str) -> float:
    from explorer.sweep.member_task import MAX_IN_FLIGHT

    started = time.perf_counter()
    in_flight = []
    for b in range(batches):
        batch = [dict(model=label, step=b * rows + i, epoch=0.0, loss=1.0, train_err=50.0, lr=0.1, wall=0.0)
                 for i in range(rows)]
        in_flight.append(writer.append.remote(batch))
        if len(in_flight) > MAX_IN_FLIGHT:
            ray.get(in_flight.pop(0))
    ray.get(in_flight)
    return time.perf_counter() - started


def writer_throughput(folder: Path, batches: int = 50, rows: int = 400) -> float:
    """Step rows per second one writer actor takes in from one task (400 rows: a second of a 20-layer net on a GPU)."""
    store = RunStore(folder / "flood.sqlite")
    config = Config(models=(ModelConfig.parse("resnet20"),))
    run_id = store.create_run(config, models=[{"model": "resnet20", "idx": 0, "params": 0}])
    writer = _Writer.remote(str(store.path.resolve()), run_id)
    seconds = ray.get(_flood.remote(writer, batches, rows, "resnet20"))
    assert len(store.steps(run_id)) == batches * rows
    return batches * rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="training steps per member")
    parser.add_argument("--depths", default="8,14")
    parser.add_argument("--subset", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    the_spec = spec([int(d) for d in args.depths.split(",")], args.steps, args.subset, args.batch)
    members = len(sweep.plan(the_spec))
    folder = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    started = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, namespace=NAMESPACE, log_to_driver=False)
    print(f"ray.init (local instance, 1 CPU): {time.perf_counter() - started:.1f} s; cores here: {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    local, on_ray = [], []
    for i in range(args.rounds + 1):  # Ray's round 0 is cold: its worker process starts and imports torch
        on_ray.append(run_ray(the_spec, folder / f"r{i}"))
        if i:
            local.append(run_local(the_spec, folder / f"l{i}"))
        print(f"round {i}: " + (f"local {local[-1]['wall']:.1f} s, " if i else "") +
              f"ray {on_ray[-1]['wall']:.1f} s (launch {on_ray[-1]['launch']:.1f} s)", flush=True)
    cold, warm = on_ray[0], on_ray[1:]

    def median(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    wall_local, wall_ray = median(local, "wall"), median(warm, "wall")
    over_local = (wall_local - median(local, "train")) / members
    over_ray = (wall_ray - median(warm, "train")) / members
    print(f"\n{members} members, {args.steps} steps each, depths {args.depths}, medians of {args.rounds} rounds")
    print(f"wall per sweep:      local {wall_local:6.1f} s   ray {wall_ray:6.1f} s   ratio {wall_ray / wall_local:.2f}x"
          f"   (cold first ray round {cold['wall']:.1f} s)")
    print(f"members' training:   local {median(local, 'train'):6.1f} s   ray {median(warm, 'train'):6.1f} s")
    print(f"overhead per member: local {over_local:6.2f} s   ray {over_ray:6.2f} s   "
          f"(ray's launch, coordinator start included: {median(warm, 'launch'):.1f} s per sweep)")
    print(f"peak RSS:            driver {max(r['driver_rss'] for r in local + warm):.0f} MB (local rounds train in it)"
          f", driver during ray rounds {median(warm, 'driver_rss'):.0f} MB, "
          f"coordinator {median(warm, 'coordinator_rss'):.0f} MB")
    print(f"writer throughput:   {writer_throughput(folder):,.0f} step rows/s through one actor from one task")
    ray.shutdown()


if __name__ == "__main__":
    main()
