"""`xkd inspect`: what a teacher/student pair looks like to the engine, from one batch, without training."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from xkd.config import DistillConfig
from xkd.data import encode, load_splits, separate_roles
from xkd.errors import XKDError
from xkd.methods import METHODS, TermContext
from xkd.methods.projector import layer_mask
from xkd.students.configured import check_student, configured_student
from xkd.tasks import resolve_task
from xkd.teachers import HFEncoderClassifier, freeze, is_sequence_classifier
from xkd.teachers.ensemble import (
    EnsembleTeacher,
    check_ensemble,
    check_ensemble_widths,
    ensemble_collator,
    first_member,
    teacher_list,
    teacher_tokenizers,
)
from xkd.teachers.loading import load_teacher
from xkd.teachers.resolve import check_teacher_sizes
from xkd.training import parameter_count


def _shapes(trace) -> dict[str, Any]:
    fields = ("logits", "layer_vectors", "pseudo_logits", "attentions", "attention_mask")
    return {f: list(getattr(trace, f).shape) for f in fields if getattr(trace, f) is not None}


def applicability(method: str, teacher, context: TermContext, cfg: DistillConfig, task, widths) -> tuple[bool, str]:
    """Whether `method` can run on this pair, and why (not): building its loss terms is the test, and for an
    ensemble what `xkd distill` refuses for ensembles (attention maps, layer vectors of different widths)."""
    m = METHODS.get(method)
    try:
        m.terms(context)
        if isinstance(teacher, EnsembleTeacher):
            check_ensemble(replace(cfg, method=method), m, task)
            check_ensemble_widths(m, {}, widths)  # each method with its default options
    except XKDError as e:
        return False, str(e)
    if not m.needs_teacher:
        return True, "gold labels only"
    if m.needs_teacher_heads:
        members = teacher.members if isinstance(teacher, EnsembleTeacher) else [teacher]
        heads = "stored" if all(t.pseudo_heads is not None for t in members) else "trained on the fly"
        return True, f"output space, any student with per-layer vectors; teacher pseudo heads {heads}"
    return True, m.summary.split(":")[0]


def _load_member(cfg: DistillConfig, task) -> tuple[HFEncoderClassifier, str]:
    if is_sequence_classifier(check_teacher_sizes(cfg)):  # sizes from the teacher's config.json, before it loads
        return load_teacher(cfg.teacher, task), "fine-tuned classifier"
    bare = freeze(HFEncoderClassifier.from_pretrained(cfg.teacher, num_labels=task.output_size))
    return bare, "bare encoder: xkd distill fine-tunes it first (its classifier below is untrained)"


def _teacher_report(source: str, note: str, teacher, trace=None) -> dict[str, Any]:
    report = {
        "source": source,
        "note": note,
        "layers": teacher.num_layers,
        "width": teacher.layer_width,
        "parameters": parameter_count(teacher),
    }
    return report if trace is None else {**report, "trace": _shapes(trace)}


def inspect_pair(cfg: DistillConfig, batch_size: int = 4) -> dict[str, Any]:
    """One batch through the teacher (or an ensemble: several `cfg.teacher`) and the student, without training."""
    task = resolve_task(cfg)
    check_student(cfg)
    task, raw = load_splits(task, cfg.data_dir)  # whole: a word student's vocabulary (its size) is the run's
    names = teacher_list(cfg.teacher)
    members = [(name, *_load_member(replace(cfg, teacher=name), task)) for name in names]
    if len(members) == 1:
        teacher, note = members[0][1], members[0][2]
    else:
        loaded = [t for _, t, _ in members]
        teacher = EnsembleTeacher(loaded, cfg.teacher_weights, cfg.ensemble_average, task.multi_label)
        note = f"ensemble of {len(members)} ({cfg.ensemble_average} averaged, weights {teacher.weights})"
    student = configured_student(cfg, first_member(teacher), task, raw, log=lambda m: None).eval()
    tokenizers = {**teacher_tokenizers(teacher), "student": student.tokenizer}
    separate = separate_roles(student)
    collator = ensemble_collator(tokenizers, separate, len(members))
    split = encode(raw[task.validation_splits[0]], task, tokenizers, cfg.max_length, separate)
    batch = collator([split[i] for i in range(min(batch_size, len(split)))])
    with torch.no_grad():
        t_trace = teacher(batch["teacher"])
        s_trace = student(batch["student"])
    m, n = student.num_layers, teacher.num_layers
    context = TermContext.between(student, teacher, task)
    widths = {name: t.layer_width for name, t, _ in members}
    report = {
        "task": task.name,
        "teacher": _teacher_report(" + ".join(names), note, teacher, t_trace),
        "student": {
            "name": cfg.student,
            "layers": m,
            "width": student.layer_width,
            "parameters": parameter_count(student),
            "shares_teacher_tokenizer": context.shared_tokenizer,  # (an ensemble: its first member's)
            "trace": _shapes(s_trace),
            "init_from_teacher_layers": getattr(student, "meta", {}).get("teacher_layers"),
        },
        "methods": {
            name: dict(zip(("applies", "why"), applicability(name, teacher, context, cfg, task, widths), strict=True))
            for name in METHODS
        },
        "universal_layer_mask": layer_mask(m, n, "all").int().tolist(),
    }
    if len(members) > 1:
        report["teacher"]["members"] = [_teacher_report(name, why, t) for name, t, why in members]
    return report


def format_inspection(report: dict[str, Any]) -> str:
    """`inspect_pair`'s report as a person reads it: the two models side by side, then each method with why (not)."""
    t, s = report["teacher"], report["student"]
    rows = [
        ("", "teacher", "student"),
        ("model", f"{t['source']}", s["name"]),
        ("layers", str(t["layers"]), str(s["layers"])),
        ("width", str(t["width"]), str(s["width"])),
        ("parameters", f"{t['parameters'] / 1e6:.2f}M", f"{s['parameters'] / 1e6:.2f}M"),
        ("tokenizer", "", "the teacher's" if s["shares_teacher_tokenizer"] else "its own"),
    ]
    if s.get("init_from_teacher_layers"):
        rows.append(("initialised from", "", f"teacher layers {s['init_from_teacher_layers']}"))
    for field in dict.fromkeys([*t["trace"], *s["trace"]]):
        rows.append((field, _shape(t["trace"].get(field)), _shape(s["trace"].get(field))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"task {report['task']}; teacher: {t['note']}"]
    for k, member in enumerate(t.get("members", []), start=1):
        lines.append(f"  member {k}: {member['source']} ({member['note']}; {member['layers']} layers, width "
                     f"{member['width']}, {member['parameters'] / 1e6:.2f}M)")  # fmt: skip
    lines.append("")
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += ["", "methods (trace shapes are of one batch of 4):"]
    width = max(len(name) for name in report["methods"])
    for name, verdict in report["methods"].items():
        mark = "yes" if verdict["applies"] else "no "
        lines.append(f"  {mark}  {name.ljust(width)}  {verdict['why']}")
    lines += ["", "Universal-KD layer mask (student layer x teacher layer, 1: may attend):"]
    lines += ["  " + " ".join(str(v) for v in row) for row in report["universal_layer_mask"]]
    return "\n".join(lines)


def _shape(shape: list[int] | None) -> str:
    return "-" if shape is None else "[" + ", ".join(map(str, shape)) + "]"
