"""What a finished distillation reports: `summary.json` (metrics of both models on the same splits, sizes, the
method's terms, compute in FLOPs, CPU latency, the data used), the student's model card, and the comparison
`xkd distill` prints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import DatasetDict
from torch import nn

from xkd.config import DistillConfig
from xkd.data import Collator, full_rows, is_labeled, local_data_dir, make_loader
from xkd.evaluation import evaluate, score_logits
from xkd.files import write_text_atomically
from xkd.flops import flops_per_example
from xkd.latency import cpu_latency_ms
from xkd.methods import LossTerm, Method
from xkd.metrics import shown_metrics
from xkd.model_card import write_model_card
from xkd.tasks import Task, task_record
from xkd.teacher_cache import TeacherCache
from xkd.teachers.ensemble import EnsembleCache, EnsembleTeacher, member_collator
from xkd.training import Checkpoints, parameter_count
from xkd.transfer.sets import SPLIT as TRANSFER


@dataclass
class TrainedRun:
    """A run after training: what its report reads."""

    cfg: DistillConfig
    task: Task
    method: Method
    terms: list[LossTerm]
    stages: list[dict[str, Any]]  # each training stage's summary (`xkd.training.train`)
    teacher: nn.Module | None
    teacher_info: dict[str, Any]
    student: nn.Module
    cache: Any  # the teacher outputs read (`xkd.teacher_outputs.TeacherOutputs`), or None
    splits: DatasetDict
    collator: Collator
    run_dir: Path


def describe_run(run: TrainedRun) -> dict[str, Any]:
    """The run's summary: the first stage's (or a better second stage's) metrics, the teacher's metrics on the same
    splits, both models' sizes, the method's terms, compute and latency."""
    cfg, teacher, student, cache = run.cfg, run.teacher, run.student, run.cache
    summary = run.stages[0]
    if len(run.stages) > 1:
        second = run.stages[1]
        summary["stage2"] = {k: second[k] for k in ("best_epoch", "validation", "test", "train_seconds")}
        if second["best_epoch"]:
            summary.update(validation=second["validation"], test=second["test"], best_score=second["best_score"])
    summary["teacher"] = {
        **{k: v for k, v in run.teacher_info.items() if k != "seconds"},
        "metrics": teacher_metrics(cfg, run.task, teacher, cache, run.splits, run.collator),
        "parameters": parameter_count(teacher) if teacher is not None else None,
        "layers": teacher.num_layers if teacher is not None else None,
        "seconds": run.teacher_info["seconds"],
    }
    if isinstance(teacher, EnsembleTeacher):
        describe_members(cfg, run.task, teacher, summary["teacher"]["members"], cache, run.splits, run.collator)
    summary["student"] = {
        **{k: v for k, v in getattr(student, "meta", {}).items() if k in ("vocab", "vector_coverage")},
        "name": cfg.student,
        "layers": student.num_layers,
        "parameters": parameter_count(student),
        "dir": str(run.run_dir / "student"),
    }
    summary["method"] = {"name": run.method.name, "terms": {t.name: t.weight for t in run.terms}}
    validation = run.splits[run.task.validation_splits[0]]
    cached = cache.examples if cache is not None else 0
    info = run.teacher_info
    summary["compute"] = compute_columns(
        run.stages, teacher, student, validation, run.collator, cfg.batch_size, info, cache_examples=cached
    )
    if cfg.latency:
        summary["latency_ms"] = latency_table(teacher, student, validation, run.collator)
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


def data_record(
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


def distilling_line(cfg, task: Task, method: Method, teacher, teacher_info, student, rows: int, transfer) -> str:
    layers = f" ({teacher.num_layers} layers)" if teacher is not None else ""
    return (
        f"distilling {teacher_info['source']}{layers} -> {cfg.student} ({student.num_layers} layers) "
        f"on {task.name} with {method.name}: {rows} training examples"
        + (f" ({len(transfer)} of them transfer rows without gold labels)" if transfer is not None else "")
    )


def student_record(cfg: DistillConfig, task: Task, method: Method) -> dict[str, Any]:
    """What the saved student records of its run (`student.json` beside its config)."""
    return {"role": "student", **task_record(task), "method": method.name, "teacher": cfg.teacher,
            "max_length": cfg.max_length}  # fmt: skip
