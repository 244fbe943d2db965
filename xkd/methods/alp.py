"""ALP-KD (Passban et al., AAAI 2021): every student layer attends over all teacher layers in hidden space.

It is the Universal-KD projector with `space="hidden"`, not a second implementation: α_ji = softmax_i(h^S_j·h^T_i),
target c_j = Σ_i α_ji h^T_i, L_ALP = Σ_j MSE(h^S_j, c_j). Loss weights follow the paper, β = 1 - η - λ:
L = β·CE + η·KD + λ·L_ALP. `mask=buckets` is the non-overlapping (NO) variant, `mask=overlap` the partially
overlapping one (PO, here: each bucket widened by one layer on both sides).
"""

from __future__ import annotations

from dataclasses import dataclass

from xkd.errors import XKDError
from xkd.methods.base import (
    LossTerm,
    MethodOptions,
    TermContext,
    gold_term,
    method,
    module_term,
    needs_context,
    soft_term,
)
from xkd.methods.projector import MASKS, LayerProjector, Projection, ProjectionLoss
from xkd.options import option
from xkd.trace import Trace


@dataclass(frozen=True)
class ALPOptions(MethodOptions):
    temperature: float = option(2.0, "KD temperature τ on the final logits", above=0)
    eta: float = option(0.2, "weight η of KD on the final logits (CE gets 1 - η - λ)", minimum=0, maximum=1)
    lam: float = option(0.5, "weight λ of the hidden-space projection term", minimum=0, maximum=1)
    mask: str = option(
        "all", "teacher layers each student layer may attend to (buckets: NO, overlap: PO)", choices=MASKS
    )
    scale: bool = option(True, "divide attention scores by sqrt(width)")

    def check(self, owner: str) -> None:
        if self.eta + self.lam > 1:
            raise XKDError(f"{owner} needs eta + lam <= 1 (CE gets 1 - eta - lam), got {self.eta} and {self.lam}")


class ALPLoss(ProjectionLoss):
    def __init__(self, context: TermContext, mask: str, scale: bool) -> None:
        super().__init__()
        self.projector = LayerProjector(
            space="hidden",
            score="hidden",
            mask=mask,
            scale=scale,
            student_width=context.student_width,
            teacher_width=context.teacher_width,
        )

    def forward(self, student: Trace, teacher: Trace) -> Projection:
        return self.projector(None, None, student.layer_vectors, teacher.layer_vectors)


@method(
    "alp",
    ALPOptions,
    summary="ALP-KD (Passban et al. 2021): (1-η-λ)·CE + η·KD + λ·Σ_j MSE(h^S_j, Σ_i α_ji h^T_i), attention over "
    "all teacher layers in hidden space (mask=buckets: NO, mask=overlap: PO)",
    applies_to="any student and teacher (a learned width map when widths differ)",
    teacher_fields=("logits", "layer_vectors"),
    multi_label=True,  # hidden-space MSE is label-free; KD is per-label Bernoulli (`soft_term`)
)
def alp_terms(context: TermContext | None, o: ALPOptions) -> list[LossTerm]:
    context = needs_context(context, "alp", "build its projector")
    return [
        LossTerm("ce", 1.0 - o.eta - o.lam, gold_term),
        LossTerm("kd", o.eta, soft_term(o.temperature)),
        module_term("alp", o.lam, ALPLoss(context, o.mask, o.scale)),
    ]
