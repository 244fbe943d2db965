"""Telling a damaged file (truncated by a full disk or an interrupted copy, overwritten with garbage) from other
failures, so that loading a model ends in one line that names the file, and caches are rebuilt instead.

Loaders run their library calls inside `damage_check`: when a call fails, the files it read are checked one by
one (JSON parses, a safetensors header covers the file, a `.npy` header matches its size, a torch zip has its
directory), and the first that does not read becomes the message. A failure with no damaged file behind it is
left as it was. Only the structure is checked: bytes changed in place inside the tensor data go unnoticed.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from xkd.errors import XKDError

# What a Hugging Face checkpoint reads: the model, then its tokenizer (patterns, relative to the directory).
MODEL_FILES = ("config.json", "model*.safetensors", "model*.safetensors.index.json", "pytorch_model*.bin")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
)
REFETCH = "copy or download it again"  # what to do about a damaged model file
REDISTILL = "copy it again or distill the student again"  # ... of a student xkd saved


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an error's message (its type when it has none), at most `limit` characters."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` does not read as what its suffix says (JSON, safetensors, .npy, a torch zip), or None."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            try:
                json.loads(path.read_bytes().decode("utf-8"))
            except ValueError as error:
                return f"not valid JSON: {first_line(error)}"
        elif path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt"):  # checks the header and that it covers the whole file
                pass
        elif path.suffix == ".npy":
            import numpy as np

            np.load(path, mmap_mode="r")  # checks the header and that the file holds the array it describes
        elif path.suffix == ".bin" and _starts_with(path, b"PK"):  # torch's zip format (not the legacy pickle)
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
    except OSError:
        return None  # unreadable for another reason (permissions, ...): not damage; the caller's error says it
    except Exception as error:
        return first_line(error)
    return None


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(magic)) == magic


def damaged(directory: str | os.PathLike, patterns: Iterable[str]) -> str | None:
    """'<file> is damaged or truncated (<why>)' for the first file of `directory` matching `patterns` that does not
    read, or None when they all do."""
    directory = Path(directory)
    for pattern in patterns:
        for path in sorted(directory.glob(pattern)):
            why = file_problem(path) if path.is_file() else None
            if why is not None:
                return f"{path.relative_to(directory)} is damaged or truncated ({why})"
    return None


def local_files(name_or_path: str | os.PathLike) -> Path | None:
    """The directory holding a model's files: the path itself, or a hub id's snapshot in the hub cache (None when
    there is neither)."""
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(str(name_or_path), "config.json")
    except Exception:  # not a valid hub id
        return None
    return Path(found).parent if isinstance(found, str) else None


@contextmanager
def damage_check(
    what: str, name_or_path: str | os.PathLike, patterns: Iterable[str], advice: str = REFETCH
) -> Iterator[None]:
    """Turn a failure inside the block into `cannot load <what>: <file> is damaged or truncated (<why>); <advice>`
    when one of the files of `name_or_path` matching `patterns` is damaged; other failures pass unchanged."""
    try:
        yield
    except XKDError:
        raise
    except Exception:
        directory = local_files(name_or_path)
        problem = damaged(directory, patterns) if directory is not None else None
        if problem is None:
            raise
        raise XKDError(f"cannot load {what}: {problem}; {advice}") from None
