"""Atomic file writes (a reader, or a crash, never sees a half-written summary, config, report or plot) and file
locks between processes that share a directory."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def file_lock(path: str | os.PathLike, wait: bool = False) -> Iterator[bool]:
    """An exclusive lock on `path` (created if missing) held for the block; yields False when another process holds
    it and `wait` is off. Released by the kernel if the process dies, so a crash never leaves a stale lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write to a temporary sibling, then rename over `path` (atomic on POSIX file systems)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with removed_on_failure(tmp):
        tmp.write_text(text)
    os.replace(tmp, path)
    return path


@contextmanager
def removed_on_failure(path: Path) -> Iterator[None]:
    """A temporary file or directory that a failed write (a full disk, an interruption) must not leave behind; the
    file it was meant to replace is untouched."""
    try:
        yield
    except BaseException:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        raise


def save_figure_atomically(figure: Any, path: str | os.PathLike, **options: Any) -> Path:
    """`figure.savefig` through a temporary file with the same suffix (matplotlib picks the format from it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    with removed_on_failure(tmp):
        figure.savefig(tmp, **options)
    os.replace(tmp, path)
    return path
