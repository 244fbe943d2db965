"""Where xkd keeps what it can rebuild: fine-tuned teachers and teacher-output caches."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "XKD_CACHE_DIR"


def cache_root() -> Path:
    """`$XKD_CACHE_DIR`, else `~/.cache/xkd`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "xkd")
