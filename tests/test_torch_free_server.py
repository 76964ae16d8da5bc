"""The web server queues, prices, checks and draws runs without PyTorch (`import torch` alone is about 500 MB of a
server's resident memory): a fresh interpreter imports every module the server imports (the app, its pages and
their helpers, the queue, the store, the estimate), submits a run to a temp store, assesses it, checks its memory,
describes and draws nets (ResNet-1202 included) and sizes a preset, then renders every page once, and PyTorch is
never imported. Workers and the command line import it as they like."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import importlib, pkgutil, sys
    sys.path.insert(0, ".")

    def no_torch(step):
        assert "torch" not in sys.modules, f"{step} imported torch"

    modules = ["streamlit_app", "explorer.ui.live.api", "explorer.ui.live.feed", "explorer.ui.live.element",
               "explorer.ui.nav", "explorer.ui.session", "explorer.jobs", "explorer.config", "explorer.store",
               "explorer.estimate", "explorer.memory", "explorer.diagram", "explorer.plan", "explorer.presets",
               "explorer.pool", "explorer.lessons", "explorer.claims", "explorer.landscape", "explorer.device"]
    modules += [f"explorer.ui.{m.name}" for m in pkgutil.iter_modules(["explorer/ui"]) if m.name != "shell"]
    modules += [f"pages.{m.name}" for m in pkgutil.iter_modules(["pages"])]
    for name in modules:
        importlib.import_module(name)
    no_torch("importing the server's modules")

    from explorer import jobs
    from explorer.config import Config, ModelConfig
    from explorer.diagram import cost_table, model_dot
    from explorer.memory import check
    from explorer.plan import describe_config
    from explorer.presets import PRESETS
    from explorer.store import RunStore

    store = RunStore(sys.argv[1])
    config = Config.from_query("models=plain20,plain56,resnet20,resnet56-B,vgg16-pre&steps=20&data=synthetic")
    submitted = jobs.submit(store, config, "owner-key")
    assert store.run(submitted.run_id)["status"] == "queued"
    kind, cost = jobs.assess(config, store)
    check(config, kind, "fp32")
    assert describe_config(ModelConfig(depth=1202)).params == 19_421_274
    assert "identical basic blocks" in model_dot(ModelConfig(depth=1202), detail="blocks")
    cost_table([ModelConfig.parse("resnet20"), ModelConfig.parse("resnet29-bneck")])
    PRESETS["degradation"].config(device=kind)
    no_torch("submitting, assessing, checking, describing and drawing")

    from streamlit.testing.v1 import AppTest
    for page, query in [("Learn", {}), ("Lab", {"models": "plain20,resnet20", "steps": "20"}),
                        ("Lab", {"run": submitted.run_id}), ("Architecture", {"models": "resnet1202"}),
                        ("Compare", {}), ("Gradients", {}), ("Classroom", {})]:
        app = AppTest.from_string("from explorer.ui import nav\\nfrom pages import PAGES\\nnav.register(PAGES)\\n"
                                  f"from pages.{page} import page\\npage()", default_timeout=120)
        app.query_params.update(query)
        app.run()
        assert not app.exception, (page, app.exception)
        no_torch(f"rendering {page} {query}")
    print("torch-free")
''')


def test_the_web_server_never_imports_torch(tmp_path):
    env = {**os.environ, "EXPLORER_STORE": str(tmp_path / "app.sqlite"), "EXPLORER_WORKERS": "0",
           "EXPLORER_DATA_DIR": str(tmp_path / "data"), "EXPLORER_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs.sqlite")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "torch-free" in done.stdout, done.stderr[-3000:]
