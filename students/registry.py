"""The student registry: a name -> builder table that the zoo fills.

A builder takes the (loaded) teacher, the task and the student options and returns a module whose forward fills
`xkd.Trace` and that can `save(directory)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from xkd.registry import Registry
from xkd.tasks import Task
from xkd.teachers.hf_encoder import HFEncoderClassifier

from .bert_k import INITS, build_bert_k


@dataclass(frozen=True)
class StudentSpec:
    name: str
    summary: str
    build: Callable[..., nn.Module]
    needs_teacher_weights: bool = False


STUDENTS: Registry[StudentSpec] = Registry("student")


def _bert_k(teacher: HFEncoderClassifier, task: Task, layers: int = 2, init: str = "uniform") -> nn.Module:
    return build_bert_k(teacher, layers=layers, init=init)


STUDENTS.add(
    "bert-k",
    StudentSpec(
        "bert-k",
        f"k transformer layers of the teacher's family at its width; init {'/'.join(INITS)}",
        _bert_k,
        needs_teacher_weights=True,
    ),
)


def build_student(name: str, teacher: HFEncoderClassifier, task: Task, **options) -> nn.Module:
    return STUDENTS.get(name).build(teacher, task, **options)
