"""Click options generated from `DistillConfig`, so the CLI, the config file and the defaults never drift apart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

import click

from xkd.config import DistillConfig
from xkd.options import parse_pairs

__all__ = ["apply", "config_option", "given", "parse_pairs", "shown_default"]

# Fields with a default_factory (dicts, lists) have no `.default`; build their value so help never shows MISSING.
_DEFAULTS = {f.name: f.default_factory() if f.default is MISSING else f.default for f in fields(DistillConfig)}


def config_option(name: str, help: str, type: Any = None, multiple: bool = False, flag: str | None = None):
    """An option for config key `name`, defaulting to None so that only values the user gave override the file.

    The help text shows the recipe default taken from `DistillConfig`.
    """
    shown = f" [default: {shown_default(_DEFAULTS[name])}]" if _DEFAULTS[name] not in (None, [], {}) else ""
    decl = flag or f"--{name.replace('_', '-')}"
    return click.option(decl, name, type=type, default=None, multiple=multiple, help=help + shown)


def shown_default(value: Any) -> str:
    """A default as the help shows it: flags as on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def given(values: dict[str, Any]) -> dict[str, Any]:
    """The options the user actually passed (None and empty multiples mean 'not given')."""
    out = {}
    for key, value in values.items():
        if value is None or (isinstance(value, tuple) and not value):
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def apply(decorators: list[Callable]) -> Callable:
    def wrap(f: Callable) -> Callable:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return wrap
