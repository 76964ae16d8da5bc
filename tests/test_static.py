"""Static images of a run's charts (explorer/ui/static.py) through Kaleido and Chromium: every chart with data as a PNG
or SVG of the requested size, their summaries, and clear refusals when Kaleido or the browser is missing."""

import struct
import sys
import xml.etree.ElementTree as ElementTree

import plotly.graph_objects as go
import pytest

from explorer import landscape
from explorer.cli import main
from explorer.store import RunStore
from explorer.ui import static
from explorer.ui.figures import CHARTS, RunTables, has_data
from support import tiny_config, train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, which must come first."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def renderer_missing() -> str | None:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return "kaleido is not installed (an optional extra: pip install 'kaleido>=1')"
    if static.browser_path() is None:
        return "no Chrome or Chromium on PATH (apt-get install chromium) and BROWSER_PATH is unset"
    return None


needs_renderer = pytest.mark.skipif(renderer_missing() is not None, reason=str(renderer_missing()))


@pytest.fixture
def run(tmp_path) -> tuple[RunStore, str]:
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = train(store, tiny_config())
    landscape.compute(store, run_id, landscape.SliceSpec("1d", ("plain8", "resnet8"), grid=3, images=16),
                      budget_s=None, device="cpu")
    return store, run_id


@needs_renderer
def test_every_chart_with_data_becomes_a_png_and_an_svg_of_the_requested_size(run, tmp_path, capsys):
    store, run_id = run
    expected = {name for name, spec in CHARTS.items() if has_data(spec, RunTables.read(store, run_id))}
    assert {"errors", "gradients", "landscape_1d"} <= expected and "lesion" not in expected
    assert main(["--store", str(store.path), "figures", run_id, "--out", str(tmp_path / "png"), "--width", "400",
                 "--height", "300", "--scale", "2"]) == 0
    assert {p.stem for p in (tmp_path / "png").glob("*.png")} == expected
    for path in (tmp_path / "png").glob("*.png"):
        assert png_size(path.read_bytes()) == (800, 600), path.name
    summaries = (tmp_path / "png" / static.SUMMARIES_FILE).read_text()
    assert all(CHARTS[name].title in summaries for name in expected) and "Plain-8's loss" in summaries
    assert "charts in" in capsys.readouterr().err
    written = static.export_charts(store, run_id, tmp_path / "svg", static.ImageOptions("svg", 500, 320, 1))
    assert {chart.path.suffix for chart in written} == {".svg"} and len(written) == len(expected)
    root = ElementTree.fromstring(written[0].path.read_bytes())
    assert root.tag.endswith("svg") and (root.get("width"), root.get("height")) == ("500", "320")


@needs_renderer
def test_figure_image_gives_png_bytes_of_a_figure():
    data = static.figure_image(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), "png", width=300, height=200, scale=1)
    assert png_size(data) == (300, 200)


def test_a_missing_browser_or_kaleido_is_a_clear_usage_error(run, tmp_path, monkeypatch, capsys):
    store, run_id = run
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chrome"))
    assert main(["--store", str(store.path), "figures", run_id, "--out", str(tmp_path / "out")]) == 2
    assert "BROWSER_PATH=" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido now raises ImportError
    with pytest.raises(static.StaticExportError, match='pip install "kaleido>=1"'):
        static.figure_image(go.Figure())


@pytest.mark.parametrize("options, message", [(("jpg",), "not one of png, svg"), (("png", 50, 300), "out of range"),
                                              (("png", 400, 300, 0), "--scale 0")])
def test_bad_image_options_say_what_to_change(options, message):
    with pytest.raises(static.StaticExportError, match=message):
        static.ImageOptions(*options)
