"""`DistillationTrainer`: distil inside a Hugging Face `Trainer` by changing one class.

Users with a working `Trainer` script keep all of it (datasets, collators, callbacks, TensorBoard/W&B, checkpoints,
`push_to_hub`); only the loss changes. The loss is xkd's own, not a re-implementation: the method's `LossTerm`s are
built by the method from the same `TermContext` as in `xkd distill` (`TermContext.between`) and summed by
`xkd.methods.weighted_loss`, so a term means the same number in both paths and a plug-in method works in both.

The student stays what the user passed (a plain `AutoModelForSequenceClassification`): it is viewed through
`HFEncoderClassifier` only to produce an `xkd.Trace`, so `save_model` writes a plain HF checkpoint. A method's
trainable parts (Universal-KD's student pseudo heads and projector, the PKD/ALP width maps) live beside it: they are
added to the optimizer, clipped with the student, saved in each Trainer checkpoint (`xkd_terms.safetensors`) for
`resume_from_checkpoint`, and never in the student.

What this path leaves to `xkd distill`: students with their own tokenizer (the teacher reads the student's token
ids here, so both must use one tokenizer), methods on attention maps (aguilar), TAKD assistant chains, the teacher
cache, training the teacher's pseudo classifiers (run `xkd teacher heads` once) and term epoch records.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from xkd.data import tokenizer_fingerprint
from xkd.errors import XKDError
from xkd.methods import LossTerm, Method, TermContext, get_method, weighted_loss
from xkd.methods.base import check_task
from xkd.tasks import MULTI_LABEL_METRICS, Task
from xkd.teachers import HFEncoderClassifier, freeze, load_teacher
from xkd.trace import Trace

TERMS_FILE = "xkd_terms.safetensors"  # the method's trainable parts, in each Trainer checkpoint
LOG_PREFIX = "loss_"  # each term's mean is logged as loss_<term> (train/loss_<term> in W&B)
TeacherSpec = HFEncoderClassifier | PreTrainedModel | str | os.PathLike


def resolve_method(name: str, options: Mapping[str, Any] | None) -> tuple[Method, dict[str, Any]]:
    """The method and its checked options, exactly as `xkd distill -O` resolves them, or a one-line `XKDError`.

    Methods that need what a Trainer cannot give are refused here, before any model is loaded.
    """
    method = get_method(name)
    resolved = method.resolve(dict(options or {}))
    if method.needs_attentions:
        raise XKDError(
            f"method '{method.name}' compares attention maps and trains in stages, which DistillationTrainer does "
            f"not drive; use `xkd distill --method {method.name}`"
        )
    return method, resolved


def task_for(student: PreTrainedModel) -> Task:
    """The task the losses read (label count, regression, multi-label), taken from the student's config as HF does:
    `problem_type="multi_label_classification"` means sigmoid outputs and float multi-hot `labels`."""
    config = student.config
    multi_label = config.problem_type == "multi_label_classification"
    regression = config.problem_type == "regression" or (config.problem_type is None and config.num_labels == 1)
    return Task(
        name="trainer",
        text_columns=("text",),
        num_labels=config.num_labels,
        regression=regression,
        multi_label=multi_label,
        metrics=MULTI_LABEL_METRICS if multi_label else ("accuracy",),
    )


def prepare_teacher(
    teacher: TeacherSpec | None, task: Task, tokenizer: PreTrainedTokenizerBase | None
) -> HFEncoderClassifier:
    """A frozen `HFEncoderClassifier` from a path or hub id (`load_teacher`, pseudo heads included when stored),
    an `HFEncoderClassifier`, or a plain HF sequence classifier, checked against the student's labels."""
    if teacher is None:
        raise XKDError("this method learns from a teacher; pass teacher=<path, hub id or model>")
    if isinstance(teacher, str | os.PathLike):
        return load_teacher(str(teacher), task)
    if isinstance(teacher, PreTrainedModel):
        teacher = HFEncoderClassifier(teacher, tokenizer, {"source": teacher.name_or_path})
    if not isinstance(teacher, HFEncoderClassifier):
        raise XKDError(
            "teacher must be a path, a hub id, a PreTrainedModel or an HFEncoderClassifier, got "
            f"{type(teacher).__name__}"
        )
    if teacher.num_labels != task.output_size:
        raise XKDError(
            f"the teacher has {teacher.num_labels} output(s) but the student {task.output_size}; use a teacher "
            "fine-tuned on the student's labels"
        )
    return freeze(teacher)


def check_labels(student: PreTrainedModel, teacher: HFEncoderClassifier) -> None:
    """Both models name their labels (not HF's LABEL_i defaults) and the names differ: KD would match the wrong
    classes, so say so."""

    def named(config) -> dict[int, str] | None:
        labels = {int(k): str(v) for k, v in (config.id2label or {}).items()}
        return None if all(v == f"LABEL_{k}" for k, v in labels.items()) else labels

    s, t = named(student.config), named(teacher.config)
    if s is not None and t is not None and s != t:
        raise XKDError(
            f"the student's labels {s} are not the teacher's {t}; give the student the teacher's id2label/label2id"
        )


def check_tokenizers(
    student: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None, teacher: HFEncoderClassifier
) -> PreTrainedTokenizerBase:
    """The one tokenizer both models read: the teacher runs on the student's token ids, so they must agree.

    Returns the student's tokenizer (the Trainer's `processing_class`), or the teacher's when none was given (then
    the student's vocabulary size must equal the teacher's, the one check left).
    """
    fix = (
        "tokenize with the teacher's tokenizer and build the student on its vocabulary (e.g. "
        "xkd.students.build_bert_k), or use `xkd distill`, which tokenizes for each model"
    )
    if tokenizer is None:
        if teacher.tokenizer is None:
            raise XKDError("pass processing_class=<the tokenizer both models use>: no tokenizer is known")
        if getattr(student.config, "vocab_size", None) != getattr(teacher.config, "vocab_size", None):
            raise XKDError(
                f"the student's vocabulary ({student.config.vocab_size}) is not the teacher's "
                f"({teacher.config.vocab_size}): DistillationTrainer needs one tokenizer for both; {fix}"
            )
        return teacher.tokenizer
    if teacher.tokenizer is not None and tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(teacher.tokenizer):
        raise XKDError(
            "the student's tokenizer (processing_class) is not the teacher's: DistillationTrainer runs the teacher on "
            f"the student's token ids, so both must use one tokenizer; {fix}"
        )
    return tokenizer


def check_teacher_heads(method: Method, teacher: HFEncoderClassifier) -> None:
    if method.needs_teacher_heads and teacher.pseudo_heads is None:
        if getattr(teacher, "damaged_heads", None) is not None:
            raise teacher.damaged_heads  # says which file is damaged and how to retrain the heads
        source = teacher.meta.get("source", "DIR")
        raise XKDError(
            f"method '{method.name}' needs the teacher's per-layer pseudo classifiers and the teacher has none; "
            f"train them once with `xkd teacher heads --teacher {source} --task TASK` (they load with the teacher)"
        )


def decay_groups(named: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as xkd's own loop builds them: no weight decay on biases and norms."""
    decay, no_decay = [], []
    for name, p in named:
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


class DistillationTrainer(Trainer):
    """A `transformers.Trainer` whose loss is an xkd method's weighted terms (gold-label CE + teacher terms).

    Takes every `Trainer` argument plus:
        teacher: a path or hub id (loaded with `xkd.teachers.load_teacher`, pseudo heads included), an
            `xkd.teachers.HFEncoderClassifier`, or a plain HF sequence classifier; frozen, run under `no_grad` on the
            student's batch. Not needed for `method="none"`.
        method: an xkd method name (`kd`, `logit-mse`, `universal`, `pkd`, `alp`, `none`, a `+` composition or a
            plug-in path); attention-map methods (aguilar) are refused, use `xkd distill`.
        method_options: the method's options by name, validated as `xkd distill -O` validates them.

    Teacher and student must share one tokenizer. Each term's mean since the last log is logged as
    `loss_<term>` (unweighted, as in `metrics.jsonl`). `save_model` writes only the student.
    """

    # compute_loss returns a per-batch mean: the Trainer divides it by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        teacher: TeacherSpec | None = None,
        method: str = "kd",
        method_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        chosen, options = resolve_method(method, method_options)  # option errors before any model work
        super().__init__(*args, **kwargs)
        self._check_trainer_setup()
        self.method = chosen
        self.task = task_for(self.model)
        check_task(chosen, self.task)  # a method without a multi-label form is refused on multi-label students
        tokenizer = self._given_tokenizer()
        self.teacher: HFEncoderClassifier | None = None
        if chosen.needs_teacher:
            self.teacher = prepare_teacher(teacher, self.task, tokenizer)
            check_labels(self.model, self.teacher)
            check_teacher_heads(chosen, self.teacher)
            tokenizer = check_tokenizers(self.model, tokenizer, self.teacher)
        self.student_view = HFEncoderClassifier(self.model, tokenizer)
        context = None
        if self.teacher is not None:  # one tokenizer, checked above
            context = replace(TermContext.between(self.student_view, self.teacher, self.task), shared_tokenizer=True)
        self.terms: list[LossTerm] = chosen.terms(context, **options)
        self.term_modules = nn.ModuleList([t.module for t in self.terms if t.module is not None])
        self._check_extras_fit()
        for hook in self._term_hooks("start"):
            hook(self.student_view)
        self._place(self.args.device)
        self.model_accepts_loss_kwargs = False  # older Trainers decide the GA scaling from this alone
        self._term_sums: dict[str, Tensor] = {}
        self._term_batches = 0

    # -- set-up checks ----------------------------------------------------------------------------------------------

    def _check_trainer_setup(self) -> None:
        """What would silently replace or bypass the method's loss, or change the student under it."""
        if self.model_init is not None:
            raise XKDError(
                "DistillationTrainer needs model=<the student>; model_init (hyperparameter search) is not supported"
            )
        if not isinstance(self.model, PreTrainedModel):
            raise XKDError(
                "the student must be a Hugging Face sequence classifier (PreTrainedModel), got "
                f"{type(self.model).__name__}"
            )
        if self.compute_loss_func is not None or self.args.label_smoothing_factor:
            raise XKDError(
                "the loss is the distillation method's terms; drop compute_loss_func / label_smoothing_factor"
            )

    def _given_tokenizer(self) -> PreTrainedTokenizerBase | None:
        for candidate in (self.processing_class, getattr(self.data_collator, "tokenizer", None)):
            if isinstance(candidate, PreTrainedTokenizerBase):
                return candidate
        return None

    def _check_extras_fit(self) -> None:
        """Trainable term parts need the optimizer this class builds and plain (DDP) gradient averaging."""
        if not self.distillation_parameters():
            return
        if self.lr_scheduler is not None:
            raise XKDError(
                f"method '{self.method.name}' trains its own parts, which a prebuilt learning-rate scheduler cannot "
                "cover; pass optimizers=(optimizer, None) or neither"
            )
        if getattr(self, "is_deepspeed_enabled", False) or getattr(self, "is_fsdp_enabled", False):
            raise XKDError(
                f"method '{self.method.name}' trains parts outside the student, which DeepSpeed/FSDP would not shard; "
                "use DDP, a method without them (kd, logit-mse), or `xkd distill`"
            )

    def distillation_parameters(self) -> list[nn.Parameter]:
        """The method's trainable parameters (student pseudo heads, projector, width maps): optimised, not exported."""
        return [p for p in self.term_modules.parameters() if p.requires_grad]

    def _term_hooks(self, hook: str) -> list[Any]:
        return [getattr(t.module, hook) for t in self.terms if hasattr(t.module, hook)]

    def _place(self, device: torch.device) -> None:
        """Teacher and term modules go to the student's device (read from its parameters): placed once, moved again
        only if the student moves."""
        if self.teacher is not None:
            self.teacher.to(device)
        self.term_modules.to(device)
        self._device = device

    # -- the loss ---------------------------------------------------------------------------------------------------

    def traces(self, model: nn.Module, inputs: Mapping[str, Any]) -> tuple[Trace, Trace | None, Tensor]:
        """Student trace (with gradients), teacher trace (frozen, no_grad) and labels for one Trainer batch.

        `model` may be the Trainer's wrapper (DDP, compile): the student's forward goes through it, so gradients
        are synchronised as for any Trainer model.
        """
        if "labels" not in inputs:
            raise XKDError("DistillationTrainer batches need 'labels' (use -100 for rows without a gold label)")
        features = {k: v for k, v in inputs.items() if k != "labels"}
        device = next(model.parameters()).device
        if device != self._device:
            self._place(device)
        view = self.student_view if model is self.model else HFEncoderClassifier(model, self.student_view.tokenizer)
        teacher_trace = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_trace = self.teacher(features)
        return view(features), teacher_trace, inputs["labels"]

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, SequenceClassifierOutput]:
        """The method's weighted terms on this batch (xkd's `weighted_loss`), each term recorded for logging."""
        self.term_modules.train(model.training)
        student, teacher, labels = self.traces(model, inputs)
        loss, values = weighted_loss(self.terms, student, teacher, labels, self.task)
        if model.training:
            self._record(values)
        if return_outputs:  # evaluation reads the logits only (hidden states would be taken for predictions)
            return loss, SequenceClassifierOutput(loss=loss, logits=student.logits)
        return loss

    def _record(self, values: Mapping[str, Tensor]) -> None:
        for name, value in values.items():
            self._term_sums[name] = self._term_sums.get(name, 0.0) + value.float()
        self._term_batches += 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add each term's mean since the last training log (`loss_<term>`), averaged over processes."""
        if "loss" in logs and self._term_batches:
            names = list(self._term_sums)
            means = torch.stack([self._term_sums[n] for n in names]) / self._term_batches
            means = self.accelerator.reduce(means, "mean")
            logs.update({f"{LOG_PREFIX}{n}": round(float(v), 6) for n, v in zip(names, means.tolist(), strict=True)})
            self._term_sums, self._term_batches = {}, 0
        super().log(logs, *args, **kwargs)

    # -- optimisation -------------------------------------------------------------------------------------------------

    def create_optimizer(self, *args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        """The Trainer's optimizer for the student (or the one passed in), plus groups for the method's trainable
        parts, added before the learning-rate schedule is built so it covers them."""
        optimizer = super().create_optimizer(*args, **kwargs)
        present = {id(p) for group in optimizer.param_groups for p in group["params"]}
        extras = [(n, p) for n, p in self.term_modules.named_parameters() if p.requires_grad and id(p) not in present]
        for group in decay_groups(extras, self.args.weight_decay):
            optimizer.add_param_group(group)
        return optimizer

    def training_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Tensor:
        """The Trainer's step; then the term parts' gradients are averaged over processes (they are not inside the
        DDP-wrapped student) and the terms' `after_backward` hooks run, as in xkd's own loop."""
        loss = super().training_step(model, inputs, *args, **kwargs)
        self._average_extra_gradients()
        for hook in self._term_hooks("after_backward"):
            hook(self.student_view)
        return loss

    def _average_extra_gradients(self) -> None:
        if self.accelerator.num_processes < 2:
            return
        for p in self.distillation_parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.accelerator.num_processes

    def _clip_grad_norm(self, model: nn.Module) -> Any:
        """Clip the student and the method's parts together, as xkd's own loop does."""
        extras = self.distillation_parameters()
        if not extras:
            return super()._clip_grad_norm(model)
        return self.accelerator.clip_grad_norm_([*model.parameters(), *extras], self.args.max_grad_norm)

    # -- checkpoints ------------------------------------------------------------------------------------------------

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """The Trainer's checkpoint (student, optimizer, ...) plus the term modules' state, for resuming."""
        super()._save_checkpoint(model, trial)
        state = self.term_modules.state_dict()
        if state and self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(folder / TERMS_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, *args: Any, **kwargs: Any) -> None:
        """The Trainer's resume, plus the term modules' state when the checkpoint has it."""
        super()._load_from_checkpoint(resume_from_checkpoint, *args, **kwargs)
        path = Path(resume_from_checkpoint) / TERMS_FILE
        if len(self.term_modules.state_dict()) and path.is_file():
            self.term_modules.load_state_dict(load_file(str(path), device=str(self._device)))


__all__ = ["DistillationTrainer"]
