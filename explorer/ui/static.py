"""Static images (PNG, SVG) of a run's charts, rendered by plotly's Kaleido in a Chrome or Chromium on this machine.

Kaleido v1 drives a browser it is given: ``BROWSER_PATH`` when set (Kaleido's and choreographer's own variable),
else the first of chromium, chromium-browser, google-chrome on PATH (Debian: ``apt-get install chromium`` puts it at
/usr/bin/chromium). MathJax is off (no chart uses LaTeX, and Kaleido would fetch it from a CDN); plotly.js is the
copy plotly ships. `export_charts` renders every chart of the registry (`explorer.ui.figures.CHARTS`) that has data
in one browser session and writes the charts' one-sentence summaries beside them; `figure_image` gives one
figure's bytes (a download button's data).

Publication defaults: 1600×900 layout pixels at scale 2 (3200×1800 PNG) with fonts 1.6 times the screen size, so
axis labels stay legible when the figure is printed a column wide.

Kaleido is an optional extra (``pip install "kaleido>=1"``; requirements-dev.txt installs it for the tests).
Evidence: tests/test_static.py checks the PNG header and size and the SVG's; the CLI prints each chart's seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from explorer.store import RunStore
from explorer.ui.charts import Figure, as_plotly
from explorer.ui.figures import CHARTS, RunTables, has_data

FORMATS = ("png", "svg")
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_SCALE, DEFAULT_FONT_SCALE = 1600, 900, 2.0, 1.6
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SUMMARIES_FILE = "summaries.txt"


class StaticExportError(Exception):
    """Static images cannot be made here (no Kaleido, no browser, bad size); the message says what to change."""


@dataclass(frozen=True)
class ImageOptions:
    """Size of a static image: `width`×`height` layout pixels, times `scale` in the file's pixels (PNG)."""

    fmt: str = "png"
    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    scale: float = DEFAULT_SCALE

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise StaticExportError(f"format {str(self.fmt)[:10]!r} is not one of {', '.join(FORMATS)}")
        if not (100 <= self.width <= 8000 and 100 <= self.height <= 8000):
            raise StaticExportError(f"{self.width}×{self.height} is out of range: use 100 to 8000 pixels a side")
        if not 0.25 <= self.scale <= 8:
            raise StaticExportError(f"--scale {self.scale} is out of range: use 0.25 to 8")

    def kaleido(self) -> dict:
        return dict(format=self.fmt, width=self.width, height=self.height, scale=self.scale)


@dataclass(frozen=True)
class ExportedChart:
    name: str
    path: Path
    seconds: float  # rendering and writing this chart (the browser already running)


def browser_path() -> str | None:
    """The browser Kaleido will drive: BROWSER_PATH when set, else a Chrome or Chromium on PATH, else None."""
    explicit = os.environ.get("BROWSER_PATH")
    if explicit:
        if not Path(explicit).is_file():
            raise StaticExportError(f"BROWSER_PATH={explicit[:200]} is not a file: point it at a Chrome or Chromium "
                                    "binary, or unset it")
        return explicit
    return next((path for name in BROWSER_NAMES if (path := shutil.which(name))), None)


def can_render() -> bool:
    """Whether static images can be made here (Kaleido installed and a browser found)."""
    try:
        _kaleido_options()
    except StaticExportError:
        return False
    return True


def _kaleido_options() -> dict:
    try:
        import kaleido  # noqa: F401  (only to say clearly that it is missing)
    except ImportError:
        raise StaticExportError('static images need Kaleido v1: pip install "kaleido>=1" (an optional extra; '
                                "requirements-dev.txt has it)") from None
    path = browser_path()
    if path is None:
        raise StaticExportError("static images need Chrome or Chromium and none was found: install one (Debian: "
                                "apt-get install chromium) or set BROWSER_PATH to its binary")
    return {"path": path, "mathjax": False}


@contextlib.contextmanager
def _quiet_browser() -> Iterator[None]:
    """choreographer logs a harmless JSON decoding error when the browser closes; keep the terminal clean."""
    logger = logging.getLogger("choreographer")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _browser_failed(error: Exception) -> StaticExportError:
    return StaticExportError(f"the browser could not render ({type(error).__name__}: {str(error)[:200]}): check "
                             "that BROWSER_PATH or chromium on PATH starts (chromium --headless --version)")


def figure_image(fig: Figure, fmt: str = "png", width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
                 scale: float = DEFAULT_SCALE) -> bytes:
    """The figure as PNG or SVG bytes (starts a browser for this one image: about 3 s)."""
    options = ImageOptions(fmt, width, height, scale)
    kopts = _kaleido_options()
    import kaleido
    from kaleido.errors import ChromeNotFoundError

    try:
        with _quiet_browser():
            return kaleido.calc_fig_sync(as_plotly(fig), opts=options.kaleido(), kopts=kopts)
    except ChromeNotFoundError as error:
        raise _browser_failed(error) from None


def export_charts(store: RunStore, run_id: str, out: Path, options: ImageOptions = ImageOptions(),
                  font_scale: float = DEFAULT_FONT_SCALE, x: str = "epoch") -> list[ExportedChart]:
    """Write every chart of `run_id` that has data as ``out/<chart>.<format>`` and their summaries as
    ``out/summaries.txt``; returns what was written with each chart's seconds."""
    kopts = _kaleido_options()
    tables = RunTables.read(store, run_id)
    chosen = {name: spec for name, spec in CHARTS.items() if has_data(spec, tables)}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StaticExportError(f"cannot create {out} ({error.strerror or error}): choose a writable --out") from None
    figures = {name: spec.build(tables, x, font_scale) for name, spec in chosen.items()}
    from kaleido.errors import ChromeNotFoundError

    try:
        with _quiet_browser():
            written = asyncio.run(_render(figures, out, options, kopts))
    except ChromeNotFoundError as error:
        raise _browser_failed(error) from None
    lines = [f"{spec.title} ({name}.{options.fmt})\n{spec.summary(tables)}\n" for name, spec in chosen.items()]
    (out / SUMMARIES_FILE).write_text("\n".join(lines), encoding="utf-8")
    return written


async def _render(figures: dict[str, Figure], out: Path, options: ImageOptions, kopts: dict
                  ) -> list[ExportedChart]:
    import kaleido

    written = []
    async with kaleido.Kaleido(n=1, **kopts) as browser:
        for name, fig in figures.items():
            started = time.perf_counter()
            path = out / f"{name}.{options.fmt}"
            path.write_bytes(await browser.calc_fig(as_plotly(fig), opts=options.kaleido()))
            written.append(ExportedChart(name, path, time.perf_counter() - started))
    return written
