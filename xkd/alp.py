"""ALP-KD (Passban et al., AAAI 2021): every student layer attends over all teacher layers in hidden space.

It is the Universal-KD projector with `space="hidden"`, not a second implementation: α_ji = softmax_i(h^S_j·h^T_i),
target c_j = Σ_i α_ji h^T_i, L_ALP = Σ_j MSE(h^S_j, c_j). Loss weights follow the paper, β = 1 - η - λ:
L = β·CE + η·KD + λ·L_ALP. `mask=buckets` is the non-overlapping (NO) variant, `mask=overlap` the partially
overlapping one (PO, here: each bucket widened by one layer on both sides).
"""

from __future__ import annotations

from xkd.errors import XKDError
from xkd.methods import METHODS, LossTerm, Method, TermContext, gold_term, module_term, soft_term
from xkd.projector import LayerProjector, Projection, ProjectionLoss
from xkd.trace import Trace


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


def alp_terms(context: TermContext | None, temperature: float, eta: float, lam: float, mask: str, scale: bool):
    if context is None:
        raise XKDError("alp needs the student and teacher shapes to build its projector")
    if eta < 0 or lam < 0 or eta + lam > 1:
        raise XKDError(f"alp needs eta, lam >= 0 and eta + lam <= 1 (CE gets 1 - eta - lam), got {eta} and {lam}")
    module = ALPLoss(context, mask, scale)

    return [
        LossTerm("ce", 1.0 - eta - lam, gold_term),
        LossTerm("kd", eta, soft_term(temperature)),
        module_term("alp", lam, module),
    ]


METHODS.add(
    "alp",
    Method(
        name="alp",
        summary="ALP-KD (Passban et al. 2021): (1-η-λ)·CE + η·KD + λ·Σ_j MSE(h^S_j, Σ_i α_ji h^T_i), attention over "
        "all teacher layers in hidden space (mask=buckets: NO, mask=overlap: PO)",
        make_terms=alp_terms,
        options={"temperature": 2.0, "eta": 0.2, "lam": 0.5, "mask": "all", "scale": True},
        applies_to="any student and teacher (a learned width map when widths differ)",
    ),
)
