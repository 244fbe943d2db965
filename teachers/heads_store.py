"""Where a teacher's pseudo classifiers live: next to the teacher when its directory is writable, else in the
xkd cache keyed by the teacher's path or hub id (a hub snapshot or a read-only directory stays untouched)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from xkd.paths import cache_root, model_key


def heads_dir(teacher: str) -> Path:
    path = Path(teacher)
    if path.is_dir() and os.access(path, os.W_OK):
        return path
    name = model_key(teacher)  # the resolved path, so every spelling of a read-only teacher finds its heads
    key = hashlib.sha1(name.encode()).hexdigest()[:12]
    return cache_root() / "heads" / f"{name.strip('/').replace('/', '--')[-60:]}--{key}"
