"""Patient KD (Sun et al., EMNLP 2019): KD plus normalised [CLS] matching on m-1 mapped teacher layers."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from xkd.layer_maps import PKD_MAPPINGS, pkd_layers
from xkd.methods.base import LossTerm, TermContext, method, module_term, needs_context
from xkd.methods.kd import KDOptions, gold_and_soft
from xkd.methods.losses import pkd_loss
from xkd.options import option
from xkd.trace import Trace


@dataclass(frozen=True)
class PKDOptions(KDOptions):
    beta: float = option(100.0, "weight β of the [CLS] matching term", weight=True)
    mapping: str = option("skip", "skip: every n/m-th teacher layer; last: the m-1 below the top", choices=PKD_MAPPINGS)
    normalize: bool = option(True, "L2-normalise the [CLS] vectors (false: plain MSE)")


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


@method(
    "pkd",
    PKDOptions,
    summary="Patient KD (Sun et al. 2019): (1-α)·CE + α·KD + β·Σ_j MSE(ĥ^S_j, ĥ^T_map(j)) on L2-normalised [CLS] "
    "vectors of m-1 layers, mapping skip or last (normalize=false: plain MSE)",
    applies_to="any student with fewer layers than the teacher (a learned width map when widths differ)",
    teacher_fields=("logits", "layer_vectors"),
    multi_label=True,  # hidden-space MSE is label-free; KD is per-label Bernoulli (`soft_term`)
)
def pkd_terms(context: TermContext | None, o: PKDOptions) -> list[LossTerm]:
    module = PatientLoss(needs_context(context, "pkd", "map layers"), o.mapping, o.normalize)
    return [*gold_and_soft(o), module_term("pkd", o.beta, module)]
