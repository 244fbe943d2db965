"""Teacher-distilled input vectors for a word-level student (`-S vectors=teacher`), after model2vec's `distill`.

Each vocabulary entry (a word, a sentencepiece piece, or with vocab=teacher one of the teacher's own tokens) goes
through the teacher as its own short text, with the teacher tokenizer's specials around it; the chosen layer's
output vectors are averaged over the entry's own tokens (the specials left out, as model2vec's pass over a given
vocabulary does), then PCA reduces them to `vectors_dim` and SIF re-weights each row by its estimated frequency
p: w = a / (a + p), a = 1e-4 (model2vec's coefficient).

The pass is written here, not taken from model2vec: its `distill` extra pins transformers < 5.4, below what xkd
needs, and its light core has no pass over a model. The result is cached next to the teacher (its directory when
writable, else under the xkd cache, as pseudo heads are), keyed by the teacher's content, the ordered vocabulary,
the frequency estimate and the options.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from xkd.data import LengthBuckets, hash_tensors, tokenizer_fingerprint
from xkd.errors import XKDError
from xkd.paths import cache_root

FORMAT = 1  # bump when what a cached file holds, or how it is computed, changes
SIF_COEFFICIENT = 1e-4  # model2vec's a in w = a / (a + p)
BATCH_SIZE = 256
MAX_TOKENS = 32  # an entry longer than this (in teacher tokens, specials included) is cut
WEIGHTINGS = ("counts", "zipf", "none")
CACHE_DIR = "word-vectors"


# The mean of the teacher's layers 1..L, not the last layer alone: it led on both tasks and both students measured
# (CNN and static, MR and amazon_sent, 3 seeds each: +0.88 test points [+0.16, +1.59] over the 12 paired runs;
# docs/results/vectors/README.md). The pass computes every layer anyway, so the mean costs nothing more.
DEFAULT_LAYER = "mean"


@dataclass(frozen=True)
class VectorOptions:
    layer: str = DEFAULT_LAYER  # last, mean (of layers 1..L), or an index into hidden_states (0 = embedding output)
    dim: int = 256
    dim_given: bool = False  # set by the user (an error when impossible) or the default (clipped, said in a line)
    weighting: str = "counts"


def layer_index(layer: Any, num_layers: int) -> int | str:
    """`layer` as an index into the teacher's hidden states [embeddings, layer 1, ..., layer L], or 'mean'."""
    text = str(layer).strip().lower()
    if text in ("last", "mean"):
        return num_layers if text == "last" else "mean"
    try:
        index = int(text)
    except ValueError:
        index = None
    if index is None or not -(num_layers + 1) <= index <= num_layers:
        raise XKDError(
            f"student option vectors_layer must be last, mean or a layer index 0..{num_layers} "
            f"(0 = the embedding output, negative from the end), got '{layer}'"
        )
    return index % (num_layers + 1)


def pool_entries(hidden: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """The mean of each row's vectors over its own tokens: hidden [B, T, H], own [B, T] (1 where the token is the
    entry's, 0 for the specials and padding) -> [B, H] in float32."""
    own = own.to(hidden.device, torch.float32)
    summed = torch.bmm(own[:, None, :], hidden.float()).squeeze(1)
    return summed / own.sum(1, keepdim=True).clamp(min=1.0)


def select_layer(hidden_states: Sequence[torch.Tensor], layer: int | str) -> torch.Tensor:
    """One of the hidden states, or the mean of the layers 1..L ('mean')."""
    if layer == "mean":
        return torch.stack([h.float() for h in hidden_states[1:]]).mean(0)
    return hidden_states[layer]


def entry_texts(entries: Sequence[str], kind: str) -> list[str]:
    """What each entry is as text for the teacher: a sentencepiece piece without its word marker."""
    if kind == "sentencepiece":
        return [e.replace("▁", " ").strip() for e in entries]
    return list(entries)


def special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The specials the teacher's tokenizer puts before and after a text's own tokens ([CLS] and [SEP] for BERT,
    <s> and </s> for RoBERTa), read off a one-word encoding."""
    own = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(own) + 1):
        if full[start : start + len(own)] == own:
            return full[:start], full[start + len(own) :]
    return [], []


def entry_ids(tokenizer, entries: Sequence[str], kind: str) -> list[tuple[list[int], list[int]]]:
    """Per entry, the teacher's token ids with its specials around them and the mask of the entry's own tokens.

    vocab=teacher entries are the teacher's token ids themselves (the entry's string is its id); an entry the
    teacher tokenizer turns into nothing (a bare marker, a control character) stands as the teacher's unknown
    token, so that no row pools over nothing."""
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    before, after = special_frame(tokenizer)
    room = max(MAX_TOKENS - len(before) - len(after), 1)
    if kind == "teacher":
        pieces = [[int(e)] for e in entries]
    else:
        encoded = tokenizer(entry_texts(entries, kind), add_special_tokens=False)["input_ids"]
        pieces = [ids[:room] or [unk] for ids in encoded]
    return [(before + ids + after, [0] * len(before) + [1] * len(ids) + [0] * len(after)) for ids in pieces]


def teacher_pass(
    model: torch.nn.Module,
    rows: list[tuple[list[int], list[int]]],
    layer: int | str,
    pad_id: int,
    progress: bool = True,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """One pass over the entries in length-sorted batches on the model's device: their pooled vectors [N, H]."""
    device = next(model.parameters()).device
    out: np.ndarray | None = None
    lengths = np.asarray([len(ids) for ids, _ in rows])
    batches = LengthBuckets(lengths, batch_size, shuffle=False)
    bar = tqdm(total=len(rows), desc="word vectors", unit=" entries", disable=not progress, leave=False)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                width = int(lengths[batch].max())
                ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                own = torch.zeros((len(batch), width))
                for k, i in enumerate(batch):
                    full, mine = rows[i]
                    ids[k, : len(full)] = torch.tensor(full)
                    attention[k, : len(full)] = 1
                    own[k, : len(full)] = torch.tensor(mine, dtype=torch.float32)
                hidden = model(
                    input_ids=ids.to(device), attention_mask=attention.to(device), output_hidden_states=True
                ).hidden_states
                pooled = pool_entries(select_layer(hidden, layer), own).cpu().numpy()
                if out is None:
                    out = np.zeros((len(rows), pooled.shape[1]), dtype=np.float32)
                out[batch] = pooled
                bar.update(len(batch))
    finally:
        model.train(was_training)
        bar.close()
    return out


def sif_weights(probabilities: np.ndarray, a: float = SIF_COEFFICIENT) -> np.ndarray:
    """SIF: w = a / (a + p)."""
    return a / (a + probabilities)


def frequencies(weighting: str, size: int, counts: np.ndarray | None) -> np.ndarray | None:
    """Each entry's estimated probability p, or None (no weighting).

    counts: the entry's share of the training split's tokens, as the student's tokenizer splits it. This is the
    better-founded estimate for xkd: the vocabulary is built from that very split, so the real counts are at hand,
    whereas model2vec has no corpus and falls back on Zipf's law over the rank (its vocabulary is only assumed
    to be sorted by frequency, which a teacher's word-piece vocabulary is not). An entry never seen gets p = 0,
    hence the full weight 1, as SIF gives a rare word.
    zipf: model2vec's estimate, p proportional to 1 / (rank + 2) with the rank the entry's position in the
    vocabulary (the word vocabulary is sorted by frequency, after [PAD] and [UNK]).
    """
    if weighting == "none":
        return None
    if weighting == "zipf" or counts is None or counts.sum() == 0:
        inverse = 1.0 / np.arange(2, size + 2)
        return inverse / inverse.sum()
    return counts.astype(np.float64) / counts.sum()


def reduce(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, float]:
    """PCA (sklearn, full SVD: deterministic) of the vectors to `dim` columns, and the variance it explains."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=dim, svd_solver="full")
    reduced = pca.fit_transform(vectors.astype(np.float64))
    return reduced.astype(np.float32), float(np.sum(pca.explained_variance_ratio_))


def teacher_fingerprint(teacher) -> str:
    """What the teacher's vectors are a function of: its weights (content, not path) and its tokenizer."""
    h = hashlib.sha1(tokenizer_fingerprint(teacher.tokenizer).encode())
    hash_tensors(h, teacher.model.state_dict())
    return h.hexdigest()


def vectors_key(teacher_print: str, entries: Sequence[str], counts: np.ndarray | None, kind: str, options) -> str:
    h = hashlib.sha1(json.dumps({"format": FORMAT, "teacher": teacher_print, "kind": kind}).encode())
    h.update(json.dumps({"layer": options["layer"], "dim": options["dim"], "weighting": options["weighting"]}).encode())
    h.update("\0".join(entries).encode())
    if counts is not None and options["weighting"] == "counts":
        h.update(np.asarray(counts, dtype=np.int64).tobytes())
    return h.hexdigest()[:20]


def vectors_dir(teacher_path: str | None) -> Path:
    """Next to the teacher (pseudo heads' place: its directory when writable, else the xkd cache)."""
    from xkd.teachers.heads_store import heads_dir

    if teacher_path and not str(teacher_path).startswith("outputs:"):
        return heads_dir(str(teacher_path)) / CACHE_DIR
    return cache_root() / CACHE_DIR


def _read_cached(path: Path, rows: int, log: Callable[[str], None]) -> tuple[np.ndarray, dict] | None:
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            meta = dict(f.metadata() or {})
            vectors = f.get_tensor("vectors")
        if vectors.ndim != 2 or vectors.shape[0] != rows or not np.isfinite(vectors).all():
            raise ValueError(f"holds {tuple(vectors.shape)} vectors for {rows} entries")
        return vectors, meta
    except Exception as e:  # a truncated or overwritten file: rebuilt, not trusted
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        log(f"word vectors: the cached {path} is damaged ({first}); rebuilding it")
        return None


def _write_cached(path: Path, vectors: np.ndarray, meta: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        save_file({"vectors": np.ascontiguousarray(vectors)}, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_vector_options(options: dict[str, Any], width: int | None = None, layers: int | None = None, name="") -> None:
    """The vectors=teacher options that need no model (weighting, a positive dimension) and, given the teacher's
    width and depth (its config.json), those that do: run before anything loads."""
    if str(options.get("vectors", "")) != "teacher":
        return
    if options["vectors_weighting"] not in WEIGHTINGS:
        raise XKDError(
            f"student option vectors_weighting must be {', '.join(WEIGHTINGS)}, got '{options['vectors_weighting']}'"
        )
    if int(options["vectors_dim"]) < 1:
        raise XKDError(f"student option vectors_dim must be at least 1, got {options['vectors_dim']}")
    if layers is not None:
        layer_index(options["vectors_layer"], layers)
    if width is not None and options.get("vectors_dim_given") and int(options["vectors_dim"]) > width:
        raise XKDError(
            f"vectors_dim {options['vectors_dim']} is above the width of teacher '{name}' ({width}); "
            f"pass -S vectors_dim={width} or less"
        )


def _distil(teacher, entries, kind, layer, dim, weighting, counts, pad_index, progress) -> tuple[np.ndarray, float]:
    """The pass, PCA and SIF weights (the padding row zero and out of the PCA fit), and the variance kept."""
    rows = entry_ids(teacher.tokenizer, entries, kind)
    pad_id = teacher.tokenizer.pad_token_id if teacher.tokenizer.pad_token_id is not None else 0
    pooled = teacher_pass(teacher.model, rows, layer, pad_id, progress)
    keep = np.ones(len(entries), dtype=bool)
    if pad_index is not None and 0 <= pad_index < len(entries):
        keep[pad_index] = False
    vectors = np.zeros((len(entries), dim), dtype=np.float32)
    vectors[keep], variance = reduce(pooled[keep], dim)
    p = frequencies(weighting, len(entries), counts)
    if p is not None:
        vectors *= sif_weights(p)[:, None].astype(np.float32)
    vectors[~keep] = 0.0
    return vectors, variance


def distil_vectors(
    teacher,
    entries: Sequence[str],
    kind: str,
    options: VectorOptions,
    counts: np.ndarray | None = None,
    teacher_path: str | None = None,
    pad_index: int | None = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Input vectors [len(entries), D] for a student vocabulary from `teacher` (an `HFEncoderClassifier`), cached.

    `kind` is word, sentencepiece or teacher (entries are then the teacher's token ids as strings); `counts` the
    entries' counts in the training split (for weighting=counts); the row `pad_index` is zero (the padding id).
    Returns the vectors and what the student's record keeps about them.
    """
    if not entries:
        raise XKDError("vectors=teacher needs a vocabulary and the student's is empty; check the training texts")
    name = teacher_path or teacher.meta.get("source", "the teacher")
    width = teacher.layer_width
    given = {"vectors": "teacher", "vectors_weighting": options.weighting, "vectors_dim": options.dim}
    given.update(vectors_layer=options.layer, vectors_dim_given=options.dim_given)
    check_vector_options(given, width, teacher.num_layers, name)  # an explicit dimension above the width is refused
    layer = layer_index(options.layer, teacher.num_layers)
    dim = options.dim
    if dim > width:
        log(f"word vectors: vectors_dim {dim} is above the teacher's width {width}; using {width}")
        dim = width
    fitted = len(entries) - (1 if pad_index is not None and 0 <= pad_index < len(entries) else 0)
    if dim > fitted:
        log(f"word vectors: {fitted} vocabulary entries allow at most {fitted} PCA dimensions; using {fitted}")
        dim = max(fitted, 1)
    chosen = {"layer": str(layer), "dim": dim, "weighting": options.weighting}
    key = vectors_key(teacher_fingerprint(teacher), entries, counts, kind, chosen)
    path = vectors_dir(teacher_path) / f"{key}.safetensors"
    start = time.perf_counter()
    cached = _read_cached(path, len(entries), log)
    if cached is not None:
        vectors, meta = cached
        variance = float(meta.get("explained_variance", "nan"))
        log(f"word vectors: distilled from {name} (layer {layer}) for {len(entries)} entries, from the cache {path}")
    else:
        vectors, variance = _distil(teacher, entries, kind, layer, dim, options.weighting, counts, pad_index, progress)
        meta = {"format": str(FORMAT), "teacher": str(name), "explained_variance": repr(variance)}
        meta.update({k: str(v) for k, v in chosen.items()})
        try:
            _write_cached(path, vectors, meta)
        except OSError as e:
            log(f"word vectors: could not cache them in {path.parent} ({e.strerror or e}); they are rebuilt next time")
        seconds = time.perf_counter() - start
        log(
            f"word vectors: distilled from {name} (layer {layer}) for {len(entries)} entries, PCA to {dim} "
            f"(explained variance {100 * variance:.1f}%), in {seconds:.1f} s"
        )
    record = {"teacher": str(name), "layer": layer, "dim": int(vectors.shape[1]), "weighting": options.weighting}
    record["explained_variance"] = round(variance, 4)
    return torch.from_numpy(np.array(vectors, dtype=np.float32)), record
