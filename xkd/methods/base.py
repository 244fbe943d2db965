"""What a distillation method is: a named, weighted sum of loss terms built from typed options.

A method is a function `(context, options) -> list[LossTerm]`, registered once by the `method` decorator with a
frozen options dataclass. Every term is logged under its own name, so a run shows what each part of the objective
is doing. The options dataclass is the one source of each option's type, default, allowed values and help:
validation, `-O KEY=VALUE` parsing, `xkd methods` and the CLI help are all derived from it.

Terms may carry a `TermModule`: their trainable or stateful part (pseudo heads, a projector, a stage counter),
optimised with the student, checkpointed with the training state and never exported. Its optional hooks are the
only way a method reaches into training, so the training loop knows no method by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, make_dataclass, replace
from importlib.metadata import entry_points
from typing import Any

from torch import Tensor, nn

from xkd.data import tokenizer_fingerprint
from xkd.errors import XKDError
from xkd.methods.losses import binary_kd_loss, kd_loss, regression_kd_loss, task_loss
from xkd.options import Options, OptionSpec
from xkd.registry import Registry, import_plugin
from xkd.tasks import Task
from xkd.trace import Trace

LossFn = Callable[[Trace, "Trace | None", Tensor, Task], Tensor]
ENTRY_POINT_GROUP = "xkd.methods"


class TermModule(nn.Module):
    """A loss term's own module. The training loop calls these hooks on every term module that defines them
    (plain `nn.Module`s work too); each default does nothing.

    - `start(student)`: once before training; raise `XKDError` when the student cannot serve the term.
    - `after_backward(student)`: after each backward pass, before the optimizer step (e.g. drop the gradients of
      frozen layers).
    - `epoch_record(pairs)`: after each epoch's validation, given an iterable of (student, teacher) traces over the
      first validation split (eval mode, no gradients); a dict returned is appended, with the epoch, term and
      split, to `RUN_DIR/<epoch_log>`.
    Buffers registered on the module (a stage counter) are saved and restored with every checkpoint.
    """

    epoch_log: str | None = None

    def start(self, student: nn.Module) -> None:
        return None

    def after_backward(self, student: nn.Module) -> None:
        return None

    def epoch_record(self, pairs: Iterable[tuple[Trace, Trace | None]]) -> dict[str, Any] | None:
        return None


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
    multi_label: bool = False  # C independent sigmoids: output-space terms compare per-label Bernoullis
    student_attention_heads: int | None = None  # None: the student has no self-attention (CNN, BiLSTM)
    teacher_attention_heads: int | None = None
    shared_tokenizer: bool = False  # same token ids, so attention maps can be compared position by position
    steps_per_epoch: int | None = None  # for terms whose schedule is set in epochs

    @classmethod
    def between(cls, student: nn.Module, teacher: nn.Module | None, task: Task, steps_per_epoch: int | None = None):
        """The context of this teacher/student pair (`teacher` None: saved outputs, final logits only, no layers)."""

        def heads(model) -> int | None:  # None for students without self-attention
            return getattr(getattr(model, "config", None), "num_attention_heads", None)

        if teacher is None:  # `--teacher-outputs`
            return replace(cls.between(student, student, task, steps_per_epoch), teacher_layers=0, teacher_width=0,
                           teacher_attention_heads=None, shared_tokenizer=False)  # fmt: skip
        return cls(
            student_layers=student.num_layers,
            student_width=student.layer_width,
            teacher_layers=teacher.num_layers,
            teacher_width=teacher.layer_width,
            output_size=task.output_size,
            regression=task.regression,
            multi_label=task.multi_label,
            student_attention_heads=heads(student),
            teacher_attention_heads=heads(teacher),
            shared_tokenizer=tokenizer_fingerprint(student.tokenizer) == tokenizer_fingerprint(teacher.tokenizer),
            steps_per_epoch=steps_per_epoch,
        )


@dataclass(frozen=True)
class MethodOptions(Options):
    """Base of every method's options dataclass (a method without options uses it as is)."""


# ---------------------------------------------------------------------------------------------------------------
# Methods and their registry

ALL_TEACHER_FIELDS = ("logits", "layer_vectors", "pseudo_logits")
MakeTerms = Callable[[TermContext | None, Any], list[LossTerm]]


@dataclass(frozen=True)
class Method:
    """A registered distillation method.

    `make_terms(context, options)` turns chosen option values (an instance of `options_type`) into loss terms.
    `needs_teacher` is False for plain fine-tuning, so no teacher is loaded or run; `needs_teacher_heads` asks for
    the teacher's per-layer pseudo classifiers; `needs_attentions` for attention maps (never cached).
    `applies_to` tells users which students and teachers the method can pair before they try (`xkd methods`).
    `teacher_fields` names the parts of the teacher's `Trace` the terms read, so a large transfer set's cache stores
    only those (a plug-in that does not say is assumed to read them all). `multi_label` says the terms handle
    multi-label tasks (sigmoid outputs, multi-hot labels); a method that does not say so is refused on them, since
    a softmax over independent labels would train silently wrong (see `check_task`).
    """

    name: str
    summary: str
    make_terms: MakeTerms
    options_type: type[MethodOptions] = MethodOptions
    needs_teacher: bool = True
    needs_teacher_heads: bool = False
    needs_attentions: bool = False
    applies_to: str = "any student and teacher with the same labels"
    teacher_fields: tuple[str, ...] = ALL_TEACHER_FIELDS
    multi_label: bool = False
    fields_read: Callable[[Any], tuple[str, ...]] | None = None  # fewer fields under some options (see `reads`)

    def reads(self, values: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The teacher fields the terms read under these option values: `teacher_fields` unless the method says
        some options need fewer (Universal-KD reads the teacher's layer vectors only with score=hidden). What a
        transfer cache stores, and whether an ensemble of different widths or saved outputs can serve the method,
        follow from it."""
        if self.fields_read is None:
            return self.teacher_fields
        return tuple(f for f in ALL_TEACHER_FIELDS if f in self.fields_read(self.build(values or {})))

    @property
    def options(self) -> dict[str, Any]:
        """Each option's default, by name."""
        return self.options_type.defaults()

    def option_specs(self) -> list[OptionSpec]:
        return self.options_type.specs()

    def build(self, values: Mapping[str, Any]) -> MethodOptions:
        """The options object: defaults overridden by `values` (None: the default); unknown names, wrong types,
        values out of range and combinations the method refuses (`Options.check`) are one-line errors."""
        return self.options_type.build(f"method '{self.name}'", values)

    def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`build` as a name -> value dict (what a run records and passes on)."""
        return asdict(self.build(values))

    def terms(self, context: TermContext | None = None, **values: Any) -> list[LossTerm]:
        return self.make_terms(context, self.build(values))

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

METHODS: Registry[Method] = Registry("method")


def method(
    name: str,
    options: type[MethodOptions] = MethodOptions,
    *,
    summary: str,
    needs_teacher: bool = True,
    needs_teacher_heads: bool = False,
    needs_attentions: bool = False,
    applies_to: str = "any student and teacher with the same labels",
    teacher_fields: tuple[str, ...] = ALL_TEACHER_FIELDS,
    multi_label: bool = False,
    fields_read: Callable[[Any], tuple[str, ...]] | None = None,
) -> Callable[[MakeTerms], MakeTerms]:
    """Register the decorated `make_terms(context, options)` as method `name` (the name is written once)."""

    def register(make_terms: MakeTerms) -> MakeTerms:
        METHODS.add(
            name,
            Method(
                name=name,
                summary=summary,
                make_terms=make_terms,
                options_type=options,
                needs_teacher=needs_teacher,
                needs_teacher_heads=needs_teacher_heads,
                needs_attentions=needs_attentions,
                applies_to=applies_to,
                teacher_fields=teacher_fields,
                multi_label=multi_label,
                fields_read=fields_read,
            ),
        )
        return make_terms

    return register


def get_method(name: str) -> Method:
    """A registered method, one from the `xkd.methods` entry-point group, one by import path
    (`package.module:name`, importing the module registers it), or several joined with '+' (see `compose`)."""
    if "+" in name:
        return compose([get_method(part.strip()) for part in name.split("+")])
    if ":" in name:
        return _import_method(name)
    if name not in METHODS:
        load_entry_point_methods()
    return METHODS.get(name)


def load_entry_point_methods() -> None:
    """Import the methods other packages registered under the `xkd.methods` entry-point group.

    An entry point may name a module (importing it runs its `@method` decorators) or a `Method` object, which is
    registered under the entry point's name.
    """
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in METHODS:
            continue
        try:
            loaded = entry.load()
        except Exception as e:  # a broken plug-in must not hide the built-in methods
            raise XKDError(f"cannot load method plug-in '{entry.name}' ({entry.value}): {e}") from None
        if isinstance(loaded, Method) and loaded.name not in METHODS:
            METHODS.add(entry.name, loaded)


def _import_method(path: str) -> Method:
    """`package.module:name`: import the module (its `@method` decorators register its methods) and return the
    method registered as `name`, or the `Method` object or decorated function the module holds under that name."""
    module, name = import_plugin(path, "method")
    if name in METHODS:
        return METHODS.get(name)
    target = getattr(module, name, None)
    if isinstance(target, Method):
        return target
    by_function = [METHODS.get(n) for n in METHODS if target is not None and METHODS.get(n).make_terms is target]
    if by_function:
        return by_function[0]
    raise XKDError(
        f"module '{module.__name__}' registers no method '{name}'; decorate a make_terms function with @method"
    )


def compose(parts: list[Method]) -> Method:
    """One method from several: the union of their options (a shared name, such as alpha, is one value, its first
    definition wins) and of their loss terms, where a term name already given by an earlier method (ce, kd) is not
    added again."""
    chosen: dict[str, Any] = {}
    for part in parts:
        for f in fields(part.options_type):
            chosen.setdefault(f.name, (f.name, f.type, field(default=f.default, metadata=f.metadata)))
    name = "+".join(p.name for p in parts)

    def own(part: Method, options: Any) -> MethodOptions:
        return part.options_type(**{f.name: getattr(options, f.name) for f in fields(part.options_type)})

    def check(options: Any, owner: str) -> None:  # each part's checks across its options
        for part in parts:
            own(part, options).check(owner)

    options_type = make_dataclass(
        "ComposedOptions",
        list(chosen.values()),
        bases=(MethodOptions,),
        frozen=True,
        namespace={"__module__": __name__, "check": check},
    )

    def make_terms(context: TermContext | None, options: Any) -> list[LossTerm]:
        terms: list[LossTerm] = []
        for part in parts:
            for term in part.make_terms(context, own(part, options)):
                if all(term.name != t.name for t in terms):
                    terms.append(term)
        return terms

    return Method(
        name=name,
        summary=" + ".join(p.name for p in parts),
        make_terms=make_terms,
        options_type=options_type,
        needs_teacher=any(p.needs_teacher for p in parts),
        needs_teacher_heads=any(p.needs_teacher_heads for p in parts),
        needs_attentions=any(p.needs_attentions for p in parts),
        teacher_fields=tuple(f for f in ALL_TEACHER_FIELDS if any(f in p.teacher_fields for p in parts)),
        multi_label=all(p.multi_label for p in parts),
        fields_read=lambda options: tuple(f for p in parts for f in p.reads(asdict(own(p, options)))),
    )


def check_task(method: Method, task: Task) -> None:
    """Refuse a method on a multi-label task unless it declares a multi-label form (one line, before any loading)."""
    if task.multi_label and not method.multi_label:
        part = next((p for p in method.name.split("+") if p in METHODS and not METHODS.get(p).multi_label), None)
        usable = ", ".join(n for n in METHODS if METHODS.get(n).multi_label)
        raise XKDError(
            f"method '{part or method.name}' has no multi-label form (its terms may assume one softmax over the "
            f"labels); use one of {usable}, or declare @method(..., multi_label=True) once its terms handle "
            "Task.multi_label"
        )


# ---------------------------------------------------------------------------------------------------------------
# Building blocks of terms


def weighted_loss(
    terms: list[LossTerm], student: Trace, teacher: Trace | None, labels: Tensor, task: Task
) -> tuple[Tensor, dict[str, Tensor]]:
    """The total loss and each term's unweighted value (detached, on the batch's device: a plug-in term that returns
    a CPU scalar, such as `torch.tensor(0.0)`, must not break the logging on a GPU), for logging."""
    total: Tensor | None = None
    values: dict[str, Tensor] = {}
    for term in terms:
        if term.weight == 0:
            continue
        value = term.fn(student, teacher, labels, task)
        values[term.name] = value.detach().to(labels.device)
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
    """CE (MSE for regression, BCE for multi-label) on gold labels: the base term every method shares."""
    return task_loss(student.logits, labels, task.regression, task.multi_label)


def soft_term(temperature: float) -> LossFn:
    """Hinton's KD on final logits at `temperature` (MSE to the teacher for regression, per-label Bernoulli KD for
    multi-label tasks)."""

    def soft(student: Trace, teacher: Trace | None, labels: Tensor, task: Task) -> Tensor:
        if teacher is None:
            raise XKDError("this loss term needs a teacher's outputs, but none is loaded")
        if task.regression:
            return regression_kd_loss(student.logits, teacher.logits)
        if task.multi_label:
            return binary_kd_loss(student.logits, teacher.logits, temperature)
        return kd_loss(student.logits, teacher.logits, temperature)

    return soft


def needs_context(context: TermContext | None, method_name: str, why: str) -> TermContext:
    """The context, or a one-line error when a method that builds modules is asked for terms without one."""
    if context is None:
        raise XKDError(f"{method_name} needs the student and teacher shapes to {why}")
    return context
