"""CNN student: stacked Kim-style convolution blocks; each block's max-pooled output is one layer of the Trace.

Every block runs filters of several widths (3/4/5 by default) in parallel over the previous block's output and
concatenates them. `gated` makes each filter a GLU (Dauphin et al.), the gated CNN of the Universal-KD paper.
Padded positions are zeroed between blocks and ignored by the pooling, so extra padding never changes the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .sentence_encoder import SentenceEncoderStudent, masked_max


@dataclass
class CNNConfig:
    vocab_size: int
    embedding_dim: int
    num_labels: int
    pair: bool = False
    layers: int = 2
    filter_widths: tuple[int, ...] = (3, 4, 5)
    channels: int = 100
    gated: bool = False
    dropout: float = 0.5
    pad_token_id: int = 0
    freeze_embeddings: bool = False


class CNNStudent(SentenceEncoderStudent):
    kind = "cnn"
    config_class = CNNConfig

    def __init__(self, config: CNNConfig, tokenizer) -> None:
        super().__init__(config, tokenizer)
        factor = 2 if config.gated else 1  # a GLU halves its channels
        blocks = []
        width = config.embedding_dim
        for _ in range(config.layers):
            blocks.append(nn.ModuleList(nn.Conv1d(width, factor * config.channels, k) for k in config.filter_widths))
            width = config.channels * len(config.filter_widths)
        self.blocks = nn.ModuleList(blocks)

    @property
    def encoder_width(self) -> int:
        return self.config.channels * len(self.config.filter_widths)

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> list[Tensor]:
        mask = attention_mask[:, None, :].to(self.embedding.weight.dtype)  # [B, 1, T]
        x = self.embed(input_ids, attention_mask).transpose(1, 2)  # [B, E, T]
        layers = []
        for block in self.blocks:
            # "Same" padding by hand (left (k-1)//2, right k//2), so even widths need no padded copy either.
            outs = [conv(F.pad(x, ((conv.kernel_size[0] - 1) // 2, conv.kernel_size[0] // 2))) for conv in block]
            outs = [F.glu(o, dim=1) if self.config.gated else torch.relu(o) for o in outs]
            x = torch.cat(outs, dim=1) * mask
            layers.append(masked_max(x.transpose(1, 2), attention_mask))
            x = self.dropout(x)
        return layers
