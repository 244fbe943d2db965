"""Augmentation recipes: new unlabelled texts made from the training texts, for the teacher to label.

- `tang` (Tang et al. 2019, "Distilling task-specific knowledge from BERT into simple neural networks"): each word
  is masked with p_mask or swapped with p_pos for another word of its class drawn from the training unigram
  distribution; then, with p_ng, only a random n-gram (n = 1..max_ngram) of the result is kept. The paper's word
  classes are part-of-speech tags; no POS tagger installs from the package registries (NLTK's and spaCy's models
  are downloaded from elsewhere), so xkd's stand-in clusters the words' vectors (`vectors`, k-means into `classes`
  clusters, which group words of similar syntax and meaning) and, without vectors, draws from all training words.
- `tinybert` (Jiao et al. 2020, TinyBERT's data augmentation): each word is replaced with p by one of its K nearest
  neighbours in a word-vector file (cosine), or, when a masked LM is given, single-piece words by one of the LM's
  top-K predictions for that position.

An augmented set is generated once per training data, recipe, options, factor and seed, saved under the xkd cache
(`augment/`) and reused by every run and seed that asks for the same one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xkd.errors import XKDError
from xkd.files import file_lock
from xkd.log import Log
from xkd.options import Options, option
from xkd.paths import cache_root, model_key
from xkd.registry import Registry
from xkd.tasks import Task

FORMAT = 1
Words = list[str]
Augmenter = Callable[[Words, np.random.Generator], Words]  # one augmented copy of a tokenized text


@dataclass(frozen=True)
class Vocabulary:
    """The training texts' words with their counts (the unigram distribution replacements are drawn from)."""

    words: list[str]
    counts: np.ndarray

    @classmethod
    def of(cls, texts: Sequence[str]) -> Vocabulary:
        counts = Counter(word for text in texts for word in text.split())
        words = sorted(counts)
        return cls(words, np.array([counts[w] for w in words], dtype=np.float64))


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    options_type: type[Options]
    build: Callable[[Vocabulary, Any], Augmenter]


RECIPES: Registry[Recipe] = Registry("augmentation recipe")


def recipe(name: str, options: type[Options], summary: str) -> Callable:
    """Register `build(vocabulary, options) -> augmenter` as recipe `name`."""

    def register(build: Callable[[Vocabulary, Any], Augmenter]) -> Callable:
        RECIPES.add(name, Recipe(name, summary, options, build))
        return build

    return register


@dataclass(frozen=True)
class AugmentOptions(Options):
    """Options every recipe has."""

    seed: int = option(0, "seed of the random draws: the same seed gives the same set (independent of the run's)")


# ---------------------------------------------------------------------------------------------------- tang


@dataclass(frozen=True)
class TangOptions(AugmentOptions):
    p_mask: float = option(0.1, "probability of replacing a word with the mask token", minimum=0, maximum=1)
    p_pos: float = option(0.1, "probability of swapping a word for another of its class", minimum=0, maximum=1)
    p_ng: float = option(0.25, "probability of keeping only a random n-gram of the result", minimum=0, maximum=1)
    max_ngram: int = option(5, "longest n-gram kept by n-gram sampling", minimum=1)
    vectors: str = option("", "word-vector file whose clusters stand in for POS classes ('': all words one class)")
    classes: int = option(50, "word classes clustered from the vectors", minimum=2)
    mask_token: str = option("[MASK]", "what a masked word becomes (the teacher's mask token: <mask> for RoBERTa)")

    def check(self, owner: str) -> None:
        if self.p_mask + self.p_pos > 1:
            raise XKDError(f"{owner} needs p_mask + p_pos <= 1, got {self.p_mask} and {self.p_pos}")


@recipe("tang", TangOptions, "Tang et al. 2019: mask, same-class swap, n-gram sampling")
def tang(vocabulary: Vocabulary, o: TangOptions) -> Augmenter:
    classes = word_classes(vocabulary, o.vectors, o.classes)
    members = {c: np.flatnonzero(classes == c) for c in np.unique(classes)}
    cumulative = {c: np.cumsum(vocabulary.counts[m]) for c, m in members.items()}  # unigram draws by bisection
    index = {w: i for i, w in enumerate(vocabulary.words)}

    def same_class(word: str, rng: np.random.Generator) -> str:
        c = classes[index[word]]
        drawn = np.searchsorted(cumulative[c], rng.random() * cumulative[c][-1], side="right")
        return vocabulary.words[members[c][min(drawn, len(members[c]) - 1)]]

    def augment(words: Words, rng: np.random.Generator) -> Words:
        draws = rng.random(len(words))
        out = []
        for word, x in zip(words, draws, strict=True):
            if x < o.p_mask:
                out.append(o.mask_token)
            elif x < o.p_mask + o.p_pos and word in index:
                out.append(same_class(word, rng))
            else:
                out.append(word)
        if len(out) > 1 and rng.random() < o.p_ng:
            n = int(rng.integers(1, min(o.max_ngram, len(out)) + 1))
            start = int(rng.integers(0, len(out) - n + 1))
            out = out[start : start + n]
        return out

    return augment


def word_classes(vocabulary: Vocabulary, vectors: str, classes: int) -> np.ndarray:
    """A class id per vocabulary word: k-means clusters of the words' vectors (words without a vector share one
    class of their own); all words one class without a vectors file."""
    if not vectors:
        return np.zeros(len(vocabulary.words), dtype=np.int64)
    from sklearn.cluster import MiniBatchKMeans

    from xkd.students.word_vectors import read_word_vectors

    words, matrix = read_word_vectors(vectors)
    row = {w: i for i, w in enumerate(words)}
    found = [i for i, w in enumerate(vocabulary.words) if w.lower() in row]
    labels = np.full(len(vocabulary.words), classes, dtype=np.int64)  # the class of words without a vector
    if len(found) > classes:
        x = matrix[[row[vocabulary.words[i].lower()] for i in found]]
        x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-8)
        labels[found] = MiniBatchKMeans(classes, random_state=0, n_init=3).fit_predict(x)
    return labels


# ------------------------------------------------------------------------------------------------ tinybert


@dataclass(frozen=True)
class TinyBERTOptions(AugmentOptions):
    p: float = option(0.4, "probability of replacing each word", minimum=0, maximum=1)
    k: int = option(15, "candidates per word: nearest neighbours or the masked LM's top predictions", minimum=1)
    vectors: str = option("", "word-vector file (GloVe/word2vec) for cosine neighbours")
    mlm: str = option("", "masked LM (directory or hub id) proposing replacements for single-piece words")

    def check(self, owner: str) -> None:
        if not self.vectors and not self.mlm:
            raise XKDError(f"{owner} needs word vectors (-A vectors=glove.txt) or a masked LM (--augment-mlm MODEL)")


@recipe("tinybert", TinyBERTOptions, "TinyBERT (Jiao et al. 2020): replace words by GloVe neighbours or an MLM's")
def tinybert(vocabulary: Vocabulary, o: TinyBERTOptions) -> Augmenter:
    candidates = nearest_neighbours(vocabulary.words, o.vectors, o.k) if o.vectors else {}
    mlm = MaskedLMCandidates(o.mlm, o.k) if o.mlm else None

    def augment(words: Words, rng: np.random.Generator) -> Words:
        chosen = np.flatnonzero(rng.random(len(words)) < o.p)
        out = list(words)
        proposals = mlm(words, chosen) if mlm is not None else {}
        for i in chosen:
            options = proposals.get(i) or candidates.get(words[i].lower())
            if options:
                out[i] = options[int(rng.integers(len(options)))]
        return out

    return augment


def nearest_neighbours(words: Sequence[str], vectors: str, k: int, chunk: int = 2048) -> dict[str, list[str]]:
    """The k nearest words (cosine, the word itself excluded) of every word in `words` that the vector file holds:
    one matrix product per chunk of words against the whole vocabulary of the file."""
    from xkd.students.word_vectors import read_word_vectors

    names, matrix = read_word_vectors(vectors)
    unit = torch.from_numpy(matrix / np.linalg.norm(matrix, axis=1, keepdims=True).clip(1e-8))
    row = {w: i for i, w in enumerate(names)}
    wanted = sorted({w.lower() for w in words if w.lower() in row})
    out: dict[str, list[str]] = {}
    for start in range(0, len(wanted), chunk):
        batch = wanted[start : start + chunk]
        ids = torch.tensor([row[w] for w in batch])
        scores = unit[ids] @ unit.T
        scores[torch.arange(len(batch)), ids] = -2.0  # never the word itself
        top = scores.topk(min(k, len(names) - 1), dim=1).indices
        out.update({w: [names[j] for j in top[i].tolist()] for i, w in enumerate(batch)})
    return out


class MaskedLMCandidates:
    """A masked LM's top-k replacements for chosen single-piece words of a text, one forward pass per text (all
    its chosen positions masked in copies, batched), cached per (text, position)."""

    def __init__(self, model: str, k: int) -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForMaskedLM.from_pretrained(model).eval()
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise XKDError(f"cannot load masked LM '{model}' for tinybert: {first}") from None
        self.k = k
        self.memo: dict[tuple[str, int], list[str]] = {}

    @torch.no_grad()
    def __call__(self, words: Words, positions: np.ndarray) -> dict[int, list[str]]:
        text = " ".join(words)
        todo = [int(i) for i in positions if (text, int(i)) not in self.memo and self._single_piece(words[i])]
        if todo:
            masked = [" ".join(w if j != i else self.tokenizer.mask_token for j, w in enumerate(words)) for i in todo]
            batch = self.tokenizer(masked, return_tensors="pt", padding=True, truncation=True, max_length=128)
            logits = self.model(**batch).logits
            where = batch["input_ids"] == self.tokenizer.mask_token_id
            for row, i in enumerate(todo):
                if not where[row].any():  # the word lies beyond the LM's length: no proposal
                    self.memo[(text, i)] = []
                    continue
                scores = logits[row][where[row]][0]
                ids = scores.topk(self.k + 1).indices.tolist()
                tokens = [self.tokenizer.convert_ids_to_tokens(t) for t in ids]
                self.memo[(text, i)] = [t for t in tokens if t.isalpha() and t != words[i]][: self.k]
        return {int(i): self.memo.get((text, int(i)), []) for i in positions}

    def _single_piece(self, word: str) -> bool:
        return len(self.tokenizer.tokenize(word)) == 1


# ------------------------------------------------------------------------------------------- generating a set


def resolve_recipe(name: str, values: dict[str, Any]) -> tuple[Recipe, AugmentOptions]:
    """The recipe and its checked options (`-A KEY=VALUE`)."""
    chosen = RECIPES.get(name)
    return chosen, chosen.options_type.build(f"augmentation recipe '{name}'", values)


def augment_texts(
    task: Task, train: pd.DataFrame, name: str, options: AugmentOptions, factor: int, progress: bool = True
) -> pd.DataFrame:
    """`factor` augmented copies of every training row (each text column augmented on its own), with `source`, the
    row each copy came from. Seeded by the options' `seed`: the same inputs give the same set."""
    if factor < 1:
        raise XKDError(f"augment-factor must be at least 1, got {factor}")
    texts = [t for c in task.text_columns for t in train[c].astype(str)]
    augmenter = RECIPES.get(name).build(Vocabulary.of(texts), options)
    rng = np.random.default_rng(options.seed)
    rows: dict[str, list] = {c: [] for c in (*task.text_columns, "source")}
    for source in tqdm(range(len(train)), desc=f"augment {name}", disable=not progress):
        originals = [str(train[c].iloc[source]).split() for c in task.text_columns]
        for _ in range(factor):
            for column, words in zip(task.text_columns, originals, strict=True):
                rows[column].append(" ".join(augmenter(words, rng)) if words else "")
            rows["source"].append(source)
    return pd.DataFrame(rows)


def augmented_set(
    task: Task,
    train: pd.DataFrame,
    name: str,
    values: dict[str, Any],
    factor: int,
    log: Log = print,
    progress: bool = True,
) -> tuple[pd.DataFrame, Path]:
    """The augmented set for these inputs: read from the xkd cache, or generated once and saved there."""
    _, options = resolve_recipe(name, values)
    path = augment_path(task, train, name, options, factor)
    with file_lock(path.with_name(f".{path.name}.lock"), wait=True):
        if path.is_file():
            log(f"augmentation: reusing {path}")
            return pd.read_parquet(path), path
        log(f"augmentation: {name} x{factor} over {len(train)} training rows (saved in {path})")
        frame = augment_texts(task, train, name, options, factor, progress)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    return frame, path


def file_digest(path: Path) -> str:
    """SHA-1 of a file's bytes, read in blocks (the 26 MB GloVe 50d file: 0.04 s here)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def augment_path(task: Task, train: pd.DataFrame, name: str, options: Options, factor: int) -> Path:
    """Where the set for these inputs is cached: the key covers the training texts, recipe, options (seed included)
    and factor. A vectors file counts by its content, not its path or modification time, so the same file copied,
    mounted elsewhere or touched keeps its set (and the transfer set's teacher cache, keyed by the texts)."""
    h = hashlib.sha1(f"format={FORMAT}".encode())
    for column in task.text_columns:
        h.update("\x1e".join(train[column].astype(str)).encode())
    settings = {"recipe": name, "options": asdict(options), "factor": factor}
    for key in ("vectors", "mlm"):
        file = Path(str(settings["options"].get(key) or ""))
        if file.is_file():
            settings["options"][key] = "(by content)"
            settings[f"{key}_file"] = file_digest(file)
        elif key == "mlm" and settings["options"].get(key) and file.is_dir():
            settings["options"][key] = model_key(str(file))  # a local masked LM by its resolved path, a hub id as is
    h.update(json.dumps(settings, sort_keys=True).encode())
    return cache_root() / "augment" / f"{task.name}--{name}--{h.hexdigest()[:12]}.parquet"
