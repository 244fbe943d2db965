"""User-facing errors.

Anything a user can fix (a typo, a missing file, a model that does not fit the task) raises `XKDError` with a
one-line message that names the problem and the fix. The CLI prints it without a traceback and exits with 2;
library users catch it like any other exception.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class XKDError(Exception):
    """An error caused by the user's input, with a message that says how to fix it."""


def closest(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for a mistyped name, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> XKDError:
    """The standard error for a name missing from a registry."""
    choices = sorted(choices)
    return XKDError(f"unknown {kind} '{name}'{closest(name, choices)}; choose one of: {', '.join(choices)}")


class Interrupted(Exception):
    """Training, labelling or a study stopped on Ctrl-C or SIGTERM after keeping its work; the message says what
    was kept and the command that continues. `exit_code` is the shell's for the signal (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number

    def continue_with(self, how: str) -> Interrupted:
        """The same interruption, its message ending with how to continue (said once, by the outermost caller that
        knows the command)."""
        if "; continue with" in str(self):
            return self
        return Interrupted(f"{self}; continue with: {how}", self.signal_number)
