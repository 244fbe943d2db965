"""The student registry: a name -> (builder, loader) table that the zoo fills.

A builder takes the loaded teacher, the task, the training texts (for students that build their own vocabulary),
the depth and init strategy, and the student's own options; it returns a module whose forward fills `xkd.Trace`
and that can `save(directory)`. `load_student(directory)` reloads any saved student.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from xkd.damage import REDISTILL, TOKENIZER_FILES, damage_check
from xkd.errors import XKDError
from xkd.options import resolve_options
from xkd.registry import Registry
from xkd.tasks import Task
from xkd.teachers.hf_encoder import HFEncoderClassifier

from .bert_k import INITS, build_bert_k
from .bilstm import BiLSTMConfig, BiLSTMStudent
from .cnn import CNNConfig, CNNStudent
from .plugins import builder_of, check_protocol, entry_point_students, import_target
from .sentence_encoder import CONFIG_FILE, SentenceEncoderStudent
from .vocab import build_sentencepiece_tokenizer, build_word_tokenizer
from .word_vectors import load_word_vectors


@dataclass(frozen=True)
class StudentSpec:
    name: str
    summary: str
    build: Callable[..., nn.Module]
    options: dict[str, Any]
    load: Callable[[str | Path], nn.Module] | None = None
    lr: float = 1e-4  # the learning rate `xkd distill` uses when none is given


STUDENTS: Registry[StudentSpec] = Registry("student")


def _from_checkpoint(checkpoint: str, task: Task) -> HFEncoderClassifier:
    """A pretrained small encoder as the student (e.g. MiniLM-L6 for a BERT-base teacher), with its own tokenizer."""
    model = HFEncoderClassifier.from_pretrained(checkpoint, num_labels=task.output_size, what="student checkpoint")
    model.meta = {"student": "checkpoint", "checkpoint": checkpoint}
    return model


def _bert_k(
    teacher: HFEncoderClassifier, task: Task, train_texts, layers: int, init: str, log=print, checkpoint: str = ""
) -> nn.Module:
    if checkpoint:
        return _from_checkpoint(checkpoint, task)
    return build_bert_k(teacher, layers=layers, init=init)


def _distilroberta(
    teacher: HFEncoderClassifier, task: Task, train_texts, layers: int, init: str, log=print, checkpoint: str = ""
) -> nn.Module:
    if checkpoint:
        return _from_checkpoint(checkpoint, task)
    if teacher.config.model_type != "roberta":
        raise XKDError(
            f"distilroberta from teacher layers needs a RoBERTa teacher, not {teacher.config.model_type}; "
            "pass -S checkpoint=distilroberta-base (a local path offline) or use --student bert-k"
        )
    return build_bert_k(teacher, layers=6, init="uniform")  # every other layer of a 12-layer teacher


STUDENTS.add(
    "bert-k",
    StudentSpec(
        "bert-k",
        f"k transformer layers of the teacher's family at its width (init {'/'.join(INITS)}), "
        "or a pretrained small encoder (-S checkpoint=PATH)",
        _bert_k,
        {"checkpoint": ""},
    ),
)
STUDENTS.add(
    "distilroberta",
    StudentSpec(
        "distilroberta",
        "a 6-layer RoBERTa: every other layer of a RoBERTa teacher, or a checkpoint (-S checkpoint=distilroberta-base)",
        _distilroberta,
        {"checkpoint": ""},
    ),
)

# Options every CNN/BiLSTM student accepts (-S KEY=VALUE); the architecture's own follow.
ENCODER_OPTIONS: dict[str, Any] = {
    "vocab": "word",  # word / sentencepiece: built from the training split; teacher: the teacher's tokenizer
    "min_frequency": 1,
    "max_vocab": 30000,
    "vectors": "",  # a GloVe / word2vec file for a word vocabulary ('' = random init)
    "embedding_dim": 300,  # for random init
    "freeze_embeddings": False,
    "dropout": 0.5,
}


def _embeddings(teacher: HFEncoderClassifier, train_texts: list[str], options: dict[str, Any], log) -> dict:
    """Tokenizer and embedding init for a CNN/BiLSTM student, per the `vocab` and `vectors` options."""
    if options["vocab"] == "teacher":
        weight = teacher.model.get_input_embeddings().weight.detach().clone()
        return {"tokenizer": teacher.tokenizer, "weight": weight, "coverage": 1.0}
    if options["vocab"] == "sentencepiece":
        if options["vectors"]:
            raise XKDError("word vectors need vocab=word; sentencepiece pieces are not words")
        tokenizer = build_sentencepiece_tokenizer(train_texts, options["max_vocab"])
        return {"tokenizer": tokenizer, "weight": None, "coverage": None}
    if options["vocab"] != "word":
        raise XKDError(f"student option vocab must be word, sentencepiece or teacher, got '{options['vocab']}'")
    tokenizer = build_word_tokenizer(train_texts, options["min_frequency"], options["max_vocab"])
    if not options["vectors"]:
        return {"tokenizer": tokenizer, "weight": None, "coverage": None}
    weight, coverage = load_word_vectors(options["vectors"], tokenizer.get_vocab())
    log(f"word vectors: {100 * coverage:.1f}% of {len(tokenizer) - 2} vocabulary words found in {options['vectors']}")
    return {"tokenizer": tokenizer, "weight": weight, "coverage": coverage}


def _encoder_builder(cls: type[SentenceEncoderStudent], config_cls: type, own: dict[str, Any]):
    def build(teacher, task: Task, train_texts, layers: int, init: str, log=print, **values) -> nn.Module:
        options = resolve_options(f"student '{cls.kind}'", {**ENCODER_OPTIONS, **own}, values)
        emb = _embeddings(teacher, train_texts, options, log)
        arch = {k: options[k] for k in own}
        if "filter_widths" in arch:
            arch["filter_widths"] = tuple(int(w) for w in str(arch["filter_widths"]).split(","))
        config = config_cls(
            vocab_size=len(emb["tokenizer"]),
            embedding_dim=emb["weight"].shape[1] if emb["weight"] is not None else options["embedding_dim"],
            num_labels=task.output_size,
            pair=task.is_pair,
            layers=layers,
            dropout=options["dropout"],
            pad_token_id=emb["tokenizer"].pad_token_id,
            freeze_embeddings=options["freeze_embeddings"],
            **arch,
        )
        model = cls(config, emb["tokenizer"])
        if emb["weight"] is not None:
            model.embedding.weight.data.copy_(emb["weight"])
        model.meta = {"student": cls.kind, "vocab": options["vocab"], "vector_coverage": emb["coverage"]}
        return model

    return build


STUDENTS.add(
    "cnn",
    StudentSpec(
        "cnn",
        "stacked multi-width convolution blocks (gated=true for GLU), each block max-pooled to a layer",
        _encoder_builder(CNNStudent, CNNConfig, {"channels": 100, "filter_widths": "3,4,5", "gated": False}),
        {**ENCODER_OPTIONS, "channels": 100, "filter_widths": "3,4,5", "gated": False},
        CNNStudent.load,
        lr=2e-3,
    ),
)
STUDENTS.add(
    "bilstm",
    StudentSpec(
        "bilstm",
        "stacked bidirectional LSTM layers over packed sequences, each pooled (max or mean) to a layer",
        _encoder_builder(BiLSTMStudent, BiLSTMConfig, {"hidden_size": 150, "pooling": "max"}),
        {**ENCODER_OPTIONS, "hidden_size": 150, "pooling": "max"},
        BiLSTMStudent.load,
        lr=2e-3,
    ),
)


def student_lr(name: str) -> float:
    """The default learning rate for a student: built-ins declare theirs; plug-ins get the transformer default."""
    spec = STUDENTS.get(name) if name in STUDENTS else None
    return spec.lr if spec else 1e-4


def student_spec(name: str) -> StudentSpec | None:
    """The built-in spec for `name`; None for a plug-in (import path or entry point), which checks itself."""
    if name in STUDENTS:
        return STUDENTS.get(name)
    if ":" in name or name in entry_point_students():
        return None
    return STUDENTS.get(name)  # raises the unknown-student error, with the closest built-in name


def plugin_builder(name: str):
    """The plug-in's target object and its build function, for an import path or an entry-point name."""
    target = import_target(name) if ":" in name else entry_point_students()[name].load()
    return target, builder_of(target, name)


def build_student(
    name: str,
    teacher: HFEncoderClassifier,
    task: Task,
    train_texts: list[str] | None = None,
    layers: int = 2,
    init: str = "uniform",
    log=print,
    **options: Any,
) -> nn.Module:
    """Build a registered, entry-point or import-path (`pkg.mod:Class`) student."""
    spec = student_spec(name)
    if spec is None:
        target, build = plugin_builder(name)
        model = build(teacher, task, train_texts or [], layers, **options)
        model = check_protocol(model, name)
        if isinstance(target, type) and hasattr(target, "load"):
            model.plugin = f"{target.__module__}:{target.__qualname__}"  # recorded so load_student finds it
        return model
    if spec.build in (_bert_k, _distilroberta):
        options = resolve_options(f"student '{name}'", spec.options, options)
    return spec.build(teacher, task, train_texts or [], layers, init, log=log, **options)


def load_student(directory: str | Path) -> nn.Module:
    """Reload any saved student: CNN/BiLSTM from `student.json`, transformer students as HF checkpoints."""
    directory = Path(directory)
    record = directory / CONFIG_FILE
    if record.is_file():
        with damage_check(f"student '{directory}'", directory, (CONFIG_FILE,), REDISTILL):
            saved = json.loads(record.read_text())
        if not isinstance(saved, dict) or "kind" not in saved:
            raise XKDError(
                f"cannot load student '{directory}': {CONFIG_FILE} is damaged (it names no kind); {REDISTILL}"
            )
        kind = saved["kind"]
        if saved.get("plugin"):
            # A plug-in's own loader: its damaged files are named when they are the usual ones (weights, tokenizer).
            with damage_check(f"student '{directory}'", directory, ("*.safetensors", *TOKENIZER_FILES), REDISTILL):
                return import_target(saved["plugin"]).load(directory)
        spec = STUDENTS.get(kind)
        if spec.load is None:
            raise XKDError(f"student kind '{kind}' cannot be reloaded; it registered no loader")
        return spec.load(directory)
    return HFEncoderClassifier.from_pretrained(str(directory), what="student")
