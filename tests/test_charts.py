"""The figure builders of explorer/ui/charts.py on small hand-made store tables (no training, no Streamlit)."""

import numpy as np
import pandas as pd
import pytest

from explorer import metrics
from explorer.ui import charts
from explorer.ui.charts import as_plotly

MODELS = ("plain20", "plain56", "resnet20", "resnet56")


def tables(steps: int = 120, layers: int = 6, probe_every: int = 10, per_epoch: int = 20,
           models: tuple[str, ...] = MODELS) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Store-shaped steps, evals and probes: the deep plain net ends 20 points above the others."""
    rng = np.random.default_rng(0)
    step_rows, eval_rows, probe_rows = [], [], []
    for model in models:
        floor = 30.0 if model == "plain56" else 10.0
        for step in range(steps):
            err = floor + 50 * np.exp(-step / 30) + rng.normal(0, 3)
            step_rows.append(dict(run_id="r1", model=model, step=step, epoch=(step + 1) / per_epoch,
                                  loss=err / 25, train_err=err, lr=0.1, wall=0.1 * step))
            if (step + 1) % per_epoch == 0:
                eval_rows.append(dict(run_id="r1", model=model, step=step + 1, epoch=(step + 1) / per_epoch,
                                      train_loss=1.0, train_err=floor, test_loss=1.2, test_err=floor + 5,
                                      wall=0.1 * step))
            if step % probe_every == 0:
                for layer in range(layers):
                    probe_rows.append(dict(run_id="r1", model=model, step=step, layer=layer, layer_name=f"conv{layer}",
                                           grad_norm=10.0 ** (-layer - step / 100), weight_norm=5.0 + step,
                                           update_ratio=1e-3, response_std=1.0 / (layer + 1)))
    return pd.DataFrame(step_rows), pd.DataFrame(eval_rows), pd.DataFrame(probe_rows)


def test_model_colors_keep_one_hue_per_family_and_darken_with_depth():
    colors = charts.model_colors(["resnet56", "plain20", "resnet20", "plain56", "vgg16"])
    assert len(set(colors.values())) == 5
    brightness = {label: sum(int(c[i:i + 2], 16) for i in (1, 3, 5)) for label, c in colors.items()}
    assert brightness["plain20"] > brightness["plain56"] and brightness["resnet20"] > brightness["resnet56"]
    red, _, blue = (int(colors["plain56"][i:i + 2], 16) for i in (1, 3, 5))
    assert red > blue  # vermillion family
    red, _, blue = (int(colors["resnet56"][i:i + 2], 16) for i in (1, 3, 5))
    assert blue > red  # blue family
    assert charts.model_colors(["vgg16"])["vgg16"] != charts.model_colors(["resnet16"]).get("resnet16")


def test_downsample_bounds_points_and_keeps_the_last_one():
    frame = pd.DataFrame({"model": "plain20", "step": np.arange(10_000), "loss": np.linspace(2.0, 0.5, 10_000)})
    small = charts.downsample(frame, "step", max_points=500)
    assert len(small) <= 500
    assert small["step"].iloc[-1] == 9_999 and small["loss"].iloc[-1] == pytest.approx(0.5)
    assert small["loss"].is_monotonic_decreasing and list(small.columns) == list(frame.columns)
    assert small["model"].eq("plain20").all()
    assert len(charts.downsample(frame.head(10), "step")) == 10


def test_error_figure_puts_families_side_by_side_with_train_dashed_and_test_solid():
    steps, evals, _ = tables()
    fig = as_plotly(charts.error_figure(steps, evals, x="epoch"))
    assert [a.text for a in fig.layout.annotations] == ["Plain nets", "Residual nets"]
    assert len(fig.data) == 2 * len(MODELS)
    train = [t for t in fig.data if t.line.dash == "dash"]
    test = [t for t in fig.data if t.line.dash != "dash"]
    assert len(train) == len(test) == len(MODELS)
    assert {t.xaxis for t in fig.data if t.name.startswith("Plain-")} == {"x"}
    assert {t.xaxis for t in fig.data if t.name.startswith("ResNet-")} == {"x2"}
    # legend order: plain then resnet, shallow to deep, under the names a student reads
    assert [t.name for t in train] == ["Plain-20", "Plain-56", "ResNet-20", "ResNet-56"]
    assert fig.layout.uirevision == "explorer"


def test_long_histories_are_downsampled_in_every_curve():
    steps, evals, _ = tables(steps=10_000, layers=2, probe_every=1000, per_epoch=100)
    fig = as_plotly(charts.error_figure(steps, evals, x="step"))
    assert max(len(t.x) for t in fig.data) <= charts.MAX_POINTS
    assert all(t.x[-1] >= 9_999 for t in fig.data if t.line.dash == "dash")  # the latest step is drawn


def test_metric_figure_smooths_and_uses_a_log_axis_for_loss():
    steps, _, _ = tables()
    raw = as_plotly(charts.metric_figure(steps, "loss", smooth=False))
    smooth = as_plotly(charts.metric_figure(steps, "loss", smooth=True))
    assert raw.layout.yaxis.type == "log"
    assert np.std(np.diff(smooth.data[0].y)) < np.std(np.diff(raw.data[0].y))
    assert as_plotly(charts.lr_figure(steps)).data[0].y[0] == pytest.approx(0.1) and len(as_plotly(charts.lr_figure(steps)).data) == 1


def test_heatmap_shares_one_log_colour_scale_and_windows_it():
    _, _, probes = tables()
    fig = as_plotly(charts.probe_heatmap(probes, "grad_norm", ["plain56", "resnet56"]))
    assert len(fig.data) == 2 and {t.coloraxis for t in fig.data} == {"coloraxis"}
    logs = np.log10(probes.loc[probes["model"].isin(["plain56", "resnet56"]), "grad_norm"])
    assert fig.layout.coloraxis.cmin == pytest.approx(logs.min())
    assert fig.layout.coloraxis.cmax == pytest.approx(logs.max())
    assert np.asarray(fig.data[0].z).shape == (6, 12)  # layers x probe steps
    window = as_plotly(charts.probe_heatmap(probes, "grad_norm", ["plain56"], step_range=(100, 110), scale_to="window"))
    assert list(window.data[0].x) == [100, 110]
    assert window.layout.coloraxis.cmax < fig.layout.coloraxis.cmax  # fitted to the late, smaller gradients
    kept = as_plotly(charts.probe_heatmap(probes, "grad_norm", ["plain56"], step_range=(100, 110), scale_to="all"))
    assert kept.layout.coloraxis.cmax == pytest.approx(fig.layout.coloraxis.cmax)


def test_heatmap_columns_are_bounded():
    probes = pd.DataFrame({"model": "plain20", "step": np.repeat(np.arange(2000), 3),
                           "layer": np.tile(np.arange(3), 2000), "layer_name": "conv", "grad_norm": 1.0})
    fig = as_plotly(charts.probe_heatmap(probes, "grad_norm"))
    assert np.asarray(fig.data[0].z).shape[1] <= charts.MAX_HEATMAP_COLUMNS


def test_layer_profile_reads_the_last_probe_at_or_before_the_step():
    _, _, probes = tables()
    fig = as_plotly(charts.layer_profile(probes, "weight_norm", step=25))
    assert len(fig.data) == len(MODELS)
    assert set(fig.data[0].y) == {5.0 + 20}  # probes at 0, 10, 20, 30: step 25 shows step 20
    fig7 = as_plotly(charts.layer_profile(probes, "response_std", sort=True))
    assert list(fig7.data[0].y) == sorted(fig7.data[0].y, reverse=True) and fig7.layout.yaxis.type == "linear"
    with_classifier = probes.assign(layer_name=np.where(probes["layer"] == 5, "classifier.0", probes["layer_name"]))
    assert len(as_plotly(charts.layer_profile(with_classifier, "response_std")).data[0].y) == 5  # conv layers only (Fig. 7)
    assert len(as_plotly(charts.layer_profile(with_classifier, "grad_norm")).data[0].y) == 6
    picked = as_plotly(charts.layer_profile(probes, "grad_norm", models=["plain56"]))
    assert [t.name for t in picked.data] == ["Plain-56"]  # named for people
    assert picked.data[0].line.color == charts.model_colors(MODELS)["plain56"]  # the run's colours, not the subset's


def test_difference_figure_subtracts_the_interpolated_second_curve():
    first = pd.DataFrame({"step": [0, 10, 20], "loss": [3.0, 2.0, 1.0]})
    second = pd.DataFrame({"step": [0, 20], "loss": [1.0, 0.0]})
    fig = as_plotly(charts.difference_figure(first, second, "loss", "step", ("a", "b")))
    assert list(fig.data[0].y) == pytest.approx([2.0, 1.5, 1.0])
    assert "a<br>minus b" in fig.layout.title.text


def test_final_numbers_has_one_row_per_model_with_the_last_evaluation():
    steps, evals, _ = tables()
    models = pd.DataFrame({"run_id": "r1", "model": list(MODELS), "idx": range(4), "params": [1, 2, 3, 4],
                           "status": "finished", "diverged_step": pd.NA})
    finals = metrics.final_numbers(steps, evals, models).set_index("model")
    assert list(finals.index) == list(MODELS)
    assert finals.loc["plain56", "test_err"] == pytest.approx(35.0)
    assert finals.loc["plain56", "batch_train_err"] > finals.loc["plain20", "batch_train_err"] + 10
    assert finals.loc["resnet56", "params"] == 4 and finals.loc["resnet56", "step"] == 119
    empty = metrics.final_numbers(steps, evals.iloc[0:0])
    assert empty["test_err"].isna().all()


def test_depth_sweep_draws_one_line_per_family_in_depth_order():
    finals = pd.DataFrame({"model": ["plain56", "plain20", "plain32", "resnet20", "resnet56"],
                           "batch_train_err": [30.0, 10.0, 15.0, 9.0, 7.0]})
    fig = as_plotly(charts.depth_sweep_figure(finals))
    assert [t.name for t in fig.data] == ["Plain nets", "Residual nets"]
    assert list(fig.data[0].x) == [20, 32, 56] and list(fig.data[0].y) == [10.0, 15.0, 30.0]
    assert fig.data[0].line.color == charts.FAMILY_COLORS["plain"]


def test_lesion_figure_takes_the_intact_row_as_baseline():
    lesions = pd.DataFrame({"model": ["resnet20"] * 4, "block": [-1, 0, 1, 2],
                            "block_name": ["none", "b0", "b1", "b2"], "test_err": [10.0, 12.0, 40.0, 11.0]})
    fig = as_plotly(charts.lesion_figure(lesions))
    assert list(fig.data[0].x) == [0, 1, 2]
    lines = sorted(shape.y0 for shape in fig.layout.shapes)
    assert lines == [10.0, 90.0]  # intact net, chance


def test_style_scales_fonts_and_html_is_standalone():
    steps, evals, _ = tables(steps=40)
    normal = as_plotly(charts.error_figure(steps, evals, scale=1.0))
    big = as_plotly(charts.error_figure(steps, evals, scale=1.5))
    assert big.layout.font.size == pytest.approx(1.5 * normal.layout.font.size)
    assert big.layout.height > normal.layout.height
    page = charts.figure_html(normal)
    assert page.lower().startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert '<script src="https://cdn' not in page and len(page) > 1_000_000  # plotly.js inlined: opens offline


def test_builders_accept_empty_tables():
    steps, evals, probes = tables(steps=20)
    fig = as_plotly(charts.error_figure(steps.iloc[0:0], evals.iloc[0:0]))
    assert len(fig.data) == 0
    assert len(as_plotly(charts.layer_profile(probes.iloc[0:0])).data) == 0
    assert len(as_plotly(charts.probe_heatmap(probes.iloc[0:0], models=[])).data) == 0


def test_values_spanning_decades_get_a_log_axis_and_the_outlier_is_named_in_numbers():
    from explorer.ui import figures

    steps, evals, probes = tables()
    outlier = probes.assign(response_std=np.where((probes.model == "plain56") & (probes.layer == 0), 24.0, 1.0))
    assert as_plotly(charts.layer_profile(outlier, "response_std")).layout.yaxis.type == "log"
    assert as_plotly(charts.layer_profile(probes, "response_std")).layout.yaxis.type == "linear"
    spread = evals.assign(test_err=np.linspace(0.5, 90, len(evals)))  # errors span decades too: still linear
    assert as_plotly(charts.metric_figure(spread, "test_err")).layout.yaxis.type == "linear"
    empty = pd.DataFrame()
    summary = figures.CHARTS["responses"].summary(
        figures.RunTables(steps=empty, evals=empty, probes=outlier, models=empty, lesions=empty))
    assert "Plain-56's conv0 reads 24, 24x the other nets' median layer (1)" in summary
    assert "large early gradients (up to" in summary
