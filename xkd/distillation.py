"""`xkd distill` as a library call: resolve the task, data, teacher and student, train, report.

The order is chosen so that mistakes surface before anything expensive: names and values first, then data
files, then models, and only then training.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from accelerate.utils import set_seed
from datasets import DatasetDict, concatenate_datasets
from torch import nn

from xkd.config import CONFIG_FIELDS, DEFAULT_TEACHER, DistillConfig
from xkd.data import (
    Collator,
    check_classes,
    data_fingerprint,
    encode,
    full_rows,
    is_labeled,
    load_splits,
    local_data_dir,
    make_loader,
    tokenizer_fingerprint,
)
from xkd.errors import Interrupted, XKDError
from xkd.evaluation import evaluate, score_logits
from xkd.files import write_text_atomically
from xkd.flops import flops_per_example
from xkd.latency import cpu_latency_ms
from xkd.limits import check_batch_size, check_student_options, check_teacher_sizes
from xkd.log import Log, silent
from xkd.methods import Method, TermContext, get_method
from xkd.methods.base import check_task
from xkd.metrics import shown_metrics
from xkd.model_card import write_model_card
from xkd.options import resolve_options
from xkd.processes import process_device, process_state
from xkd.pseudo_heads import PseudoHeads
from xkd.students import build_student
from xkd.students.registry import plugin_builder, student_lr, student_spec
from xkd.students.teacher_vectors import check_vector_options
from xkd.tasks import Task, custom_task, get_task, task_record
from xkd.teacher_cache import FIELDS, Storage, TeacherCache, cache_dir, open_or_build, split_key
from xkd.teachers import (
    HFEncoderClassifier,
    cached_finetune,
    check_teacher,
    freeze,
    heads_dir,
    is_sequence_classifier,
    load_teacher,
    train_heads,
)
from xkd.teachers.ensemble import (
    EnsembleCache,
    EnsembleTeacher,
    check_ensemble,
    check_ensemble_widths,
    ensemble_collator,
    ensemble_info,
    first_member,
    member_collator,
    teacher_list,
    teacher_tokenizers,
)
from xkd.teachers.heads import STANDARDIZED, heads_info
from xkd.teachers.hf_encoder import load_config
from xkd.teachers.outside import OutsideOutputs, check_outside, match_outputs, outside_info
from xkd.training import Checkpoints, TrainSettings, parameter_count, train
from xkd.training.tracking import check_trackers
from xkd.transfer.sets import SPLIT as TRANSFER
from xkd.transfer.sets import build_transfer, check_transfer

ALL_OUTPUTS = Storage()  # gold splits: every output, float32
RUN_FILES = ("summary.json", "metrics.jsonl", "student", "checkpoints")  # what marks a directory as holding a run
LINK_KEYS = ("validation", "test", "train_seconds", "wall_seconds", "compute")  # what a TAKD link records


def resolve_task(cfg: DistillConfig) -> Task:
    """A registered task, or a custom one when `text_columns` are given."""
    if cfg.text_columns:
        return custom_task(
            cfg.task,
            tuple(cfg.text_columns),
            cfg.label_column,
            cfg.num_labels,
            cfg.regression,
            multi_label=cfg.multi_label,
            label_separator=cfg.label_separator,
        )
    if cfg.multi_label:
        raise XKDError(f"--multi-label declares a custom task; pass its --text-column (task '{cfg.task}' is built in)")
    return get_task(cfg.task)


def train_settings(cfg: DistillConfig, teacher: bool = False, rows: int | None = None) -> TrainSettings:
    """The optimisation settings of the student's run, or of the teacher's fine-tune (`teacher_epochs`,
    `teacher_lr`), taken from the config: every other setting has the config's value under the same name.
    Without --lr, the student's default rate follows the run's length in optimizer steps (`rows` per epoch)."""
    shared = {f.name: getattr(cfg, f.name) for f in fields(TrainSettings) if f.name in CONFIG_FIELDS}
    epochs = cfg.teacher_epochs if teacher else cfg.epochs
    lr = cfg.teacher_lr if teacher else (cfg.lr or student_lr(cfg.student, run_steps(cfg, rows, epochs)))
    shared["report_to"] = tracker_names(cfg.report_to)
    if teacher:  # early stopping and trackers are the student's: the teacher's fine-tune (and its key) stays as it was
        shared.update(eval_every=0, patience=0, report_to=[])
    return TrainSettings(**{**shared, "epochs": epochs, "lr": lr})


def run_steps(cfg: DistillConfig, rows: int | None, epochs: int) -> int | None:
    """Optimizer steps of a run over `rows` training rows (None when not known)."""
    if rows is None:
        return None
    steps = math.ceil(rows / cfg.batch_size / cfg.grad_accumulation) * epochs
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def tracker_names(values: list[str]) -> list[str]:
    """`--report-to` values, repeatable or comma-separated."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def default_run_dir(cfg: DistillConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    student = cfg.student.rpartition(":")[2].rpartition(".")[2]  # a plug-in path names its class
    method = "+".join(part.rpartition(":")[2] for part in cfg.method.split("+"))
    data = (f"-{cfg.augment}{cfg.augment_factor}" if cfg.augment != "none" else "") + ("-transfer" * bool(cfg.transfer))
    return Path("runs") / f"{cfg.task}-{student}{cfg.student_layers}-{method}{data}-{stamp}"


def data_source(cfg: DistillConfig, task: Task, raw: DatasetDict) -> str:
    """Names the data a teacher is fine-tuned or cached on by what it is: the fingerprint of the loaded gold rows
    (`xkd.data.data_fingerprint`; the subset's, under --max-examples), after the hub id for hub data. Never a path
    as spelled nor the working directory: the same spelling in two folders is two data sets, two spellings of one
    folder one. (Keys before named the directory as given: what they cached is not found again, but rebuilt.)"""
    rows = data_fingerprint(task, {n: s for n, s in raw.items() if n != TRANSFER})
    return f"rows:{rows}" if local_data_dir(task, cfg.data_dir) is not None else f"hub:{task.hub_path}:rows:{rows}"


def teacher_cache(
    cfg: DistillConfig, method, task: Task, teacher, teacher_path: str, data: str, splits: DatasetDict, collator, log
) -> TeacherCache | None:
    """The teacher-output cache when the config and method allow one (see `xkd.teacher_cache`), else None. `data`:
    the gold data's `data_source`."""
    if not method.needs_teacher or cfg.teacher_cache == "off":
        return None
    if method.needs_attentions:
        log(f"teacher cache: not used: {method.name} needs attention maps, which are never cached; teacher runs online")
        return None
    return open_caches(cfg, method, task, teacher, teacher_path, data, splits, collator, log)


def open_caches(
    cfg: DistillConfig, method, task: Task, teacher, teacher_path: str, data: str, splits: DatasetDict, collator, log
) -> TeacherCache:
    """The gold splits' cache, joined with the transfer set's (which stores only what `method` reads) if any."""
    cache = open_teacher_cache(cfg, task, teacher, teacher_path, data, splits, collator, log)
    if TRANSFER not in splits:
        return cache
    fields = ("logits", *method.reads(cfg.method_options))
    storage = Storage(tuple(f for f in FIELDS if f in fields), cfg.transfer_dtype)
    transfer = open_transfer_cache(cfg, task, teacher, teacher_path, splits[TRANSFER], collator, storage, log)
    return cache.joined(transfer, "train", TRANSFER)


def open_transfer_cache(
    cfg: DistillConfig, task: Task, teacher, teacher_path: str, split, collator, storage: Storage, log: Log
) -> TeacherCache:
    """The teacher's outputs on a transfer set, in a cache of its own keyed by the set's content (runs on the same
    set share it; gold-only runs keep theirs)."""
    source = f"transfer:{split_key(split, collator)}"
    return _open_cache(cfg, task, teacher, teacher_path, source, DatasetDict({TRANSFER: split}), collator, log, storage)


def _open_cache(cfg, task, teacher, teacher_path, source, splits, collator, log, storage=ALL_OUTPUTS) -> TeacherCache:
    """The cache of `splits` under the key of this teacher, task, data source and length. Under several processes
    all label their share and one writes (see `build_cache`)."""
    directory = cache_dir(teacher_path, task.name, source, cfg.max_length)
    meta = {"teacher": teacher_path, "task": task.name, "max_length": cfg.max_length, "data": source}
    options = {"progress": cfg.progress, "storage": storage, "batch_size": cfg.eval_batch_size}
    return open_or_build(teacher, splits, collator, directory, meta, cfg.max_length, log, **options)


def with_transfer_rows(splits: DatasetDict) -> DatasetDict:
    """The splits training reads: the transfer rows appended to the training split (their `index` continuing after
    the gold rows', as in the joined teacher cache), and no transfer split of their own."""
    if TRANSFER not in splits:
        return splits
    train, extra = splits["train"], splits[TRANSFER]
    extra = extra.map(lambda b: {"index": [i + len(train) for i in b["index"]]}, batched=True)
    rest = {n: s for n, s in splits.items() if n not in ("train", TRANSFER)}
    return DatasetDict({"train": concatenate_datasets([train, extra]), **rest})


def open_teacher_cache(
    cfg: DistillConfig, task: Task, teacher, teacher_path: str, data: str, splits: DatasetDict, collator, log: Log
) -> TeacherCache:
    """The cache of this teacher's outputs on the splits training reads (train, validation, labelled test), keyed by
    `data`, the gold data's `data_source` (the encoded `splits` no longer hold the texts it is computed from)."""
    names = [n for n in splits if n == "train" or n in task.validation_splits or is_labeled(splits[n])]
    names = [n for n in names if n != TRANSFER]  # a transfer set has a cache of its own
    splits = DatasetDict({n: splits[n] for n in names})
    return _open_cache(cfg, task, teacher, teacher_path, data, splits, collator, log)


def resolve_teacher(
    cfg: DistillConfig, task: Task, raw: DatasetDict, log: Log
) -> tuple[HFEncoderClassifier, dict[str, Any]]:
    """The frozen teacher, fine-tuning (and caching) it first when it has no trained classifier."""
    info: dict[str, Any] = {"source": cfg.teacher, "data_fingerprint": data_source(cfg, task, raw)}
    config = load_config(cfg.teacher, "teacher")
    needs_finetune = cfg.finetune_teacher == "always" or (
        cfg.finetune_teacher == "auto" and not is_sequence_classifier(config)
    )
    path = cfg.teacher
    info["path"] = path
    if needs_finetune:
        source = info["data_fingerprint"]
        directory, summary, cached = cached_finetune(
            cfg.teacher, task, raw, train_settings(cfg, teacher=True), cfg.max_length, source, log
        )
        log(f"teacher: {'cached fine-tune' if cached else 'fine-tuned'} at {directory}")
        path = str(directory)
        info.update(
            path=path, finetuned_dir=path, finetune_cached=cached, finetune_seconds=summary.get("train_seconds")
        )
    return load_teacher(path, task, log).to(process_device()), info


def member_configs(cfg: DistillConfig) -> list[DistillConfig]:
    """One config per teacher: `cfg` itself for one teacher, else `cfg` naming each ensemble member in turn (what
    resolves, fine-tunes and caches the member exactly as its one-teacher run does)."""
    names = teacher_list(cfg.teacher)
    return [cfg] if len(names) == 1 else [replace(cfg, teacher=name) for name in names]


def check_teacher_vectors(cfg: DistillConfig, teacher: str, config) -> None:
    """-S vectors=teacher against the teacher they come from (its config.json): the layer and an explicit dimension."""
    spec = student_spec(cfg.student)
    if spec is None or "vectors_dim" not in spec.options or cfg.student_options.get("vectors_teacher"):
        return
    options = resolve_options(f"student '{cfg.student}'", spec.options, cfg.student_options)
    options["vectors_dim_given"] = cfg.student_options.get("vectors_dim") is not None
    check_vector_options(options, config.hidden_size, config.num_hidden_layers, teacher)


def check_teachers(cfg: DistillConfig, task: Task, method: Method) -> None:
    """From the teachers' config.json alone: sizes (`--max-length`, students no deeper than a teacher they may copy
    layers from: each member of an ensemble is held to it), that classifiers fit the task, and an ensemble's widths
    for methods reading layer vectors. Members are checked from the last given to the first, so a `--teacher`
    added on the command line after a config file's (or a script's) is the one whose problem is reported."""
    if cfg.teacher_outputs:  # no teacher model (see xkd.teachers.outside)
        return
    widths = {}
    for member in reversed(member_configs(cfg)):
        config = check_teacher_sizes(member)
        if cfg.finetune_teacher == "never" or is_sequence_classifier(config):
            # Label names only when this teacher is used as it is: a fine-tune gives it the task's names.
            check_teacher(member.teacher, task, labels=cfg.finetune_teacher != "always")
        widths[member.teacher] = config.hidden_size
        if member.teacher == member_configs(cfg)[0].teacher:  # the student's vectors come from the first
            check_teacher_vectors(cfg, member.teacher, config)
    if len(widths) > 1:
        check_ensemble_widths(method, cfg.method_options, dict(reversed(widths.items())))


def resolve_teachers(
    cfg: DistillConfig, task: Task, raw: DatasetDict, needs_heads: bool, run_dir: Path, log: Log
) -> tuple[nn.Module | None, dict[str, Any]]:
    """The frozen teacher (the last TAKD assistant, with `--assistant-layers`) with pseudo heads when `needs_heads`;
    with several teachers an `EnsembleTeacher` of members each resolved as its one-teacher run would; with
    `--teacher-outputs`, none."""
    if cfg.teacher_outputs:  # saved outputs stand in for the teacher: nothing to load
        return None, outside_info(cfg.teacher_outputs)
    resolved = []
    for member in member_configs(cfg):
        teacher, info = resolve_teacher(member, task, raw, log)
        if cfg.assistant_layers:  # one teacher only (`check_ensemble`)
            teacher, info = assistant_chain(cfg, task, info, run_dir, log)
        ensure_teacher_heads(teacher, info, needs_heads, task, raw, member, log)
        resolved.append((teacher, info))
    if len(resolved) == 1:
        return resolved[0]
    teachers, infos = zip(*resolved, strict=True)
    ensemble = EnsembleTeacher(teachers, cfg.teacher_weights, cfg.ensemble_average, task.multi_label)
    return ensemble, ensemble_info(infos, cfg.teacher_weights, cfg.ensemble_average)


def outside_rows(
    cfg: DistillConfig, task: Task, raw: DatasetDict, transfer, log: Log
) -> tuple[DatasetDict, Any, OutsideOutputs | None]:
    """With `--teacher-outputs`: the gold splits and the transfer set less the rows lacking outputs (when dropped;
    else a one-line error), and the outputs served like a teacher cache (`xkd.teachers.outside`); else all as
    they are."""
    if not cfg.teacher_outputs:
        return raw, transfer, None
    joined = DatasetDict({**raw, **({TRANSFER: transfer} if transfer is not None else {})})
    joined, outside = match_outputs(cfg, task, joined, [*task.validation_splits, *task.test_splits], log)
    transfer = joined.pop(TRANSFER) if TRANSFER in joined else None
    return joined, transfer, outside


def open_teacher_outputs(
    cfg: DistillConfig,
    method,
    task: Task,
    teacher,
    info: dict[str, Any],
    splits: DatasetDict,
    collator,
    log: Log,
    outside: OutsideOutputs | None = None,
) -> TeacherCache | EnsembleCache | OutsideOutputs | None:
    """The teacher cache the training loop reads (see `teacher_cache`), its directory recorded in `info`. An
    ensemble's members are cached one by one under their own keys (the caches their one-teacher runs use) and
    combined when read. Outside outputs (`--teacher-outputs`) are read as a cache is."""
    if outside is not None:
        info["outputs"] = outside.report
        return outside
    if not isinstance(teacher, EnsembleTeacher):
        cache = teacher_cache(cfg, method, task, teacher, info["path"], info["data_fingerprint"], splits, collator, log)
        if cache is not None:
            info["cache"] = str(cache.directory)
        return cache
    caches = []
    for k, (member, member_info) in enumerate(zip(teacher.members, info["members"], strict=True)):
        view = member_collator(collator, k)
        source = member_info["data_fingerprint"]
        caches.append(teacher_cache(cfg, method, task, member, member_info["path"], source, splits, view, log))
        if caches[-1] is not None:
            member_info["cache"] = str(caches[-1].directory)
    if any(c is None for c in caches):
        return None
    return EnsembleCache(caches, teacher.weights, teacher.average)


def configured_student(
    cfg: DistillConfig, teacher, task: Task, raw: DatasetDict, log: Log, teacher_path: str | None = None
):
    """The student the config asks for; students with their own vocabulary build it from the training texts, or
    with `-S vocab_from=train+transfer` from the transfer set's too (a --transfer file's own words then get rows
    instead of [UNK]), and `-S vectors=teacher` its input vectors from the teacher, cached next to
    `teacher_path`."""
    train_texts = [
        t for split in vocabulary_splits(cfg, raw) for column in task.text_columns for t in raw[split][column]
    ]
    return build_student(
        cfg.student,
        teacher,
        task,
        train_texts,
        layers=cfg.student_layers,
        init=cfg.student_init,
        log=log,
        progress=cfg.progress,
        teacher_path=teacher_path,
        **cfg.student_options,
    )


def vocab_from(cfg: DistillConfig) -> str:
    """`-S vocab_from`, checked: train or train+transfer."""
    chosen = str(cfg.student_options.get("vocab_from", "train"))
    if chosen not in ("train", "train+transfer"):
        raise XKDError(f"-S vocab_from must be train or train+transfer, got '{chosen}'")
    return chosen


def vocabulary_splits(cfg: DistillConfig, raw: DatasetDict) -> list[str]:
    """The splits a student's own vocabulary is built from (`-S vocab_from`)."""
    return ["train", *([TRANSFER] if vocab_from(cfg) == "train+transfer" and TRANSFER in raw else [])]


def separate_roles(student, role: str = "student") -> set[str]:
    """{role} when the student reads the two texts of a pair apart (CNN, BiLSTM), else nothing."""
    return {role} if getattr(student, "pair_encoding", "joint") == "separate" else set()


def term_context(student, teacher, task: Task, steps_per_epoch: int | None = None) -> TermContext:
    """What loss terms may need to know about this teacher/student pair."""

    def heads(model) -> int | None:  # None for students without self-attention
        return getattr(getattr(model, "config", None), "num_attention_heads", None)

    if teacher is None:  # saved outputs (`--teacher-outputs`): final logits only, no layers
        return replace(term_context(student, student, task, steps_per_epoch), teacher_layers=0, teacher_width=0,
                       teacher_attention_heads=None, shared_tokenizer=False)  # fmt: skip
    return TermContext(
        student_layers=student.num_layers,
        student_width=student.layer_width,
        teacher_layers=teacher.num_layers,
        teacher_width=teacher.layer_width,
        output_size=task.output_size,
        regression=task.regression,
        multi_label=task.multi_label,
        student_attention_heads=heads(student),
        teacher_attention_heads=heads(teacher),
        shared_tokenizer=tokenizer_fingerprint(student.tokenizer) == tokenizer_fingerprint(teacher.tokenizer),
        steps_per_epoch=steps_per_epoch,
    )


def ensure_teacher_heads(
    teacher: HFEncoderClassifier,
    info: dict[str, Any],
    needed: bool,
    task: Task,
    raw: DatasetDict,
    cfg: DistillConfig,
    log: Log,
) -> None:
    """Train the teacher's pseudo classifiers when they are `needed` and none are stored (or the stored ones predate
    input standardisation, which left shallow heads at chance confidence); `info["heads"]` then names their
    directory whenever the teacher has them."""
    directory = heads_dir(info["path"])
    damaged = teacher.damaged_heads  # stored heads that could not be loaded (truncated, overwritten)
    stale = (
        needed
        and teacher.pseudo_heads is not None
        and PseudoHeads.exists(directory)
        and not PseudoHeads.info(directory).get(STANDARDIZED, False)
    )
    if needed and (teacher.pseudo_heads is None or stale):
        if damaged is not None:
            log(f"teacher pseudo classifiers in {damaged.directory} are damaged ({damaged.why}); retraining them")
        elif stale:
            log(f"teacher pseudo classifiers in {directory} were trained on unstandardised vectors: retraining them")
        else:
            log(
                f"teacher has no pseudo classifiers: training {teacher.num_layers} {cfg.teacher_heads} heads "
                f"({directory})"
            )
        heads, metrics = train_heads(
            teacher,
            task,
            raw,
            cfg.max_length,
            kind=cfg.teacher_heads,
            epochs=cfg.heads_epochs,
            lr=cfg.heads_lr,
            seed=cfg.seed,
            progress=cfg.progress,
            log=log,
        )
        heads.save(directory, **heads_info(metrics, task, max_length=cfg.max_length))
        teacher.pseudo_heads = freeze(heads).to(next(teacher.parameters()).device)
        teacher.damaged_heads = None
    elif damaged is not None:
        log(
            f"teacher pseudo classifiers in {damaged.directory} are damaged ({damaged.why}); left as they are, since "
            "this method does not use them (a method that does retrains them)"
        )
    if teacher.pseudo_heads is not None:
        info["heads"], info["heads_sha256"] = str(directory), PseudoHeads.fingerprint(directory)


def assistant_chain(
    cfg: DistillConfig, task: Task, teacher_info: dict[str, Any], run_dir: Path, log: Log
) -> tuple[HFEncoderClassifier, dict[str, Any]]:
    """TAKD (Mirzadeh et al. 2020): teacher -> TA -> ... -> student, each TA a vanilla-KD BERT-k run whose saved
    model becomes the next link's teacher. Returns the last assistant as the teacher, with the chain recorded."""
    source, links = teacher_info["path"], []
    for k in cfg.assistant_layers:
        link_dir = run_dir / "assistants" / f"ta{k}"
        if cfg.resume and (link_dir / "summary.json").is_file():  # finished before the interruption
            log(f"teacher assistant: reusing the finished {k}-layer assistant in {link_dir}")
            summary = json.loads((link_dir / "summary.json").read_text())
        else:
            log(f"teacher assistant: distilling a {k}-layer BERT-k from {source} with vanilla KD")
            summary = run_distill(assistant_config(cfg, source, k, link_dir), log)
        source = summary["student"]["dir"]
        links.append({"layers": k, "dir": source, **{n: summary.get(n) for n in LINK_KEYS}})
    info = {**teacher_info, "path": source, "original_teacher": teacher_info["path"], "assistants": links}
    return load_teacher(source, task, log).to(process_device()), info


def build_teacher_cache(cfg: DistillConfig, log: Log = print) -> TeacherCache:
    """`xkd cache build`: the teacher cache the distillation `cfg` describes, built (or checked) ahead of the runs.

    The teacher is resolved as `run_distill` does (fine-tuned and cached when needed; pseudo heads trained when the
    method needs them), so the runs find the cache under the same key and fingerprint.
    """
    cfg.validate()
    check_transfer(cfg)
    method = get_method(cfg.method)
    task, raw = load_splits(resolve_task(cfg), cfg.data_dir, cfg.max_examples, cfg.max_train_examples)
    check_classes(task, raw, cfg.data_dir)  # a fine-tune or pseudo heads would train on it
    check_teacher_sizes(cfg)
    teacher, info = resolve_teacher(cfg, task, raw, log)
    ensure_teacher_heads(teacher, info, method.needs_teacher_heads, task, raw, cfg, log)
    transfer, _ = build_transfer(cfg, task, raw, log)
    if transfer is not None:
        raw = DatasetDict({**raw, TRANSFER: transfer})
    tokenizers = {"teacher": teacher.tokenizer}
    splits = DatasetDict({n: encode(s, task, tokenizers, cfg.max_length) for n, s in raw.items()})
    collator = Collator(tokenizers)
    return open_caches(cfg, method, task, teacher, info["path"], info["data_fingerprint"], splits, collator, log)


def build_teacher_caches(cfg: DistillConfig, log: Log = print) -> list[TeacherCache]:
    """`xkd cache build` for one teacher or an ensemble: each member's own cache, the one its one-teacher run and
    the ensemble run both read."""
    if cfg.teacher_outputs:
        raise XKDError("--teacher-outputs are read as they are: there is no teacher to cache; drop it, or --teacher")
    if len(teacher_list(cfg.teacher)) > 1:
        check_ensemble(cfg.validate(), get_method(cfg.method), resolve_task(cfg))
    return [build_teacher_cache(member, log) for member in member_configs(cfg)]


def check_student(cfg: DistillConfig) -> None:
    """The student before anything loads: a built-in's option names, types and sizes (`xkd.limits`), a plug-in's
    import."""
    spec = student_spec(cfg.student)
    if spec is not None:
        options = resolve_options(f"student '{cfg.student}'", spec.options, cfg.student_options)
        check_student_options(options, cfg.max_length)
        check_vector_options(options)
    else:
        plugin_builder(cfg.student)  # a plug-in that cannot be imported fails before anything runs


def check_config(cfg: DistillConfig) -> tuple[Task, Method, dict[str, Any]]:
    """Every check that needs no data or model (values, task, method and its options, student and its options);
    returns the task, the method and its resolved options. Studies call it for every run before the first starts."""
    cfg.validate()
    task = resolve_task(cfg)
    method = get_method(cfg.method)
    check_student(cfg)
    vocab_from(cfg)
    check_transfer(cfg)
    check_ensemble(cfg, method, task)
    check_outside(cfg, method, task, DEFAULT_TEACHER)
    check_task(method, task)  # a method without a multi-label form is refused on a multi-label task
    check_trackers(tracker_names(cfg.report_to))
    if (cfg.transfer or cfg.augment != "none") and not method.needs_teacher:
        raise XKDError(
            f"method '{method.name}' learns from gold labels only, so a transfer set (rows without labels) gives it "
            "nothing; use a method with a teacher (kd, logit-mse, universal, ...) or drop --transfer/--augment"
        )
    shared = {k: v for k, v in (("temperature", cfg.temperature), ("alpha", cfg.alpha)) if k in method.options}
    return task, method, method.resolve({**shared, **cfg.method_options})


def assistant_config(cfg: DistillConfig, teacher: str, layers: int, output_dir: Path) -> DistillConfig:
    """One TAKD link: a `layers`-layer BERT-k distilled from `teacher` with vanilla KD, otherwise `cfg`'s settings.

    The learning rate is the run's only when the run's student is itself a BERT-k (a CNN's 2e-3 would wreck a
    transformer), else BERT-k's default.
    """
    return replace(
        cfg,
        teacher=teacher,
        finetune_teacher="never",
        student="bert-k",
        student_layers=layers,
        student_init="uniform",
        student_options={},
        method="kd",
        method_options={},
        assistant_layers=[],
        second_stage_epochs=0,
        lr=(cfg.lr if cfg.student == "bert-k" else None) or student_lr("bert-k"),
        output_dir=str(output_dir),
        overwrite=True,
        resume=cfg.resume and Checkpoints.exist(output_dir),
        latency=False,
    )


def run_distill(cfg: DistillConfig, log: Log = print) -> dict[str, Any]:
    """Run one distillation and write `config.json`, `metrics.jsonl`, `summary.json` and `student/`.

    The steps: check everything that needs no model, claim the run directory, prepare the teacher (fine-tune,
    assistants, pseudo heads), build the student and the method's terms, train (and a second stage), then
    describe the run (teacher metrics, sizes, compute, latency).
    """
    wall_start = time.perf_counter()
    state = process_state()
    if not state.is_main_process:
        log = silent  # under `accelerate launch`, one process speaks
    task, method, options = check_config(cfg)  # option errors before any loading
    task, raw = load_splits(task, cfg.data_dir, cfg.max_examples, cfg.max_train_examples)
    check_classes(task, raw, cfg.data_dir)
    check_teachers(cfg, task, method)  # from the teachers' config.json alone, before a run directory exists
    transfer, transfer_report = build_transfer(cfg, task, raw, log)  # before the run dir: bad files cost nothing
    raw, transfer, outside = outside_rows(cfg, task, raw, transfer, log)  # --teacher-outputs: so is that file
    check_batch_size(cfg, len(raw["train"]), len(transfer) if transfer is not None else 0)
    run_dir = claim_run_dir(cfg)
    log(f"run directory: {run_dir}")

    teacher_start = time.perf_counter()
    again = "the same command (the teacher's fine-tune and labelling continue where they stopped)"
    with state.main_process_first(), continued_by(again):  # fine-tunes and heads are cached: one process trains
        teacher, teacher_info = resolve_teachers(cfg, task, raw, method.needs_teacher_heads, run_dir, log)
    teacher_info["seconds"] = round(time.perf_counter() - teacher_start, 2)
    if transfer is not None:  # only now: fine-tuning and head training read the gold splits alone
        raw = DatasetDict({**raw, TRANSFER: transfer})
    set_seed(cfg.seed)  # student and term-module init must not depend on what ran before (e.g. head training)
    first_path = teacher_info.get("path") or (teacher_info.get("members") or [{}])[0].get("path")
    student = configured_student(cfg, first_member(teacher), task, raw, log, first_path)
    rows = len(raw["train"]) + (len(transfer) if transfer is not None else 0)
    context = term_context(student, teacher, task, steps_per_epoch=math.ceil(rows / cfg.batch_size))
    terms = method.terms(context, **options)

    splits, collator = encoded_splits(cfg, task, raw, teacher, student)
    with continued_by(again):
        cache = open_teacher_outputs(cfg, method, task, teacher, teacher_info, splits, collator, log, outside)
    splits = with_transfer_rows(splits)
    log(_distilling_line(cfg, task, method, teacher, teacher_info, student, len(splits["train"]), transfer))
    meta = student_record(cfg, task, method)
    with continued_by(f"xkd distill --resume {run_dir}"):
        stages = train_stages(cfg, task, method, terms, student, teacher, cache, splits, collator, run_dir, meta, log)
    models = (teacher, teacher_info, student, cache)
    summary = describe_run(cfg, task, method, terms, stages, *models, splits, collator, run_dir)
    summary["data"] = _data_record(cfg, task, raw, transfer, transfer_report)
    if cfg.max_examples is not None or cfg.max_train_examples is not None:
        summary["subset"] = subset_record(cfg, raw)
    # A resumed run: its earlier processes' training time too (their setup time is not known, so a lower bound).
    earlier = sum(stage.get("train_seconds_before_resume", 0.0) for stage in stages)
    summary["wall_seconds"] = round(time.perf_counter() - wall_start + earlier, 2)
    if state.is_main_process:
        finish_run(run_dir, summary)
    # The next run may read what the main process just wrote (a study's TAKD run loads its assistant's student);
    # another process, which writes nothing, must not get there first (the likely cause of a two-process study
    # failing once under load: the other process left the study and the main one's barrier lost its peer).
    state.wait_for_everyone()
    return summary


def _distilling_line(cfg, task: Task, method: Method, teacher, teacher_info, student, rows: int, transfer) -> str:
    layers = f" ({teacher.num_layers} layers)" if teacher is not None else ""
    return (
        f"distilling {teacher_info['source']}{layers} -> {cfg.student} ({student.num_layers} layers) "
        f"on {task.name} with {method.name}: {rows} training examples"
        + (f" ({len(transfer)} of them transfer rows without gold labels)" if transfer is not None else "")
    )


def subset_record(cfg: DistillConfig, raw: DatasetDict) -> dict[str, Any]:
    """`summary.json`'s `subset`, for a run on part of its data: the caps, the rows each gold split kept and had.
    Under --max-examples the validation and test metrics are a subset's (the model card says so too)."""
    gold = {n: s for n, s in raw.items() if n != TRANSFER}
    return {
        "max_examples": cfg.max_examples,
        "max_train_examples": cfg.max_train_examples,
        "rows": {n: len(s) for n, s in gold.items()},
        "full_rows": {n: full_rows(s, n) for n, s in gold.items()},
    }


def _data_record(
    cfg: DistillConfig, task: Task, raw: DatasetDict, transfer, transfer_report: dict[str, Any] | None
) -> dict[str, Any]:
    """`summary.json`'s `data`: where the gold data came from (an absolute directory, or `hub:<id>`), each split's
    rows as used, gold and transfer training rows, and how the transfer set was made. The model card reads it."""
    directory = local_data_dir(task, cfg.data_dir)
    record = {
        "source": str(directory.resolve()) if directory is not None else f"hub:{task.hub_path}",
        "splits": {name: len(rows) for name, rows in raw.items() if name != TRANSFER},
        "train": len(raw["train"]),
        "transfer": len(transfer) if transfer is not None else 0,
    }
    return record if transfer_report is None else {**record, "transfer_set": transfer_report}


def finish_run(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write what a finished run leaves: `summary.json` and the student's model card; its checkpoints go (the
    student and summary are the result, and resuming a finished run is refused)."""
    write_text_atomically(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_model_card(run_dir)
    Checkpoints.discard(run_dir)


def encoded_splits(cfg: DistillConfig, task: Task, raw: DatasetDict, teacher, student) -> tuple[DatasetDict, Collator]:
    """Every split tokenized for each role (the teacher or each ensemble member, and the student, identical
    tokenizers encoded once) and the collator that pads them."""
    tokenizers = {**teacher_tokenizers(teacher), "student": student.tokenizer}
    separate = separate_roles(student)
    splits = DatasetDict({n: encode(s, task, tokenizers, cfg.max_length, separate) for n, s in raw.items()})
    return splits, ensemble_collator(tokenizers, separate, members=len(teacher_list(cfg.teacher)))


@contextmanager
def continued_by(how: str) -> Iterator[None]:
    """An interruption (Ctrl-C, SIGTERM) in the block ends with the command that continues the work."""
    try:
        yield
    except Interrupted as e:
        raise e.continue_with(how) from None


def claim_run_dir(cfg: DistillConfig) -> Path:
    """The run directory, checked (a finished run is never overwritten by accident, an interrupted one is pointed to
    --resume) and marked with the run's `config.json`."""
    state = process_state()
    run_dir = Path(cfg.output_dir) if cfg.output_dir else default_run_dir(cfg)
    if cfg.resume:
        if (run_dir / "summary.json").exists():
            raise XKDError(f"{run_dir} holds a finished run (summary.json); there is nothing to resume")
        if not Checkpoints.exist(run_dir):
            raise XKDError(f"{run_dir} has no checkpoint to resume from; start the run again without --resume")
    elif not cfg.overwrite and any((run_dir / name).exists() for name in RUN_FILES):
        if not (run_dir / "summary.json").exists() and Checkpoints.exist(run_dir):
            raise XKDError(
                f"{run_dir} holds an interrupted run; continue it with --resume {run_dir}, or pass --overwrite to "
                "start again"
            )
        raise XKDError(
            f"{run_dir} already holds a run's results; choose another --output-dir or pass --overwrite to replace them"
        )
    state.wait_for_everyone()  # no process may pass the check above after another wrote config.json
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(run_dir / "config.json", cfg.to_json())
    return run_dir


def student_record(cfg: DistillConfig, task: Task, method: Method) -> dict[str, Any]:
    """What the saved student records of its run (`student.json` beside its config)."""
    return {"role": "student", **task_record(task), "method": method.name, "teacher": cfg.teacher,
            "max_length": cfg.max_length}  # fmt: skip


def train_stages(
    cfg: DistillConfig,
    task: Task,
    method: Method,
    terms: list,
    student,
    teacher,
    cache: TeacherCache | None,
    splits: DatasetDict,
    collator: Collator,
    run_dir: Path,
    meta: dict[str, Any],
    log: Log,
) -> list[dict[str, Any]]:
    """Distil; then, with `second_stage_epochs`, train on gold labels only, without the teacher, from stage one's
    best weights (the saved student changes only if stage two beats stage one on validation)."""
    settings = train_settings(cfg, rows=len(splits["train"]))
    base = student_lr(cfg.student)
    if cfg.lr is None and settings.lr != base:
        steps = run_steps(cfg, len(splits["train"]), cfg.epochs)
        log(f"learning rate {settings.lr:.2g}: the {cfg.student} student's {base:g} for a run of {steps:,} steps "
            "(--lr sets it)")  # fmt: skip
    first = train(
        student,
        task,
        splits,
        collator,
        terms,
        settings,
        run_dir,
        teacher=teacher if method.needs_teacher else None,
        needs_attentions=method.needs_attentions,
        teacher_cache=cache,
        meta=meta,
        resume=cfg.resume,
        log=log,
    )
    if not cfg.second_stage_epochs:
        return [first]
    log(f"second stage: {cfg.second_stage_epochs} epoch(s) of CE without the teacher")
    second = train(
        student,
        task,
        splits,
        collator,
        get_method("none").terms(),
        replace(settings, epochs=cfg.second_stage_epochs, max_steps=None),
        run_dir / "stage2",
        save_dir=run_dir / "student",
        meta={**meta, "stage": 2},
        initial_best=first["best_score"],
        resume=cfg.resume and Checkpoints.exist(run_dir / "stage2"),
        log=log,
    )
    return [first, second]


def describe_run(
    cfg: DistillConfig,
    task: Task,
    method: Method,
    terms: list,
    stages: list[dict[str, Any]],
    teacher,
    teacher_info: dict[str, Any],
    student,
    cache: TeacherCache | None,
    splits: DatasetDict,
    collator: Collator,
    run_dir: Path,
) -> dict[str, Any]:
    """The run's summary: the first stage's (or a better second stage's) metrics, the teacher's metrics on the same
    splits, both models' sizes, the method's terms, compute and latency."""
    summary = stages[0]
    if len(stages) > 1:
        second = stages[1]
        summary["stage2"] = {k: second[k] for k in ("best_epoch", "validation", "test", "train_seconds")}
        if second["best_epoch"]:
            summary.update(validation=second["validation"], test=second["test"], best_score=second["best_score"])
    summary["teacher"] = {
        **{k: v for k, v in teacher_info.items() if k != "seconds"},
        "metrics": teacher_metrics(cfg, task, teacher, cache, splits, collator),
        "parameters": parameter_count(teacher) if teacher is not None else None,
        "layers": teacher.num_layers if teacher is not None else None,
        "seconds": teacher_info["seconds"],
    }
    if isinstance(teacher, EnsembleTeacher):
        describe_members(cfg, task, teacher, summary["teacher"]["members"], cache, splits, collator)
    summary["student"] = {
        **{k: v for k, v in getattr(student, "meta", {}).items() if k in ("vocab", "vector_coverage")},
        "name": cfg.student,
        "layers": student.num_layers,
        "parameters": parameter_count(student),
        "dir": str(run_dir / "student"),
    }
    summary["method"] = {"name": method.name, "terms": {t.name: t.weight for t in terms}}
    validation = splits[task.validation_splits[0]]
    cached_examples = cache.examples if cache is not None else 0
    summary["compute"] = compute_columns(
        stages, teacher, student, validation, collator, cfg.batch_size, teacher_info, cache_examples=cached_examples
    )
    if cfg.latency:
        summary["latency_ms"] = latency_table(teacher, student, validation, collator)
    return summary


def describe_members(
    cfg: DistillConfig,
    task: Task,
    ensemble: EnsembleTeacher,
    members: list[dict[str, Any]],
    cache: EnsembleCache | None,
    splits: DatasetDict,
    collator: Collator,
) -> None:
    """Each ensemble member's own metrics (from its cache, else from a pass over its own inputs), size and depth,
    so the summary shows what the ensemble adds over its best member."""
    for k, (member, record) in enumerate(zip(ensemble.members, members, strict=True)):
        member_cache = cache.members[k] if cache is not None else None
        metrics = teacher_metrics(cfg, task, member, member_cache, splits, member_collator(collator, k))
        record.update(metrics=metrics, parameters=parameter_count(member), layers=member.num_layers)


def teacher_metrics(
    cfg: DistillConfig, task: Task, teacher, cache: TeacherCache | None, splits: DatasetDict, collator: Collator
) -> dict[str, Any]:
    """The teacher's metrics on every labelled validation and test split: from the cached logits (the teacher's
    own, exactly) where the cache holds the split, else from a pass."""
    names = [n for n in (*task.validation_splits, *task.test_splits) if n in splits and is_labeled(splits[n])]
    metrics = {}
    for n in names:
        if cache is not None and cache.has(n):
            metrics[n] = score_logits(task, cache.logits(n), np.asarray(splits[n]["labels"]))
        elif teacher is not None:  # (outside outputs not given for a split: no teacher metrics there)
            loader = make_loader(splits[n], collator, cfg.eval_batch_size, shuffle=False, buckets=True)
            metrics[n] = evaluate(teacher, loader, task, role="teacher")
    return metrics


def compute_columns(
    stages: list[dict[str, Any]],
    teacher,
    student,
    split,
    collator: Collator,
    batch_size: int,
    teacher_info: dict,
    cache_examples: int = 0,
) -> dict[str, Any]:
    """What the run cost in FLOPs, machine-independent, TAKD assistants included.

    Training a network costs about 3x its forward FLOPs per example (forward + backward), a frozen teacher 1x per
    example it runs on. FLOPs per example are counted on up to 256 validation examples batched as in training.
    A run that reads the teacher cache is charged the one teacher pass that built it (`cache_examples`), whether
    it built the cache or reused it, so a run's cost does not depend on what ran before it.
    """
    sample = split.select(range(min(256, len(split))))
    batches = list(make_loader(sample, collator, batch_size, shuffle=False, buckets=True))
    student_fpe = flops_per_example(student, [b["student"] for b in batches])
    teacher_fpe = flops_per_example(teacher, [b["teacher"] for b in batches]) if teacher is not None else 0
    trained = sum(s["train_examples"] for s in stages)
    online = sum(s["teacher_forward_examples"] for s in stages)
    teacher_examples = online + cache_examples
    assistants = sum((link.get("compute") or {}).get("total_flops", 0) for link in teacher_info.get("assistants", []))
    student_flops, teacher_flops = 3 * student_fpe * trained, teacher_fpe * teacher_examples
    return {
        "student_flops_per_example": round(student_fpe),
        "teacher_flops_per_example": round(teacher_fpe),
        "train_examples": trained,
        "teacher_forward_examples": teacher_examples,
        "teacher_online_examples": online,
        "teacher_cached_examples": cache_examples,
        "student_train_flops": student_flops,
        "teacher_forward_flops": teacher_flops,
        "assistant_flops": assistants,
        "total_flops": student_flops + teacher_flops + assistants,
    }


def latency_table(teacher, student, split, collator: Collator, sizes=(1, 32)) -> dict[str, dict[str, float]]:
    """CPU forward latency (median ms) of teacher and student at the given batch sizes, on real examples."""
    out: dict[str, dict[str, float]] = {"teacher": {}, "student": {}}
    for size in sizes:
        batch = collator([split[i] for i in range(min(size, len(split)))])
        if teacher is not None:  # (outside outputs: no teacher model to time)
            out["teacher"][f"batch_{size}"] = cpu_latency_ms(teacher, batch["teacher"])
        out["student"][f"batch_{size}"] = cpu_latency_ms(student, batch["student"])
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable comparison printed at the end of `xkd distill`."""
    teacher, student = summary["teacher"], summary["student"]
    rows = [("", "teacher", "student")]
    scored = {**summary["validation"], **summary["test"]}  # teacher columns say n/a where the teacher has none
    for split in [*teacher["metrics"], *(s for s in scored if s not in teacher["metrics"])]:
        metrics, s_metrics = teacher["metrics"].get(split), scored.get(split, {})
        for name, value in shown_metrics(metrics or s_metrics).items():
            shown = f"{100 * value:.2f}" if metrics else "n/a"
            rows.append((f"{split} {name}", shown, f"{100 * s_metrics.get(name, float('nan')):.2f}"))
    rows.append(("layers", str(teacher["layers"] or "n/a"), str(student["layers"])))
    params = f"{teacher['parameters'] / 1e6:.1f}M" if teacher["parameters"] is not None else "n/a"
    rows.append(("parameters", params, f"{student['parameters'] / 1e6:.1f}M"))
    for size, s_ms in summary.get("latency_ms", {}).get("student", {}).items():
        ms = summary["latency_ms"]["teacher"].get(size)
        shown = (f"{ms:.1f} ms", f"{s_ms:.1f} ms ({ms / s_ms:.1f}x)") if ms is not None else ("n/a", f"{s_ms:.1f} ms")
        rows.append((f"CPU latency {size.replace('_', ' ')}", *shown))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    for member in teacher.get("members", []):  # an ensemble's: each member alone
        shown = [f"{split} {name} {100 * v:.2f}" for split, m in member["metrics"].items()
                 for name, v in shown_metrics(m).items()]  # fmt: skip
        lines.append(f"ensemble member {member['source']} (weight {member['weight']:.2f}): " + ", ".join(shown))
    lines.append(
        f"wall time {summary['wall_seconds'] / 60:.1f} min (student training {summary['train_seconds']:.0f} s)"
    )
    stop = summary.get("stopped_early")
    if stop:
        lines.append(
            f"stopped early at step {stop['step']} ({stop['patience']} evaluations without a better validation "
            f"score); the student is the best one, from epoch {summary['best_epoch']} (step {summary['best_step']})"
        )
    return "\n".join(lines)
