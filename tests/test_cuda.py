"""The GPU path on a real GPU: twins identical on CUDA, determinism, bf16 autocast, CUDA graphs against eager, batched
twins against separate models, one graph over a whole lockstep step, and a clear refusal of a run too big for the
card. Skipped without CUDA; bench/gpu_suite.py runs them on a lent GPU.

(Running out of memory mid-run is tested on any device in test_trainer.py: `torch.cuda.set_per_process_memory_fraction`
did not make the allocator fail on an H200 here, so the failure is raised where the trainer would meet it.)"""

from dataclasses import replace

import pytest
import torch

from explorer.config import Config, ModelConfig, OptimConfig
from explorer.device import DevicePolicy
from explorer.memory import ResourceError, check
from explorer.models import build_model
from explorer.states import RunState
from explorer.step import LockstepGraph, TrainStep, lockstep_steps, make_optimizer
from explorer.store import RunStore
from support import tiny_config, train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_suite.py)")]


def gpu_config(**changes) -> Config:
    config = tiny_config(models=("plain20", "resnet20"), steps=12, eval_every=4, probe_every=3)
    return replace(config, device="cuda", threads=0, **changes)


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def test_twins_start_identical_on_the_gpu():
    policy = DevicePolicy.resolve(gpu_config())
    plain = policy.to_device(build_model(ModelConfig.parse("plain20"), seed=3))
    residual = policy.to_device(build_model(ModelConfig.parse("resnet20"), seed=3))
    shared = plain.state_dict().keys() & residual.state_dict().keys()
    assert len(shared) == len(plain.state_dict())
    for key in shared:
        assert plain.state_dict()[key].is_cuda
        assert torch.equal(plain.state_dict()[key], residual.state_dict()[key]), key


def test_deterministic_policy_gives_identical_records(store, monkeypatch):
    monkeypatch.setenv("EXPLORER_DETERMINISTIC", "1")
    runs = [train(store, gpu_config()) for _ in range(2)]
    first, second = (store.steps(r)[["model", "step", "loss", "train_err"]] for r in runs)
    assert first.equals(second)
    probes = [store.probes(r)[["model", "step", "layer", "grad_norm", "response_std"]] for r in runs]
    assert probes[0].equals(probes[1])


def test_bf16_autocast_and_channels_last_by_default_and_the_run_learns(store):
    policy = DevicePolicy.resolve(gpu_config())
    assert policy.dtype is torch.bfloat16 and policy.channels_last and policy.cuda_graphs
    model = policy.to_device(build_model(ModelConfig.parse("resnet20")))
    with policy.autocast():
        logits = model(torch.randn(8, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last))
    assert logits.dtype is torch.bfloat16
    run_id = train(store, gpu_config(optim=OptimConfig(batch_size=16, steps=40)))
    steps = store.steps(run_id)
    assert store.status(run_id) is RunState.FINISHED
    early, late = (steps[steps.step.between(a, b)].loss.mean() for a, b in ((0, 4), (35, 39)))
    assert late < early


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_graph_replayed_step_matches_the_eager_step(precision):
    x = torch.randn(32, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(10, (32,), device="cuda")
    losses = {}
    for graphs in (False, True):
        config = gpu_config(precision=precision)
        policy = DevicePolicy.resolve(config, cuda_graphs=graphs, deterministic=True)
        policy.apply()
        model = policy.to_device(build_model(ModelConfig.parse("resnet20"), seed=0))
        step = TrainStep(model, make_optimizer(model, OptimConfig(), policy), policy)
        losses[graphs] = torch.stack([step(x, y, 0.05)[0] for _ in range(5)]).tolist()
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    assert losses[True] == pytest.approx(losses[False], rel=tolerance)


def lockstep(policy: DevicePolicy, labels=("plain20", "resnet20")) -> dict[str, TrainStep]:
    models = {label: policy.to_device(build_model(ModelConfig.parse(label), seed=0)) for label in labels}
    return lockstep_steps(models, {label: make_optimizer(m, OptimConfig(), policy) for label, m in models.items()},
                          policy)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batched_twins_in_a_graph_match_separate_models(precision):
    """Grouped kernels sum in another order (and cuDNN may use TF32 in fp32), so the tolerance is that of a change
    of kernel: tight on the first step, looser after a few (tests/test_twins.py checks equality in float64)."""
    x = torch.randn(32, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(10, (32,), device="cuda")
    losses = {}
    for twins in (False, True):
        policy = DevicePolicy.resolve(gpu_config(precision=precision), deterministic=True, batched_twins=twins)
        policy.apply()
        steps = lockstep(policy)
        assert policy.cuda_graphs and all(type(s).__name__ == ("TwinStep" if twins else "TrainStep")
                                          for s in steps.values())
        losses[twins] = [[steps[label](x, y, 0.01)[0].item() for label in steps] for _ in range(3)]
    first, later = (1e-3, 1e-2) if precision == "fp32" else (1e-2, 5e-2)
    assert losses[True][0] == pytest.approx(losses[False][0], rel=first)
    assert sum(losses[True], []) == pytest.approx(sum(losses[False], []), rel=later)


@pytest.mark.parametrize("twins", [False, True])
def test_one_graph_over_the_whole_lockstep_step_trains_at_the_learning_rate_it_is_given(twins):
    policy = DevicePolicy.resolve(gpu_config(), batched_twins=twins)
    policy.apply()
    steps = lockstep(policy, ("plain20", "resnet20", "resnet32"))
    graph = LockstepGraph(list(steps.values()), policy)
    x = torch.randn(64, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(10, (64,), device="cuda")
    rows = [graph(x, y, 0.05) for _ in range(20)]  # the first call captures (after 3 real warm-up steps)
    assert rows[0].shape == (3, 2) and torch.stack(rows).isfinite().all()
    assert (rows[-1][:, 0] < rows[0][:, 0]).all()  # each net learns the batch
    weights = [s.model.stem.conv.weight.detach().clone() for s in steps.values()]
    graph(x, y, 0.0)  # a zero learning rate, read from its tensor at this replay: no update
    assert all(torch.equal(w, s.model.stem.conv.weight) for w, s in zip(weights, steps.values()))


def test_a_run_too_big_for_the_gpu_is_refused_before_it_starts():
    config = Config(models=(ModelConfig.parse("resnet1202-w4"),), optim=OptimConfig(batch_size=4096, steps=1),
                    device="cuda")
    memory = torch.cuda.get_device_properties(0).total_memory
    with pytest.raises(ResourceError, match="GPU memory"):
        check(config, "cuda", "bf16", device_memory=memory)
