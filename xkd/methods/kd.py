"""Methods on final outputs only: no KD, vanilla KD (Hinton et al. 2015) and logit MSE (Tang et al. 2019).

`alpha` means one thing in every method that has it: the weight of the teacher's term, the gold-label CE getting
1 - alpha. The other methods' option classes extend `KDOptions`, so its fields are written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from xkd.methods.base import LossTerm, MethodOptions, TermContext, gold_term, method, soft_term
from xkd.methods.losses import logit_mse_loss
from xkd.options import option

ALPHA_HELP = "weight of the teacher's term; the gold-label CE gets 1 - alpha"


@dataclass(frozen=True)
class KDOptions(MethodOptions):
    temperature: float = option(2.0, "KD temperature τ on the final logits", above=0)
    alpha: float = option(0.5, ALPHA_HELP, minimum=0, maximum=1)


@dataclass(frozen=True)
class LogitMSEOptions(MethodOptions):
    alpha: float = option(0.5, ALPHA_HELP, minimum=0, maximum=1)


def gold_and_soft(o: KDOptions) -> list[LossTerm]:
    """The pair every KD method starts from: (1 - alpha)·CE on gold labels + alpha·KD at the temperature."""
    return [LossTerm("ce", 1.0 - o.alpha, gold_term), LossTerm("kd", o.alpha, soft_term(o.temperature))]


@method(
    "none",
    summary="no KD: fine-tune on gold labels only (CE, or MSE for regression)",
    needs_teacher=False,
    applies_to="any student; no teacher",
    teacher_fields=(),
    multi_label=True,  # BCE on multi-hot labels (`gold_term`)
)
def no_kd(context: TermContext | None, options: MethodOptions) -> list[LossTerm]:
    return [LossTerm("ce", 1.0, gold_term)]


@method(
    "kd",
    KDOptions,
    summary="vanilla KD (Hinton 2015): (1-α)·CE + α·τ²·KL(teacher ‖ student) on final logits; "
    "MSE to the teacher for regression",
    teacher_fields=("logits",),
    multi_label=True,  # per-label Bernoulli KD (`soft_term`)
)
def vanilla_kd(context: TermContext | None, o: KDOptions) -> list[LossTerm]:
    return gold_and_soft(o)


@method(
    "logit-mse",
    LogitMSEOptions,
    summary="logit MSE (Tang et al. 2019, BERT -> BiLSTM): (1-α)·CE + α·‖z^T - z^S‖²",
    applies_to="any student and teacher with the same labels; meant for CNN/BiLSTM students",
    teacher_fields=("logits",),
    multi_label=True,  # logits are logits: the squared distance needs no multi-label form
)
def logit_mse(context: TermContext | None, o: LogitMSEOptions) -> list[LossTerm]:
    return [
        LossTerm("ce", 1.0 - o.alpha, gold_term),
        LossTerm("logit_mse", o.alpha, lambda s, t, y, task: logit_mse_loss(s.logits, t.logits)),
    ]
