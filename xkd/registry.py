"""A name -> object registry filled by decorators, so a new method or student is one line to register."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Generic, TypeVar

from xkd.errors import XKDError, unknown

T = TypeVar("T")


def import_plugin(path: str, what: str) -> tuple[ModuleType, str]:
    """`package.module:name` -> (the imported module, name), for plug-in students and methods; a one-line error
    when the path is malformed or the module cannot be imported."""
    module_name, _, name = path.partition(":")
    if not module_name or not name:
        raise XKDError(f"plug-in {what} '{path}' must look like package.module:Name")
    _working_directory_importable()
    try:
        return importlib.import_module(module_name), name
    except ImportError as e:
        raise XKDError(
            f"cannot import module '{module_name}' for {what} '{path}': {e}; run from the directory that holds "
            f"it or put that directory on PYTHONPATH"
        ) from None


def _working_directory_importable() -> None:
    """A plug-in written next to where the user runs `xkd` (`mypkg/gru.py`) imports as it would under
    `python -m`: the `xkd` script's own path holds only its bin directory. Appended, so the working directory never
    shadows an installed package."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)


class Registry(Generic[T]):
    """Registered objects by name; lookups of unknown names raise a one-line `XKDError` with a hint."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return add

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise unknown(self.kind, name, self._items)
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
