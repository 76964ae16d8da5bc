import math
from dataclasses import replace

import pytest
import torch

from explorer import sizing
from explorer.config import Config, DataConfig, ModelConfig, OptimConfig, valid_depths
from explorer.data import normalize, synthetic_cifar
from explorer.device import DevicePolicy
from explorer.estimate import DEFAULT_CALIBRATIONS, Calibration, estimate
from explorer.lesion import BASELINE_BLOCK, lesion_errors
from explorer.models import build_model, describe_config, lesioned, option_a
from explorer.presets import PRESETS, Verdict
from explorer.states import RunState
from explorer.store import RunStore
from explorer.verdicts import MARGIN
from support import store_finished_run as _store_run
from support import train

PAPER_FINDINGS = {"degradation", "depth-sweep", "table6", "shortcuts", "bottleneck", "preact", "no-bn", "zero-init",
                  "shortcut-ablation", "lesion", "response-std", "vgg", "very-deep", "inception"}


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def tiny(config: Config) -> Config:
    """The same experiment in miniature: the shallowest valid depths in the same order, width 1/4, 4 steps on 64
    synthetic images. Distinct depths stay distinct, so every verdict still finds its models."""
    depths: dict[tuple[str, str], list[int]] = {}
    for m in config.models:
        depths.setdefault((m.family, m.block), []).append(m.depth)
    models = []
    for m in config.models:
        ranks = sorted(set(depths[(m.family, m.block)]))
        models.append(replace(m, depth=valid_depths(m.family, m.block)[ranks.index(m.depth)], width=0.25))
    return replace(config, models=tuple(models), data=DataConfig(source="synthetic", subset=64, test_subset=32),
                   optim=replace(config.optim, batch_size=16, steps=4, epochs=1, warmup_epochs=0),
                   eval_every=2, probe_every=2, device="cpu")


def test_the_fourteen_findings_are_presets_with_their_texts():
    assert set(PRESETS) == PAPER_FINDINGS
    for key, preset in PRESETS.items():
        assert preset.key == key
        assert preset.title and preset.paper and preset.watch and preset.prediction
    assert "small" in PRESETS["preact"].watch  # said honestly where the effect is small


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_preset_config_validates_and_round_trips(device):
    for preset in PRESETS.values():
        config = preset.config(None, device, "cifar10")
        assert Config.from_json(config.to_json()) == config
        assert config.device == device and config.data.source == "cifar10"
        total, _ = config.run_steps()
        assert total // config.eval_every <= sizing.EVALS_PER_RUN + 1
        assert total // config.eval_every >= min(20, total)  # every run draws a test curve
    degradation = PRESETS["degradation"].config(None, device, "synthetic")
    if device == "cpu":  # the recipe bench/degradation.py measured, with the paper's standard initialisation
        assert degradation.data.subset == 1000 and degradation.optim.warmup_epochs == 1
        assert degradation.optim.schedule == "cosine" and degradation.optim.lr == 0.05
        assert degradation.optim.batch_size == 32 and degradation.threads == 1
        assert degradation.labels == ["plain20-w0.25", "plain56-w0.25", "resnet20-w0.25", "resnet56-w0.25"]
        assert not any(m.zero_init_residual for m in degradation.models)
        assert PRESETS["zero-init"].config(None, device).labels == ["resnet56-w0.25", "resnet56-zi-w0.25"]
    else:
        assert degradation.data.subset == 50000 and degradation.data.augment
        assert degradation.labels == ["plain20", "plain56", "resnet20", "resnet56"]


def test_presets_compare_what_the_papers_compare():
    labels = {key: PRESETS[key].config(None, "cuda").labels for key in PRESETS}
    assert labels["degradation"] == ["plain20", "plain56", "resnet20", "resnet56"]
    for key, preset in PRESETS.items():  # identity at start only where initialisation is what is studied
        zeroed = [m.label for m in preset.config(None, "cpu").models if m.zero_init_residual]
        assert not zeroed or key in ("zero-init", "no-bn"), key
    assert labels["shortcut-ablation"] == ["resnet110", "resnet110-scaled", "resnet110-C", "resnet110-gated"]
    assert labels["very-deep"] == ["resnet110", "resnet1202"]
    assert PRESETS["very-deep"].config(None, "cpu").optim.steps > 0
    assert PRESETS["zero-init"].config(None, "cpu").optim.warmup_epochs == 0
    assert labels["depth-sweep"] == [f"{f}{d}" for f in ("plain", "resnet") for d in (20, 32, 44, 56)]
    cpu_bottleneck = PRESETS["bottleneck"].config(None, "cpu").labels
    basic, _, equal_cost = (describe_config(ModelConfig.parse(label)) for label in cpu_bottleneck)
    assert abs(equal_cost.macs / basic.macs - 1) < 0.1  # "at equal cost"
    assert PRESETS["inception"].config(None, "cpu").labels == ["resnet56-w0.25", "resnet56-incep-w0.5"]


def test_a_budget_shortens_the_run_to_fit_the_calibrated_estimate():
    preset = PRESETS["degradation"]
    full = preset.config(None, "cpu")
    slow = Calibration("test", "cpu", "bf16", step_s=0.0, layer_s=0.0, gmac_s=1.0, measured="now")
    seconds = estimate(full, slow).seconds
    fitted = preset.config(seconds / 4, "cpu", calibration=slow)
    assert fitted.optim.epochs == pytest.approx(full.optim.epochs * sizing.BUDGET_SHARE / 4, abs=0.1)
    assert fitted.optim.warmup_epochs == 1.0  # at least one epoch of it
    assert fitted.models == full.models
    assert preset.config(seconds * 2, "cpu", calibration=slow) == full  # fits already


def test_a_run_without_the_compared_models_gets_no_verdict(store):
    run_id = _store_run(store, {"resnet20": (1, 10)})
    verdict = PRESETS["degradation"].evaluate(store, run_id)
    assert verdict.held is None and "resnet20" in verdict.figure


@pytest.mark.parametrize("key", sorted(PAPER_FINDINGS))
def test_every_preset_runs_a_few_steps_and_judges_them(key, store):
    preset = PRESETS[key]
    config = tiny(preset.config(None, "cpu"))
    run_id = train(store, config, preset=key)
    assert store.status(run_id) in (RunState.FINISHED, RunState.DIVERGED)
    verdict = preset.evaluate(store, run_id)
    assert isinstance(verdict, Verdict)
    assert isinstance(verdict.figure, str) and verdict.figure and isinstance(verdict.details, dict)
    if key == "lesion":
        lesions = store.lesions(run_id)
        assert set(lesions["model"]) == set(config.labels)
        assert len(lesions) == sum(len(build_model(m).blocks()) + 1 for m in config.models)
    if verdict.held is None:  # 4 steps teach nothing: the verdict must say so rather than guess
        assert "no verdict" in verdict.figure



def test_degradation_verdict_reads_the_final_training_errors(store):
    judge = PRESETS["degradation"]
    degraded = _store_run(store, {"plain20": (5, 30), "plain56": (28.4, 40), "resnet20": (4, 28), "resnet56": (3, 27)})
    verdict = judge.evaluate(store, degraded)
    assert verdict.held is True
    assert "Plain-56 minus Plain-20 training error: +23.4 points" in verdict.figure  # named for people
    assert verdict.details["residual_gap"] == pytest.approx(-1.0)

    no_gap = _store_run(store, {"plain20": (5, 30), "plain56": (5 + MARGIN / 2, 40), "resnet20": (4, 28),
                                "resnet56": (3, 27)})
    assert judge.evaluate(store, no_gap).held is False
    lost = _store_run(store, {"plain20": (5, 30), "plain56": (50, 60), "resnet20": (4, 28), "resnet56": (3, 27)},
                      diverged="plain56")
    verdict = judge.evaluate(store, lost)
    assert verdict.held is None and "Plain-56" in verdict.figure


def test_shortcut_ablation_verdict_uses_test_error(store):
    errors = {"resnet20": (1, 10), "resnet20-scaled": (9, 12), "resnet20-C": (1, 11), "resnet20-gated": (1, 10.5)}
    assert PRESETS["shortcut-ablation"].evaluate(store, _store_run(store, errors)).held is True
    errors["resnet20-gated"] = (1, 10 - MARGIN - 1)
    verdict = PRESETS["shortcut-ablation"].evaluate(store, _store_run(store, errors))
    assert verdict.held is False and "ResNet-20 (gated shortcut)" in verdict.figure


def test_lesion_verdict_wants_graceful_residual_and_collapsing_plain_nets(store):
    run_id = _store_run(store, {"plain8": (5, 30), "resnet8": (4, 20)})
    blocks = {"plain8": [85, 88, 87], "resnet8": [24, 60, 55]}  # stage2.0 and stage3.0 downsample
    store.append(run_id, lesions=[dict(model=label, block=k, block_name=f"stage{k + 1}.0", test_err=err)
                                  for label, errors in blocks.items() for k, err in enumerate(errors)]
                 + [dict(model="plain8", block=BASELINE_BLOCK, block_name="none", test_err=30.0),
                    dict(model="resnet8", block=BASELINE_BLOCK, block_name="none", test_err=20.0)])
    verdict = PRESETS["lesion"].evaluate(store, run_id)
    assert verdict.held is True, verdict.figure
    assert "ResNet-8 24.0%" in verdict.figure  # the downsampling blocks are left out of the median


def test_a_run_too_short_to_learn_gets_no_verdict(store):
    run_id = _store_run(store, {"plain20": (89, 90), "plain56": (91, 90), "resnet20": (88, 90), "resnet56": (90, 90)})
    verdict = PRESETS["degradation"].evaluate(store, run_id)
    assert verdict.held is None and "learned" in verdict.figure


# --- lesion mechanics --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", ["resnet14", "plain14"])
def test_removing_block_k_changes_exactly_that_block(label):
    model = build_model(ModelConfig.parse(label), seed=3).eval()
    x = normalize(synthetic_cifar(4, 2, seed=0).train_x)
    blocks = model.blocks()
    with torch.no_grad():
        intact = model(x)
        for k in (1, 3):  # a same-shape block and the first (downsampling) block of stage 2
            seen = {}
            hooks = [b.register_forward_hook(lambda m, i, o, j=j: seen.__setitem__(j, (i[0], o)))
                     for j, b in enumerate(blocks)]
            with lesioned(model, k):
                model(x)
            for hook in hooks:
                hook.remove()
            for j, (inputs, output) in seen.items():
                if j == k:  # residual: only the shortcut is left; plain: the same parameter-free mapping
                    assert not torch.allclose(blocks[k](inputs), output)
                    expected = torch.relu(option_a(inputs, blocks[k].out_ch, blocks[k].stride))
                    torch.testing.assert_close(output, expected)
                else:
                    torch.testing.assert_close(blocks[j](inputs), output)
        torch.testing.assert_close(model(x), intact)  # the block is back after the context


def test_lesion_errors_has_the_intact_net_and_one_row_per_block():
    data = synthetic_cifar(16, 40, seed=0)
    model = build_model(ModelConfig.parse("resnet8-w0.25"))
    rows = lesion_errors(model, data, DevicePolicy.resolve(Config(device="cpu")))
    names = [name for name, _ in model.named_blocks()]
    assert [r["block"] for r in rows] == [BASELINE_BLOCK, *range(len(names))]
    assert [r["block_name"] for r in rows[1:]] == names
    assert all(0 <= r["test_err"] <= 100 and math.isfinite(r["test_err"]) for r in rows)
    assert all(r["test_err"] % 2.5 == 0 for r in rows)  # whole images of 40


# --- estimate ----------------------------------------------------------------------------------------------------
def test_estimate_prices_a_run_from_the_calibration_alone():
    config = Config(models=(ModelConfig.parse("resnet8-w0.25"), ModelConfig.parse("plain8-w0.25")),
                    data=DataConfig(subset=256, test_subset=64), optim=OptimConfig(batch_size=32, epochs=2),
                    device="cpu")
    calibration = DEFAULT_CALIBRATIONS[("cpu", "fp32")]
    cost = estimate(config, calibration)
    assert cost.steps == 16 and set(cost.images_per_s) == {"resnet8-w0.25", "plain8-w0.25"}
    longer = estimate(replace(config, optim=replace(config.optim, epochs=200)), calibration)
    assert longer.steps == 1600
    assert longer.seconds > 20 * cost.seconds  # not a fixed overhead: it grows with the run
    assert not cost.calibrated and "uncalibrated" in cost.summary()
    params = sum(p.numel() for p in build_model(config.models[0]).parameters())
    assert cost.peak_memory_bytes > 3 * 4 * params


def test_very_deep_builds_resnet1202_and_prices_it_without_building_it():
    config = PRESETS["very-deep"].config(None, "cpu")
    one = replace(config, models=(ModelConfig.parse("resnet1202"),), data=replace(config.data, test_subset=100))
    assert describe_config(one.models[0]).params == 19_421_274  # the paper's 19.4 M
    cost = estimate(one, DEFAULT_CALIBRATIONS[("cpu", "bf16")])
    assert cost.steps == config.optim.steps
    assert cost.peak_memory_bytes > 3 * 4 * 19_421_274  # weights, gradients and momentum at least
    assert 0 < cost.images_per_s["resnet1202"] < 10_000


def test_a_long_after_training_study_still_lands_in_the_store(store, monkeypatch):
    """The lesion study runs while the run still counts as running, so its worker keeps the lease (renewed every
    second) and its rows are written, however long it takes."""
    import time

    import explorer.presets as presets_module

    slow = presets_module.lesion_errors

    def lesion_errors(*args, **kwargs):
        time.sleep(2.5)  # longer than a lease renewal
        return slow(*args, **kwargs)

    monkeypatch.setattr(presets_module, "lesion_errors", lesion_errors)
    config = tiny(PRESETS["lesion"].config(None, "cpu"))
    run_id = train(store, config, preset="lesion")
    assert store.status(run_id) is RunState.FINISHED
    assert set(store.lesions(run_id)["model"]) == set(config.labels)
