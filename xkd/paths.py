"""Where xkd keeps what it can rebuild (fine-tuned teachers, teacher-output caches), and the names of the files it
writes beside a saved model: one definition that the students, teachers, `predict` and the CLI read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CACHE_ENV = "XKD_CACHE_DIR"
STUDENT_FILE = "student.json"  # CNN, BiLSTM, static and plug-in students: their config and what xkd recorded
MODEL_META_FILE = "xkd.json"  # beside a Hugging Face checkpoint (BERT-k students, teachers): what xkd recorded


def saved_model_dir(path: str) -> str:
    """A run directory (what `xkd distill` printed) stands for the student it saved, RUN_DIR/student: the directory
    a person has at hand. Anything else (a student, a teacher, a hub id) is returned as given."""
    inside = Path(path) / "student"
    if (inside / STUDENT_FILE).is_file() and not (Path(path) / STUDENT_FILE).is_file():
        return str(inside)
    if (inside / MODEL_META_FILE).is_file() and not (Path(path) / MODEL_META_FILE).is_file():
        return str(inside)  # a BERT-k student, saved as a Hugging Face checkpoint
    return path


def saved_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """What xkd recorded next to a saved model (`student.json`, else `xkd.json`), or {} for a hub id, a model xkd
    did not write, or an unreadable file (the damage checks name that one)."""
    for name in (STUDENT_FILE, MODEL_META_FILE):
        try:
            meta = json.loads((Path(directory) / name).read_text())
        except (OSError, ValueError):
            continue
        return meta if isinstance(meta, dict) else {}
    return {}


def cache_root() -> Path:
    """`$XKD_CACHE_DIR`, else `~/.cache/xkd`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "xkd")


def model_key(name: str) -> str:
    """A model as cache keys name it: a local path by its resolved absolute path (one key however it is spelled and
    from whatever working directory: relative, absolute, `./x/../x`, a symlink), a hub id as it is."""
    path = Path(name)
    return str(path.resolve()) if path.exists() else name
