"""FLOP counting: fused CPU attention and LSTMs, which PyTorch's counter misses, are counted."""

import torch
from torch import nn
from transformers import BertConfig, BertModel

from xkd.flops import flops_per_example, forward_flops


class Wrapped(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, inputs: dict) -> torch.Tensor:
        return self.module(**inputs)


def test_fused_attention_counts_like_eager_attention():
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertModel(config).eval()
    inputs = {"input_ids": torch.randint(0, 100, (4, 16)), "attention_mask": torch.ones(4, 16, dtype=torch.long)}
    counts = {}
    for implementation in ("sdpa", "eager"):
        model.set_attn_implementation(implementation)
        counts[implementation] = forward_flops(Wrapped(model), inputs)
    # QK^T and AV: 2 matmuls x 2 FLOPs x B x T x T x width, per layer.
    attention = 2 * 2 * 2 * 4 * 16 * 16 * 32
    assert counts["sdpa"] == counts["eager"]
    assert counts["sdpa"] > attention


class Lstm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=True)

    def forward(self, inputs: dict) -> torch.Tensor:
        return self.lstm(inputs["x"])[0]


def test_lstm_flops_by_hand_and_per_example():
    model = Lstm()
    x = torch.randn(2, 5, 8)
    tokens = 2 * 5
    by_hand = 2 * 4 * 16 * (8 + 16) * tokens * 2 + 2 * 4 * 16 * (32 + 16) * tokens * 2
    assert forward_flops(model, {"x": x}) == by_hand
    batches = [{"x": x, "attention_mask": torch.ones(2, 5)}] * 3
    assert flops_per_example(model, batches) == by_hand / 2
