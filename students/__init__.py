"""Students: models that fill the `xkd.Trace` contract and train under distillation."""

from .bert_k import build_bert_k, teacher_layers
from .bilstm import BiLSTMConfig, BiLSTMStudent
from .cnn import CNNConfig, CNNStudent
from .registry import STUDENTS, StudentSpec, build_student, load_student
from .static import StaticConfig, StaticStudent
from .vocab import build_sentencepiece_tokenizer, build_word_tokenizer
from .word_vectors import load_word_vectors

__all__ = [
    "STUDENTS",
    "StaticConfig",
    "StaticStudent",
    "BiLSTMConfig",
    "BiLSTMStudent",
    "CNNConfig",
    "CNNStudent",
    "StudentSpec",
    "build_bert_k",
    "build_sentencepiece_tokenizer",
    "build_student",
    "build_word_tokenizer",
    "load_student",
    "load_word_vectors",
    "teacher_layers",
]
