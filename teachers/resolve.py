"""The teacher a run distils from, as the config names it: checked from its `config.json` before anything loads,
fine-tuned (and cached) when it has no classifier, given pseudo heads when the method reads them, combined into
an ensemble, or replaced by the last link of a TAKD chain.

Distillation, `xkd cache build` and studies all resolve teachers here, so each finds the fine-tune, heads and
cache the others made under the same keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from datasets import DatasetDict
from torch import nn
from transformers import PretrainedConfig

from xkd.config import DistillConfig
from xkd.data import data_fingerprint, local_data_dir
from xkd.errors import XKDError
from xkd.limits import DISTILROBERTA_LAYERS, at_most, check_max_length
from xkd.log import Log
from xkd.methods import Method
from xkd.processes import process_device
from xkd.pseudo_heads import PseudoHeads
from xkd.students.registry import student_lr
from xkd.tasks import Task
from xkd.teachers.ensemble import EnsembleTeacher, check_ensemble_widths, ensemble_info, teacher_list
from xkd.teachers.finetune import cached_finetune
from xkd.teachers.heads import STANDARDIZED, heads_info, train_heads
from xkd.teachers.heads_store import heads_dir
from xkd.teachers.hf_encoder import HFEncoderClassifier, freeze, is_sequence_classifier, load_config
from xkd.teachers.loading import check_teacher, load_teacher
from xkd.teachers.outside import outside_info
from xkd.training.checkpoints import Checkpoints
from xkd.training.settings import TrainSettings
from xkd.transfer.sets import SPLIT as TRANSFER

LINK_KEYS = ("validation", "test", "train_seconds", "wall_seconds", "compute")  # what a TAKD link records

# One distillation run (`xkd.distillation.run_distill`): TAKD's links are runs of their own, and the orchestrator
# hands itself in rather than being imported from below.
Distil = Callable[[DistillConfig, Log], dict[str, Any]]


def data_source(cfg: DistillConfig, task: Task, raw: DatasetDict) -> str:
    """Names the data a teacher is fine-tuned or cached on by what it is: the fingerprint of the loaded gold rows
    (`xkd.data.data_fingerprint`; the subset's, under --max-examples), after the hub id for hub data. Never a path
    as spelled nor the working directory: the same spelling in two folders is two data sets, two spellings of one
    folder one. (Keys before named the directory as given: what they cached is not found again, but rebuilt.)"""
    rows = data_fingerprint(task, {n: s for n, s in raw.items() if n != TRANSFER})
    return f"rows:{rows}" if local_data_dir(task, cfg.data_dir) is not None else f"hub:{task.hub_path}:rows:{rows}"


def member_configs(cfg: DistillConfig) -> list[DistillConfig]:
    """One config per teacher: `cfg` itself for one teacher, else `cfg` naming each ensemble member in turn (what
    resolves, fine-tunes and caches the member exactly as its one-teacher run does)."""
    names = teacher_list(cfg.teacher)
    return [cfg] if len(names) == 1 else [replace(cfg, teacher=name) for name in names]


def check_teacher_sizes(cfg: DistillConfig) -> PretrainedConfig:
    """The limits that depend on the teacher, from its `config.json` alone (nothing is loaded): `--max-length`
    within its position embeddings (and a student checkpoint's), students and assistants no deeper than it.
    Returns the teacher's config."""
    config = load_config(cfg.teacher, "teacher")
    check_max_length(cfg.max_length, config, f"teacher '{cfg.teacher}'")
    checkpoint = cfg.student_options.get("checkpoint") if cfg.student in ("bert-k", "distilroberta") else None
    if checkpoint:
        checkpoint = str(checkpoint)
        check_max_length(cfg.max_length, load_config(checkpoint, "student checkpoint"), f"student '{checkpoint}'")
    layers = getattr(config, "num_hidden_layers", None)
    if isinstance(layers, int):
        check_layers_against_teacher(cfg, layers, roberta=config.model_type == "roberta")
    return config


def check_layers_against_teacher(cfg: DistillConfig, teacher_layers: int, roberta: bool = True) -> None:
    """BERT-k students, TAKD assistants and DistilRoBERTa copy their layers from their teacher's: none may be deeper.
    (A randomly initialised BERT-k copies nothing and is only capped by `MAX_LAYERS`; DistilRoBERTa from a teacher
    that is not a RoBERTa, `roberta=False`, is refused by its builder.)"""
    above = teacher_layers
    for k in cfg.assistant_layers:  # each assistant is a BERT-k of the link above it
        at_most(
            "--assistant-layers", k, above, f"a teacher assistant copies its layers from its teacher's {above} layers"
        )
        above = k
    source = "the last teacher assistant's" if cfg.assistant_layers else "the teacher's"
    if cfg.student == "bert-k" and not cfg.student_options.get("checkpoint") and cfg.student_init != "random":
        why = f"BERT-k copies its layers from {source} {above} layers; --student-init random copies none"
        at_most("--student-layers", cfg.student_layers, above, why)
    distilroberta = cfg.student == "distilroberta" and not cfg.student_options.get("checkpoint") and roberta
    if distilroberta and above < DISTILROBERTA_LAYERS:
        raise XKDError(
            f"--student distilroberta has {DISTILROBERTA_LAYERS} layers, above the limit of {above} (it copies "
            f"them from {source} {above} layers); use --student bert-k --student-layers {above}, or "
            "-S checkpoint=distilroberta-base"
        )


def check_teachers(cfg: DistillConfig, task: Task, method: Method) -> PretrainedConfig | None:
    """From the teachers' config.json alone: sizes (`--max-length`, students no deeper than a teacher they may copy
    layers from: each member of an ensemble is held to it), that classifiers fit the task, and an ensemble's widths
    for methods reading layer vectors. Members are checked from the last given to the first, so a `--teacher`
    added on the command line after a config file's (or a script's) is the one whose problem is reported. Returns
    the first member's config (the student's vectors come from it); None with saved outputs for a teacher."""
    if cfg.teacher_outputs:  # no teacher model (see xkd.teachers.outside)
        return None
    configs = {}
    for member in reversed(member_configs(cfg)):
        config = check_teacher_sizes(member)
        if cfg.finetune_teacher == "never" or is_sequence_classifier(config):
            # Label names only when this teacher is used as it is: a fine-tune gives it the task's names.
            check_teacher(member.teacher, task, labels=cfg.finetune_teacher != "always")
        configs[member.teacher] = config
    if len(configs) > 1:
        widths = {name: config.hidden_size for name, config in reversed(configs.items())}
        check_ensemble_widths(method, cfg.method_options, widths)
    return configs[member_configs(cfg)[0].teacher]


def resolve_teacher(
    cfg: DistillConfig, task: Task, raw: DatasetDict, log: Log
) -> tuple[HFEncoderClassifier, dict[str, Any]]:
    """The frozen teacher, fine-tuning (and caching) it first when it has no trained classifier."""
    info: dict[str, Any] = {"source": cfg.teacher, "data_fingerprint": data_source(cfg, task, raw), "path": cfg.teacher}
    config = load_config(cfg.teacher, "teacher")
    always = cfg.finetune_teacher == "always"
    if always or (cfg.finetune_teacher == "auto" and not is_sequence_classifier(config)):
        settings = TrainSettings.from_config(cfg, teacher=True)
        fingerprint = info["data_fingerprint"]
        directory, summary, cached = cached_finetune(cfg.teacher, task, raw, settings, cfg.max_length, fingerprint, log)
        log(f"teacher: {'cached fine-tune' if cached else 'fine-tuned'} at {directory}")
        info.update(path=str(directory), finetuned_dir=str(directory), finetune_cached=cached,
                    finetune_seconds=summary.get("train_seconds"))  # fmt: skip
    return load_teacher(info["path"], task, log).to(process_device()), info


def resolve_teachers(
    cfg: DistillConfig,
    task: Task,
    raw: DatasetDict,
    needs_heads: bool,
    log: Log,
    run_dir: Path | None = None,
    distil: Distil | None = None,
) -> tuple[nn.Module | None, dict[str, Any]]:
    """The frozen teacher (the last TAKD assistant, with `--assistant-layers`: each link `distil`led into
    `run_dir/assistants`) with pseudo heads when `needs_heads`; with several teachers an `EnsembleTeacher` of
    members each resolved as its one-teacher run would; with `--teacher-outputs`, none."""
    if cfg.teacher_outputs:  # saved outputs stand in for the teacher: nothing to load
        return None, outside_info(cfg.teacher_outputs)
    resolved = []
    for member in member_configs(cfg):
        teacher, info = resolve_teacher(member, task, raw, log)
        if cfg.assistant_layers:  # one teacher only (`check_ensemble`)
            if distil is None or run_dir is None:
                raise ValueError("a TAKD chain is distilled by a run: resolve_teachers needs run_dir and distil")
            teacher, info = assistant_chain(cfg, task, info, run_dir, distil, log)
        ensure_teacher_heads(teacher, info, needs_heads, task, raw, member, log)
        resolved.append((teacher, info))
    if len(resolved) == 1:
        return resolved[0]
    teachers, infos = zip(*resolved, strict=True)
    ensemble = EnsembleTeacher(teachers, cfg.teacher_weights, cfg.ensemble_average, task.multi_label)
    return ensemble, ensemble_info(infos, cfg.teacher_weights, cfg.ensemble_average)


def heads_to_train(teacher: HFEncoderClassifier, directory: Path, needed: bool, kind: str) -> str | None:
    """Why the teacher's pseudo classifiers must be trained now (None when they need not): they are `needed` and
    none are stored, the stored ones are damaged, or they predate input standardisation (which left shallow heads
    at chance confidence)."""
    if not needed:
        return None
    damaged = teacher.damaged_heads  # stored heads that could not be loaded (truncated, overwritten)
    if teacher.pseudo_heads is None:
        if damaged is not None:
            return f"teacher pseudo classifiers in {damaged.directory} are damaged ({damaged.why}); retraining them"
        return f"teacher has no pseudo classifiers: training {teacher.num_layers} {kind} heads ({directory})"
    if PseudoHeads.exists(directory) and not PseudoHeads.info(directory).get(STANDARDIZED, False):
        return f"teacher pseudo classifiers in {directory} were trained on unstandardised vectors: retraining them"
    return None


def ensure_teacher_heads(
    teacher: HFEncoderClassifier,
    info: dict[str, Any],
    needed: bool,
    task: Task,
    raw: DatasetDict,
    cfg: DistillConfig,
    log: Log,
) -> None:
    """Train the teacher's pseudo classifiers when they are `needed` and missing, damaged or stale
    (`heads_to_train`); `info["heads"]` then names their directory whenever the teacher has them."""
    directory = heads_dir(info["path"])
    why = heads_to_train(teacher, directory, needed, cfg.teacher_heads)
    if why is not None:
        log(why)
        options = {"epochs": cfg.heads_epochs, "lr": cfg.heads_lr, "seed": cfg.seed, "progress": cfg.progress}
        heads, metrics = train_heads(teacher, task, raw, cfg.max_length, kind=cfg.teacher_heads, log=log, **options)
        heads.save(directory, **heads_info(metrics, task, max_length=cfg.max_length))
        teacher.pseudo_heads = freeze(heads).to(next(teacher.parameters()).device)
        teacher.damaged_heads = None
    elif teacher.damaged_heads is not None:
        damaged = teacher.damaged_heads
        log(
            f"teacher pseudo classifiers in {damaged.directory} are damaged ({damaged.why}); left as they are, since "
            "this method does not use them (a method that does retrains them)"
        )
    if teacher.pseudo_heads is not None:
        info["heads"], info["heads_sha256"] = str(directory), PseudoHeads.fingerprint(directory)


def assistant_chain(
    cfg: DistillConfig, task: Task, teacher_info: dict[str, Any], run_dir: Path, distil: Distil, log: Log
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
            summary = distil(assistant_config(cfg, source, k, link_dir), log)
        source = summary["student"]["dir"]
        links.append({"layers": k, "dir": source, **{n: summary.get(n) for n in LINK_KEYS}})
    info = {**teacher_info, "path": source, "original_teacher": teacher_info["path"], "assistants": links}
    return load_teacher(source, task, log).to(process_device()), info


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
