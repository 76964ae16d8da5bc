"""Hostile input: how the command line and the app's links of a checkout answer bad values, counted case by case.

About 330 command lines (every subcommand and flag, hostile configuration files, broken stores, unwritable
outputs) run as ``python -m explorer ...`` with the checkout first on the path, each in a scratch folder with its
own run store and data folder, under a memory cap and a timeout; anything that could train is shrunk to one step
of ResNet-8 on 20 synthetic images unless the shrinking flags are the point. About 170 links (every URL key of
the five pages: negative, zero, NaN, inf and 1e309 numbers, server paths, markdown, 100k-character strings,
unknown and repeated keys, a few with Train pressed) open the checkout's pages in `streamlit.testing.v1.AppTest`,
in a worker process whose working folder and path are the checkout, so its `explorer` package is the one tested.

Every case ends as one of:

- ``clean``: exit 0, or a handled refusal (exit 2, or 1, without a traceback); a link that shows no traceback.
- ``traceback``: "Traceback" on stderr, an exit code outside {0, 1, 2} or a signal; on a page an exception
  element, or AppTest raising.
- ``hang``: past the timeout (default 60 s per command or page run).
- ``accepted_bad``: a case tagged "must refuse" (out of range, a server path as data, an empty model list, ...)
  that exits 0, or whose page shows no new error or warning mentioning the key or value.
- ``markdown_injection``: user text rendered as a live markdown link or image (``[..](..)``, ``![..](..)``,
  ``<https://..>`` or a reference definition, outside code spans) in a markdown, caption, alert or heading body.

Target: a hardened checkout has no traceback, hang, accepted_bad or markdown_injection. The cases are in
`bench.fuzz_cases`; their ids (``cli-001``, ``link-001``) stay stable while those lists do.

    python -m bench.fuzz --checkout /path/to/checkout --out bench/fuzz-result.json
    python -m bench.fuzz --checkout . --only link --match data=    # a subset, e.g. while fixing one thing

Run it from the folder holding `bench/`; nothing of `explorer` is imported into this process. One case runs at a
time; the whole run takes 30-45 minutes on 2 CPU cores (41 for the original code on a busy machine), most of it
in the commands' start-up (~3 s each, torch included) and their timeouts. A loaded machine turns slow refusals
into hangs: rerun those cases with ``--match ID --timeout 300`` before calling them hangs. ``--env
EXPLORER_HOSTED=1`` passes settings to both the commands and the app.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTCOMES = ("clean", "traceback", "hang", "accepted_bad", "markdown_injection")
HOSTILE_MARKERS = ("example.com", "evil.example", "javascript:")
MAX_TEXT = 200


# --- small helpers -------------------------------------------------------------------------------------------
def clip(text: Any, limit: int = MAX_TEXT) -> str:
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"


def last_line(*texts: str) -> str:
    """The last non-empty line of the first text that has one (a progress bar's last \\r segment)."""
    for text in texts:
        lines = [line.split("\r")[-1].strip() for line in text.splitlines()]
        lines = [line for line in lines if line]
        if lines:
            return clip(lines[-1], 300)
    return ""


def limit_memory(gigabytes: float):
    def apply() -> None:
        cap = int(gigabytes * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return apply


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def base_env(checkout: Path, extra: dict[str, str]) -> dict[str, str]:
    """This environment without the operator's own store, data or path settings, the checkout first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLORER_") and k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(checkout), PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def git_status(checkout: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--ignored"], capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None


# --- the command line ----------------------------------------------------------------------------------------
class CliRunner:
    def __init__(self, checkout: Path, scratch: Path, timeout: float, mem_gb: float, extra_env: dict[str, str],
                 cwd_mode: str) -> None:
        self.checkout, self.scratch, self.timeout, self.mem_gb = checkout, scratch, timeout, mem_gb
        self.extra_env, self.cwd_mode = extra_env, cwd_mode
        self.store_flag: dict[str, bool] = {}  # "" (top level) or a subcommand -> whether its help offers --store
        self.subcommands: list[str] = []
        self.seed_store: Path | None = None
        self.run_id = "nosuchrun-seeding-failed"
        self.notes: list[str] = []

    def _exec(self, argv: list[str], folder: Path, store: Path, timeout: float) -> dict:
        data = folder / "data"
        data.mkdir(exist_ok=True)
        work = folder / "work"
        work.mkdir(exist_ok=True)
        env = base_env(self.checkout, self.extra_env)
        env.update(EXPLORER_STORE=str(store), EXPLORER_DATA_DIR=str(data), HOME=str(folder))
        cwd = self.checkout if self.cwd_mode == "checkout" else work
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "explorer", *argv], cwd=cwd, env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True, preexec_fn=limit_memory(self.mem_gb))
        timed_out = False
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(process)
            out, err = process.communicate()
        kill_group(process)  # a trainer's helpers must not outlive their command
        return {"rc": process.returncode, "stdout": out.decode("utf-8", "replace"),
                "stderr": err.decode("utf-8", "replace"), "timed_out": timed_out,
                "seconds": round(time.perf_counter() - started, 2)}

    def prepare(self) -> None:
        """Learn which subcommands exist and where --store goes, and store one tiny run for the export cases."""
        folder = Path(tempfile.mkdtemp(prefix="help-", dir=self.scratch))
        result = self._exec(["--help"], folder, folder / "store.sqlite", self.timeout)
        text = result["stdout"]
        match = re.search(r"\{([\w,-]+)\}", text)
        self.subcommands = match[1].split(",") if match else []
        self.store_flag[""] = "--store" in text
        if result["rc"] != 0:
            self.notes.append(f"`--help` exited {result['rc']}: {last_line(result['stderr'])}")
        seed = self.scratch / "seed"
        seed.mkdir()
        self.seed_store = seed / "store.sqlite"
        argv = self.with_store(["train", "--models", "resnet8", "--steps", "1", "--subset", "20", "--test", "20",
                                "--data", "synthetic"], self.seed_store, seed)
        result = self._exec(argv, seed, self.seed_store, max(self.timeout, 120))
        run_id = last_line(result["stdout"])
        if result["rc"] == 0 and re.fullmatch(r"[\w.-]+", run_id):
            self.run_id = run_id
        else:
            self.notes.append(f"seeding a run for the export cases failed (exit {result['rc']}): "
                              f"{last_line(result['stderr'])}")
        if not self.seed_store.exists():
            self.seed_store = None

    def _sub_has_store(self, command: str, folder: Path) -> bool:
        if command not in self.store_flag:
            result = self._exec([command, "--help"], folder, folder / "help.sqlite", self.timeout)
            self.store_flag[command] = result["rc"] == 0 and "--store" in result["stdout"]
        return self.store_flag[command]

    def with_store(self, argv: list[str], store: Path, folder: Path) -> list[str]:
        """`argv` with ``--store STORE`` where the checkout accepts it (top level, else after the subcommand)."""
        if self.store_flag.get(""):
            return ["--store", str(store), *argv]
        position = next((i for i, a in enumerate(argv) if a in self.subcommands), None)
        if position is not None and self._sub_has_store(argv[position], folder):
            return [*argv[:position + 1], "--store", str(store), *argv[position + 1:]]
        return argv

    def run(self, case: dict) -> dict:
        folder = Path(tempfile.mkdtemp(prefix="case-", dir=self.scratch))
        store = folder / "store.sqlite"
        fixture = case.get("store")
        if fixture is None and self.seed_store is not None:
            shutil.copy(self.seed_store, store)
        elif fixture == "dir":
            store.mkdir()
        elif fixture == "corrupt":
            store.write_bytes(random.Random(1).randbytes(65536))
        elif fixture == "wrong_schema":
            with sqlite3.connect(store) as db:
                db.execute("CREATE TABLE runs (x TEXT)")
                db.execute("CREATE TABLE steps (y BLOB)")
        elif fixture == "empty":
            store.write_bytes(b"")
        for name, content in case.get("files", {}).items():
            (folder / name).write_bytes(content)
        places = {"{tmp}": str(folder), "{store}": str(store), "{run}": self.run_id, "{data}": str(folder / "data")}
        argv = []
        for arg in case["argv"]:
            for key, value in places.items():
                arg = arg.replace(key, value)
            argv.append(arg)
        if not case.get("own_store"):
            argv = self.with_store(argv, store, folder)
        result = self._exec(argv, folder, store, case.get("timeout", self.timeout))
        shutil.rmtree(folder, ignore_errors=True)
        err = result["stderr"]
        if result["timed_out"]:
            outcome = "hang"
        elif "Traceback (most recent call last)" in err or result["rc"] not in (0, 1, 2):
            outcome = "traceback"
        elif case["must_refuse"] and result["rc"] == 0:
            outcome = "accepted_bad"
        else:
            outcome = "clean"
        notes = []
        if result["rc"] == 2 and not result["timed_out"]:
            lines = [line for line in err.split("\n") if line.strip()]  # progress bars redraw with \r
            if len(lines) > 3:
                notes.append(f"refusal is {len(lines)} lines")
            if len(err) > 2000:
                notes.append(f"refusal is {len(err)} characters")
        if result["rc"] == 1 and outcome == "clean":
            notes.append("exit 1 without a traceback")
        shown = [clip(a.replace(str(folder), "{tmp}"), 80) for a in argv]
        line = last_line(err, result["stdout"]).replace(str(folder), "{tmp}")
        if outcome == "traceback":
            errors = [x for x in err.splitlines() if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b", x)]
            line = clip(errors[-1].replace(str(folder), "{tmp}"), 300) if errors else line
        return {"argv": shown, "rc": result["rc"], "outcome": outcome, "seconds": result["seconds"],
                "last_line": line, "files": {n: len(c) for n, c in case.get("files", {}).items()}, "notes": notes}


# --- links: the worker (runs in its own process, cwd and path = the checkout) -----------------------------------
MARKDOWN_KINDS = ("markdown", "caption", "error", "warning", "info", "success", "title", "header", "subheader",
                  "toast")
ALERT_KINDS = ("error", "warning", "toast")


def _observe(at, root: Path) -> dict:
    seen: dict[str, Any] = {}
    for kind in MARKDOWN_KINDS:
        try:
            seen[kind] = [str(e.value) for e in getattr(at, kind)]
        except Exception:  # an element kind this streamlit lacks
            seen[kind] = []
    seen["exception"] = []
    for e in at.exception:
        frames = [entry.strip().splitlines()[0] for entry in getattr(e, "stack_trace", []) if 'File "' in entry]
        frames = [f for f in frames if str(root) in f] or frames  # the checkout's innermost frame
        seen["exception"].append({"message": str(e.value), "markdown": bool(getattr(e, "is_markdown", False)),
                                  "where": frames[-1] if frames else ""})
    seen["query_after"] = {k: (v if isinstance(v, str) else list(v)) for k, v in at.query_params.items()}
    return seen


def page_path(checkout: Path, name: str) -> str | None:
    """The page file of a page name: pages/N_Name.py in the original layout, else any file named after it."""
    for pattern in (f"pages/*_{name}.py", f"pages/{name}.py", f"pages/{name.lower()}.py", f"**/*_{name}.py",
                    f"**/{name.lower()}.py"):
        hits = sorted(p for p in checkout.glob(pattern)
                      if not {".venv", "tests", "bench", "site-packages"} & set(p.relative_to(checkout).parts))
        if hits:
            return str(hits[0].relative_to(checkout))
    return None


def link_worker(cases_file: str, results_file: str, start: int, checkout: str, timeout: float) -> None:
    """Run link cases from `start` on, one JSON line each; stop before a Train case (each gets a fresh process)
    and after a timeout (the script thread may still run)."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    original = PagesManager.__init__

    def served(self, *args, **kwargs):  # as on a server whose entry script already called st.navigation
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = served
    root = Path(checkout)
    cases = json.loads(Path(cases_file).read_text())
    with open(results_file, "a", encoding="utf-8") as results:
        def emit(record: dict) -> None:
            results.write(json.dumps(record) + "\n")
            results.flush()

        for index in range(start, len(cases)):
            case = cases[index]
            if case["train"] and index > start:
                emit({"stop": index})
                break
            record: dict[str, Any] = {"index": index, "observations": [], "raised": None, "timed_out": False}
            started = time.perf_counter()
            try:
                at = AppTest.from_file(str(root / "streamlit_app.py"), default_timeout=timeout)
                at.query_params = dict(case["query"])
                path = page_path(root, case["page"])
                record["page_file"] = path
                if path:
                    at.switch_page(path)
                at.run()
                record["observations"].append(_observe(at, root))
                if case["train"]:
                    at.button(key="train").click().run()
                    record["observations"].append(_observe(at, root))
                    time.sleep(3)
                    at.run()
                    record["observations"].append(_observe(at, root))
            except RuntimeError as error:
                record["timed_out"] = "timed out" in str(error)
                record["raised"] = f"{type(error).__name__}: {error}"
            except BaseException as error:  # noqa: BLE001 - everything the run raises is an outcome
                record["raised"] = f"{type(error).__name__}: {error}"
            record["seconds"] = round(time.perf_counter() - started, 2)
            module = sys.modules.get("explorer")
            record["explorer_from"] = getattr(module, "__file__", None)
            emit(record)
            if record["timed_out"] or case["train"]:
                break
    os._exit(0)  # a training thread must not keep the process alive


# --- links: the parent --------------------------------------------------------------------------------------
CODE = re.compile(r"```.*?```|(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"(?<!\\)!?\[(?:[^\]\\\n]|\\.)*\]\(\s*<?(?:https?:|javascript:|data:|//)[^)\n]*\)", re.I)
REFERENCE = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*\S+", re.M)
AUTOLINK = re.compile(r"<(?:https?|javascript):[^>\s]+>", re.I)
BARE_URL = re.compile(r"(?<![<(\[/])https?://(?:example\.com|evil\.example)", re.I)


def injected(body: str) -> str | None:
    """The live link or image that user text made in a markdown body, if any (code spans excluded)."""
    text = CODE.sub(" ", body)
    for pattern in (LINK, REFERENCE, AUTOLINK):
        for match in pattern.finditer(text):
            if any(marker in match[0].lower() for marker in HOSTILE_MARKERS):
                return match[0]
    return None


class LinkRunner:
    def __init__(self, checkout: Path, scratch: Path, timeout: float, mem_gb: float,
                 extra_env: dict[str, str]) -> None:
        self.checkout, self.scratch, self.timeout, self.mem_gb = checkout, scratch, timeout, mem_gb
        self.env = base_env(checkout, extra_env)
        (scratch / "app-data").mkdir()
        self.env.update(EXPLORER_STORE=str(scratch / "app-store.sqlite"), EXPLORER_DATA_DIR=str(scratch / "app-data"),
                        HOME=str(scratch))
        self.log = scratch / "link-worker.log"
        self.notes: list[str] = []

    def run_all(self, cases: list[dict], progress) -> list[dict]:
        cases_file = self.scratch / "links.json"
        cases_file.write_text(json.dumps(cases))
        records: dict[int, dict] = {}
        index = 0
        while index < len(cases):
            results_file = self.scratch / f"links-{index}.jsonl"
            with open(self.log, "ab") as log:
                worker = subprocess.Popen(
                    [sys.executable, str(HERE / "fuzz.py"), "--link-worker", str(cases_file), str(results_file),
                     str(index), str(self.checkout), str(self.timeout)],
                    cwd=self.checkout, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True, preexec_fn=limit_memory(self.mem_gb))
            current, read, stop = index, 0, None
            last = time.monotonic()
            startup = 90.0
            while True:
                exited = worker.poll() is not None
                lines = results_file.read_text().splitlines() if results_file.exists() else []
                for line in lines[read:]:
                    record = json.loads(line)
                    if "stop" in record:
                        stop = record["stop"]
                        continue
                    records[record["index"]] = record
                    progress(record["index"], record)
                    current, last, startup = record["index"] + 1, time.monotonic(), 0.0
                read = len(lines)
                if exited:
                    break
                if current < len(cases):
                    runs = 2 if cases[current]["train"] else 1
                    if time.monotonic() - last > self.timeout * runs + 45 + startup:
                        kill_group(worker)
                        worker.wait()
                        records[current] = {"index": current, "observations": [], "timed_out": True,
                                            "raised": f"no answer within {self.timeout * runs + 45 + startup:.0f} s: "
                                                      "worker killed", "seconds": None}
                        progress(current, records[current])
                        current += 1
                        break
                time.sleep(0.2)
            kill_group(worker)
            if stop is not None:
                current = stop
            elif current < len(cases) and current not in records and worker.returncode not in (None, 0):
                records[current] = {"index": current, "observations": [], "timed_out": False,
                                    "raised": f"worker died with exit {worker.returncode} (killed for memory?)",
                                    "seconds": None}
                progress(current, records[current])
                current += 1
            elif current == index and current not in records:
                self.notes.append(f"link worker made no progress at case {current}; see {self.log}")
                records[current] = {"index": current, "observations": [], "timed_out": False,
                                    "raised": "worker made no progress", "seconds": None}
                current += 1
            index = current
        return [records[i] for i in range(len(cases))]


def classify_link(case: dict, record: dict, baseline: dict[str, set[str]]) -> dict:
    observations = record.get("observations", [])
    exceptions = [e for obs in observations for e in obs.get("exception", [])]
    alerts = [text for obs in observations for kind in ALERT_KINDS for text in obs.get(kind, [])]
    new_alerts = list(dict.fromkeys(t for t in alerts if t not in baseline.get(case["page"], set())))
    bodies = [text for obs in observations for kind in MARKDOWN_KINDS for text in obs.get(kind, [])]
    bodies += [e["message"] for e in exceptions if e.get("markdown")]
    injection = next((hit for body in bodies if (hit := injected(body))), None)
    notes = []
    if any(BARE_URL.search(CODE.sub(" ", body)) for body in bodies):
        notes.append("a bare URL from the link is rendered (GFM autolinks it)")
    if any(re.search(r":(red|blue|green|orange|violet|gray|rainbow)\[alert\]", CODE.sub(" ", b)) for b in bodies):
        notes.append("a :color[..] directive from the link is rendered")
    mentions = [m.lower() for m in case.get("mention", []) if m]
    # Escaped markdown ("weight\\_decay \\-1") reads without its backslashes in a browser: match what a user reads.
    refused = [t for t in new_alerts if any(m in re.sub(r"\\(.)", r"\1", t).lower() for m in mentions)]
    if record.get("timed_out"):
        outcome, line = "hang", record.get("raised") or "timed out"
    elif exceptions or record.get("raised"):
        outcome = "traceback"
        line = (f"{exceptions[0]['message']} ({exceptions[0]['where']})" if exceptions else record["raised"])
    elif injection:
        outcome, line = "markdown_injection", injection
    elif case["must_refuse"] and not refused:
        outcome = "accepted_bad"
        line = (f"no error or warning names it; new alerts: {new_alerts[0]}" if new_alerts
                else "no new error or warning")
    else:
        outcome = "clean"
        line = refused[0] if refused else (new_alerts[0] if new_alerts else "")
    after = observations[-1]["query_after"] if observations else {}
    return {"page": case["page"], "page_file": record.get("page_file"),
            "query": {clip(k, 60): clip(v if isinstance(v, str) else v, 120) for k, v in case["query"].items()},
            "train": case["train"], "outcome": outcome, "seconds": record.get("seconds"),
            "last_line": clip(line, 300), "new_alerts": [clip(t, 200) for t in new_alerts[:3]],
            "query_after": {clip(k, 40): clip(v, 80) for k, v in list(after.items())[:12]}, "notes": notes,
            "explorer_from": record.get("explorer_from")}


# --- reporting ------------------------------------------------------------------------------------------------
def summary_rows(results: list[dict]) -> dict[str, dict[str, int]]:
    rows: dict[str, dict[str, int]] = {}
    for kind in ("cli", "link"):
        mine = [r for r in results if r["kind"] == kind]
        if mine:
            rows[kind] = {"tried": len(mine), **{o: sum(r["outcome"] == o for r in mine) for o in OUTCOMES}}
    return rows


def print_table(rows: dict[str, dict[str, int]]) -> None:
    header = ["kind", "tried", *OUTCOMES]
    table = [header] + [[kind, *(str(row[h]) for h in header[1:])] for kind, row in rows.items()]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if i == 0:
            print("-|-".join("-" * w for w in widths))


def describe_case(r: dict) -> str:
    if r["kind"] == "cli":
        target = "python -m explorer " + " ".join(a if a and " " not in a else repr(a) for a in r["argv"])
    else:
        query = "&".join(f"{k}={v}" for k, v in r["query"].items())
        target = f"/{r['page']}?{query}" + (" + Train" if r["train"] else "")
    flat = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
    return f"{r['id']} [{r['outcome']}] {clip(target.translate(flat), 160)}\n      -> {r['last_line'].translate(flat)}"


def write_json(path: Path, payload: dict) -> None:
    """One case per line, so a before/after diff reads case by case."""
    cases = payload.pop("cases")
    head = json.dumps(payload, indent=1, ensure_ascii=False)
    body = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
    path.write_text(head[:-2] + ',\n "cases": [\n' + body + "\n ]\n}\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--link-worker":
        # run as a script, bench/ is first on the path: its modules (sweep.py, ...) must not shadow anything
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
        cases_file, results_file, start, checkout, timeout = sys.argv[2:7]
        link_worker(cases_file, results_file, int(start), checkout, float(timeout))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, required=True, help="the checkout to fuzz (its streamlit_app.py, "
                        "explorer/ and pages)")
    parser.add_argument("--only", choices=["cli", "link"], help="only the command lines or only the links")
    parser.add_argument("--out", type=Path, help="write every case and its outcome here (JSON)")
    parser.add_argument("--limit", type=int, help="only the first N cases of each kind")
    parser.add_argument("--match", action="append", default=[], metavar="TEXT",
                        help="only cases whose id is TEXT or whose description, argv or query contains it "
                        "(repeatable: any of them)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per command or page run (default 60)")
    parser.add_argument("--mem-gb", type=float, default=8.0, help="address-space cap per process (default 8)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment setting for the commands and the app (repeatable)")
    parser.add_argument("--cli-cwd", choices=["scratch", "checkout"], default="scratch",
                        help="where commands run: a scratch folder per case (default; relative outputs such as "
                        "reports/ stay out of the checkout) or the checkout itself")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the scratch folder (logs, stores)")
    args = parser.parse_args(argv)

    checkout = args.checkout.resolve()
    if not (checkout / "explorer").is_dir() or not (checkout / "streamlit_app.py").is_file():
        parser.error(f"{checkout} has no explorer/ package or streamlit_app.py")
    extra_env = dict(item.split("=", 1) for item in args.env)
    gpu = Path("/dev/nvidia0").exists()
    sys.path.insert(0, str(HERE.parent))
    from bench.fuzz_cases import cli_cases, link_cases

    def chosen(cases: list[dict], prefix: str) -> list[tuple[str, dict]]:
        named = [(f"{prefix}-{i + 1:03d}", c) for i, c in enumerate(cases)]
        if args.match:
            named = [(n, c) for n, c in named if any(
                m == n or m in c["why"] or m in json.dumps(c.get("argv") or c.get("query"), ensure_ascii=False)
                for m in args.match)]
        return named[:args.limit] if args.limit else named

    scratch = Path(tempfile.mkdtemp(prefix="explorer-fuzz-"))
    before = git_status(checkout)
    started = time.perf_counter()
    results: list[dict] = []
    notes: list[str] = []
    timings: dict[str, float] = {}
    try:
        if args.only in (None, "cli"):
            t0 = time.perf_counter()
            runner = CliRunner(checkout, scratch, args.timeout, args.mem_gb, extra_env, args.cli_cwd)
            runner.prepare()
            notes += runner.notes
            cases = chosen(cli_cases(gpu), "cli")
            print(f"{len(cases)} command lines; subcommands {','.join(runner.subcommands)}; --store "
                  f"{'accepted' if runner.store_flag.get('') else 'per subcommand'}", file=sys.stderr)
            for n, (case_id, case) in enumerate(cases, 1):
                result = {"id": case_id, "kind": "cli", "why": clip(case["why"], 120),
                          "must_refuse": case["must_refuse"], **runner.run(case)}
                results.append(result)
                print(f"[{n}/{len(cases)}] {case_id} {result['outcome']:18s} {result['seconds']:6.1f}s "
                      f"{clip(case['why'], 70)}", file=sys.stderr, flush=True)
            timings["cli_s"] = round(time.perf_counter() - t0, 1)
        if args.only in (None, "link"):
            t0 = time.perf_counter()
            named = chosen(link_cases(gpu), "link")
            named.sort(key=lambda item: item[1]["train"])  # Train cases last: they leave runs in the store
            ids = [n for n, _ in named]
            cases = [c for _, c in named]
            print(f"{len(cases)} links", file=sys.stderr)
            links = LinkRunner(checkout, scratch, args.timeout, args.mem_gb, extra_env)

            def progress(index: int, record: dict) -> None:
                state = "hang" if record.get("timed_out") else "raised" if record.get("raised") else "ran"
                print(f"[{index + 1}/{len(cases)}] {ids[index]} {state:6s} {record.get('seconds') or 0:6.1f}s "
                      f"{clip(cases[index]['why'], 70)}", file=sys.stderr, flush=True)

            records = links.run_all(cases, progress)
            baseline: dict[str, set[str]] = {}
            for case, record in zip(cases, records):
                if not case["query"] and not case["train"]:
                    for obs in record.get("observations", [])[:1]:
                        baseline.setdefault(case["page"], set()).update(t for k in ALERT_KINDS for t in obs.get(k, []))
            for case_id, case, record in zip(ids, cases, records):
                results.append({"id": case_id, "kind": "link", "why": clip(case["why"], 120),
                                "must_refuse": case["must_refuse"], **classify_link(case, record, baseline)})
            wrong = {r["explorer_from"] for r in results if r["kind"] == "link" and r.get("explorer_from")
                     and not str(r["explorer_from"]).startswith(str(checkout))}
            if wrong:
                notes.append(f"WARNING: the app imported explorer from {sorted(wrong)}, not from {checkout}")
            notes += links.notes
            timings["link_s"] = round(time.perf_counter() - t0, 1)
    finally:
        after = git_status(checkout)
        if before is not None and after != before:
            notes.append("the checkout's git status changed during the run: " + clip(after, 400))
        if args.keep_scratch:
            notes.append(f"scratch kept at {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    total = round(time.perf_counter() - started, 1)
    rows = summary_rows(results)
    print()
    print_table(rows)
    print(f"\n{total:.0f} s in all ({', '.join(f'{k} {v:.0f}' for k, v in timings.items())})")
    for result in results:
        if result["outcome"] != "clean":
            print(describe_case(result))
    for note in notes:
        print(f"note: {note}")
    if args.out:
        write_json(args.out, {"checkout": str(checkout), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "python": sys.version.split()[0], "gpu": gpu, "timeout_s": args.timeout,
                              "mem_gb": args.mem_gb, "env": extra_env, "cli_cwd": args.cli_cwd,
                              "seconds": total, **timings, "summary": rows, "notes": notes, "cases": results})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
