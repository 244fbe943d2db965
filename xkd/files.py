"""Atomic file writes: a reader (or a crash) never sees a half-written summary, config, report or plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write to a temporary sibling, then rename over `path` (atomic on POSIX file systems)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def save_figure_atomically(figure: Any, path: str | os.PathLike, **options: Any) -> Path:
    """`figure.savefig` through a temporary file with the same suffix (matplotlib picks the format from it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    figure.savefig(tmp, **options)
    os.replace(tmp, path)
    return path
