"""How xkd speaks: every long step takes a `log` callable (print, click.echo to stderr, or `silent`)."""

from __future__ import annotations

import sys
from collections.abc import Callable

Log = Callable[[str], None]


def to_stderr(message: str) -> None:
    """The default log of library calls: a line on stderr (stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)


def silent(message: str) -> None:
    """The log of processes that must not speak (under `accelerate launch`, only the main process does)."""
    return None
