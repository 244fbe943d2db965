"""Where xkd keeps what it can rebuild: fine-tuned teachers and teacher-output caches."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "XKD_CACHE_DIR"


def cache_root() -> Path:
    """`$XKD_CACHE_DIR`, else `~/.cache/xkd`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "xkd")


def model_key(name: str) -> str:
    """A model as cache keys name it: a local path by its resolved absolute path (one key however it is spelled and
    from whatever working directory: relative, absolute, `./x/../x`, a symlink), a hub id as it is."""
    path = Path(name)
    return str(path.resolve()) if path.exists() else name
