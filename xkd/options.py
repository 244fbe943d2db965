"""Typed `KEY=VALUE` options for methods and students: each option's default fixes its type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xkd.errors import XKDError, closest


def parse_option(owner: str, name: str, value: Any, default: Any) -> Any:
    """Coerce `value` (often a string from the command line) to the type of `default`."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
    elif isinstance(default, (int, float)):
        try:
            number = float(value)
            return int(number) if isinstance(default, int) and number.is_integer() else number
        except (TypeError, ValueError):
            pass
    else:
        return None if value is None else str(value)
    raise XKDError(f"{owner} option '{name}' should be {type(default).__name__}, got {value!r}")


def resolve_options(owner: str, defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`defaults` overridden by `values`; an unknown name is a one-line error with the closest valid one."""
    chosen = dict(defaults)
    for key, value in values.items():
        if key not in defaults:
            known = ", ".join(defaults) or "none"
            raise XKDError(f"{owner} has no option '{key}'{closest(key, defaults)}; its options: {known}")
        if value is not None:
            chosen[key] = parse_option(owner, key, value, defaults[key])
    return chosen
