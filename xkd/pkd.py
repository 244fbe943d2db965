"""Patient KD (Sun et al., EMNLP 2019): KD plus normalised [CLS] matching on m-1 mapped teacher layers."""

from __future__ import annotations

from torch import Tensor, nn

from xkd.errors import XKDError
from xkd.layer_maps import pkd_layers
from xkd.losses import pkd_loss
from xkd.methods import METHODS, LossTerm, Method, TermContext, gold_term, module_term, soft_term
from xkd.trace import Trace


class PatientLoss(nn.Module):
    """The PKD term; a learned d_S -> d_T map when widths differ (e.g. a CNN student), dropped at export."""

    def __init__(self, context: TermContext, mapping: str, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize
        self.teacher_layers = pkd_layers(context.teacher_layers, context.student_layers, mapping)
        self.map: nn.Module = nn.Identity()
        if context.student_width != context.teacher_width:
            self.map = nn.Linear(context.student_width, context.teacher_width, bias=False)

    def forward(self, student: Trace, teacher: Trace) -> Tensor:
        k = len(self.teacher_layers)
        if k == 0:
            return student.logits.sum() * 0  # a 1-layer student has no intermediate layer to match
        s = self.map(student.layer_vectors[:, :k].float())
        return pkd_loss(s, teacher.layer_vectors[:, self.teacher_layers], self.normalize)


def pkd_terms(
    context: TermContext | None, temperature: float, alpha: float, beta: float, mapping: str, normalize: bool
):
    if context is None:
        raise XKDError("pkd needs the student and teacher shapes to map layers")
    module = PatientLoss(context, mapping, normalize)

    return [
        LossTerm("ce", 1.0 - alpha, gold_term),
        LossTerm("kd", alpha, soft_term(temperature)),
        module_term("pkd", beta, module),
    ]


METHODS.add(
    "pkd",
    Method(
        name="pkd",
        summary="Patient KD (Sun et al. 2019): (1-α)·CE + α·KD + β·Σ_j MSE(ĥ^S_j, ĥ^T_map(j)) on L2-normalised [CLS] "
        "vectors of m-1 layers, mapping skip or last (normalize=false: plain MSE)",
        make_terms=pkd_terms,
        options={"temperature": 2.0, "alpha": 0.5, "beta": 100.0, "mapping": "skip", "normalize": True},
        applies_to="any student with fewer layers than the teacher (a learned width map when widths differ)",
    ),
)
