"""Distillation methods as named, weighted sums of loss terms.

A method is a list of `LossTerm`s built from its options (temperature, alpha, ...). Every term is logged under
its own name, so a run shows what each part of the objective is doing, and later methods can add intermediate
terms beside the ones here without a new training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from xkd.errors import XKDError
from xkd.losses import kd_loss, logit_mse_loss, regression_kd_loss, task_loss
from xkd.options import resolve_options
from xkd.registry import Registry
from xkd.tasks import Task
from xkd.trace import Trace

LossFn = Callable[[Trace, "Trace | None", Tensor, Task], Tensor]


@dataclass(frozen=True)
class LossTerm:
    """One named part of a method's objective: `weight · fn(student, teacher, labels, task)`.

    `module` holds the term's own trainable parts (student pseudo heads, a projector): the training loop
    optimises them with the student and never exports them.
    """

    name: str
    weight: float
    fn: LossFn
    module: nn.Module | None = None


@dataclass(frozen=True)
class TermContext:
    """What a term needs to know about the models to build its trainable parts."""

    student_layers: int
    student_width: int
    teacher_layers: int
    teacher_width: int
    output_size: int
    regression: bool = False
    student_attention_heads: int | None = None  # None: the student has no self-attention (CNN, BiLSTM)
    teacher_attention_heads: int | None = None
    shared_tokenizer: bool = False  # same token ids, so attention maps can be compared position by position
    steps_per_epoch: int | None = None  # for terms whose schedule is set in epochs


@dataclass(frozen=True)
class Method:
    """A registered distillation method.

    `options` holds the method's tunable values and their defaults; `make_terms(context, **options)` turns chosen
    values into loss terms. `needs_teacher` is False for plain fine-tuning, so no teacher is loaded or run;
    `needs_teacher_heads` asks for the teacher's per-layer pseudo classifiers. `applies_to` tells users which
    students and teachers the method can pair before they try (`xkd methods` prints it).
    """

    name: str
    summary: str
    make_terms: Callable[..., list[LossTerm]]
    options: dict[str, Any] = field(default_factory=dict)
    needs_teacher: bool = True
    needs_teacher_heads: bool = False
    needs_attentions: bool = False
    applies_to: str = "any student and teacher with the same labels"

    def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overridden by the given values; unknown names, wrong types and out-of-range values (a negative
        loss weight, a temperature <= 0, a weight outside [0, 1]) are one-line errors."""
        resolved = resolve_options(f"method '{self.name}'", self.options, values)
        for name, value in resolved.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if name in POSITIVE_OPTIONS and not value > 0:
                raise XKDError(f"method '{self.name}': {name} must be > 0, got {value}")
            if name in WEIGHT_OPTIONS and not value >= 0:
                raise XKDError(f"method '{self.name}': {name} is a loss weight and must be >= 0, got {value}")
            if name == "threshold" and not value >= 0:
                raise XKDError(f"method '{self.name}': threshold must be >= 0 (0: stages by count), got {value}")
            if name in UNIT_OPTIONS and not 0 <= value <= 1:
                raise XKDError(f"method '{self.name}': {name} must lie in [0, 1], got {value}")
        return resolved

    def terms(self, context: TermContext | None = None, **values: Any) -> list[LossTerm]:
        return self.make_terms(context, **self.resolve(values))

    def default_terms(self) -> list[tuple[str, float]]:
        """(name, weight) of the loss terms under the default options, for listings: built from the method itself on
        a small example pairing (2-layer student, 4-layer teacher) so the listing cannot drift from the code."""
        return [(term.name, term.weight) for term in self.terms(EXAMPLE_CONTEXT)]


EXAMPLE_CONTEXT = TermContext(
    student_layers=2,
    student_width=8,
    teacher_layers=4,
    teacher_width=8,
    output_size=2,
    student_attention_heads=2,
    teacher_attention_heads=2,
    shared_tokenizer=True,
    steps_per_epoch=1,
)
POSITIVE_OPTIONS = {"temperature", "attention_temperature", "per_layer"}
WEIGHT_OPTIONS = {"beta", "gamma", "attention", "cosine"}
UNIT_OPTIONS = {"alpha", "eta", "lam"}  # shares of a convex combination

METHODS: Registry[Method] = Registry("method")


def get_method(name: str) -> Method:
    """A registered method, or several joined with '+' (e.g. `universal+pkd`): see `compose`."""
    if "+" in name:
        return compose([METHODS.get(part.strip()) for part in name.split("+")])
    return METHODS.get(name)


def compose(parts: list[Method]) -> Method:
    """One method from several: the union of their options (a shared name, such as alpha, is one value) and of
    their loss terms, where a term name already given by an earlier method (ce, kd) is not added again."""
    options: dict[str, Any] = {}
    for part in parts:
        for key, value in part.options.items():
            options.setdefault(key, value)

    def make_terms(context: TermContext | None, **values: Any) -> list[LossTerm]:
        terms: list[LossTerm] = []
        for part in parts:
            for term in part.make_terms(context, **{k: values[k] for k in part.options}):
                if all(term.name != t.name for t in terms):
                    terms.append(term)
        return terms

    return Method(
        name="+".join(p.name for p in parts),
        summary=" + ".join(p.name for p in parts),
        make_terms=make_terms,
        options=options,
        needs_teacher=any(p.needs_teacher for p in parts),
        needs_teacher_heads=any(p.needs_teacher_heads for p in parts),
        needs_attentions=any(p.needs_attentions for p in parts),
    )


def weighted_loss(
    terms: list[LossTerm], student: Trace, teacher: Trace | None, labels: Tensor, task: Task
) -> tuple[Tensor, dict[str, Tensor]]:
    """The total loss and each term's unweighted value (detached), for logging."""
    total: Tensor | None = None
    values: dict[str, Tensor] = {}
    for term in terms:
        if term.weight == 0:
            continue
        value = term.fn(student, teacher, labels, task)
        values[term.name] = value.detach()
        total = term.weight * value if total is None else total + term.weight * value
    if total is None:
        raise XKDError("every loss term has weight 0; give at least one term a positive weight")
    return total, values


def module_term(name: str, weight: float, module: nn.Module) -> LossTerm:
    """A term whose value is `module(student, teacher)`, or its `.loss` when the module returns a `Projection`;
    the module's parameters train with the student."""

    def value(student: Trace, teacher: Trace | None, labels: Tensor, task: Task) -> Tensor:
        out = module(student, teacher)
        return getattr(out, "loss", out)

    return LossTerm(name, weight, value, module=module)


def gold_term(student: Trace, teacher: Trace | None, labels: Tensor, task: Task) -> Tensor:
    """CE (or MSE for regression) on gold labels: the base term every method shares."""
    return task_loss(student.logits, labels, task.regression)


def soft_term(temperature: float) -> LossFn:
    """Hinton's KD on final logits at `temperature` (MSE to the teacher for regression)."""

    def soft(student: Trace, teacher: Trace | None, labels: Tensor, task: Task) -> Tensor:
        assert teacher is not None
        if task.regression:
            return regression_kd_loss(student.logits, teacher.logits)
        return kd_loss(student.logits, teacher.logits, temperature)

    return soft


METHODS.add(
    "none",
    Method(
        name="none",
        summary="no KD: fine-tune on gold labels only (CE, or MSE for regression)",
        make_terms=lambda context: [LossTerm("ce", 1.0, gold_term)],
        needs_teacher=False,
        applies_to="any student; no teacher",
    ),
)

METHODS.add(
    "kd",
    Method(
        name="kd",
        summary="vanilla KD (Hinton 2015): (1-α)·CE + α·τ²·KL(teacher ‖ student) on final logits; "
        "MSE to the teacher for regression",
        make_terms=lambda context, temperature, alpha: [
            LossTerm("ce", 1.0 - alpha, gold_term),
            LossTerm("kd", alpha, soft_term(temperature)),
        ],
        options={"temperature": 2.0, "alpha": 0.5},
    ),
)

METHODS.add(
    "logit-mse",
    Method(
        name="logit-mse",
        summary="logit MSE (Tang et al. 2019, BERT -> BiLSTM): α·CE + (1-α)·‖z^T - z^S‖²",
        make_terms=lambda context, alpha: [
            LossTerm("ce", alpha, gold_term),
            LossTerm("logit_mse", 1.0 - alpha, lambda s, t, y, task: logit_mse_loss(s.logits, t.logits)),
        ],
        options={"alpha": 0.5},
        applies_to="any student and teacher with the same labels; meant for CNN/BiLSTM students",
    ),
)

# Methods in their own files register themselves on import.
from xkd import aguilar, alp, pkd, universal  # noqa: E402, F401
