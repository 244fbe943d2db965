"""The student registry: a name -> (builder, loader) table that the zoo fills.

A builder takes the loaded teacher, the task, the training texts (for students that build their own vocabulary),
the depth and init strategy, and the student's own options; it returns a module whose forward fills `xkd.Trace`
and that can `save(directory)`. `load_student(directory)` reloads any saved student.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from xkd.damage import REDISTILL, TOKENIZER_FILES, damage_check
from xkd.errors import XKDError
from xkd.options import resolve_options
from xkd.processes import process_device
from xkd.registry import Registry
from xkd.tasks import Task
from xkd.teachers.hf_encoder import HFEncoderClassifier, freeze

from .bert_k import INITS, build_bert_k
from .bilstm import BiLSTMConfig, BiLSTMStudent
from .cnn import CNNConfig, CNNStudent
from .plugins import builder_of, check_protocol, entry_point_students, import_target
from .sentence_encoder import CONFIG_FILE, SentenceEncoderStudent
from .static import StaticConfig, StaticStudent
from .teacher_vectors import DEFAULT_LAYER, VectorOptions, distil_vectors
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
    # Runs longer than this many optimizer steps take lr x sqrt(lr_steps / steps) (None: lr at any length); see
    # `student_lr`.
    lr_steps: int | None = None


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

# The default layer of vectors distilled for the teacher's own tokens: with KD on gold (3 seeds each) the last layer
# led the mean by +1.45 test points on amazon_sent's CNN, tied on MR's CNN and trailed by 0.22 on amazon_sent's
# BiLSTM (+0.41 over the 9 paired runs); every transfer-set run on the teacher's tokens used it
# (docs/results/static/README.md).
TOKEN_LAYER = "last"

# Options every CNN/BiLSTM student accepts (-S KEY=VALUE); the architecture's own follow.
ENCODER_OPTIONS: dict[str, Any] = {
    # word / sentencepiece: built from the training split; teacher: the teacher's tokenizer (the CNN's and BiLSTM's
    # default, TOKEN_OPTIONS below; the static student keeps word)
    "vocab": "word",
    # The texts a word or sentencepiece vocabulary (and its SIF counts) comes from: train, or train+transfer to give
    # the words of a --transfer file rows of their own (xkd.students.configured.configured_student picks the texts).
    "vocab_from": "train",
    "min_frequency": 1,
    "max_vocab": 30000,
    # teacher: distilled from the run's teacher (the default); a GloVe / word2vec file for a word vocabulary; '' =
    # random init. Distilled vectors beat random init on both tasks measured (CNN, KD on gold: +2.79 test points on
    # amazon_sent over 3 seeds, +1.89 on MR's seed 42; docs/results/static/README.md). A run whose teacher is saved
    # outputs (no model to run) falls back to random init when the default chose them, and says so.
    "vectors": "teacher",
    "vectors_dim": 256,  # vectors=teacher: PCA to this many dimensions (at most the teacher's width)
    # vectors=teacher: mean (of layers 1..L), last or an index (0 = embeddings). The default follows the vocabulary
    # (_fitted_defaults): words the mean (+0.88 test points over the last layer, 12 paired runs), tokens TOKEN_LAYER.
    "vectors_layer": DEFAULT_LAYER,
    "vectors_weighting": "counts",  # vectors=teacher: SIF by training-split counts, zipf (model2vec's rank), none
    "vectors_teacher": "",  # vectors=teacher: another model to distil them from ('' = the run's teacher)
    "embedding_dim": 300,  # for random init
    "freeze_embeddings": False,
    "dropout": 0.5,
}


def _embeddings(
    teacher: HFEncoderClassifier | None,
    train_texts: list[str],
    options: dict[str, Any],
    log,
    given: dict[str, Any],
    progress: bool = True,
    teacher_path: str | None = None,
) -> dict:
    """Tokenizer and embedding init for a CNN/BiLSTM student, per the `vocab` and `vectors` options."""
    distilled = str(options["vectors"]) == "teacher"
    if options["vocab"] == "teacher":
        if teacher is None:
            raise XKDError("vocab=teacher reads a teacher model's tokenizer and there is none; use -S vocab=word")
        tokenizer = teacher.tokenizer
        if not distilled:
            weight = teacher.model.get_input_embeddings().weight.detach().clone()
            return {"tokenizer": tokenizer, "weight": weight, "coverage": 1.0}
    elif options["vocab"] == "sentencepiece":
        if options["vectors"] and not distilled:
            raise XKDError("word vectors need vocab=word; sentencepiece pieces are not words (or pass vectors=teacher)")
        tokenizer = build_sentencepiece_tokenizer(train_texts, options["max_vocab"])
    elif options["vocab"] == "word":
        tokenizer = build_word_tokenizer(train_texts, options["min_frequency"], options["max_vocab"])
    else:
        raise XKDError(f"student option vocab must be word, sentencepiece or teacher, got '{options['vocab']}'")
    if distilled:
        return _distilled_embeddings(teacher, tokenizer, train_texts, options, log, given, progress, teacher_path)
    if not options["vectors"]:
        return {"tokenizer": tokenizer, "weight": None, "coverage": None}
    weight, coverage = load_word_vectors(options["vectors"], tokenizer.get_vocab())
    log(f"word vectors: {100 * coverage:.1f}% of {len(tokenizer) - 2} vocabulary words found in {options['vectors']}")
    return {"tokenizer": tokenizer, "weight": weight, "coverage": coverage}


def _fitted_defaults(teacher, options: dict[str, Any], given: dict[str, Any], log) -> dict[str, Any]:
    """The defaults `vectors=teacher` and (CNN, BiLSTM) `vocab=teacher` need a teacher model; fit them to the run.

    A run on saved outputs has no model to distil vectors from (random init) and no tokenizer to read; a vectors file
    (GloVe) holds words, and random init has nothing to gain from the teacher's pieces: the default vocabulary is then
    words. The default layer follows the vocabulary (TOKEN_LAYER for the teacher's tokens). Only defaults move, each
    said in a line; explicit options are kept (and refused without a teacher)."""
    distilled = str(options["vectors"]) == "teacher"
    if distilled and teacher is None and not options["vectors_teacher"] and given.get("vectors") is None:
        log("word vectors: random init (the run's teacher is saved outputs, no model to distil them from; "
            "pass -S vectors_teacher=MODEL or -S vectors=FILE)")  # fmt: skip
        options, distilled = {**options, "vectors": ""}, False
    if options["vocab"] == "teacher" and given.get("vocab") is None and not (distilled and teacher is not None):
        if teacher is None:
            log("vocabulary: words of the training split (the run's teacher is saved outputs, no tokenizer to read; "
                "the default vocab=teacher needs a teacher model)")  # fmt: skip
        options = {**options, "vocab": "word"}
    if distilled and given.get("vectors_layer") is None:
        options = {**options, "vectors_layer": TOKEN_LAYER if options["vocab"] == "teacher" else DEFAULT_LAYER}
    return options


def _distilled_embeddings(teacher, tokenizer, train_texts, options, log, given, progress, teacher_path) -> dict:
    """vectors=teacher: the student's vocabulary through the run's teacher, or through `vectors_teacher`."""
    if options["vectors_teacher"]:
        source = str(options["vectors_teacher"])
        device = next(teacher.parameters()).device if teacher is not None else process_device()
        teacher = freeze(HFEncoderClassifier.from_pretrained(source, what="vectors teacher")).to(device)
        teacher_path = source
    elif teacher is None:
        raise XKDError(
            "vectors=teacher distils the vectors from a teacher model and the run has none (saved outputs); "
            "pass -S vectors_teacher=MODEL or -S vectors=FILE"
        )
    vocab = tokenizer.get_vocab()
    entries = [""] * len(vocab)
    for entry, index in vocab.items():
        if index < len(entries):
            entries[index] = entry
    kind = options["vocab"]
    if kind == "teacher":
        entries = [str(i) for i in range(len(entries))]
    counts = None
    if options["vectors_weighting"] == "counts" and train_texts:
        ids = tokenizer(list(train_texts), add_special_tokens=False)["input_ids"]
        flat = np.fromiter((i for row in ids for i in row), dtype=np.int64)
        counts = np.bincount(flat, minlength=len(entries))[: len(entries)]
    chosen = VectorOptions(
        layer=options["vectors_layer"],
        dim=int(options["vectors_dim"]),
        dim_given="vectors_dim" in given and given["vectors_dim"] is not None,
        weighting=options["vectors_weighting"],
    )
    if len(entries) <= 2 and kind != "teacher":  # only [PAD] and [UNK]: no training word made it in
        raise XKDError(
            "vectors=teacher found an empty student vocabulary (no training word); check the training texts or "
            "lower -S min_frequency"
        )
    path = teacher_path or teacher.meta.get("source")
    weight, record = distil_vectors(
        teacher, entries, kind, chosen, counts, path, tokenizer.pad_token_id, progress=progress, log=log
    )
    return {"tokenizer": tokenizer, "weight": weight, "coverage": 1.0, "vectors": record}


def _encoder_builder(cls: type[SentenceEncoderStudent], config_cls: type, shared: dict[str, Any], own: dict[str, Any]):
    """The build function of a word-level student: `shared` the word-level options it starts from (ENCODER_OPTIONS
    or TOKEN_OPTIONS), `own` its architecture's options (its config's fields)."""

    def build(
        teacher, task: Task, train_texts, layers: int, init: str, log=print, progress=True, teacher_path=None, **values
    ) -> nn.Module:
        options = resolve_options(f"student '{cls.kind}'", {**shared, **own}, values)
        if layers < 1:  # before the vocabulary pass through the teacher
            raise XKDError(f"--student-layers must be at least 1, got {layers}")
        options = _fitted_defaults(teacher, options, values, log)
        emb = _embeddings(teacher, train_texts, options, log, values, progress, teacher_path)
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
        if emb.get("vectors"):
            model.meta["vectors"] = emb["vectors"]
        return model

    build.runs_teacher = True  # takes progress= and teacher_path= (see `build_student`)
    return build


# Word-level students train from scratch at 2e-3, which suits a few gold epochs (MR: 5 epochs, 1,330 steps at batch
# 32) but overshoots on a transfer set 20x as large (the CNN's best epoch was the first of three at 2e-3, and 5e-4 gave
# it +1.1 test points on MR): past this many steps the rate falls with the square root of the run's length.
WORD_STUDENT_LR_STEPS = 1500


def _word_student(
    kind: str, summary: str, cls: type[SentenceEncoderStudent], config_cls: type, shared: dict, own: dict
) -> None:
    """Register a word-level student: its defaults are `shared` then `own`, one table for building and listing."""
    build = _encoder_builder(cls, config_cls, shared, own)
    spec = StudentSpec(kind, summary, build, {**shared, **own}, cls.load, lr=2e-3, lr_steps=WORD_STUDENT_LR_STEPS)
    STUDENTS.add(kind, spec)


# The CNN and BiLSTM read the teacher's own tokens through vectors distilled from them: every text is covered (a
# training-split word vocabulary leaves 3.8% of test tokens unknown on MR and amazon_sent), and with Universal-KD +
# tang x20 the CNN gained +0.63 test points on MR and +1.68 on amazon_sent, the BiLSTM +1.67 on amazon_sent (3 seeds
# each; docs/results/static/README.md). The static student keeps words: a mean of the teacher's pieces did not gain
# with the transfer set (MR -0.37) and its table grows 1.9x (its speed is its point).
TOKEN_OPTIONS: dict[str, Any] = {**ENCODER_OPTIONS, "vocab": "teacher", "vectors_layer": TOKEN_LAYER}

_word_student(
    "cnn",
    "stacked multi-width convolution blocks (gated=true for GLU), each block max-pooled to a layer",
    CNNStudent,
    CNNConfig,
    TOKEN_OPTIONS,
    {"channels": 100, "filter_widths": "3,4,5", "gated": False},
)
_word_student(
    "bilstm",
    "stacked bidirectional LSTM layers over packed sequences, each pooled (max or mean) to a layer",
    BiLSTMStudent,
    BiLSTMConfig,
    TOKEN_OPTIONS,
    {"hidden_size": 150, "pooling": "max"},
)

# The static student's own option: a 256-wide hidden layer matches the distilled vectors' default 256 dimensions
# (model2vec's recipe; the vectors come from the teacher by default, as for every word-level student).
STATIC_OPTIONS: dict[str, Any] = {"hidden": 256}
_word_student(
    "static",
    "token embeddings (teacher-distilled by default) pooled by a masked mean, then dense layers (width hidden), "
    "each a layer",
    StaticStudent,
    StaticConfig,
    ENCODER_OPTIONS,
    STATIC_OPTIONS,
)


def student_lr(name: str, steps: int | None = None) -> float:
    """The default learning rate for a student: built-ins declare theirs; plug-ins get the transformer default.

    Given the run's optimizer `steps`, a student declaring `lr_steps` gets `lr * sqrt(lr_steps / steps)` on runs
    longer than `lr_steps`: one rule for a few epochs of gold rows and for a transfer set many times their size,
    so no task needs its own rate (measured in docs/results/static/README.md).
    """
    spec = STUDENTS.get(name) if name in STUDENTS else None
    if spec is None:
        return 1e-4
    if spec.lr_steps is None or steps is None or steps <= spec.lr_steps:
        return spec.lr
    return spec.lr * math.sqrt(spec.lr_steps / steps)


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
    progress: bool = True,
    teacher_path: str | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered, entry-point or import-path (`pkg.mod:Class`) student; `progress` and `teacher_path` (where
    a teacher-distilled vocabulary is cached) reach the built-in word-level students."""
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
    if getattr(spec.build, "runs_teacher", False):
        options = {**options, "progress": progress, "teacher_path": teacher_path}
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
