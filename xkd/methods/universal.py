"""Universal-KD (Wu et al., EMNLP 2021): layer matching in the label space every model shares.

Each student layer j gets a pseudo classifier; its logits z^S_j attend over the teacher's per-layer pseudo-logits
z^T_i, and the student layer learns the attention-weighted teacher distribution. Only label distributions are
compared, so the student needs no width, depth or tokenizer agreement with the teacher. Modes:
- `il` (intermediate layers, BERT-k) and `ca` (cross-architecture, e.g. CNN/BiLSTM) are the same computation on
  different students: every student layer attends over every teacher layer.
- `cg` (capacity gap): only the student's final logits attend over the teacher's pseudo classifiers, which act as
  free teacher assistants of graded strength.
On multi-label tasks the label distributions are one Bernoulli per label (the projector's `bernoulli` distance).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from xkd.errors import XKDError
from xkd.methods.base import LossTerm, TermContext, method, module_term, needs_context
from xkd.methods.kd import KDOptions, gold_and_soft
from xkd.methods.projector import MASKS, SCORES, VARIANTS, LayerProjector, Projection, ProjectionLoss
from xkd.options import option
from xkd.pseudo_heads import KINDS, PseudoHeads
from xkd.trace import Trace

MODES = ("il", "ca", "cg")
# Student heads: raw layer vectors, or standardised with batch statistics (a BERT student's shallow [CLS] vectors
# barely vary between inputs, and a head on them stays at chance confidence).
HEAD_NORMS = ("none", "batch")


@dataclass(frozen=True)
class UniversalOptions(KDOptions):
    gamma: float = option(1.0, "weight of the layer-projection term L_U", weight=True)
    mode: str = option(
        "il",
        "il: every student layer attends over every teacher layer (any architecture: only label distributions are "
        "compared); ca: the same loss under the paper's name for cross-architecture students; cg: only the final "
        "logits attend",
        choices=MODES,
    )
    head: str = option("linear", "student pseudo-classifier kind", choices=KINDS)
    head_norm: str = option("none", "batch: student heads standardise their inputs per batch", choices=HEAD_NORMS)
    score: str = option("logits", "attention score: logits (z^S·z^T) or hidden (h^S W·h^T)", choices=SCORES)
    variant: str = option(
        "logits", "logits: match the attended target; loss: attention-weighted losses", choices=VARIANTS
    )
    mask: str = option("all", "teacher layers each student layer may attend to", choices=MASKS)
    scale: bool = option(False, "divide attention scores by sqrt(width)")
    attention_temperature: float = option(1.0, "softmax temperature of the attention", above=0)
    detach_attention: bool = option(False, "no gradient through the attention weights")


class UniversalKD(ProjectionLoss):
    """Student pseudo heads plus the output-space projector."""

    def __init__(self, context: TermContext, o: UniversalOptions) -> None:
        super().__init__()
        self.student_heads = (
            None
            if o.mode == "cg"
            else PseudoHeads(
                context.student_layers, context.student_width, context.output_size, o.head, o.head_norm == "batch"
            )
        )
        self.projector = LayerProjector(
            space="output",
            score=o.score,
            variant=o.variant,
            mask=o.mask,
            scale=o.scale,
            attention_temperature=o.attention_temperature,
            temperature=o.temperature,
            student_width=context.student_width,
            teacher_width=context.teacher_width,
            detach_attention=o.detach_attention,
            distance="mse" if context.regression else "bernoulli" if context.multi_label else "kl",
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


@method(
    "universal",
    UniversalOptions,
    summary="Universal-KD (Wu et al. 2021): (1-α)·CE + α·KD + γ·Σ_j τ²·KL(softmax(Σ_i α_ji z^T_i/τ) ‖ "
    "softmax(z^S_j/τ)), attention over the teacher's per-layer pseudo classifiers",
    needs_teacher_heads=True,
    applies_to="any student and teacher (the teacher's pseudo classifiers are trained once if missing)",
    multi_label=True,  # per-label Bernoulli distributions in output space (`LayerProjector`, distance bernoulli)
    # The teacher's layer vectors only score the attention with score=hidden; the default reads outputs alone, so
    # teachers of any width (an ensemble of MiniLM and MPNet) serve it, and its transfer caches drop the vectors
    # (for MiniLM on MR: 14 instead of 2,318 stored values per text).
    fields_read=lambda o: ("logits", "pseudo_logits", *(("layer_vectors",) if o.score == "hidden" else ())),
)
def universal_terms(context: TermContext | None, o: UniversalOptions) -> list[LossTerm]:
    module = UniversalKD(needs_context(context, "universal", "build its heads"), o)
    return [*gold_and_soft(o), module_term("universal", o.gamma, module)]
