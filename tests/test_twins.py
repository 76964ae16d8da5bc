"""Batched twins (explorer.twins) compute what the separate models compute: losses, gradients, updated weights and
BatchNorm's running statistics, step after step, with each model's own SGD (momentum, weight decay); and a lockstep
run with batched twins records what one without them records.

Tolerances: in float64 the batched and separate computations agree to rounding (gradients within 1e-9 relative,
weights and running statistics within 1e-12), over several steps. In float32 they differ by the summation order of
the batched kernels (about 1e-7), which training amplifies step by step like any change of kernel; the float64
check is the one that shows the two compute the same function."""

import pytest
import torch

from explorer.config import Config, ModelConfig, OptimConfig
from explorer.device import DevicePolicy
from explorer.models import build_model
from explorer.step import LockstepGraph, StepError, TrainStep, lockstep_steps, make_optimizer
from explorer.store import RunStore
from explorer.twins import TwinError, TwinGroup, TwinStep, twin_key
from support import tiny_config, train

LABELS = ("plain8", "resnet8", "plain14", "resnet14", "resnet8-B")  # two twin pairs and a net with no twin
OPTIM = OptimConfig(lr=0.1, momentum=0.9, weight_decay=5e-4)


def built(policy: DevicePolicy, dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    return {label: policy.to_device(build_model(ModelConfig.parse(label), seed=3)).to(dtype) for label in LABELS}


def test_batched_twins_match_separate_models_over_several_steps():
    policy = DevicePolicy.resolve(Config(device="cpu", precision="fp32"), batched_twins=True)
    alone, batched = built(policy, torch.float64), built(policy, torch.float64)
    separate = {label: TrainStep(m, make_optimizer(m, OPTIM, policy), policy) for label, m in alone.items()}
    twins = lockstep_steps(batched, {label: make_optimizer(m, OPTIM, policy) for label, m in batched.items()}, policy)
    assert [type(twins[label]) for label in LABELS] == [TwinStep] * 4 + [TrainStep]
    assert twins["plain8"].group is twins["resnet8"].group is not twins["plain14"].group

    generator = torch.Generator().manual_seed(0)
    for step in range(4):
        x = torch.randn(8, 3, 32, 32, generator=generator, dtype=torch.float64)
        y = torch.randint(10, (8,), generator=generator)
        for label in LABELS:
            expected, got = separate[label].forward_backward(x, y), twins[label].forward_backward(x, y)
            assert torch.allclose(got, expected, rtol=0, atol=1e-5), (step, label)  # the loss is fp32 cross-entropy
            for (name, p), q in zip(alone[label].named_parameters(), batched[label].parameters()):
                scale = p.grad.abs().max().clamp_min(1e-12)
                assert (q.grad - p.grad).abs().max() / scale < 1e-9, (step, label, name)
            separate[label].update(OPTIM.lr)
            twins[label].update(OPTIM.lr)
            for (name, p), q in zip(alone[label].state_dict().items(), batched[label].state_dict().values()):
                assert torch.allclose(q.double(), p.double(), rtol=0, atol=1e-12), (step, label, name)
    running = batched["plain14"].stem.bn.running_mean
    assert not torch.equal(running, batched["resnet14"].stem.bn.running_mean)  # statistics per model
    assert running.data_ptr() == twins["plain14"].group.buffers["stem.bn.running_mean"][0].data_ptr()


def test_twins_are_plain_and_residual_nets_of_one_configuration():
    key = twin_key(ModelConfig.parse("resnet56"))
    assert twin_key(ModelConfig.parse("plain56")) == key
    assert twin_key(ModelConfig.parse("resnet56-zi")) == key  # initialisation changes no shape
    assert twin_key(ModelConfig.parse("plain56-nobn")) == twin_key(ModelConfig.parse("resnet56-nobn")) != key
    assert twin_key(ModelConfig.parse("resnet20")) != key
    for label in ("resnet56-B", "resnet56-C", "resnet56-scaled", "resnet56-gated", "resnet56-pre", "vgg11",
                  "resnet56-incep"):
        assert twin_key(ModelConfig.parse(label)) is None, label
    with pytest.raises(TwinError, match="not twins"):
        TwinGroup([build_model(ModelConfig.parse(label)) for label in ("plain8", "resnet14")],
                  DevicePolicy.resolve(Config(device="cpu")))


def test_a_run_with_batched_twins_records_what_separate_models_record(tmp_path, monkeypatch):
    config = tiny_config(models=("plain8", "resnet8", "resnet8-B"), steps=4, eval_every=2, probe_every=2, lr=0.01)
    store = RunStore(tmp_path / "runs.sqlite")
    separate = train(store, config)
    monkeypatch.setenv("EXPLORER_BATCHED_TWINS", "1")
    twins = train(store, config)
    for table, columns in (("steps", ["loss", "train_err"]), ("evals", ["train_loss", "test_loss"]),
                           ("probes", ["grad_norm", "weight_norm", "update_ratio", "response_std"])):
        order = ["model", "step", "layer"] if table == "probes" else ["model", "step"]
        expected, got = (getattr(store, table)(run).sort_values(order) for run in (separate, twins))
        assert len(got) == len(expected) > 0, table
        for column in columns:  # float32: a few steps amplify kernel rounding to about 1e-4 (module docstring)
            assert got[column].to_numpy() == pytest.approx(expected[column].to_numpy(), rel=1e-3, abs=1e-5), \
                (table, column)


def test_one_graph_over_the_whole_step_needs_a_gpu():
    policy = DevicePolicy.resolve(Config(device="cpu"))
    model = build_model(ModelConfig.parse("resnet8"))
    with pytest.raises(StepError, match="CUDA"):
        LockstepGraph([TrainStep(model, make_optimizer(model, OPTIM, policy), policy)], policy)
