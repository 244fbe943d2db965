"""Typed `KEY=VALUE` options for methods, students and augmentation recipes: each option's default fixes its type.

Methods and augmentation recipes declare their options as a frozen dataclass of `option(...)` fields (default,
allowed values, one-line help); parsing, validation, listings and help are derived from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
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


def option(
    default: Any,
    help: str,
    *,
    above: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    weight: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A field of an options dataclass (a method's, an augmentation recipe's): its default, one-line help and
    allowed values.

    `above`: value must be > it; `minimum`/`maximum`: inclusive bounds; `weight`: a loss weight (>= 0);
    `choices`: the allowed strings. The field's type annotation is taken from the default's type.
    """
    meta = {"help": help, "above": above, "minimum": 0.0 if weight else minimum, "maximum": maximum}
    return field(default=default, metadata={**meta, "weight": weight, "choices": choices})


@dataclass(frozen=True)
class OptionSpec:
    """One option as users see it (`xkd methods`, `xkd augment`)."""

    name: str
    default: Any
    help: str
    above: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    weight: bool = False
    choices: tuple[str, ...] | None = None

    def allowed(self) -> str:
        """The allowed values in words, for listings: '> 0', '[0, 1]', 'il|ca|cg', ..."""
        if self.choices:
            return "|".join(self.choices)
        if self.above is not None:
            return f"> {self.above:g}"
        if self.minimum is not None and self.maximum is not None:
            return f"[{self.minimum:g}, {self.maximum:g}]"
        if self.minimum is not None:
            return f">= {self.minimum:g}"
        return type(self.default).__name__

    def check(self, owner: str, value: Any) -> Any:
        """`value` (a string from the command line, or a number from a file) as this option's type, in range."""
        value = parse_option(owner, self.name, value, self.default)
        if self.choices and value not in self.choices:
            raise XKDError(f"{owner}: unknown {self.name} '{value}'; choose one of: {', '.join(self.choices)}")
        if self.above is not None and not value > self.above:
            raise XKDError(f"{owner}: {self.name} must be > {self.above:g}, got {value}")
        if self.weight and not value >= 0:
            raise XKDError(f"{owner}: {self.name} is a loss weight and must be >= 0, got {value}")
        low, high = self.minimum, self.maximum
        if low is not None and high is not None and not low <= value <= high:
            raise XKDError(f"{owner}: {self.name} must lie in [{low:g}, {high:g}], got {value}")
        if low is not None and high is None and not value >= low:
            raise XKDError(f"{owner}: {self.name} must be >= {low:g} ({self.help}), got {value}")
        return value


@dataclass(frozen=True)
class Options:
    """Base of an options dataclass whose fields are `option(...)`s."""

    @classmethod
    def specs(cls) -> list[OptionSpec]:
        return [
            OptionSpec(f.name, f.default, **{k: v for k, v in f.metadata.items() if k in OPTION_META})
            for f in fields(cls)
        ]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {spec.name: spec.default for spec in cls.specs()}

    @classmethod
    def resolve(cls, owner: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overridden by `values` (None: the default), each parsed and checked; unknown names, wrong types
        and values out of range are one-line errors."""
        chosen = resolve_options(owner, cls.defaults(), values)
        return {spec.name: spec.check(owner, chosen[spec.name]) for spec in cls.specs()}

    @classmethod
    def build(cls, owner: str, values: Mapping[str, Any]) -> Options:
        """The options object, each value checked, then the checks across values (`check`)."""
        built = cls(**cls.resolve(owner, values))
        built.check(owner)
        return built

    def check(self, owner: str) -> None:
        """Checks that involve several options (override it); raise `XKDError` with the fix."""
        return None


OPTION_META = ("help", "above", "minimum", "maximum", "weight", "choices")


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """`["gamma=2", "score=hidden"]` -> {"gamma": "2", "score": "hidden"}; the owner coerces the types."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise XKDError(f"option '{pair}' is not KEY=VALUE; write it like -O gamma=2 or -S gated=true")
        out[key.strip().replace("-", "_")] = value.strip()
    return out
