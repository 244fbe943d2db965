"""How xkd speaks: every long step takes a `log` callable (print, click.echo to stderr, or `silent`)."""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]


def silent(message: str) -> None:
    """The log of processes that must not speak (under `accelerate launch`, only the main process does)."""
    return None
