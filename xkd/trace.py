"""The one data contract between teachers, students and losses.

Every model xkd can distil from or into returns a `Trace` from its forward pass. Losses only read traces, so any
method works with any model that fills the fields the method needs; a new student architecture only has to fill
this object (the plug-in protocol is in `xkd.students.plugins`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Trace:
    """What one forward pass exposes for distillation.

    Attributes:
        logits: final classifier output, [B, C] (C = 1 for regression).
        layer_vectors: one sentence vector per layer, [B, L, D]: the first-token ([CLS]) state of each transformer
            layer, or the pooled output of a CNN block / LSTM layer. The embedding output is not a layer.
        attention_mask: 1 for real tokens, 0 for padding, [B, T]; None for models without token positions.
        pseudo_logits: per-layer classifier outputs [B, L, C] when the model has a head on every layer.
        attentions: self-attention probabilities [B, L, H, T, T], only when a method asked for them (they are
            large, and HF models must switch to eager attention to return them).
    """

    logits: Tensor
    layer_vectors: Tensor
    attention_mask: Tensor | None = None
    pseudo_logits: Tensor | None = None
    attentions: Tensor | None = None

    @property
    def num_layers(self) -> int:
        return self.layer_vectors.shape[1]
