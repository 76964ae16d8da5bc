"""Operator settings, read from the environment in one place.

| variable                       | default                           | meaning                                         |
|--------------------------------|-----------------------------------|-------------------------------------------------|
| EXPLORER_STORE                 | runs/explorer.sqlite              | the run store (SQLite; the only channel between the web server and workers) |
| EXPLORER_DATA_DIR              | data                              | the default data root: CIFAR-10, or any ImageFolder (train/<class>/ and test/<class>/, or <class>/ alone) |
| EXPLORER_DATA_ROOTS            | (none)                            | more data roots, ``name=path,name=path``; a run names a root, never a path |
| EXPLORER_CACHE_DIR             | ~/.cache/resnet-explorer          | decoded images; nothing else is written outside the store's folder |
| EXPLORER_HOSTED                | 0                                 | 1: a public server (caps below, no downloads, no paths shown) |
| EXPLORER_WORKERS               | one per GPU, else 1               | worker processes the app starts; 0: run `python -m explorer worker` yourself |
| EXPLORER_MEMORY_LIMIT          | hosted 2GB, else 80% of free RAM  | the most one run may use (host RAM, or GPU memory for GPU runs) |
| EXPLORER_MAX_JOB_SECONDS       | hosted 600, else none             | the longest estimated run a visitor may queue |
| EXPLORER_MAX_QUEUED_PER_OWNER  | hosted 2, else 20                 | waiting runs per owner |
| EXPLORER_MAX_QUEUED            | hosted 30, else 200               | waiting runs in all |
| EXPLORER_CHECKPOINT_SECONDS    | 30                                | how often a run saves models, optimisers and data position |
| EXPLORER_UPLOAD_LIMIT          | 1MB                               | the largest configuration file the app accepts |
| EXPLORER_PUBLIC_URL            | (the address the browser used)    | the app's address as students reach it, e.g. https://class.example.org (behind a proxy, or when the teacher's browser uses localhost) |

A bad value raises `SettingsError`, which names the variable and says what to write instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

GB = 1_000_000_000
_UNITS = {"": 1, "B": 1, "KB": 1_000, "MB": 1_000_000, "GB": GB, "TB": 1000 * GB}


class SettingsError(ValueError):
    """An EXPLORER_* environment variable holds a value that cannot be used; the message says what to write."""


def parse_size(text: str, name: str = "size") -> int:
    """``2GB``, ``512MB``, ``1.5 GB`` or a byte count, as bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B?)\s*", text.upper())
    if not match or float(match[1]) <= 0:
        raise SettingsError(f"{name}={text!r} is not a size: write e.g. 2GB, 512MB or a byte count")
    return int(float(match[1]) * _UNITS[match[2] if match[2] != "K" else "KB"])


def _env_int(name: str, default: int, low: int = 0) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a whole number: write e.g. {default}") from None
    if value < low:
        raise SettingsError(f"{name}={value} is below {low}: write a number of at least {low}")
    return value


def _env_flag(name: str) -> bool:
    text = os.environ.get(name, "").strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name}={text!r} is not a switch: write 1 or 0")


def data_roots_from(text: str) -> dict[str, Path]:
    """``name=path,name=path`` as a mapping; names are what a run (and a URL) may say."""
    roots: dict[str, Path] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", name.strip()) or not path.strip():
            raise SettingsError(f"EXPLORER_DATA_ROOTS entry {item!r} is not name=path with a lower-case name "
                                "(letters, digits, - and _): write e.g. flowers=/srv/data/flowers")
        roots[name.strip()] = Path(path.strip()).expanduser()
    return roots


def available_ram(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Bytes of memory free for this process: the kernel's MemAvailable, or less where a container's memory limit
    (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``, less what the group uses) leaves less; /proc/meminfo
    inside a container shows the host's memory. 4 GB where nothing can be read."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes",
                                                            "memory/memory.usage_in_bytes")):
        try:
            cap = int((cgroup / limit).read_text().strip()) - int((cgroup / usage).read_text().strip())
        except (OSError, ValueError):  # no such file, or "max": no limit
            continue
        if cap < (1 << 60):  # v1 writes "no limit" as a huge number
            free = max(0, cap) if free is None else min(free, max(0, cap))
        break
    return 4 * GB if free is None else free


@dataclass(frozen=True)
class Settings:
    store: Path
    data_dir: Path
    data_roots: dict[str, Path]
    cache_dir: Path
    hosted: bool
    workers: int | None  # None: one per GPU, else one
    memory_limit: int | None  # None: 80% of what is free when the run is checked
    max_job_seconds: float | None
    max_queued_per_owner: int
    max_queued: int
    checkpoint_seconds: float
    upload_limit: int
    public_url: str  # "" when the join link is derived from the teacher's own address


def public_url_from(text: str) -> str:
    """An http(s) URL without query or fragment (a trailing slash dropped), or "" for none."""
    text = text.strip().rstrip("/")
    if text and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~\-/]*)?", text):
        raise SettingsError(f"EXPLORER_PUBLIC_URL={text!r} is not an http(s) address: write e.g. "
                            "https://class.example.org or http://192.168.1.20:8501")
    return text


def settings() -> Settings:
    """The settings as the environment gives them now (cheap: read at each use, so tests can change them)."""
    hosted = _env_flag("EXPLORER_HOSTED")
    limit = os.environ.get("EXPLORER_MEMORY_LIMIT", "").strip()
    workers = os.environ.get("EXPLORER_WORKERS", "").strip()
    max_job = _env_int("EXPLORER_MAX_JOB_SECONDS", 600 if hosted else 0)
    return Settings(
        store=Path(os.environ.get("EXPLORER_STORE") or Path("runs") / "explorer.sqlite"),
        data_dir=Path(os.environ.get("EXPLORER_DATA_DIR") or "data").expanduser(),
        data_roots=data_roots_from(os.environ.get("EXPLORER_DATA_ROOTS", "")),
        cache_dir=Path(os.environ.get("EXPLORER_CACHE_DIR") or Path.home() / ".cache" / "resnet-explorer"),
        hosted=hosted,
        workers=_env_int("EXPLORER_WORKERS", 1) if workers else None,
        memory_limit=parse_size(limit, "EXPLORER_MEMORY_LIMIT") if limit else (2 * GB if hosted else None),
        max_job_seconds=float(max_job) if max_job else None,
        max_queued_per_owner=_env_int("EXPLORER_MAX_QUEUED_PER_OWNER", 2 if hosted else 20, low=1),
        max_queued=_env_int("EXPLORER_MAX_QUEUED", 30 if hosted else 200, low=1),
        checkpoint_seconds=float(_env_int("EXPLORER_CHECKPOINT_SECONDS", 30, low=1)),
        upload_limit=parse_size(os.environ.get("EXPLORER_UPLOAD_LIMIT", "") or "1MB", "EXPLORER_UPLOAD_LIMIT"),
        public_url=public_url_from(os.environ.get("EXPLORER_PUBLIC_URL", "")),
    )
