"""Loading a fine-tuned teacher and checking it fits the task before any training starts."""

from __future__ import annotations

from xkd.errors import XKDError
from xkd.tasks import Task

from .hf_encoder import HFEncoderClassifier, freeze, is_sequence_classifier, load_config


def check_teacher(name_or_path: str, task: Task) -> None:
    """Raise a one-line error if the checkpoint is not a classifier for `task`."""
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


def load_teacher(name_or_path: str, task: Task) -> HFEncoderClassifier:
    """A frozen, eval-mode teacher for `task`: any `AutoModelForSequenceClassification` by hub id or path."""
    check_teacher(name_or_path, task)
    return freeze(HFEncoderClassifier.from_pretrained(name_or_path, what="teacher"))
