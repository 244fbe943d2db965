"""Universal-KD (Wu et al., EMNLP 2021): layer matching in the label space every model shares.

Each student layer j gets a pseudo classifier; its logits z^S_j attend over the teacher's per-layer pseudo-logits
z^T_i, and the student layer learns the attention-weighted teacher distribution. Only label distributions are
compared, so the student needs no width, depth or tokenizer agreement with the teacher. Modes:
- `il` (intermediate layers, BERT-k) and `ca` (cross-architecture, e.g. CNN/BiLSTM) are the same computation on
  different students: every student layer attends over every teacher layer.
- `cg` (capacity gap): only the student's final logits attend over the teacher's pseudo classifiers, which act as
  free teacher assistants of graded strength.
"""

from __future__ import annotations

from torch import Tensor

from xkd.errors import XKDError
from xkd.methods import METHODS, LossTerm, Method, TermContext, gold_term, module_term, soft_term
from xkd.projector import LayerProjector, Projection, ProjectionLoss
from xkd.pseudo_heads import PseudoHeads
from xkd.trace import Trace

MODES = ("il", "ca", "cg")
# Student heads: raw layer vectors, or standardised with batch statistics (a BERT student's shallow [CLS] vectors
# barely vary between inputs, and a head on them stays at chance confidence).
HEAD_NORMS = ("none", "batch")


class UniversalKD(ProjectionLoss):
    """Student pseudo heads plus the output-space projector."""

    def __init__(
        self,
        context: TermContext,
        mode: str = "il",
        head: str = "linear",
        head_norm: str = "none",
        **projector_options,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise XKDError(f"unknown universal mode '{mode}'; choose one of: {', '.join(MODES)}")
        if head_norm not in HEAD_NORMS:
            raise XKDError(f"unknown head_norm '{head_norm}'; choose one of: {', '.join(HEAD_NORMS)}")
        self.mode = mode
        self.student_heads = (
            None
            if mode == "cg"
            else PseudoHeads(
                context.student_layers,
                context.student_width,
                context.output_size,
                head,
                batch_norm=head_norm == "batch",
            )
        )
        self.projector = LayerProjector(
            space="output",
            student_width=context.student_width,
            teacher_width=context.teacher_width,
            distance="mse" if context.regression else "kl",
            **projector_options,
        )

    def student_logits(self, student: Trace) -> Tensor:
        """[B, m, C]: the student's per-layer pseudo-logits, or its final logits alone in `cg` mode."""
        if self.student_heads is None:
            return student.logits[:, None]
        return self.student_heads(student.layer_vectors)

    def forward(self, student: Trace, teacher: Trace) -> Projection:
        if teacher.pseudo_logits is None:
            raise XKDError(
                "the teacher has no pseudo classifiers; train them with 'xkd teacher heads --teacher DIR --task T'"
            )
        hidden = student.layer_vectors[:, -1:] if self.student_heads is None else student.layer_vectors
        return self.projector(self.student_logits(student), teacher.pseudo_logits, hidden, teacher.layer_vectors)


def universal_terms(
    context: TermContext | None,
    temperature: float,
    alpha: float,
    gamma: float,
    mode: str,
    head: str,
    head_norm: str,
    score: str,
    variant: str,
    mask: str,
    scale: bool,
    attention_temperature: float,
    detach_attention: bool,
) -> list[LossTerm]:
    if context is None:
        raise XKDError("universal needs the student and teacher shapes to build its heads")
    module = UniversalKD(
        context,
        mode=mode,
        head=head,
        head_norm=head_norm,
        score=score,
        variant=variant,
        mask=mask,
        scale=scale,
        attention_temperature=attention_temperature,
        temperature=temperature,
        detach_attention=detach_attention,
    )

    return [
        LossTerm("ce", 1.0 - alpha, gold_term),
        LossTerm("kd", alpha, soft_term(temperature)),
        module_term("universal", gamma, module),
    ]


METHODS.add(
    "universal",
    Method(
        name="universal",
        summary="Universal-KD (Wu et al. 2021): (1-α)·CE + α·KD + γ·Σ_j τ²·KL(softmax(Σ_i α_ji z^T_i/τ) ‖ "
        "softmax(z^S_j/τ)), attention over the teacher's per-layer pseudo classifiers",
        make_terms=universal_terms,
        options={
            "temperature": 2.0,
            "alpha": 0.5,
            "gamma": 1.0,
            "mode": "il",
            "head": "linear",
            "head_norm": "none",
            "score": "logits",
            "variant": "logits",
            "mask": "all",
            "scale": False,
            "attention_temperature": 1.0,
            "detach_attention": False,
        },
        needs_teacher_heads=True,
        applies_to="any student and teacher (the teacher's pseudo classifiers are trained once if missing)",
    ),
)
