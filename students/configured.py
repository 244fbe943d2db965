"""The student a `DistillConfig` asks for: its options checked before anything loads, built from the training
texts (and its input vectors from the teacher, with `-S vectors=teacher`), and its run's optimisation settings."""

from __future__ import annotations

from datasets import DatasetDict
from torch import nn
from transformers import PretrainedConfig

from xkd.config import DistillConfig
from xkd.errors import XKDError
from xkd.limits import check_student_options
from xkd.log import Log
from xkd.options import resolve_options
from xkd.students.registry import build_student, plugin_builder, student_lr, student_spec
from xkd.students.teacher_vectors import check_vector_options
from xkd.tasks import Task
from xkd.training.settings import TrainSettings
from xkd.transfer.sets import SPLIT as TRANSFER


def check_student(cfg: DistillConfig) -> None:
    """The student before anything loads: a built-in's option names, types and sizes (`xkd.limits`), a plug-in's
    import, `-S vocab_from`."""
    spec = student_spec(cfg.student)
    if spec is not None:
        options = resolve_options(f"student '{cfg.student}'", spec.options, cfg.student_options)
        check_student_options(options, cfg.max_length)
        check_vector_options(options)
    else:
        plugin_builder(cfg.student)  # a plug-in that cannot be imported fails before anything runs
    vocab_from(cfg)


def check_teacher_vectors(cfg: DistillConfig, teacher: str, config: PretrainedConfig | None) -> None:
    """-S vectors=teacher against the teacher they come from (its config.json): the layer and an explicit dimension."""
    spec = student_spec(cfg.student)
    if (
        config is None
        or spec is None
        or "vectors_dim" not in spec.options
        or cfg.student_options.get("vectors_teacher")
    ):
        return
    options = resolve_options(f"student '{cfg.student}'", spec.options, cfg.student_options)
    options["vectors_dim_given"] = cfg.student_options.get("vectors_dim") is not None
    check_vector_options(options, config.hidden_size, config.num_hidden_layers, teacher)


def vocab_from(cfg: DistillConfig) -> str:
    """`-S vocab_from`, checked: train or train+transfer."""
    chosen = str(cfg.student_options.get("vocab_from", "train"))
    if chosen not in ("train", "train+transfer"):
        raise XKDError(f"-S vocab_from must be train or train+transfer, got '{chosen}'")
    return chosen


def vocabulary_splits(cfg: DistillConfig, raw: DatasetDict) -> list[str]:
    """The splits a student's own vocabulary is built from (`-S vocab_from`)."""
    return ["train", *([TRANSFER] if vocab_from(cfg) == "train+transfer" and TRANSFER in raw else [])]


def configured_student(
    cfg: DistillConfig,
    teacher: nn.Module | None,
    task: Task,
    raw: DatasetDict,
    log: Log,
    teacher_path: str | None = None,
) -> nn.Module:
    """The student the config asks for; students with their own vocabulary build it from the training texts, or
    with `-S vocab_from=train+transfer` from the transfer set's too (a --transfer file's own words then get rows
    instead of [UNK]), and `-S vectors=teacher` its input vectors from the teacher, cached next to
    `teacher_path`."""
    splits = vocabulary_splits(cfg, raw)
    train_texts = [t for split in splits for column in task.text_columns for t in raw[split][column]]
    options = {"layers": cfg.student_layers, "init": cfg.student_init, "progress": cfg.progress}
    return build_student(
        cfg.student, teacher, task, train_texts, log=log, teacher_path=teacher_path, **options, **cfg.student_options
    )


def student_settings(cfg: DistillConfig, rows: int | None = None) -> TrainSettings:
    """The student's optimisation settings. Without --lr its default rate follows the run's length in optimizer
    steps (`rows` per epoch; the student's base rate when not known)."""
    return TrainSettings.from_config(cfg, default_lr=student_lr(cfg.student, cfg.optimizer_steps(rows)))
