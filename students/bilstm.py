"""BiLSTM student: stacked bidirectional LSTM layers over packed sequences, each layer pooled to a sentence vector.

Packing means padding is never read, so the output does not depend on how much a batch is padded.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> list[Tensor]:
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
