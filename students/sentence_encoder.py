"""What CNN and BiLSTM students share: embeddings, sentence-pair handling, the classifier, save and load.

A sentence encoder turns token ids into one pooled vector per layer. Single sentences classify from the last
layer's vector; pairs are read by the same encoder and combined per layer as [u, v, u*v, |u-v|] (InferSent), so
each layer of the `Trace` is the pair's feature vector at that depth.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from xkd.damage import REDISTILL, TOKENIZER_FILES, damage_check
from xkd.paths import STUDENT_FILE
from xkd.trace import Trace

CONFIG_FILE = STUDENT_FILE  # xkd.paths: one name for every reader
WEIGHTS_FILE = "model.safetensors"


def _pad_to(x: Tensor, steps: int, value: int) -> Tensor:
    return F.pad(x, (0, steps - x.shape[1]), value=value)


def nonempty(input_ids: Tensor, attention_mask: Tensor, pad_token_id: int) -> tuple[Tensor, Tensor]:
    """Inputs in which every row has at least one position to read, so an empty or whitespace-only text (no tokens)
    gets finite outputs instead of a crash (a convolution needs an input to slide over, packing a length) or NaN
    (a max over no position is -inf): a batch of such texts gets one padding step, and a row without tokens reads
    its first position, padding, as its only token. Rows with tokens are left exactly as they were; the row fix
    has no data-dependent branch, so the graph still exports with dynamic shapes."""
    if not torch.jit.is_tracing() and input_ids.shape[1] == 0:  # (an exported graph is given one step: see predict)
        input_ids = F.pad(input_ids, (0, 1), value=pad_token_id)
        attention_mask = F.pad(attention_mask, (0, 1), value=0)
    empty = (attention_mask.sum(1, keepdim=True) == 0).to(attention_mask.dtype)  # [B, 1]
    return input_ids, torch.cat([attention_mask[:, :1] + empty, attention_mask[:, 1:]], dim=1)


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max over time [B, T, D] -> [B, D], ignoring padded positions."""
    return x.masked_fill(~mask.bool()[..., None], float("-inf")).amax(1)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


class SentenceEncoderStudent(nn.Module):
    """Base class: subclasses set `kind`, a config dataclass, and implement `encode(ids, mask) -> [layer vectors]`."""

    kind: ClassVar[str]
    config_class: ClassVar[type]
    pair_encoding = "separate"  # the data pipeline encodes the two texts of a pair apart

    def __init__(self, config: Any, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.meta: dict[str, Any] = {}
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.embedding.weight.requires_grad_(not config.freeze_embeddings)
        self.dropout = nn.Dropout(config.dropout)
        features = self.layer_width
        self.classifier = nn.Sequential(nn.Linear(features, config.num_labels))
        if config.pair:
            hidden = features // 4
            self.classifier = nn.Sequential(
                nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, config.num_labels)
            )

    # -- what subclasses provide
    @property
    def encoder_width(self) -> int:
        raise NotImplementedError

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> list[Tensor]:
        raise NotImplementedError

    # -- the contract
    @property
    def num_layers(self) -> int:
        return self.config.layers

    @property
    def layer_width(self) -> int:
        return self.encoder_width * (4 if self.config.pair else 1)

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def forward(self, inputs: dict[str, Tensor], output_attentions: bool = False) -> Trace:
        if self.config.pair:
            # One encoder pass over both texts (padded to one length; the encoders ignore padding): half the calls,
            # and an exportable graph.
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            ids_b, mask_b = inputs["input_ids_b"], inputs["attention_mask_b"]
            if ids.shape[1] != ids_b.shape[1]:  # (an exported graph has one length for both: no padding ops)
                steps = max(ids.shape[1], ids_b.shape[1])
                pad = self.config.pad_token_id
                ids, ids_b = _pad_to(ids, steps, pad), _pad_to(ids_b, steps, pad)
                mask, mask_b = _pad_to(mask, steps, 0), _pad_to(mask_b, steps, 0)
            both = self.encode(*nonempty(torch.cat([ids, ids_b]), torch.cat([mask, mask_b]), self.config.pad_token_id))
            n = inputs["input_ids"].shape[0]
            layers = [torch.cat([u, v, u * v, (u - v).abs()], dim=-1) for u, v in ((x[:n], x[n:]) for x in both)]
        else:
            layers = self.encode(*nonempty(inputs["input_ids"], inputs["attention_mask"], self.config.pad_token_id))
        vectors = torch.stack(layers, dim=1)
        return Trace(
            logits=self.classifier(self.dropout(vectors[:, -1])),
            layer_vectors=vectors,
            attention_mask=inputs["attention_mask"],
        )

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        # No dropout on word vectors (as in Kim 2014): dropout acts between layers and before the classifier.
        return self.embedding(input_ids) * attention_mask[..., None].to(self.embedding.weight.dtype)

    # -- files
    def save(self, directory: str | os.PathLike, **meta: Any) -> Path:
        """config JSON + safetensors + tokenizer: everything `load_student` needs, nothing else."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(weights, str(directory / WEIGHTS_FILE))
        self.tokenizer.save_pretrained(directory)
        record = {"kind": self.kind, "config": asdict(self.config), **meta}
        if getattr(self, "plugin", None):
            record["plugin"] = self.plugin
        (directory / CONFIG_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SentenceEncoderStudent:
        directory = Path(directory)
        files = (CONFIG_FILE, WEIGHTS_FILE, *TOKENIZER_FILES)  # a damaged one ends in one line naming it
        with damage_check(f"student '{directory}'", directory, files, REDISTILL):
            record = json.loads((directory / CONFIG_FILE).read_text())
            values = record["config"].items()
            config = cls.config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values})
            model = cls(config, AutoTokenizer.from_pretrained(directory))
            model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        model.meta = {k: v for k, v in record.items() if k not in ("kind", "config")}
        return model
