"""Click options generated from `DistillConfig`, so the CLI, the config file and the defaults never drift apart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

import click
import cloup

from xkd.config import DistillConfig
from xkd.options import parse_pairs

__all__ = ["apply", "apply_grouped", "config_option", "given", "parse_pairs", "shown_default"]

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


def apply_grouped(decorators: list[Callable], groups: dict[str, tuple[str, ...]]) -> Callable:
    """Apply option decorators as titled help sections (cloup option groups): each option under the group that
    names its parameter. Every option must be in exactly one group, so none goes missing from the help."""

    def wrap(f: Callable) -> Callable:
        params = {p.name: p for p in _params(decorators)}
        placed = [name for names in groups.values() for name in names]
        if sorted(placed) != sorted(params):
            raise ValueError(f"option groups do not cover the options once each: {set(placed) ^ set(params)}")
        for title, names in reversed(groups.items()):
            f = cloup.option_group(title, *(_attach(params[name]) for name in names))(f)
        return f

    return wrap


def _params(decorators: list[Callable]) -> list[click.Parameter]:
    """Fresh parameter objects from option decorators (a command must not share them with another)."""

    def holder() -> None: ...

    return list(apply(decorators)(holder).__click_params__)


def _attach(param: click.Parameter) -> Callable:
    def decorate(f: Callable) -> Callable:
        f.__dict__.setdefault("__click_params__", []).append(param)
        return f

    return decorate


def echo_options(specs) -> None:
    """One line per option: name=default, allowed values, what it does (methods and augmentation recipes)."""
    for spec in specs:
        click.echo(f"      {f'{spec.name}={spec.default}':<26} {spec.allowed():<26} {spec.help}")


# Options several commands share, declared once (`xkd distill`'s own are `cli.distill_options`).
DATA_DIR_OPTION = click.option(
    "--data-dir", type=click.Path(), help="Directory of the task's split files (train/validation/test)."
)
SAVED_MAX_LENGTH_OPTION = click.option(
    "--max-length", type=int, help="Tokens per text [default: the length the model was trained with]."
)
PROGRESS_OPTION = click.option("--progress/--no-progress", default=True, help="Progress bars.  [default: on]")


def saved_model(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --model / MODEL_DIR value: a run directory stands for its student (`xkd.paths.saved_model_dir`)."""
    from xkd.paths import saved_model_dir

    return None if value is None else saved_model_dir(value)


def task_option(**kwargs: Any) -> Callable:
    """`--task`: required where a command needs one, the quickstart's where it shows one."""
    return click.option("--task", help=kwargs.pop("help", "Task name (see 'xkd tasks')."), **kwargs)


def max_examples_option(what: str = "Use at most this many examples per split (quick runs).") -> Callable:
    return click.option("--max-examples", type=int, help=what)


def echo_err(message: str) -> None:
    """The commands' log: notes and progress lines on stderr, so stdout holds only the result (JSON, a table)."""
    click.echo(message, err=True)
