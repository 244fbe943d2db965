"""The frozen teacher's outputs for a batch: read from the teacher cache, or computed online."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from xkd.trace import Trace


class TeacherOutputs(Protocol):
    """Stored teacher outputs the loop reads instead of running a teacher: a `TeacherCache`, an ensemble's
    member caches combined (`xkd.teachers.ensemble.EnsembleCache`), or outputs saved from an outside model. The
    loop asks only whether a split is held and for a batch's Trace, so it knows none of them."""

    def has(self, split: str) -> bool: ...

    def trace(self, split: str, index: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Trace: ...


class TeacherSource:
    """The frozen teacher's Trace for a batch: from the teacher cache when it holds the split, else online."""

    def __init__(self, teacher: nn.Module | None, cache: TeacherOutputs | None, needs_attentions: bool) -> None:
        self.teacher, self.cache, self.needs_attentions = teacher, cache, needs_attentions
        self.forward_examples = 0  # examples this process ran through the teacher (the compute columns count them)

    def cached(self, split: str) -> bool:
        """Whether the cache serves `split` (attention maps are never cached)."""
        return self.cache is not None and self.cache.has(split) and not self.needs_attentions

    @torch.no_grad()
    def __call__(self, split: str, batch: dict) -> Trace | None:
        if self.cached(split):
            return self.cache.trace(split, batch["index"], batch.get("teacher", {}).get("attention_mask"))
        if self.teacher is None:
            return None
        self.forward_examples += int(batch["labels"].shape[0])
        return self.teacher(batch["teacher"], output_attentions=self.needs_attentions)
