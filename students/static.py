"""Static student: token embeddings pooled by a masked mean, then small dense layers, each one layer of the Trace.

The fastest model that can be a student: no convolution or recurrence over the text, one embedding lookup and a
mean per text, as in model2vec's `StaticModel`. With `vectors=teacher` (its default) the SIF weights are baked into
the distilled vectors, so the plain masked mean over the text's tokens is model2vec's weighted mean. The mean skips
padding and the vocabulary's special tokens: an unknown word's [UNK] row is never trained (the vocabulary holds every
training word) and [CLS]/[SEP] add the same row to every text; model2vec drops them too, so the student exports to a
model2vec pipeline exactly (`xkd export DIR --model2vec OUT`). Extra padding never changes the output, and the graph
is a comparison, one sum and one division over the time axis: it exports with dynamic batch and sequence axes.
`layers` dense layers (Linear + ReLU, width `hidden`) follow; each one's output is a layer vector, so Universal-KD,
PKD and ALP have layers to match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from xkd.errors import XKDError

from .sentence_encoder import SentenceEncoderStudent, masked_mean


@dataclass
class StaticConfig:
    vocab_size: int
    embedding_dim: int
    num_labels: int
    pair: bool = False
    layers: int = 2
    hidden: int = 256
    dropout: float = 0.5
    pad_token_id: int = 0
    freeze_embeddings: bool = False


class StaticStudent(SentenceEncoderStudent):
    kind = "static"
    config_class = StaticConfig

    def __init__(self, config: StaticConfig, tokenizer) -> None:
        if config.layers < 1:  # the Trace and the classifier read the last dense layer's vector
            raise XKDError(f"the static student needs --student-layers at least 1 (dense layers), got {config.layers}")
        if config.hidden < 1:
            raise XKDError(f"-S hidden must be at least 1, got {config.hidden}")
        super().__init__(config, tokenizer)
        widths = [config.embedding_dim] + [config.hidden] * config.layers
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False))
        skipped = sorted({int(i) for i in tokenizer.all_special_ids} | {config.pad_token_id})
        self.register_buffer("skipped_ids", torch.tensor(skipped, dtype=torch.long), persistent=False)

    @property
    def encoder_width(self) -> int:
        return self.config.hidden

    def pooled(self, input_ids: Tensor, counted: Tensor) -> Tensor:
        """The mean of the counted tokens' vectors. Outside an export it sums only the counted rows (one
        `embedding_bag` over the flat token list), so padding costs nothing: a third of a 256-text prediction batch's
        time went to looking up and summing padded [B, T, E] rows. The export keeps the padded form, whose graph has
        no data-dependent shape; the two agree to float rounding (tested)."""
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            return masked_mean(self.embedding(input_ids), counted)
        counts = counted.sum(1)
        offsets = torch.cumsum(counts, 0) - counts
        bags = F.embedding_bag(input_ids[counted], self.embedding.weight, offsets, mode="sum")
        return bags / counts.clamp(min=1)[:, None].to(bags.dtype)

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> list[Tensor]:
        # No dropout on the pooled vectors (as on the CNN's word vectors): dropout acts between layers.
        counted = attention_mask.bool() & ~(input_ids[..., None] == self.skipped_ids).any(-1)
        x = self.pooled(input_ids, counted)  # [B, E]; a text of special tokens only: zeros
        layers = []
        for linear in self.dense:
            x = torch.relu(linear(x))
            layers.append(x)
            x = self.dropout(x)
        return layers
