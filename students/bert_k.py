"""BERT-k: a k-layer student of the teacher's own family (BERT, RoBERTa, ...) at the teacher's width.

Initialising from teacher layers is what makes small transformer students train well (PKD, DistilBERT): the
student copies the teacher's embeddings, the chosen encoder layers, pooler and classifier.
"""

from __future__ import annotations

import copy
import re

from transformers import AutoModelForSequenceClassification

from xkd.errors import XKDError
from xkd.layer_maps import uniform_map
from xkd.teachers.hf_encoder import HFEncoderClassifier

INITS = ("uniform", "first", "last", "random")
_LAYER = re.compile(r"\.layer\.(\d+)\.")


def teacher_layers(n: int, k: int, init: str) -> list[int]:
    """Which of the teacher's n layers (0-based) seed the student's k layers.

    `uniform` takes every n/k-th layer ending at the top one (6 -> 2: [2, 5]; 12 -> 4: [2, 5, 8, 11]), `first`
    the bottom k, `last` the top k.
    """
    if not 1 <= k <= n:
        raise XKDError(f"a {k}-layer student cannot be initialised from a {n}-layer teacher; use 1..{n} layers")
    if init == "uniform":
        return uniform_map(n, k)
    if init == "first":
        return list(range(k))
    if init == "last":
        return list(range(n - k, n))
    raise XKDError(f"unknown init '{init}'; choose one of: {', '.join(INITS)}")


def build_bert_k(teacher: HFEncoderClassifier, layers: int = 2, init: str = "uniform") -> HFEncoderClassifier:
    """A `layers`-deep copy of the teacher's architecture, initialised from its layers or at random."""
    if init not in INITS:
        raise XKDError(f"unknown init '{init}'; choose one of: {', '.join(INITS)}")
    n = teacher.num_layers
    if layers < 1:
        raise XKDError(f"--student-layers must be at least 1, got {layers}")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = layers
    student = AutoModelForSequenceClassification.from_config(config)
    mapping: list[int] | None = None
    if init != "random":
        mapping = teacher_layers(n, layers, init)
        source = teacher.model.state_dict()
        target = student.state_dict()
        for key in target:
            match = _LAYER.search(key)
            src = _LAYER.sub(f".layer.{mapping[int(match.group(1))]}.", key, count=1) if match else key
            target[key] = source[src].clone()
        student.load_state_dict(target)
    meta = {"student": "bert-k", "layers": layers, "init": init, "teacher_layers": mapping}
    return HFEncoderClassifier(student, teacher.tokenizer, meta)
