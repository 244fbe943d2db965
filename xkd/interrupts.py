"""Ctrl-C and SIGTERM as requests to stop at the next safe point, not as a kill.

Inside `stop_requests()` the first SIGINT or SIGTERM only sets a flag: the training loop and teacher labelling look
at it after each step or batch, write what keeps their work (a resumable checkpoint, the labelling progress) and
raise `xkd.errors.Interrupted`, which the CLI turns into one line with the command that continues, exit 130/143.
A second Ctrl-C stops at once (KeyboardInterrupt). Outside such blocks signals keep their usual meaning, and
there is then no unsaved work to lose. Handlers can only be installed in the main thread; elsewhere the flag never
rises and the block behaves as before.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from xkd.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Whether (and by which signal) a stop was asked for."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def agreed(self, processes=None) -> bool:
        """True on every process as soon as one process was asked to stop (they must stop at the same step, or the
        others would wait forever in their next collective call). `processes`: an accelerate `Accelerator` or
        `PartialState`; one small all-reduce per call when there are several."""
        if processes is None or processes.num_processes == 1:
            return bool(self)
        from accelerate.utils import reduce

        asked = reduce(torch.tensor([1.0 if self else 0.0], device=processes.device), "sum")
        if asked.item() and self.signal is None:
            self.signal = signal.SIGTERM  # another process was asked (a scheduler's SIGTERM reaches them all)
        return bool(self)


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def ask(number: int, frame) -> None:
        if request.signal is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        request.signal = number

    previous = {number: signal.getsignal(number) for number in SIGNALS}
    for number in SIGNALS:
        signal.signal(number, ask)
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def continued_by(how: str) -> Iterator[None]:
    """An interruption (Ctrl-C, SIGTERM) in the block ends with the command that continues the work."""
    try:
        yield
    except Interrupted as e:
        raise e.continue_with(how) from None
