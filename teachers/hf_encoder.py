"""Adapter from any Hugging Face encoder classifier (BERT, RoBERTa, ...) to the `Trace` contract.

Teachers and BERT-k students are both plain `AutoModelForSequenceClassification` models; this wrapper is what
makes them distillable: it returns every layer's first-token vector, the final logits and, only when a method
asks, the attention maps (switching the model to eager attention, since SDPA returns none).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from xkd.damage import MODEL_FILES, REDISTILL, REFETCH, TOKENIZER_FILES, damage_check
from xkd.errors import XKDError
from xkd.paths import MODEL_META_FILE
from xkd.pseudo_heads import DamagedHeads, PseudoHeads
from xkd.trace import Trace

META_FILE = MODEL_META_FILE  # what xkd knows about a saved model: its task, how it was made, its metrics


def is_sequence_classifier(config: PretrainedConfig) -> bool:
    """True when the checkpoint holds a trained classification head (not a bare encoder such as MiniLM)."""
    return any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))


def load_config(name_or_path: str, what: str = "model") -> PretrainedConfig:
    try:
        advice = REDISTILL if what == "student" else REFETCH
        with damage_check(f"{what} '{name_or_path}'", name_or_path, ("config.json",), advice):
            return AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        where = "the hub cache (HF_HUB_CACHE) with HF_HUB_OFFLINE=1" if offline else "the hub"
        if Path(name_or_path).exists():
            first = str(e).strip().splitlines()[0][:160]
            raise XKDError(f"cannot load {what} '{name_or_path}': {first}; pass a saved model directory") from None
        raise XKDError(
            f"cannot load {what} '{name_or_path}': not a local directory and not found in {where}; "
            "pass a path to a saved model or a cached hub id"
        ) from None


class HFEncoderClassifier(nn.Module):
    """A Hugging Face sequence classifier that returns a `Trace`.

    Attributes used by the engine: `num_layers`, `layer_width`, `num_labels`, `tokenizer`.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        meta: dict | None = None,
        pseudo_heads: PseudoHeads | None = None,
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.meta = dict(meta or {})
        self.pseudo_heads = pseudo_heads  # a head per layer (Universal-KD); saved apart from the model
        self.damaged_heads: DamagedHeads | None = None  # stored heads that could not be read (see `load_heads`)

    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def layer_width(self) -> int:
        return self.config.hidden_size

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def layer_modules(self) -> list[nn.Module]:
        """[embeddings, layer 1, ..., layer L]: what a method may freeze bottom-up (Aguilar et al.'s PID)."""
        base = self.model.base_model
        return [base.embeddings, *base.encoder.layer]

    def forward(self, inputs: dict[str, torch.Tensor], output_attentions: bool = False) -> Trace:
        if output_attentions and self.config._attn_implementation != "eager":
            self.model.set_attn_implementation("eager")
        out = self.model(**inputs, output_hidden_states=True, output_attentions=output_attentions)
        # hidden_states[0] is the embedding output, not a layer.
        layer_vectors = torch.stack([h[:, 0] for h in out.hidden_states[1:]], dim=1)
        attentions = torch.stack(out.attentions, dim=1) if output_attentions else None
        return Trace(
            logits=out.logits,
            layer_vectors=layer_vectors,
            attention_mask=inputs.get("attention_mask"),
            pseudo_logits=self.pseudo_heads(layer_vectors) if self.pseudo_heads is not None else None,
            attentions=attentions,
        )

    def save(self, directory: str | os.PathLike, **meta: Any) -> Path:
        """Save as a plain HF checkpoint (loadable without xkd) plus `xkd.json` metadata.

        Pseudo heads are not part of the exported model; teachers save theirs with `PseudoHeads.save`.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        self.meta.update(meta)
        (directory / META_FILE).write_text(json.dumps(self.meta, indent=2, default=str) + "\n")
        return directory

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, num_labels: int | None = None, what: str = "model"
    ) -> HFEncoderClassifier:
        """Load a hub id or local directory; `num_labels` sizes a fresh head on a bare encoder."""
        load_config(name_or_path, what)  # a clear error for a missing path or uncached hub id
        kwargs: dict[str, Any] = {}
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        label = f"{what} '{name_or_path}'"  # a damaged file names itself: see `xkd.damage`
        advice = REDISTILL if what == "student" else REFETCH
        try:
            with damage_check(label, name_or_path, MODEL_FILES, advice):
                model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **kwargs)
            with damage_check(label, name_or_path, TOKENIZER_FILES, advice):
                tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0][:160]
            raise XKDError(f"cannot load {what} '{name_or_path}': {first}") from None
        meta_path = Path(name_or_path) / META_FILE
        with damage_check(label, name_or_path, (META_FILE,), advice):
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        meta.setdefault("source", name_or_path)
        loaded = cls(model, tokenizer, meta)
        if PseudoHeads.exists(name_or_path):
            loaded.load_heads(name_or_path)  # damaged heads stay off (see `load_heads`)
        return loaded

    def load_heads(self, directory: str | os.PathLike) -> bool:
        """Attach the pseudo classifiers stored in `directory`; heads that cannot be read are left off and kept in
        `damaged_heads` (they are derived from the model, so whoever needs them retrains them and says why)."""
        try:
            self.pseudo_heads = PseudoHeads.load(directory)
        except DamagedHeads as e:
            self.damaged_heads = e
            return False
        self.damaged_heads = None
        return True


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients: a teacher's weights never change during distillation."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
