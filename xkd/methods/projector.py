"""Attention-based layer projection: every student layer attends over all teacher layers.

One module serves two methods: Universal-KD works in OUTPUT space (pseudo-logits, KL) and ALP-KD
in HIDDEN space (sentence vectors, MSE); `space` is a parameter, not a second implementation.

For student layer j and teacher layer i, `α_ji = softmax_i(s(j, i) / T_att)` with the score `s` either
`logits` (z^S_j · z^T_i) or `hidden` (h^S_j W · h^T_i, W learned when widths differ). Then either
- variant `logits`: the target is the attention-weighted teacher layer, `ẑ_j = Σ_i α_ji z^T_i`, and
  L = Σ_j τ² KL(softmax(ẑ_j/τ) ‖ softmax(z^S_j/τ))  (hidden space: Σ_j MSE(h^S_j W, Σ_i α_ji h^T_i)); or
- variant `loss`: attention weights the per-pair losses, L = Σ_j Σ_i α_ji τ² KL(softmax(z^T_i/τ) ‖ softmax(z^S_j/τ)).
Multi-label outputs (distance `bernoulli`) replace each softmax over the labels by one Bernoulli per label and the
KL by its mean over labels (see `LayerProjector._bernoulli_loss`).
Losses are summed over student layers and averaged over the batch. Everything is batched einsums over layers and
computed in float32, so it is safe under autocast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xkd.errors import XKDError
from xkd.layer_maps import uniform_map
from xkd.methods.base import TermModule
from xkd.methods.losses import bernoulli_kl
from xkd.trace import Trace

SPACES = ("output", "hidden")
DISTANCES = ("kl", "mse", "bernoulli")
SCORES = ("logits", "hidden")
VARIANTS = ("logits", "loss")
MASKS = ("all", "buckets", "overlap", "above")


def layer_mask(m: int, n: int, kind: str, device: torch.device | None = None) -> Tensor:
    """Which teacher layers (columns) each student layer (rows) may attend to, as a [m, n] bool tensor.

    `all`: every layer. `buckets`: the teacher layers split into m contiguous, non-overlapping buckets (ALP-KD's
    NO variant); `overlap`: each bucket widened by one layer on both sides (our reading of ALP-KD's partially
    overlapping PO variant). `above`: the teacher layers at or above the student layer's uniform partner
    round((j+1)n/m)-1.
    """
    rows = torch.arange(m, device=device)[:, None]
    cols = torch.arange(n, device=device)[None, :]
    if kind == "all":
        return torch.ones(m, n, dtype=torch.bool, device=device)
    if kind in ("buckets", "overlap"):
        start = torch.div(rows * n, m, rounding_mode="floor")
        end = torch.maximum(torch.div((rows + 1) * n, m, rounding_mode="floor"), start + 1)
        if kind == "overlap":
            start, end = start - 1, end + 1
        return (cols >= start) & (cols < end)
    if kind == "above":
        partner = torch.tensor(uniform_map(n, m), device=device)[:, None]
        return cols >= partner
    raise XKDError(f"unknown projector mask '{kind}'; choose one of: {', '.join(MASKS)}")


@dataclass
class Projection:
    """The projector's loss and its attention α [B, m, n] (detached, for logging and plots)."""

    loss: Tensor
    attention: Tensor


class ProjectionLoss(TermModule):
    """A loss term module whose forward(student, teacher) returns a `Projection` (loss and attention α).

    After every epoch it records its mean α over the first validation split in `attention.jsonl` (row j: how
    student layer j spreads over the teacher layers), which reports plot as heatmaps.
    """

    epoch_log = "attention.jsonl"

    def forward(self, student: Trace, teacher: Trace) -> Projection:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def epoch_record(self, pairs: Iterable[tuple[Trace, Trace | None]]) -> dict[str, Any]:
        total, count = None, 0
        for student, teacher in pairs:
            alpha = self(student, teacher).attention.float()
            total = alpha.sum(0) if total is None else total + alpha.sum(0)
            count += alpha.shape[0]
        return {"alpha": (total / max(count, 1)).cpu().tolist()}


class LayerProjector(nn.Module):
    """Attention over teacher layers for every student layer, in output or hidden space."""

    def __init__(
        self,
        space: str = "output",
        score: str = "logits",
        variant: str = "logits",
        mask: str = "all",
        scale: bool = False,
        attention_temperature: float = 1.0,
        temperature: float = 1.0,
        student_width: int | None = None,
        teacher_width: int | None = None,
        detach_attention: bool = False,
        distance: str | None = None,
    ) -> None:
        super().__init__()
        # KL between label distributions in output space, MSE between vectors in hidden space; output-space MSE
        # serves regression, where a softmax over one output carries no information, and `bernoulli` multi-label
        # outputs, whose labels are independent sigmoids rather than one softmax.
        distance = distance or ("kl" if space == "output" else "mse")
        for name, value, allowed in (
            ("space", space, SPACES),
            ("distance", distance, DISTANCES),
            ("score", score, SCORES),
            ("variant", variant, VARIANTS),
            ("mask", mask, MASKS),
        ):
            if value not in allowed:
                raise XKDError(f"unknown projector {name} '{value}'; choose one of: {', '.join(allowed)}")
        if not attention_temperature > 0 or not temperature > 0:
            raise XKDError("projector temperatures must be > 0")
        self.space, self.score, self.variant, self.mask, self.distance = space, score, variant, mask, distance
        self.scale, self.attention_temperature, self.temperature = scale, attention_temperature, temperature
        self.detach_attention = detach_attention
        self.map: nn.Module = nn.Identity()
        if score == "hidden" or space == "hidden":
            if student_width is None or teacher_width is None:
                raise XKDError("the hidden-space projector needs student_width and teacher_width")
            if student_width != teacher_width:
                # A learned d_S -> d_T map, trained with the student and dropped at export.
                self.map = nn.Linear(student_width, teacher_width, bias=False)

    def attention(
        self,
        student_logits: Tensor | None,
        teacher_logits: Tensor | None,
        student_hidden: Tensor | None = None,
        teacher_hidden: Tensor | None = None,
    ) -> Tensor:
        """α [B, m, n]: softmax over the teacher layers each student layer may see."""
        if self.score == "logits":
            s, t = student_logits.float(), teacher_logits.float()
        else:
            s, t = self.map(student_hidden.float()), teacher_hidden.float()
        scores = torch.einsum("bmd,bnd->bmn", s, t)
        if self.scale:
            scores = scores / math.sqrt(s.shape[-1])
        scores = scores / self.attention_temperature
        allowed = layer_mask(scores.shape[1], scores.shape[2], self.mask, scores.device)
        alpha = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        return alpha.detach() if self.detach_attention else alpha

    def forward(
        self,
        student_logits: Tensor | None,
        teacher_logits: Tensor | None,
        student_hidden: Tensor | None = None,
        teacher_hidden: Tensor | None = None,
    ) -> Projection:
        alpha = self.attention(student_logits, teacher_logits, student_hidden, teacher_hidden)
        if self.space == "output":
            student, teacher = student_logits.float(), teacher_logits.float()
        else:
            student, teacher = self.map(student_hidden.float()), teacher_hidden.float()
        losses = {"kl": self._kl_loss, "mse": self._mse_loss, "bernoulli": self._bernoulli_loss}
        return Projection(loss=losses[self.distance](alpha, student, teacher), attention=alpha.detach())

    def _kl_loss(self, alpha: Tensor, student: Tensor, teacher: Tensor) -> Tensor:
        tau = self.temperature
        log_p_student = F.log_softmax(student / tau, dim=-1)  # [B, m, C]
        if self.variant == "logits":
            target = torch.einsum("bmn,bnc->bmc", alpha, teacher)
            log_p_target = F.log_softmax(target / tau, dim=-1)
            kl = (log_p_target.exp() * (log_p_target - log_p_student)).sum(-1)  # [B, m]
        else:
            log_p_teacher = F.log_softmax(teacher / tau, dim=-1)  # [B, n, C]
            pair = (log_p_teacher.exp()[:, None] * (log_p_teacher[:, None] - log_p_student[:, :, None])).sum(-1)
            kl = (alpha * pair).sum(-1)  # [B, m]
        return tau * tau * kl.sum(-1).mean()

    def _bernoulli_loss(self, alpha: Tensor, student: Tensor, teacher: Tensor) -> Tensor:
        """`_kl_loss` for multi-label outputs: L = Σ_j τ² mean_c KL(Bern(σ(ẑ_jc/τ)) ‖ Bern(σ(z^S_jc/τ))) (variant
        `logits`, ẑ_j = Σ_i α_ji z^T_i), or Σ_j Σ_i α_ji τ² mean_c KL(Bern(σ(z^T_ic/τ)) ‖ Bern(σ(z^S_jc/τ))) (`loss`).

        Why this form: label c with logit z is the 2-class distribution [1 - σ(z), σ(z)] = softmax([0, z]). Mixing
        teacher logits mixes these 2-class logits alike (Σ_i α_ji [0, z_ic] = [0, ẑ_jc]), and the `logits` score
        z^S_j · z^T_i is the sum over labels of the 2-class scores [0, z^S_jc] · [0, z^T_ic]. So this is `_kl_loss`
        run on every label's 2-class distribution with one attention shared by the labels, averaged over labels
        (the mean keeps the scale of a one-label task whatever the label count). With one label it *is* `_kl_loss`
        on the 2-class logits [0, z], attention included.
        """
        tau = self.temperature
        if self.variant == "logits":
            target = torch.einsum("bmn,bnc->bmc", alpha, teacher)
            kl = bernoulli_kl(target / tau, student / tau).mean(-1)  # [B, m]
        else:
            pair = bernoulli_kl(teacher[:, None] / tau, student[:, :, None] / tau).mean(-1)  # [B, m, n]
            kl = (alpha * pair).sum(-1)  # [B, m]
        return tau * tau * kl.sum(-1).mean()

    def _mse_loss(self, alpha: Tensor, student: Tensor, teacher: Tensor) -> Tensor:
        if self.variant == "logits":
            target = torch.einsum("bmn,bnd->bmd", alpha, teacher)
            mse = ((student - target) ** 2).mean(-1)  # [B, m]
        else:
            pair = ((student[:, :, None] - teacher[:, None]) ** 2).mean(-1)  # [B, m, n]
            mse = (alpha * pair).sum(-1)
        return mse.sum(-1).mean()
