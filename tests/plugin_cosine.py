"""An outside method in one file, as the README's "Add your own method" shows: KD plus a cosine loss between the
last student and teacher layers. Nothing in xkd is edited to add it."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from xkd.methods import (
    KDOptions,
    LossTerm,
    Method,
    TermContext,
    TermModule,
    gold_and_soft,
    gold_term,
    method,
    module_term,
    needs_context,
    option,
)


@dataclass(frozen=True)
class CosineOptions(KDOptions):  # temperature and alpha, as in kd
    beta: float = option(1.0, "weight of the last-layer cosine term", weight=True)


class LastLayerCosine(TermModule):
    """1 - cos between the last student and teacher sentence vectors; a learned map when widths differ."""

    def __init__(self, student_width: int, teacher_width: int) -> None:
        super().__init__()
        same = student_width == teacher_width
        self.map = nn.Identity() if same else nn.Linear(student_width, teacher_width, bias=False)

    def forward(self, student, teacher):
        s = self.map(student.layer_vectors[:, -1].float())
        return (1 - F.cosine_similarity(s, teacher.layer_vectors[:, -1].float(), dim=-1)).mean()


@method("last-cosine", CosineOptions, summary="KD + β·(1 - cos) between the last layers' sentence vectors")
def last_cosine(context: TermContext | None, o: CosineOptions) -> list[LossTerm]:
    context = needs_context(context, "last-cosine", "size its map")
    cosine = LastLayerCosine(context.student_width, context.teacher_width)
    return [*gold_and_soft(o), module_term("cosine", o.beta, cosine)]  # (1-α)·CE + α·KD + β·cosine


# Not registered by a decorator: an entry point of the `xkd.methods` group may name a Method object instead.
COSINE_ONLY = Method(
    name="cosine-only",
    summary="β·(1 - cos) between the last layers, and CE",
    make_terms=lambda context, o: [
        LossTerm("ce", 1.0, gold_term),
        module_term("cosine", o.beta, LastLayerCosine(context.student_width, context.teacher_width)),
    ],
    options_type=CosineOptions,
)
