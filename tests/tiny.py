"""Tiny models and data built in the test: no downloads, seconds per test."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import torch
from click.testing import CliRunner, Result
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizer,
    MPNetConfig,
    MPNetForSequenceClassification,
    MPNetModel,
    MPNetTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from xkd.trace import Trace

SHARED = Path(__file__).resolve().parents[2] / "shared"
POSITIVE = ["good", "great", "fine", "superb", "lovely", "moving", "funny", "smart"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "weak", "silly", "flat"]
FILLER = ["the", "film", "movie", "is", "was", "plot", "cast", "really", "quite", "a", "story", "and"]
WORDS = POSITIVE + NEGATIVE + FILLER


def make_tokenizer(directory: Path) -> BertTokenizer:
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizer(vocab=str(directory / "vocab.txt"))


def make_mpnet_tokenizer() -> MPNetTokenizerFast:
    """A word-piece tokenizer of MPNet's kind (<s> x </s>, pad id 1) whose ids differ from `make_tokenizer`'s, so a
    tiny MPNet and a tiny BERT do not share a tokenizer, as all-mpnet-base-v2 and MiniLM do not."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *reversed(WORDS)]
    backend = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    specials = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>"}
    return MPNetTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", **specials
    )


def tiny_bert_config(vocab_size: int, layers: int = 4, num_labels: int = 2, dropout: float = 0.1) -> BertConfig:
    return BertConfig(
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
    )


def _tiny_sizes(tokenizer, layers: int, num_labels: int, width: int = 32) -> dict:
    """The sizes of the tiny RoBERTa and MPNet (positions 72: both offset them past the padding id)."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": width,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 72,
        "num_labels": num_labels,
        "pad_token_id": tokenizer.pad_token_id,
    }


def save_tiny(
    directory: Path, kind: str = "bert", layers: int = 4, num_labels: int = 2, bare: bool = False, dropout: float = 0.1
) -> Path:
    """Save a tiny random BERT, RoBERTa or MPNet classifier (or a bare encoder) with its tokenizer."""
    torch.manual_seed(0)
    if kind == "mpnet":
        tokenizer = make_mpnet_tokenizer()
        config = MPNetConfig(
            **_tiny_sizes(tokenizer, layers, num_labels, width=48),  # not the tiny BERT's 32: another width too
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
        model = MPNetModel(config) if bare else MPNetForSequenceClassification(config)
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        return directory
    tokenizer = make_tokenizer(directory / "_tok")
    if kind == "roberta":
        config = RobertaConfig(**_tiny_sizes(tokenizer, layers, num_labels))
        model = RobertaForSequenceClassification(config)
    else:
        config = tiny_bert_config(len(tokenizer), layers, num_labels, dropout)
        model = BertModel(config) if bare else BertForSequenceClassification(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def sentence(rng: random.Random, label: int) -> str:
    words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words)


def write_task_dir(directory: Path, sizes=(64, 32, 32), suffix: str = ".tsv") -> Path:
    """A learnable single-sentence polarity task in MR's column layout."""
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "validation", "test"), sizes, strict=True):
        labels = [i % 2 for i in range(n)]
        df = pd.DataFrame({"sentence": [sentence(rng, y) for y in labels], "label": labels})
        write_frame(df, directory / f"{split}{suffix}")
    return directory


def write_frame(df: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)


# Quick CLI settings for tiny end-to-end runs.
QUICK = ["--epochs", "2", "--batch-size", "16", "--max-length", "16", "--no-progress", "--no-latency"]


# What the tests of methods, caches and runs were written for: a 2-layer BERT on the gold data (the defaults, a CNN
# and a tang x10 transfer set, have their own tests; a later `--student` or `--augment` overrides these).
BEFORE_DEFAULTS = ["--student", "bert-k", "--augment", "none"]


def distill(teacher, data_dir) -> list[str]:
    """The start of an `xkd distill` command line on a given teacher and data directory (`BEFORE_DEFAULTS`)."""
    return ["distill", "--teacher", str(teacher), "--data-dir", str(data_dir), *BEFORE_DEFAULTS]


def load_benchmark(name: str):
    """A script of `benchmarks/` (not a package) as a module, so a test can run its quick form."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    module_spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def run(*args: str) -> Result:
    """Invoke the xkd CLI in-process."""
    from xkd.cli.main import cli

    return CliRunner().invoke(cli, list(args))


def metrics_lines(run_dir) -> list[dict]:
    """A run's `metrics.jsonl`: one record per evaluation, in order (the one reader the tests share)."""
    import json

    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def make_trace(
    batch: int = 1,
    layers: int = 1,
    width: int = 4,
    classes: int = 2,
    *,
    logits: torch.Tensor | None = None,
    layer_vectors: torch.Tensor | None = None,
    pseudo_logits: torch.Tensor | bool | None = None,
    attention_mask: torch.Tensor | None = None,
    attentions: torch.Tensor | None = None,
    drawn: bool = False,
) -> Trace:
    """The one way tests build a `Trace` by hand: the tensors given as they are, the others of the given sizes
    (`batch` from `logits` when given), zeros or, `drawn`, standard normal draws (in the order logits, layer
    vectors, pseudo logits, so a seeded test draws the same numbers each time). `pseudo_logits=True` adds per-layer
    logits; a tensor is used as it is."""
    draw = torch.randn if drawn else torch.zeros
    batch = logits.shape[0] if logits is not None else batch
    logits = draw(batch, classes) if logits is None else logits
    layer_vectors = draw(batch, layers, width) if layer_vectors is None else layer_vectors
    if pseudo_logits is True:
        pseudo_logits = draw(batch, layer_vectors.shape[1], logits.shape[1])
    pseudo = pseudo_logits if isinstance(pseudo_logits, torch.Tensor) else None
    return Trace(logits, layer_vectors, attention_mask, pseudo, attentions)
