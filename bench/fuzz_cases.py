"""The hostile inputs of `bench.fuzz`: command lines (with configuration files) and app links, each tagged with
whether a hardened app must refuse it.

A CLI case is a dict: ``argv`` (placeholders ``{tmp}`` the case's scratch folder, ``{store}`` its run store,
``{run}`` a stored run id, ``{data}`` its data folder), ``files`` (name -> bytes, written into ``{tmp}`` first),
``must_refuse`` (exit 0 is then "accepted_bad"), ``why`` and optionally ``timeout``, ``store`` (a broken store
fixture: corrupt, text, dir, wrong_schema, empty) and ``own_store`` (the case sets ``--store`` itself).

A link case is a dict: ``page`` (Learn, Lab, Architecture, Compare, Gradients), ``query`` (key -> str, or a list
of str for a repeated key), ``must_refuse`` with ``mention`` (words one of the page's new errors or warnings must
contain for the value to count as refused), ``train`` (press Train, then look again) and ``why``.

Everything here is plain data, chosen from the public surface only (``python -m explorer --help``, the URL keys
of `explorer.config.QUERY_KEYS` as of the original code, the pages' names), so the same cases run against any
checkout. Nothing is imported from `explorer`.
"""

from __future__ import annotations

import json
import math
import random

BIG = "x" * 100_000
HOSTILE_LINK = "[click me](https://example.com)"
HOSTILE_IMAGE = "![i](https://example.com/x.png)"
SQL = "' OR '1'='1'; DROP TABLE runs; --"
UNICODE = "résnet ☃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u202eevil\u202c 中文"
CONTROL = "a\x01b\x1b[31mred\x1b[0m\x7fc\td"
TINY = {"--models": "resnet8", "--steps": "1", "--subset": "20", "--test": "20", "--data": "synthetic"}
ARCH_FLAGS = ("--family", "--depth", "--width", "--block", "--shortcut", "--variant", "--order", "--init",
              "--no-bn", "--zero-init")

# URL key (and CLI flag) -> (kind, lowest, highest) of a value a hardened app may accept; outside it must refuse.
NUMERIC: dict[str, tuple[str, float, float]] = {
    "subset": ("int", 10, 50_000),          # CIFAR-10 has 50,000 training images
    "test": ("int", 10, 10_000),            # and 10,000 test images
    "data_seed": ("int", -2**63, 2**64 - 1),
    "lr": ("float", 1e-6, 100.0),
    "momentum": ("float", 0.0, 0.999),
    "wd": ("float", 0.0, 0.1),
    "batch": ("int", 1, 4096),
    "warmup": ("float", 0.0, 1000.0),
    "epochs": ("float", 0.0, 10_000.0),
    "steps": ("int", 0, 10_000_000),
    "threads": ("int", 0, 256),
    "probe": ("int", 0, 1_000_000),
    "eval": ("int", 0, 1_000_000),
    "seed": ("int", -2**63, 2**64 - 1),     # torch.manual_seed takes up to 2**64-1
}
ALIASES = {  # words a message may use for a URL key
    "subset": ["training images"], "test": ["test_subset", "test images"], "data_seed": ["seed"],
    "lr": ["learning rate"], "wd": ["weight_decay", "weight decay"], "batch": ["batch_size", "batch size"],
    "warmup": ["warmup_epochs", "warm-up"], "epochs": ["nothing to train"], "steps": ["nothing to train"],
    "probe": ["probe_every"], "eval": ["eval_every"], "opt": ["optimizer"], "data": ["data source", "data set"],
    "models": ["model", "depth"], "classes": ["class"], "device": ["cuda", "gpu"], "name": ["name"],
    "run": ["run"], "runs": ["run"],
}
HOSTILE_NUMBERS = ("-1", "0", "nan", "inf", "1e309")
INT_EXTRAS = ("10.5", "18446744073709551616")
FLOAT_EXTRAS = ("-inf",)
SERVER_PATHS = ("/etc", "/tmp", "../../", "/", "~", "file:///etc/passwd", "/proc/self", "/dev/zero")


def bad_number(key: str, text: str, steps_set: bool = False) -> bool:
    """Whether a hardened app must refuse `text` for the numeric URL key `key`."""
    kind, low, high = NUMERIC[key]
    if kind == "int":
        if not text.strip().lstrip("+-").isascii() or not text.strip().lstrip("+-").isdigit():
            return True
        value: float = int(text)
    else:
        try:
            value = float(text)
        except ValueError:
            return True
        if not math.isfinite(value):
            return True
    if key == "lr" and value <= 0:
        return True
    if key == "epochs" and value == 0 and not steps_set:
        return True
    return not (low <= value <= high)


def _train(*hostile: str, drop: tuple[str, ...] = ()) -> list[str]:
    """``train`` with the hostile flags, made tiny by every TINY flag the case does not set itself."""
    given = set(hostile) | set(drop)
    if given & set(ARCH_FLAGS):
        given.add("--models")
    tiny = [x for flag, value in TINY.items() if flag not in given for x in (flag, value)]
    return ["train", *hostile, *tiny]


def _cli(argv: list[str], why: str, must_refuse: bool = False, **extra) -> dict:
    return {"argv": argv, "why": why, "must_refuse": must_refuse, **extra}


def _json_file(payload) -> bytes:
    return json.dumps(payload).encode()


def _tiny_config(**overrides) -> dict:
    """A configuration that trains one step of ResNet-8 on 20 synthetic images, with `overrides` merged in."""
    config = {"models": ["resnet8"], "data": {"source": "synthetic", "subset": 20, "test_subset": 20},
              "optim": {"steps": 1}}
    for key, value in overrides.items():
        if key in ("data", "optim") and isinstance(value, dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def cli_cases(gpu: bool = False) -> list[dict]:
    """About 320 command lines over every subcommand and flag."""
    cases: list[dict] = []
    add = cases.append

    # --- the top level and unknown subcommands ------------------------------------------------------------------
    add(_cli([], "no subcommand"))
    add(_cli(["--help"], "help"))
    add(_cli(["nosuchcommand"], "unknown subcommand"))
    for command in ("worker", "sweep", "landscape"):
        add(_cli([command, "--help"], f"subcommand {command} (new code may add it; else exit 2)"))
    add(_cli(["train", "--no-such-flag", "1"], "unknown flag"))
    add(_cli(["describe", "--models"], "flag without its value"))
    add(_cli(["--store", "/proc/x.sqlite", "runs"], "store in /proc", own_store=True))
    add(_cli(["--store", "/", "runs"], "store is the root folder", own_store=True))
    add(_cli(["--store", "", "runs"], "empty store path", own_store=True))
    add(_cli(["--store", "{tmp}/missing/deep/x.sqlite", "runs"], "store under a missing folder", own_store=True))
    add(_cli(["--store", "{store}", "runs"], "store path is a folder", own_store=True, store="dir"))
    for fixture in ("corrupt", "wrong_schema", "empty"):
        add(_cli(["--store", "{store}", "runs"], f"store file: {fixture}", own_store=True, store=fixture))
    add(_cli(["--store", "{store}", *_train()], "train into a corrupt store", own_store=True, store="corrupt"))
    add(_cli(["--data-dir", "/proc", *_train(drop=("--data",)), "--data", "cifar10"],
             "data dir in /proc with cifar10 (download refused or fails)"))
    add(_cli(["--data-dir", "", *_train()], "empty data dir"))

    # --- describe: every architecture flag -----------------------------------------------------------------------
    def describe(*flags: str, why: str, must_refuse: bool = False) -> None:
        add(_cli(["describe", *flags], why, must_refuse))

    for value in ("", ",,,", ",", " "):
        describe("--models", value, why=f"empty model list --models {value!r} (silently ResNet-20)", must_refuse=True)
    for value in ("resnet2402", "resnet2404", "resnet1208", "plain2402", "resnet1001-bneck", "resnet2003-bneck",
                  "resnet99999999999999999999", "resnet0", "vgg20", "resnet20-X", "resnet20,resnet20",
                  ",".join(f"resnet{6 * n + 2}" for n in range(1, 18)), "resnet20-w0", "resnet20-w3", SQL, UNICODE,
                  BIG, HOSTILE_LINK):
        describe("--models", value, why=f"--models {value[:40]!r}",
                 must_refuse=value not in ("resnet1001-bneck", "RESNET20", "resnet٢٠"))
    for value in ("", ",,,", "0", "-1", "1208", "2402", "2404", "99999999999999999999", "20.5", "nan", "abc",
                  "20,,56"):
        refuse = value not in ("20,,56",)
        describe("--depth", value, why=f"--depth {value!r}", must_refuse=refuse)
    describe("--depth", "1202", why="depth 1202, the deepest supported net (valid)")
    for value in ("", "0", "-1", "nan", "inf", "3"):
        describe("--width", value, why=f"--width {value!r}", must_refuse=True)
    for flag, values in {"--family": ("", "RESNET", "vgg", SQL), "--block": ("", "bottleneck", "x"),
                         "--shortcut": ("", "D"), "--variant": ("",), "--order": ("",), "--init": ("",)}.items():
        for value in values:  # either answer is fine for a family or block whose default depth does not fit
            either = (flag, value) in (("--family", "vgg"), ("--block", "bottleneck"), ("--shortcut", "a"))
            describe(flag, value, why=f"{flag} {value[:40]!r}", must_refuse=not either)
    describe("--models", "resnet20", "--depth", "56", why="labels and architecture flags together", must_refuse=True)
    describe("--family", "vgg", "--depth", "16", "--no-bn", "--zero-init", why="vgg with residual-only flags")
    describe("--models", "resnet1202-w4", "--json", why="ResNet-1202 at width 4 (describe only)")
    for value in ("", "nosuch", "../../etc/passwd", HOSTILE_LINK):
        describe("--preset", value, why=f"--preset {value[:40]!r}", must_refuse=True)
    describe("--preset", "degradation", "--json", why="a valid preset (control)")

    # --- train: every run-setting flag ---------------------------------------------------------------------------
    for key, (kind, _, _) in NUMERIC.items():
        flag = "--" + key.replace("_", "-")
        values = HOSTILE_NUMBERS + (INT_EXTRAS if kind == "int" else FLOAT_EXTRAS)
        for value in values:
            refuse = bad_number(key, value, steps_set=key != "steps")
            add(_cli(_train(flag, value), f"{flag} {value}", refuse))
    for flag, value in (("--seed", "1e30"), ("--seed", "abc"), ("--lr", ""), ("--subset", ""), ("--subset", "300000"),
                        ("--test", "100000"), ("--batch", "100000"), ("--threads", "100000"), ("--probe", "1"),
                        ("--subset", "٢٠")):
        key = flag[2:].replace("-", "_")
        refuse = bad_number(key, value, steps_set=True) if key in NUMERIC else True
        add(_cli(_train(flag, value), f"{flag} {value!r}", refuse))
    add(_cli(_train("--models", "resnet1202-w4", "--batch", "128"), "ResNet-1202 at width 4 trained",
             must_refuse=True))
    add(_cli(_train("--models", ",".join(["resnet1202", "plain1202"])), "two 1202-layer nets", must_refuse=True))
    add(_cli(_train("--steps", "10000000", "--budget", "5"), "ten million steps under a 5 s budget (must stop)"))
    for value in ("nan", "-1", "-inf", "0", "inf", "abc"):
        refuse = value in ("nan", "-1", "-inf")
        add(_cli(_train("--budget", value), f"--budget {value!r}", refuse))
    add(_cli(_train("--steps", "100000", "--budget", "nan"), "--budget nan on a long run (ignored: trains on)",
             must_refuse=True))
    for value in ("/etc", "/tmp", "../../", "", "file:///etc/passwd", "/dev/zero", BIG, "cifar10"):
        refuse = value in ("", BIG, SQL, "/dev/zero", "file:///etc/passwd")
        add(_cli(_train("--data", value), f"--data {value[:40]!r}", refuse))
    for flag, values in {"--opt": ("SGD", "", UNICODE), "--schedule": ("", "linear"), "--device": ("cuda", "tpu", ""),
                         "--classes": ("cat", "cat,cat", "unicorn", ",,,", "cat,dog", BIG),
                         "--augment": ("2", "yes", ""), "--bf16": ("no",)}.items():
        for value in values:
            ok = (flag == "--classes" and value in (",,,", "cat,dog")) or (flag == "--augment" and value == "TRUE") \
                or (flag == "--device" and value == "cuda" and gpu)
            add(_cli(_train(flag, value), f"{flag} {value[:40]!r}", not ok))
    for value in (BIG, HOSTILE_LINK, CONTROL):
        add(_cli(_train("--name", value), f"--name {value[:40]!r} (stored as the run's name)"))

    # --- train --config: hostile configuration files -------------------------------------------------------------
    def config(payload: bytes, why: str, must_refuse: bool = True, command: str = "train", tiny: bool = False,
               **extra) -> None:
        argv = [command, "--config", "{tmp}/config.json"]
        if tiny:
            argv += [x for flag, value in TINY.items() for x in (flag, value)]
        add(_cli(argv, why, must_refuse, files={"config.json": payload}, **extra))

    def field(why: str, must_refuse: bool = True, **overrides) -> None:
        config(_json_file(_tiny_config(**overrides)), why, must_refuse)

    field('"steps": 10.5 (trains for ever)', optim={"steps": 10.5})
    field('"steps": null', optim={"steps": None})
    field('"steps": 1e400', must_refuse=True, optim={"steps": float("inf")})
    field('"steps": -1', optim={"steps": -1})
    field('"steps": true', must_refuse=False, optim={"steps": True})
    field('"batch_size": 10.5', optim={"batch_size": 10.5})
    field('"batch_size": 100000', optim={"batch_size": 100000})
    field('"lr": "0.1"', optim={"lr": "0.1"})
    field('"lr": NaN', optim={"lr": float("nan")})
    field('"epochs": "x"', optim={"epochs": "x", "steps": 0})
    field('"optimizer": 5', optim={"optimizer": 5})
    field('"subset": 20.5', data={"subset": 20.5})
    field('"subset": 300000', data={"subset": 300000})
    field('"test_subset": 20.5', data={"test_subset": 20.5})
    field('"classes": "cat" (a string)', data={"classes": "cat"})
    field('"classes": 5', data={"classes": 5})
    field('"source": 5', data={"source": 5})
    field('"source": ["/etc"]', data={"source": ["/etc"]})
    field('"source": "/etc"', must_refuse=False, data={"source": "/etc"})
    field('"data": "x"', data="x")
    field('data "seed": "abc"', data={"seed": "abc"})
    field('data "seed": 1e30', data={"seed": 1e30})
    field('"augment": "false" (a truthy string)', data={"augment": "false"})
    field('"threads": 2.5', threads=2.5)
    field('"seed": "abc"', seed="abc")
    field('"seed": 1e30', seed=1e30)
    field('"seed": 18446744073709551616', seed=2**64)
    field('"seed": 2.5', seed=2.5)
    field('"device": "cuda"', must_refuse=not gpu, device="cuda")
    field('"bf16": "no"', bf16="no")
    field('"probe_every": 2.5', probe_every=2.5)
    field('"eval_every": 2.5', eval_every=2.5)
    field('"name": 5', name=5)
    field('"name": lone surrogate', must_refuse=False, name="\ud800")
    field('"models": []', models=[])
    field('"models": "resnet20" (a string)', models="resnet20")
    field('"models": [null]', models=[None])
    field('"models": [{"depth": "20"}]', models=[{"depth": "20"}])
    field('"models": [{"depth": 20.0}]', models=[{"depth": 20.0}])
    field('"models": [{"width": "abc"}]', models=[{"width": "abc"}])
    field('"models": [{"depth": 2404}]', models=[{"depth": 2404}])
    field('"models": [{"batchnorm": "no"}]', models=[{"batchnorm": "no"}])
    field("unknown top-level key", foo=1)
    config(b'{"seed": 1, "seed": 2, "models": ["resnet8"], "data": {"subset": 20, "test_subset": 20}, '
           b'"optim": {"steps": 1}}', "repeated key (last wins)", must_refuse=False)
    config(b'{"seed": ' + b"9" * 5000 + b"}", "a 5000-digit integer", tiny=True)
    config(b"[" * 100_000 + b"]" * 100_000, "deeply nested list (RecursionError)")
    config(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "deeply nested object")
    rng = random.Random(0)
    config(bytes(rng.randrange(256) for _ in range(4096)), "binary file")
    config('{"name": "café"}'.encode("latin-1"), "Latin-1 file", must_refuse=True, tiny=True)
    config('{"name": "café"}'.encode("utf-16"), "UTF-16 file", tiny=True)
    config(b"\xef\xbb\xbf" + _json_file({"seed": 1}), "UTF-8 file with a BOM", must_refuse=False, tiny=True)
    config(b'{"name": "a\x00b"}', "raw NUL byte in a string", tiny=True)
    config(b"", "empty file")
    for text in (b"[]", b"null", b"1e999", b"{"):
        config(text, f"top level {text.decode()}")
    config(b"{}", "an empty object, flags make it tiny", must_refuse=False, tiny=True)
    config(_json_file({"name": BIG * 10}), "a 1 MB name", must_refuse=False, tiny=True)
    config(_json_file(_tiny_config()), "describe a valid file (control)", must_refuse=False, command="describe")
    for path, why in (("/dev/zero", "endless file"), ("/proc/self/mem", "unreadable file"), ("/etc", "a folder"),
                      ("/nonexistent.json", "missing file"), ("", "empty path"), ("/dev/null", "empty device")):
        add(_cli(["describe", "--config", path], f"--config {path!r}: {why}", True))

    # --- runs, export ----------------------------------------------------------------------------------------------
    add(_cli(["runs"], "list runs (control)"))
    add(_cli(["runs", "--json"], "list runs as JSON (control)"))
    add(_cli(["runs", "extra"], "runs with a stray argument"))
    add(_cli(["export", "{run}", "--out", "{tmp}/m.csv"], "export a run (control)"))
    add(_cli(["export", "{run}", "--out", "{tmp}/m.parquet", "--format", "parquet"], "export parquet (control)"))
    for out, why in (("/proc/x.csv", "unwritable path"), ("{tmp}", "a folder"), ("", "empty path"),
                     ("/dev/full", "full device"), ("{tmp}/" + "x" * 300 + ".csv", "file name over 255 bytes"),
                     ("/proc/self/x/y.csv", "unwritable folder")):
        add(_cli(["export", "{run}", "--out", out], f"export --out {why}", True))
    add(_cli(["export", "{run}", "--out", "{tmp}/missing/dir/x.csv"], "export --out into a missing folder (made)"))
    add(_cli(["export", "{run}", "--format", "parquet", "--out", "/proc/x.parquet"], "export parquet to /proc", True))
    add(_cli(["export", "{run}", "--format", "xlsx", "--out", "{tmp}/m.xlsx"], "unknown format", True))
    for run_id in ("nosuchrun", "", SQL, "../../etc/passwd", "%", BIG, CONTROL):
        add(_cli(["export", run_id, "--out", "{tmp}/m.csv"], f"export run id {run_id[:40]!r}", True))
    add(_cli(["export", "{run}"], "export without --out", True))

    # --- presets, reproduce, record ----------------------------------------------------------------------------------
    add(_cli(["presets"], "list presets (control)"))
    add(_cli(["presets", "extra"], "presets with a stray argument"))
    for preset in ("nosuch", "", "../../etc/passwd", BIG):
        add(_cli(["reproduce", preset, "--budget", "1", "--out", "{tmp}/r.html"], f"reproduce {preset[:40]!r}", True))
    for value in ("nan", "-1", "abc"):
        add(_cli(["reproduce", "degradation", "--budget", value, "--out", "{tmp}/r.html"],
                 f"reproduce --budget {value!r}", True))
    for value in ("/etc", ""):
        add(_cli(["reproduce", "degradation", "--budget", "1", "--data", value, "--out", "{tmp}/r.html"],
                 f"reproduce --data {value!r}", True))
    add(_cli(["reproduce", "degradation", "--budget", "1", "--out", "/proc/x.html"],
             "reproduce --out unwritable (fails after training)", True, timeout=180))
    for presets, why in ((["degradation", "nosuch"], "one unknown preset"), ([""], "empty preset name")):
        add(_cli(["record", *presets, "--budget", "1", "--data", "synthetic", "--out-dir", "{tmp}/rec"],
                 f"record {why}", True))
    add(_cli(["record", "degradation", "--budget", "nan", "--data", "synthetic", "--out-dir", "{tmp}/rec"],
             "record --budget nan", True))
    add(_cli(["record", "degradation", "--budget", "1", "--data", "/etc", "--out-dir", "{tmp}/rec"],
             "record --data /etc", True))
    add(_cli(["record", "degradation", "--budget", "1", "--data", "synthetic", "--out-dir", "/proc/x"],
             "record --out-dir unwritable (fails after training)", True, timeout=180))
    return cases


# --- links -------------------------------------------------------------------------------------------------------
def _link(page: str, query: dict, why: str, must_refuse: bool = False, mention=None, train: bool = False) -> dict:
    """A link case; a refusal must mention a hostile key (or its aliases) or value (3 to 60 characters), not the
    tiny settings a Train case adds."""
    if mention is None:
        mention = []
        for key, value in query.items():
            if train and TINY_LINK.get(key) == value:
                continue
            mention += [key, *ALIASES.get(key, [])]
            for v in value if isinstance(value, list) else [value]:
                if 3 <= len(v) <= 60:
                    mention.append(v)
    return {"page": page, "query": query, "why": why, "must_refuse": must_refuse, "mention": mention,
            "train": train}


TINY_LINK = {"models": "resnet8", "subset": "20", "test": "20", "steps": "1", "data": "synthetic"}


def link_cases(gpu: bool = False) -> list[dict]:
    """About 160 links over the five pages; the few that press Train come last."""
    cases: list[dict] = []
    add = cases.append
    for page in ("Learn", "Lab", "Architecture", "Compare", "Gradients"):
        add(_link(page, {}, "no query (the page's baseline: its usual warnings do not count as refusals)"))

    # --- the Lab: every numeric key, negative, zero, NaN, inf, 1e309 ---------------------------------------------
    for key in NUMERIC:
        for value in HOSTILE_NUMBERS:
            add(_link("Lab", {key: value}, f"{key}={value}", bad_number(key, value)))
    for key, value in (("subset", "300000"), ("test", "100000"), ("batch", "100000"), ("batch", "10.5"),
                       ("seed", "abc"), ("seed", "1e30"), ("seed", "18446744073709551616"), ("steps", "10.5")):
        add(_link("Lab", {key: value}, f"{key}={value}", bad_number(key, value)))
    # models
    for value in ("", ",,,", "resnet2402", "resnet2404", "resnet1202-w4", "resnet99999999999999999999",
                  ",".join(f"resnet{6 * n + 2}" for n in range(1, 18)), "vgg20", HOSTILE_LINK, HOSTILE_IMAGE, BIG):
        add(_link("Lab", {"models": value}, f"models={value[:40]!r}", value != "resnet1202-w4"))
    # data: server paths and more
    for value in SERVER_PATHS[:6] + ("", BIG):
        add(_link("Lab", {"data": value}, f"data={value[:40]!r} (a server path or junk)", True))
    add(_link("Lab", {"data": "cifar10"}, "data=cifar10 (control)"))
    for key, values in {"device": ("tpu", ""), "opt": ("rmsprop",), "schedule": ("linear",),
                        "classes": ("cat", "unicorn", HOSTILE_LINK), "augment": ("yes",), "bf16": ("nan",)}.items():
        for value in values:
            add(_link("Lab", {key: value}, f"{key}={value[:40]!r}", True))
    add(_link("Lab", {"device": "cuda"}, "device=cuda on this host (before Train)", must_refuse=not gpu))
    for value in (HOSTILE_LINK, HOSTILE_IMAGE, BIG, CONTROL):
        add(_link("Lab", {"name": value}, f"name={value[:40]!r} (shown, never rendered as markdown)"))
    for value in (HOSTILE_LINK, HOSTILE_IMAGE, "[x](javascript:alert(1))", "<https://evil.example/phish>",
                  "https://evil.example/phish", "[a][1]\n\n[1]: https://example.com", SQL, BIG, UNICODE,
                  ":red[alert] **bold** # title"):
        add(_link("Lab", {"run": value}, f"run={value[:40]!r} (an unknown run id)", True))
    # unknown and repeated keys
    for key in ("foo", "MODELS", HOSTILE_LINK, BIG[:5000]):
        add(_link("Lab", {key: "1"}, f"unknown key {key[:40]!r}", True))
    add(_link("Lab", {"models": ["resnet20", "plain20"]}, "repeated models key", False))
    add(_link("Lab", {"subset": ["500", "-1"]}, "repeated subset key, the last one bad", True))
    add(_link("Lab", {"data": ["synthetic", "/etc"]}, "repeated data key, the last a server path", True))
    add(_link("Lab", {"subset": "-1", "models": HOSTILE_LINK, "data": "/etc"}, "three bad values at once", True))
    add(_link("Lab", {"models": "plain20,resnet20", "subset": "500", "epochs": "2"}, "a valid link (control)"))

    # --- Architecture -----------------------------------------------------------------------------------------
    for value in ("resnet2402", "resnet2404", "plain2402", "resnet2003-bneck", "", ",,,", "vgg20", HOSTILE_LINK,
                  HOSTILE_IMAGE, BIG, "resnet99999999999999999999"):
        add(_link("Architecture", {"models": value}, f"models={value[:40]!r}", True))
    add(_link("Architecture", {"models": "resnet1202-w4"}, "ResNet-1202 at width 4 (valid)"))
    add(_link("Architecture", {"models": "resnet164-bneck-pre"}, "a valid bottleneck net (control)"))
    add(_link("Architecture", {"models": ["resnet20", "resnet2402"]}, "repeated models key, the last too deep", True))
    add(_link("Architecture", {"foo": "1"}, "unknown key", True))
    add(_link("Architecture", {"subset": "-1", "models": "resnet56"}, "a bad Lab key on the Architecture page", True))
    add(_link("Architecture", {HOSTILE_LINK: "1"}, "a markdown link as a key name", True))

    # --- Compare, Gradients, Learn -------------------------------------------------------------------------------
    for value in ("nosuchrun", ",,,", HOSTILE_LINK, BIG):
        add(_link("Compare", {"runs": value}, f"runs={value[:40]!r} (unknown run ids)", value != ",,,"))
    add(_link("Compare", {"runs": ["a", "b"]}, "repeated runs key", True))
    add(_link("Compare", {"foo": "1"}, "unknown key"))
    for value in ("nosuchrun", HOSTILE_LINK, SQL, BIG):
        add(_link("Gradients", {"run": value}, f"run={value[:40]!r} (an unknown run id)", True))
    add(_link("Gradients", {"foo": "1"}, "unknown key"))
    for query in ({"run": HOSTILE_LINK}, {"models": "resnet2402"}):
        add(_link("Learn", query, f"Learn with {list(query)[0]}=... (ignored)"))

    # --- after Train (each in a fresh process; they come last) -------------------------------------------------
    add(_link("Lab", {**TINY_LINK, "device": "cuda"}, "device=cuda, then Train", must_refuse=not gpu, train=True))
    add(_link("Lab", {**TINY_LINK, "data": "/etc"}, "data=/etc, then Train", True, train=True))
    add(_link("Lab", {**TINY_LINK, "seed": "18446744073709551616"}, "seed 2**64, then Train", True, train=True))
    add(_link("Lab", {**TINY_LINK, "subset": "300000"}, "subset=300000, then Train", True, train=True))
    add(_link("Lab", {**TINY_LINK, "models": "resnet1202-w4", "batch": "128"}, "ResNet-1202 at width 4, then Train",
              True, train=True))
    add(_link("Lab", dict(TINY_LINK), "a tiny valid run, then Train (control)", train=True))
    return cases
