"""Pretrained word vectors (GloVe or word2vec, text or binary) for a student's own vocabulary."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from xkd.errors import XKDError


def _rows(path: Path, binary: bool):
    """Yield (word, vector) pairs; skips word2vec's 'count dim' header."""
    if binary:
        with path.open("rb") as f:
            count, dim = (int(x) for x in f.readline().split())
            for _ in range(count):
                word = bytearray()
                while (ch := f.read(1)) not in (b" ", b""):
                    if ch != b"\n":
                        word += ch
                yield word.decode("utf-8", errors="replace"), np.frombuffer(f.read(4 * dim), dtype=np.float32)
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f):
            parts = line.rstrip().split(" ")
            if number == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec text header
            if len(parts) > 2:
                yield parts[0], np.asarray(parts[1:], dtype=np.float32)


def read_word_vectors(path: str | os.PathLike, binary: bool | None = None) -> tuple[list[str], np.ndarray]:
    """Every word of a vector file and its vector [V, d] (the first vector of a word given twice), for neighbour
    search over the whole vocabulary."""
    path = Path(path)
    if not path.is_file():
        raise XKDError(f"word-vector file {path} does not exist; pass a GloVe or word2vec file")
    words, rows, seen = [], [], set()
    for word, vector in _rows(path, path.suffix == ".bin" if binary is None else binary):
        if word not in seen and (not rows or len(vector) == len(rows[0])):
            seen.add(word)
            words.append(word)
            rows.append(vector)
    if not rows:
        raise XKDError(f"{path} holds no word vectors; check its format (GloVe text, word2vec text or .bin)")
    return words, np.stack(rows).astype(np.float32)


def load_word_vectors(
    path: str | os.PathLike, vocab: dict[str, int], binary: bool | None = None, seed: int = 0
) -> tuple[torch.Tensor, float]:
    """An embedding matrix [len(vocab), d] for `vocab` and the share of its words found in the file.

    Words missing from the file get small random vectors (scaled like the found ones); the padding id 0 is zero.
    `binary` defaults to True for `.bin` files (word2vec's binary format).
    """
    path = Path(path)
    if not path.is_file():
        raise XKDError(f"word-vector file {path} does not exist; pass a GloVe or word2vec file")
    binary = path.suffix == ".bin" if binary is None else binary
    found: dict[int, np.ndarray] = {}
    dim = None
    for word, vector in _rows(path, binary):
        dim = dim or len(vector)
        index = vocab.get(word)
        if index is not None and index not in found and len(vector) == dim:
            found[index] = vector
    if dim is None:
        raise XKDError(f"{path} holds no word vectors; check its format (GloVe text, word2vec text or .bin)")
    rng = np.random.default_rng(seed)
    scale = float(np.std(np.stack(list(found.values())))) if found else 0.1
    matrix = rng.normal(0.0, scale, size=(len(vocab), dim)).astype(np.float32)
    for index, vector in found.items():
        matrix[index] = vector
    matrix[0] = 0.0
    real_words = max(len(vocab) - 2, 1)  # [PAD] and [UNK] are never in a vector file
    return torch.from_numpy(matrix), len([i for i in found if i >= 2]) / real_words
