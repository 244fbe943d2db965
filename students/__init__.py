"""Students: models that fill the `xkd.Trace` contract and train under distillation."""

from .bert_k import build_bert_k, teacher_layers
from .registry import STUDENTS, StudentSpec, build_student

__all__ = ["STUDENTS", "StudentSpec", "build_bert_k", "build_student", "teacher_layers"]
