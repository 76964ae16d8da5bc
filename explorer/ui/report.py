"""A self-contained HTML report of one run: what was predicted, what was measured, whether it held, and the charts.

The report opens offline: plotly.js is inlined once, with the first chart, and every later chart reuses it. Besides
the verdict it records everything needed to judge and repeat the run: the configuration (JSON and the app's URL
query), the hardware, the data source, the code version and the dates.
"""

from __future__ import annotations

import html
import json
import os
import platform
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from explorer.config import display_name
from explorer.estimate import Estimate
from explorer.metrics import final_numbers
from explorer.presets import Preset
from explorer.store import RunStore
from explorer.ui.charts import as_plotly
from explorer.ui.figures import CHARTS, RunTables, has_data
from explorer.verdicts import Verdict


DEFAULT_CHARTS = ("errors", "loss", "gradients", "responses")
BADGES = {True: ("held", "#1a7f37"), False: ("did not hold", "#cf222e"), None: ("no verdict", "#6e7781")}

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #1f2328; }
h1 { margin-bottom: 0.2em; } .paper { color: #57606a; margin-top: 0; }
.badge { display: inline-block; padding: 0.25em 0.8em; border-radius: 1em; color: white; font-weight: 600; }
.claim { border-left: 4px solid #d0d7de; padding: 0.2em 1em; margin: 1em 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; } td, th { border: 1px solid #d0d7de; padding: 0.3em 0.6em; }
th { background: #f6f8fa; text-align: left; } pre { background: #f6f8fa; padding: 1em; overflow-x: auto; }
"""


def write_report(store: RunStore, run_id: str, preset: Preset | None, verdict: Verdict | None, path: str | Path,
                 estimate: Estimate | None = None) -> Path:
    """Write the report of `run_id` to `path` and return the path. Without a verdict, a preset's own is computed."""
    tables = RunTables.read(store, run_id)
    run = store.run(run_id)
    if verdict is None and preset is not None:
        verdict = preset.evaluate(store, run_id)
    title = preset.title if preset else (run["name"] or f"Run {run_id}")
    sections = [f"<h1>{_e(title)}</h1>"]
    if preset is not None:
        sections.append(f"<p class='paper'>{_e(preset.paper)}</p>")
        sections.append(_claim("Prediction, stated before the run", preset.prediction))
    sections.append(_verdict_html(verdict))
    if preset is not None:
        sections.append(_claim("What to watch", preset.watch))
    if estimate is not None:
        sections.append(_claim("Estimated before the run", estimate.summary()))
    sections.append("<h2>Charts</h2>" + _charts_html(tables, preset.charts if preset else DEFAULT_CHARTS))
    sections.append("<h2>Final numbers</h2>" + _final_table(final_numbers(tables.steps, tables.evals, tables.models)))
    if verdict is not None and "costs" in verdict.details:
        sections.append("<h2>Cost</h2>" + _cost_table(verdict.details["costs"]))
    if verdict is not None and verdict.details:
        details = json.dumps(_rounded(verdict.details), indent=2, default=float)
        sections.append(f"<h2>Measured details</h2><pre>{_e(details)}</pre>")
    sections.append("<h2>Run</h2>" + _table(_run_facts(run, preset)))
    config = store.config(run_id)
    sections.append(f"<h2>Configuration</h2><p>App URL query: <code>?{_e(config.to_query_string())}</code></p>"
                    f"<pre>{_e(config.to_json())}</pre>")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _e(text: Any) -> str:
    return html.escape(str(text))


def _rounded(value: Any) -> Any:
    """Floats to 3 decimals, inside dicts and lists too, so the details read as numbers, not noise."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return value


def _claim(heading: str, text: str) -> str:
    return f"<div class='claim'><strong>{_e(heading)}</strong><p>{_e(text)}</p></div>"


def _verdict_html(verdict: Verdict | None) -> str:
    word, color = BADGES[verdict.held if verdict else None]
    figure = verdict.figure if verdict else "no prediction was evaluated for this run"
    return (f"<p><span class='badge' style='background:{color}'>Prediction {word}</span></p>"
            f"<div class='claim'><strong>Measured</strong><p>{_e(figure)}</p></div>")


def _charts_html(tables: RunTables, names: tuple[str, ...]) -> str:
    """Each chart with its data-generated summary under it (also what a screen reader reads)."""
    parts, inline_js = [], True
    for name in names:
        spec = CHARTS[name]
        if not has_data(spec, tables):
            continue
        figure = as_plotly(spec.build(tables, "epoch", 1.0)).update_layout(title=dict(text=spec.title, x=0))
        parts.append(figure.to_html(full_html=False, include_plotlyjs=inline_js, default_height="440px"))
        parts.append(f"<p class='summary'>{_e(spec.summary(tables))}</p>")
        inline_js = False
    return "".join(parts)


def _final_table(finals: pd.DataFrame) -> str:
    columns = ["model", "step", "epoch", "train_err", "test_err", "best_test_err", "loss", "params", "status"]
    finals = finals.assign(model=finals["model"].map(display_name))
    table = finals[[c for c in columns if c in finals]].rename(columns={
        "train_err": "training error (%)", "test_err": "test error (%)", "best_test_err": "best test error (%)",
        "loss": "final loss"})
    return table.to_html(float_format=lambda v: f"{v:.2f}", na_rep="–", border=0, index=False)


def _cost_table(costs: dict[str, dict[str, int]]) -> str:
    rows = {label: {"depth": c["depth"], "parameters": f"{c['params']:,}", "multiply-adds": f"{c['macs'] / 1e6:,.1f} M"}
            for label, c in costs.items()}
    return pd.DataFrame(rows).T.to_html(border=0)


def _run_facts(run: dict[str, Any], preset: Preset | None) -> dict[str, str]:
    facts = {
        "run id": run["run_id"], "preset": preset.key if preset else (run["preset"] or "–"), "status": run["status"],
        "created": run["created"], "started": run["started"] or "–", "ended": run["ended"] or "–",
        "device": run["device"], "data source": run["data_source"], "torch": run["torch_version"],
        "code version": run["code_version"], "host": run["hostname"],
        "report written on": f"{platform.node()}: {os.cpu_count()} CPU cores, {platform.platform()}, "
                             f"torch {torch.__version__}",
    }
    if run["error"]:
        facts["error"] = run["error"]
    return facts


def _table(facts: dict[str, str]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts.items()) + "</table>"
