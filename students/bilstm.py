"""BiLSTM student: stacked bidirectional LSTM layers over packed sequences, each layer pooled to a sentence vector.

Packing means padding is never read, so the output does not depend on how much a batch is padded. Packed
sequences cannot be exported, so `for_export` switches to an equivalent padding-free formulation built only of
gathers: the forward direction reads the right-padded batch (its real positions never see padding), the backward
direction reads each sequence shifted to the right end, so it too meets real tokens before any padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from xkd.errors import XKDError

from .sentence_encoder import SentenceEncoderStudent, masked_max, masked_mean


@dataclass
class BiLSTMConfig:
    vocab_size: int
    embedding_dim: int
    num_labels: int
    pair: bool = False
    layers: int = 2
    hidden_size: int = 150
    pooling: str = "max"
    dropout: float = 0.5
    pad_token_id: int = 0
    freeze_embeddings: bool = False


class BiLSTMStudent(SentenceEncoderStudent):
    kind = "bilstm"
    config_class = BiLSTMConfig
    onnx_exporter = "torchscript"  # see xkd.export

    def __init__(self, config: BiLSTMConfig, tokenizer) -> None:
        if config.pooling not in ("max", "mean"):
            raise XKDError(f"BiLSTM pooling must be max or mean, got '{config.pooling}'")
        super().__init__(config, tokenizer)
        sizes = [config.embedding_dim] + [2 * config.hidden_size] * (config.layers - 1)
        self.lstms = nn.ModuleList(
            nn.LSTM(size, config.hidden_size, batch_first=True, bidirectional=True) for size in sizes
        )

    @property
    def encoder_width(self) -> int:
        return 2 * self.config.hidden_size

    def for_export(self) -> BiLSTMStudent:
        """Split each bidirectional LSTM into two one-way LSTMs with the same weights (see the module docstring)."""
        pairs = []
        for lstm in self.lstms:
            one_way = []
            for suffix in ("", "_reverse"):
                single = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(single, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l0{suffix}").data)
                one_way.append(single)
            pairs.append(nn.ModuleList(one_way))
        self.one_way = nn.ModuleList(pairs)
        return self

    def _one_way_layer(self, pair: nn.ModuleList, x: Tensor, attention_mask: Tensor) -> Tensor:
        steps = x.shape[1]
        position = torch.arange(steps, device=x.device)[None, :]
        shift = steps - attention_mask.sum(1, keepdim=True).clamp(min=1)  # [B, 1]: padding per row
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        forward, _ = pair[0](x)
        right = (position >= shift).unsqueeze(-1).to(x.dtype)
        shifted = x[rows, (position - shift).clamp(min=0)] * right
        backward, _ = pair[1](shifted.flip(1))
        backward = backward.flip(1)[rows, (position + shift).clamp(max=steps - 1)]
        return torch.cat([forward, backward], dim=-1) * attention_mask[..., None].to(x.dtype)

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> list[Tensor]:
        if hasattr(self, "one_way"):
            x = self.embed(input_ids, attention_mask)
            pool = masked_max if self.config.pooling == "max" else masked_mean
            layers = []
            for pair in self.one_way:
                x = self._one_way_layer(pair, x, attention_mask)
                layers.append(pool(x, attention_mask))
                x = self.dropout(x)
            return layers
        lengths = attention_mask.sum(1).clamp(min=1).cpu()
        x = self.embed(input_ids, attention_mask)
        pool = masked_max if self.config.pooling == "max" else masked_mean
        layers = []
        for lstm in self.lstms:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = lstm(packed)
            x, _ = pad_packed_sequence(out, batch_first=True, total_length=input_ids.shape[1])
            layers.append(pool(x, attention_mask))
            x = self.dropout(x)
        return layers
