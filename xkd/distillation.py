"""One distillation run, step by step (`run_distill`): check what needs no model, load and check the data, claim
the run directory, resolve the teachers, build the student and the method's terms, open the teacher's outputs,
train, report.

Each step's work lives with what it works on: teachers in `xkd.teachers.resolve`, the student in
`xkd.students.configured`, the teacher's outputs in `xkd.teacher_outputs`, the loop in `xkd.training`, the summary
in `xkd.run_report`. This module only puts them in order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed
from datasets import Dataset, DatasetDict
from torch import nn

from xkd.config import DEFAULT_TEACHER, DistillConfig
from xkd.data import Collator, check_classes, encode, load_splits, separate_roles
from xkd.errors import XKDError
from xkd.interrupts import continued_by
from xkd.limits import check_batch_size
from xkd.log import Log, silent
from xkd.methods import LossTerm, Method, TermContext, get_method
from xkd.methods.base import check_task
from xkd.processes import process_state
from xkd.run_dir import claim_run_dir
from xkd.run_report import (
    TrainedRun,
    data_record,
    describe_run,
    distilling_line,
    finish_run,
    student_record,
    subset_record,
)
from xkd.students.configured import check_student, check_teacher_vectors, configured_student, student_settings
from xkd.students.registry import student_lr
from xkd.tasks import Task, resolve_task
from xkd.teacher_outputs import open_teacher_outputs, outside_rows, with_transfer_rows
from xkd.teachers.ensemble import check_ensemble, ensemble_collator, first_member, teacher_list, teacher_tokenizers
from xkd.teachers.outside import OutsideOutputs, check_outside
from xkd.teachers.resolve import check_teachers, member_configs, resolve_teachers
from xkd.training import Checkpoints, TrainJob, train
from xkd.training.tracking import check_trackers
from xkd.transfer.sets import SPLIT as TRANSFER
from xkd.transfer.sets import build_transfer, check_transfer, fit_augment

# How an interrupted teacher step continues: fine-tunes, heads and labelling resume where they stopped.
AGAIN = "the same command (the teacher's fine-tune and labelling continue where they stopped)"


@dataclass
class RunData:
    """A run's data, loaded and checked before its directory is claimed: the gold splits (less rows lacking saved
    outputs under `--teacher-outputs`), the transfer set apart from them, and how it was made."""

    task: Task
    gold: DatasetDict
    transfer: Dataset | None
    transfer_report: dict[str, Any] | None
    outside: OutsideOutputs | None

    @property
    def splits(self) -> DatasetDict:
        """Every split a student reads: the gold ones and the transfer set as a split of its own."""
        return self.gold if self.transfer is None else DatasetDict({**self.gold, TRANSFER: self.transfer})

    @property
    def train_rows(self) -> int:
        return len(self.gold["train"]) + (len(self.transfer) if self.transfer is not None else 0)


def check_config(cfg: DistillConfig) -> tuple[Task, Method, dict[str, Any]]:
    """Every check that needs no data or model (values, task, method and its options, student and its options);
    returns the task, the method and its resolved options. Studies call it for every run before the first starts."""
    cfg = fit_augment(cfg)[0].validate()
    task = resolve_task(cfg)
    method = get_method(cfg.method)
    check_student(cfg)
    check_transfer(cfg)
    check_ensemble(cfg, method, task)
    check_outside(cfg, method, task, DEFAULT_TEACHER)
    check_task(method, task)  # a method without a multi-label form is refused on a multi-label task
    check_trackers(cfg.trackers)
    if (cfg.transfer or cfg.augment != "none") and not method.needs_teacher:
        raise XKDError(
            f"method '{method.name}' learns from gold labels only, so a transfer set (rows without labels) gives it "
            "nothing; use a method with a teacher (kd, logit-mse, universal, ...) or drop --transfer/--augment"
        )
    shared = {k: v for k, v in (("temperature", cfg.temperature), ("alpha", cfg.alpha)) if k in method.options}
    return task, method, method.resolve({**shared, **cfg.method_options})


def run_distill(cfg: DistillConfig, log: Log = print) -> dict[str, Any]:
    """Run one distillation and write `config.json`, `metrics.jsonl`, `summary.json` and `student/`."""
    wall_start = time.perf_counter()
    state = process_state()
    log = log if state.is_main_process else silent  # under `accelerate launch`, one process speaks
    cfg, default_off = fit_augment(cfg)  # augment="auto" made concrete: what config.json records
    task, method, options = check_config(cfg)  # option errors before any loading
    data = load_data(cfg, task, method, log)  # bad data files cost nothing: no run directory yet
    task = data.task  # as loaded: a custom task's label names come from its rows
    run_dir = claim_run_dir(cfg)
    log(f"run directory: {run_dir}")
    if default_off:
        log(default_off)
    teacher, teacher_info = prepare_teachers(cfg, data, method, run_dir, log)
    student, terms = prepare_student(cfg, data, method, options, teacher, teacher_info, log)
    splits, collator = encoded_splits(cfg, data, teacher, student)
    with continued_by(AGAIN):
        cache = open_teacher_outputs(cfg, method, task, teacher, teacher_info, splits, collator, log, data.outside)
    splits = with_transfer_rows(splits)
    log(distilling_line(cfg, task, method, teacher, teacher_info, student, len(splits["train"]), data.transfer))
    job = TrainJob(student, task, splits, collator, terms, student_settings(cfg, len(splits["train"])), run_dir,
                   teacher=teacher if method.needs_teacher else None, needs_attentions=method.needs_attentions,
                   teacher_cache=cache, meta=student_record(cfg, task, method), resume=cfg.resume)  # fmt: skip
    with continued_by(f"xkd distill --resume {run_dir}"):
        stages = train_stages(cfg, job, log)
    run = TrainedRun(cfg, task, method, terms, stages, teacher, teacher_info, student, cache, splits, collator, run_dir)
    summary = report(run, data, wall_start)
    if state.is_main_process:
        finish_run(run_dir, summary)
    # The next run may read what the main process just wrote (a study's TAKD run loads its assistant's student);
    # another process, which writes nothing, must not get there first (the likely cause of a two-process study
    # failing once under load: the other process left the study and the main one's barrier lost its peer).
    state.wait_for_everyone()
    return summary


def load_data(cfg: DistillConfig, task: Task, method: Method, log: Log) -> RunData:
    """The gold splits, the teachers' config.json, the transfer set and saved outputs, each checked before a run
    directory exists."""
    task, gold = load_splits(task, cfg.data_dir, cfg.max_examples, cfg.max_train_examples)
    check_classes(task, gold, cfg.data_dir)
    first = check_teachers(cfg, task, method)  # from the teachers' config.json alone
    check_teacher_vectors(cfg, member_configs(cfg)[0].teacher, first)  # the student's vectors come from the first
    transfer, transfer_report = build_transfer(cfg, task, gold, log)
    gold, transfer, outside = outside_rows(cfg, task, gold, transfer, log)  # --teacher-outputs: so is that file
    check_batch_size(cfg.batch_size, len(gold["train"]), len(transfer) if transfer is not None else 0)
    return RunData(task, gold, transfer, transfer_report, outside)


def prepare_teachers(
    cfg: DistillConfig, data: RunData, method: Method, run_dir: Path, log: Log
) -> tuple[nn.Module | None, dict[str, Any]]:
    """The frozen teacher (fine-tuned, assistants distilled, pseudo heads trained as needed), from the gold splits
    alone, and what the summary records of it."""
    start, state = time.perf_counter(), process_state()
    with state.main_process_first(), continued_by(AGAIN):  # fine-tunes and heads are cached: one process trains
        needs_heads = method.needs_teacher_heads
        teacher, info = resolve_teachers(cfg, data.task, data.gold, needs_heads, log, run_dir, run_distill)
    info["seconds"] = round(time.perf_counter() - start, 2)
    return teacher, info


def prepare_student(
    cfg: DistillConfig,
    data: RunData,
    method: Method,
    options: dict[str, Any],
    teacher: nn.Module | None,
    teacher_info: dict[str, Any],
    log: Log,
) -> tuple[nn.Module, list[LossTerm]]:
    """The student (its vocabulary from the training texts, its vectors from the first teacher) and the method's
    terms for this pair, seeded so neither depends on what ran before (e.g. head training)."""
    set_seed(cfg.seed)
    first_path = teacher_info.get("path") or (teacher_info.get("members") or [{}])[0].get("path")
    student = configured_student(cfg, first_member(teacher), data.task, data.splits, log, first_path)
    context = TermContext.between(student, teacher, data.task, math.ceil(data.train_rows / cfg.batch_size))
    return student, method.terms(context, **options)


def encoded_splits(
    cfg: DistillConfig, data: RunData, teacher: nn.Module | None, student: nn.Module
) -> tuple[DatasetDict, Collator]:
    """Every split tokenized for each role (the teacher or each ensemble member, and the student, identical
    tokenizers encoded once) and the collator that pads them."""
    tokenizers = {**teacher_tokenizers(teacher), "student": student.tokenizer}
    separate = separate_roles(student)
    splits = DatasetDict(
        {n: encode(s, data.task, tokenizers, cfg.max_length, separate) for n, s in data.splits.items()}
    )
    return splits, ensemble_collator(tokenizers, separate, members=len(teacher_list(cfg.teacher)))


def train_stages(cfg: DistillConfig, job: TrainJob, log: Log) -> list[dict[str, Any]]:
    """Distil; then, with `second_stage_epochs`, train on gold labels only, without the teacher, from stage one's
    best weights (the saved student changes only if stage two beats stage one on validation)."""
    base = student_lr(cfg.student)
    if cfg.lr is None and job.settings.lr != base:
        steps = cfg.optimizer_steps(len(job.splits["train"]))
        log(f"learning rate {job.settings.lr:.2g}: the {cfg.student} student's {base:g} for a run of {steps:,} steps "
            "(--lr sets it)")  # fmt: skip
    first = train(job, log)
    if not cfg.second_stage_epochs:
        return [first]
    log(f"second stage: {cfg.second_stage_epochs} epoch(s) of CE without the teacher")
    stage2 = job.run_dir / "stage2"
    second = replace(
        job,
        terms=get_method("none").terms(),
        settings=replace(job.settings, epochs=cfg.second_stage_epochs, max_steps=None),
        run_dir=stage2,
        teacher=None,
        needs_attentions=False,
        teacher_cache=None,
        save_dir=job.run_dir / "student",
        meta={**job.meta, "stage": 2},
        initial_best=first["best_score"],
        resume=cfg.resume and Checkpoints.exist(stage2),
    )
    return [first, train(second, log)]


def report(run: TrainedRun, data: RunData, wall_start: float) -> dict[str, Any]:
    """The summary: the run described, its data, and its wall time (a resumed run's earlier training time too; their
    setup time is not known, so a lower bound)."""
    summary = describe_run(run)
    summary["data"] = data_record(run.cfg, data.task, data.splits, data.transfer, data.transfer_report)
    if run.cfg.max_examples is not None or run.cfg.max_train_examples is not None:
        summary["subset"] = subset_record(run.cfg, data.splits)
    earlier = sum(stage.get("train_seconds_before_resume", 0.0) for stage in run.stages)
    summary["wall_seconds"] = round(time.perf_counter() - wall_start + earlier, 2)
    return summary
