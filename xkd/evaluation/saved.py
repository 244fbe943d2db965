"""`xkd eval`: a saved student or teacher scored on a task's splits, loaded as `xkd predict` loads it (one loader,
one max-length rule), its label names checked against the task's before anything is scored."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from xkd.config import DEFAULTS, DistillConfig
from xkd.data import Collator, encode, is_labeled, load_splits, make_loader, separate_roles
from xkd.errors import XKDError
from xkd.evaluation import evaluate
from xkd.log import Log, to_stderr
from xkd.paths import STUDENT_FILE
from xkd.predict import load_model, saved_max_length
from xkd.processes import process_device
from xkd.tasks import Task, check_label_names, resolve_task


def evaluate_saved(
    model_dir: str,
    cfg: DistillConfig,
    split_names: Sequence[str] = (),
    batch_size: int = DEFAULTS.eval_batch_size,
    max_length: int | None = None,
    log: Log = to_stderr,
) -> dict[str, Any]:
    """The task's metrics (`cfg`: its task, data directory, custom-task columns and `max_examples`) of the model in
    `model_dir` (or a hub id) on `split_names` [default: the task's validation and test splits]."""
    task, raw = load_splits(resolve_task(cfg), cfg.data_dir, cfg.max_examples)
    model, meta = load_scored(model_dir, task)
    check_scored_labels(model_dir, model, meta, task, log)
    names = list(split_names) or [n for n in (*task.validation_splits, *task.test_splits) if n in raw]
    unknown = [n for n in names if n not in raw]
    if unknown:
        raise XKDError(f"task '{task.name}' has no split '{unknown[0]}'; choose from {', '.join(raw)}")
    tokenizers, separate = {"student": model.tokenizer}, separate_roles(model)
    collator, length = Collator(tokenizers, separate), saved_max_length(meta, max_length)
    metrics = {}
    for name in names:
        split = encode(raw[name], task, tokenizers, length, separate)
        if is_labeled(split):
            metrics[name] = evaluate(model, make_loader(split, collator, batch_size, shuffle=False), task)
    return {"model": model_dir, "task": task.name, "metrics": metrics}


def load_scored(model_dir: str, task: Task) -> tuple[nn.Module, dict[str, Any]]:
    """The model (a directory as `xkd predict` loads it; else a hub id, as a teacher) on the process's device, and
    what xkd recorded beside it; refused when its outputs do not fit the task."""
    if Path(model_dir).is_dir():
        model, meta = load_model(model_dir, what="teacher")  # (a transformer student is read as a teacher is)
    else:
        from xkd.teachers import load_teacher

        model = load_teacher(model_dir, task, labels=False)
        meta = getattr(model, "meta", None) or {}
    if model.num_labels != task.output_size:
        raise XKDError(f"{model_dir} has {model.num_labels} output(s) but task '{task.name}' needs {task.output_size}")
    return model.to(process_device()), meta


def check_scored_labels(model_dir: str, model: nn.Module, meta: dict[str, Any], task: Task, log: Log) -> None:
    """Scored by position: a model whose label names are not the task's would be scored silently wrong."""
    from xkd.teachers.loading import model_label_names

    student = (Path(model_dir) / STUDENT_FILE).is_file()
    labels = meta.get("labels") if student else model_label_names(model.config, meta)
    kept = f"the labels of its {STUDENT_FILE}" if student else "id2label and label2id in its config.json"
    fix = f"score it on the task it was trained for, or, if only its names are wrong, rename or reorder {kept}"
    labels = labels if isinstance(labels, list | tuple) else None
    check_label_names(f"model '{model_dir}'", labels, task, fix, log=log)
