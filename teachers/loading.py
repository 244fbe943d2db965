"""Loading a fine-tuned teacher and checking it fits the task before any training starts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from xkd.damage import MODEL_FILES, REFETCH, TOKENIZER_FILES, damaged, local_files
from xkd.errors import XKDError
from xkd.log import Log
from xkd.pseudo_heads import PseudoHeads
from xkd.tasks import Task, check_label_names, positional

from .heads_store import heads_dir
from .hf_encoder import META_FILE, HFEncoderClassifier, freeze, is_sequence_classifier, load_config

# How to mend a teacher whose label names are not the task's (see `xkd.tasks.check_label_names`).
LABELS_FIX = (
    "if only its names are wrong, rename or reorder id2label and label2id in its config.json; else fine-tune it on "
    "this task with --finetune-teacher always"
)


def model_label_names(config: PretrainedConfig, meta: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """A Hugging Face classifier's label names in output order: its config's id2label, or, where that holds only
    Hugging Face's defaults (LABEL_0, ...), the labels xkd recorded when it trained the model (`xkd.json`)."""
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    names = tuple(id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels))
    saved = (meta or {}).get("labels")
    if positional(names) and isinstance(saved, list) and len(saved) == len(names):
        return tuple(str(name) for name in saved)
    return names


def saved_meta(name_or_path: str) -> dict[str, Any]:
    """The `xkd.json` beside a local model ({} for a hub id, a model xkd did not train, or an unreadable file:
    the damage checks name that one)."""
    try:
        meta = json.loads((Path(name_or_path) / META_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def check_teacher(name_or_path: str, task: Task, log: Log | None = None, labels: bool = True) -> None:
    """Raise a one-line error if the checkpoint is not a classifier for `task` (with `labels`, one whose label
    names are the task's: see `xkd.tasks.check_label_names`, whose note on assumed orders goes to `log`)."""
    config = load_config(name_or_path, "teacher")
    if not is_sequence_classifier(config):
        raise XKDError(
            f"teacher '{name_or_path}' is a bare encoder without a trained classifier; fine-tune it first "
            f"(xkd teacher finetune --model {name_or_path} --task {task.name}) or pass --finetune-teacher auto"
        )
    if config.num_labels != task.output_size:
        raise XKDError(
            f"teacher '{name_or_path}' has {config.num_labels} output(s) but task '{task.name}' needs "
            f"{task.output_size}; use a teacher fine-tuned on {task.name}"
        )
    check_problem_type(name_or_path, config.problem_type, task)
    # A truncated or overwritten file fails here, before a run directory exists, not halfway through loading.
    files = local_files(name_or_path)
    problem = damaged(files, (*MODEL_FILES, *TOKENIZER_FILES, META_FILE)) if files is not None else None
    if problem is not None:
        raise XKDError(f"cannot load teacher '{name_or_path}': {problem}; {REFETCH}")
    if labels:
        names = model_label_names(config, saved_meta(name_or_path))
        check_label_names(f"teacher '{name_or_path}'", names, task, LABELS_FIX, log)


def check_problem_type(name_or_path: str, problem_type: str | None, task: Task) -> None:
    """A checkpoint that says it is multi-label (HF's `problem_type`) serves only multi-label tasks, and the other
    way round: its sigmoid (or softmax) outputs would be read as the other kind. An unset type fits either."""
    multi = problem_type == "multi_label_classification"
    if problem_type is not None and multi != task.multi_label:
        fix = "pass --multi-label" if multi else "use a teacher fine-tuned with --multi-label"
        raise XKDError(
            f"teacher '{name_or_path}' is a {problem_type.replace('_', '-')} model but task '{task.name}' is "
            f"{'multi-label' if task.multi_label else 'not multi-label'}; {fix}"
        )


def load_teacher(name_or_path: str, task: Task, log: Log | None = None, labels: bool = True) -> HFEncoderClassifier:
    """A frozen, eval-mode teacher for `task`: any `AutoModelForSequenceClassification` by hub id or path, with
    `labels` its label names checked against the task's (`log` gets the note when their order is assumed).

    Its pseudo classifiers load with it when they exist (next to it, or in the cache for read-only teachers).
    """
    check_teacher(name_or_path, task, log, labels)
    teacher = HFEncoderClassifier.from_pretrained(name_or_path, what="teacher")
    stored = heads_dir(name_or_path)
    tried = teacher.damaged_heads is not None and teacher.damaged_heads.directory.resolve() == stored.resolve()
    if teacher.pseudo_heads is None and not tried and PseudoHeads.exists(stored):
        teacher.load_heads(stored)  # damaged heads stay off, in `damaged_heads`, for `ensure_teacher_heads`
    heads = teacher.pseudo_heads
    if heads is not None and (heads.num_labels != task.output_size or heads.layers != teacher.num_layers):
        raise XKDError(
            f"the pseudo classifiers of teacher '{name_or_path}' do not fit it ({heads.layers} heads, "
            f"{heads.num_labels} outputs); retrain them with 'xkd teacher heads --teacher {name_or_path} "
            f"--task {task.name}'"
        )
    if heads is not None and labels:  # heads trained on another task's labels (older heads record none: pass)
        where = name_or_path if PseudoHeads.exists(name_or_path) else stored
        retrain = f"retrain them with 'xkd teacher heads --teacher {name_or_path} --task {task.name}'"
        recorded = PseudoHeads.info(where).get("labels")
        recorded = recorded if isinstance(recorded, list) else None
        check_label_names(f"the pseudo-classifier set of teacher '{name_or_path}'", recorded, task, retrain)
    return freeze(teacher)
