"""What every command shares: the exceptions `main` turns into exit codes, a parser that fails in one line, output
on stderr, the owner key, --budget and output folders."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol

from explorer.config import ConfigError
from explorer.data import DataError
from explorer.memory import ResourceError
from explorer.settings import SettingsError
from explorer.store import StoreError


class UsageError(Exception):
    """Bad command-line input; main() prints it on one line and exits 2."""


class RunFailed(Exception):
    """The run ended failed or diverged; main() prints why and exits 1."""


class Interrupted(Exception):
    """Ctrl-C stopped the run cleanly; main() says how to resume it and exits 130."""


def usage_errors() -> tuple[type[Exception], ...]:
    from explorer.jobs import JobRefused

    return (UsageError, ConfigError, DataError, StoreError, ResourceError, SettingsError, JobRefused)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


class Commands(Protocol):
    """What `ArgumentParser.add_subparsers` returns: each command group adds its commands to it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def say(text: str) -> None:
    """Progress and notes for people go to stderr; stdout keeps what a script reads (ids, paths, JSON)."""
    print(text, end="", file=sys.stderr, flush=True)


def owner_key() -> str:
    from explorer.jobs import CLI_OWNER_KEY

    return os.environ.get("EXPLORER_OWNER_KEY") or CLI_OWNER_KEY


def parse_budget(value: str | None) -> float | None:
    """--budget as seconds (None when not given)."""
    if value is None:
        return None
    try:
        budget = float(value)
    except ValueError:
        raise UsageError(f"--budget {value[:40]!r} is not a number of seconds") from None
    if not math.isfinite(budget) or budget <= 0 or budget > 1e7:
        raise UsageError(f"--budget {value[:40]!r} must be a positive number of seconds")
    return budget


def writable_folder(folder: str | Path, flag: str) -> None:
    """Refuse an output folder that cannot be created or written before hours of training, not after."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UsageError(f"cannot write into {str(folder)[:200]} ({error.strerror or error}): choose a writable "
                         f"{flag}") from None
