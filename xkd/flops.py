"""Forward FLOPs per example: the machine-independent cost column of runs and studies.

Wall time says what a run cost on one machine; FLOPs let a reader compare runs from different machines, and add
up the cost of a chain (teacher -> assistant -> student). Counted with PyTorch's `FlopCounterMode` (matrix
multiplications, convolutions, attention) on real batches, so padding is counted as the training loop pays it.
Two kernels it does not count are added by hand: CPU fused attention and `nn.LSTM` (one opaque op).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

_CPU_ATTENTION = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _lstm_flops(module: nn.LSTM, tokens: int) -> int:
    """Multiply-adds of the four gates, both matrix products, every layer and direction, counted as 2 FLOPs."""
    directions = 2 if module.bidirectional else 1
    total, width = 0, module.input_size
    for _ in range(module.num_layers):
        total += 2 * 4 * module.hidden_size * (width + module.hidden_size) * tokens * directions
        width = module.hidden_size * directions
    return total


def forward_flops(model: nn.Module, inputs: dict, **kwargs) -> int:
    """FLOPs of one forward pass of `model(inputs, **kwargs)` (no gradient)."""
    counted = 0

    def on_lstm(module: nn.LSTM, args, output) -> None:
        nonlocal counted
        x = args[0]
        if isinstance(x, PackedSequence):
            tokens = x.data.shape[0]
        else:
            tokens = x.shape[0] * x.shape[1] if x.dim() == 3 else x.shape[0]
        counted += _lstm_flops(module, tokens)

    hooks = [m.register_forward_hook(on_lstm) for m in model.modules() if isinstance(m, nn.LSTM)]
    mapping = {_CPU_ATTENTION: _cpu_attention_flops} if _CPU_ATTENTION is not None else {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(inputs, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return int(counter.get_total_flops()) + counted


def flops_per_example(model: nn.Module, batches: list[dict]) -> float:
    """Mean forward FLOPs per example over `batches` (each a model-input dict with `attention_mask`)."""
    device = next(model.parameters()).device
    total, examples = 0, 0
    for inputs in batches:
        total += forward_flops(model, {k: v.to(device) for k, v in inputs.items()})
        examples += int(inputs["attention_mask"].shape[0])
    return total / max(examples, 1)
