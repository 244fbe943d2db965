"""`xkd report DIR`: `report.md` plus PNG plots for a run or a study, from the files they wrote.

A run gets its summary (teacher vs student, compute), the per-epoch metrics, the projector's attention heatmap
and the teacher's per-layer head accuracy. A study gets its tables (mean ± sd and 95% CI over seeds, cost
columns), accuracy per method with error bars, learning curves, mean attention heatmaps and the teacher's heads.
Everything is redrawn from the JSON files, so a report can be made again at any time, e.g. while a study runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from xkd.errors import XKDError
from xkd.files import write_text_atomically
from xkd.metrics import shown_metrics
from xkd.studies.plots import (
    accuracy_figure,
    attention_heatmaps,
    compute_figure,
    learning_curves,
    metric_splits,
    panel,
    series,
    study_heatmaps,
    teacher_heads_figure,
    teacher_heads_plot,
)
from xkd.studies.results import group_rows, load_study, metric_columns, run_rows, write_results


def _pct(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _flops(value: float | None) -> str:
    """A count with an SI prefix: 1.23 M, 4.5 G, 17 T."""
    if value is None:
        return ""
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _images(paths: list[Path], base: Path) -> list[str]:
    return [f"![{p.stem}]({p.relative_to(base)})" for p in paths]


def report_run(run_dir: str | Path) -> list[Path]:
    """Draw every plot the run has data for and write `report.md`; returns the paths written."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise XKDError(f"run directory {run_dir} does not exist; pass the --output-dir of an xkd distill run")
    if (run_dir / "study.json").is_file():
        return report_study(run_dir)
    summary_path = run_dir / "summary.json"
    plots = attention_heatmaps(run_dir) + teacher_heads_plot(run_dir)
    if not summary_path.is_file() and not plots:
        raise XKDError(
            f"{run_dir} holds no finished run or study (no summary.json, study.json or attention.jsonl); pass the "
            "--output-dir of xkd distill or xkd study"
        )
    lines = [f"# Run report: {run_dir.name}", ""]
    if summary_path.is_file():
        lines += _summary_lines(json.loads(summary_path.read_text()))
    metrics_path = run_dir / "metrics.jsonl"
    if metrics_path.is_file():
        lines += _epoch_lines([json.loads(line) for line in metrics_path.read_text().splitlines()])
    if plots:
        lines += ["## Plots", "", *_images(plots, run_dir), ""]
    report = write_text_atomically(run_dir / "report.md", "\n".join(lines))
    return [report, *plots]


SIGNED_METRICS = ("matthews", "pearson", "spearman")  # in [-100, 100] %; the others in [0, 100]


def _cell(stat: dict[str, Any] | None, sign: str = "", metric: str = "") -> str:
    """mean ± sd [95% CI]; `sign="+"` writes differences with their sign. The interval is cut to what the metric
    can be (Student's t over 2 or 3 seeds is wide: 54.5 ± 36 would read [-0.8, 100.8] %)."""
    if not stat or not stat["values"]:
        return ""
    mean = f"{stat['mean']:{sign}.2f}"
    if math.isnan(stat["sd"]):
        return mean
    floor = -100.0 if sign or any(name in metric for name in SIGNED_METRICS) else 0.0
    low = max(stat["mean"] - stat["ci95"], floor)
    high = min(stat["mean"] + stat["ci95"], 100.0)
    return f"{mean} ± {stat['sd']:.2f} [{low:{sign}.2f}, {high:{sign}.2f}]"


def _summary_lines(s: dict[str, Any]) -> list[str]:
    """What the run distilled, teacher against student (metrics, size, compute, latency), and its cost. A run on
    saved outputs (`--teacher-outputs`) has no teacher model: its size and latency read n/a."""
    teacher = s["teacher"]
    depth = f" ({teacher['layers']} layers)" if teacher.get("layers") else ""
    lines = [
        f"{s['task']}: {teacher.get('source', '')}{depth} -> {s['student']['name']} ({s['student']['layers']} layers) "
        f"with {s['method']['name']} ({', '.join(f'{k} {v:g}' for k, v in s['method']['terms'].items())}); best "
        f"epoch {s['best_epoch']}.",
        "",
    ]
    rows = []
    for split, metrics in teacher["metrics"].items():
        student = s["validation"].get(split) or s["test"].get(split, {})
        for name, value in shown_metrics(metrics).items():
            rows.append([f"{split} {name} (%)", _pct(value), _pct(student.get(name))])
    rows.append(["parameters", _millions(teacher.get("parameters")), _millions(s["student"]["parameters"])])
    compute = s.get("compute", {})
    if compute:
        flops = (_flops(compute["teacher_flops_per_example"]), _flops(compute["student_flops_per_example"]))
        rows.append(["forward FLOPs per example", *flops])
    for size, ms in s.get("latency_ms", {}).get("teacher", {}).items():
        rows.append(
            [f"CPU latency {size.replace('_', ' ')} (ms)", f"{ms:.2f}", f"{s['latency_ms']['student'][size]:.2f}"]
        )
    lines += _table(["", "teacher", "student"], rows) + [""]
    if compute:
        data = s.get("data")
        lines += [
            f"Wall time {s['wall_seconds'] / 60:.1f} min (student training {s['train_seconds']:.0f} s); training "
            f"compute {_flops(compute['total_flops'])}FLOPs ({compute['train_examples']} training examples"
            + (f" over {data['train']} gold and {data['transfer']} transfer rows" if data else "")
            + f", {compute['teacher_forward_examples']} teacher forward passes"
            + (f", assistants {_flops(compute['assistant_flops'])}FLOPs" if compute["assistant_flops"] else "")
            + ").",
            "",
        ]
    return lines


def _epoch_lines(records: list[dict[str, Any]]) -> list[str]:
    """The per-epoch table of `metrics.jsonl`: each loss term and each evaluated split's score."""
    terms = list(records[0]["train"]) if records else []
    splits = metric_splits(records[0]) if records else []
    rows = [
        [
            f"{r['epoch']} (step {r['step']})" if r.get("at") == "step" else str(r["epoch"]),
            *(f"{r['train'].get(t, float('nan')):.4f}" for t in terms),
            *(_pct(r[sp].get("score")) for sp in splits),
        ]
        for r in records
    ]
    return ["## Per epoch", "", *_table(["epoch", *terms, *(f"{sp} score (%)" for sp in splits)], rows), ""]


def report_study(study_dir: str | Path) -> list[Path]:
    """Tables and plots of a study (finished runs only; unfinished ones are counted)."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    baseline = study.get("baseline")
    rows = run_rows(study)
    groups = group_rows(rows, baseline)
    paths = write_results(study_dir, rows, groups)
    metrics = metric_columns(rows)
    plots = study_dir / "plots"
    main = next((m for m in reversed(metrics) if any(g[m]["values"] for g in groups)), None)
    lines = _study_header(study, rows, baseline)
    teacher_lines, teacher_values, heads_figures = _teacher_section(study, plots)
    lines += teacher_lines + _group_tables(groups, metrics, main, baseline)
    images = _study_figures(study, groups, metrics, main, teacher_values, plots) + heads_figures
    images += study_heatmaps(study, plots)
    lines += ["## Plots", "", *_images(images, study_dir), ""]
    runs_dir = Path(study["runs"][0]["dir"]).parent if study["runs"] else study_dir / "runs"
    lines += [
        "Files: `results/runs.csv` (one row per run), `results/groups.csv` and `results/groups.json` (per group, "
        f"with the per-seed values); each run's own files are in `{runs_dir}/<id>/`.",
        "",
    ]
    report = write_text_atomically(study_dir / "report.md", "\n".join(lines))
    return [report, *paths.values(), *images]


def _study_header(study: dict[str, Any], rows: list[dict[str, Any]], baseline: str | None) -> list[str]:
    """The title and what the cells and cost columns mean."""
    done = sum(r["status"] == "finished" for r in rows)
    assistants = (
        f", {len(study['assistants'])} TAKD assistant run(s) shared by the students of each seed"
        if study["assistants"]
        else ""
    )
    return [
        f"# Study report: {study['name']}",
        "",
        f"From `{study['source']}`: {len(study['runs'])} runs ({done} finished), seeds {study['seeds']}; teacher "
        f"fine-tune and pseudo heads shared (seed {study['teacher_seed']}), one teacher cache per teacher and task"
        + assistants
        + ".",
        "",
        "Cells: mean ± sample sd over seeds [95% CI, Student's t]"
        + (f"; the difference to {baseline} is taken per seed, then averaged" if baseline else "")
        + "; costs are means per run. Wall time and total "
        "FLOPs of TAKD rows include training their assistants; a run reading the teacher cache is charged the "
        "teacher pass that built it. Total FLOPs = 3 x forward FLOPs per training example for each trained network "
        "+ 1 x for each teacher forward pass.",
        "",
    ]


def _millions(count: int | None) -> str:
    return "n/a" if count is None else f"{count / 1e6:.1f}M"  # n/a: saved outputs, no teacher model


def _teacher_section(study: dict[str, Any], plots: Path) -> tuple[list[str], dict[str, float], list[Path]]:
    """The teachers' table (from the first finished run of each), their metrics in percent for the accuracy plots'
    reference line, and each teacher's pseudo-head figure."""
    rows, values, figures = [], {}, []
    for name, info in study["teachers"].items():
        member = next(
            (
                r
                for r in study["runs"]
                if r["group"]["teacher"] == name and not r["assistants"] and (Path(r["dir"]) / "summary.json").is_file()
            ),
            None,
        )
        if member is None:
            continue
        teacher = json.loads((Path(member["dir"]) / "summary.json").read_text())["teacher"]
        cells = []
        for split, split_values in teacher["metrics"].items():
            for metric, value in shown_metrics(split_values).items():
                cells.append(f"{split} {metric} {_pct(value)}")
                values[f"{split} {metric}"] = 100 * value
        stem = f"teacher_heads{'_' + name if name else ''}"
        members = teacher.get("members", [])  # an ensemble: each member's pseudo heads
        for k, one in enumerate(members or [teacher], start=1):
            figures += teacher_heads_figure(one, plots / (f"{stem}_member{k}.png" if members else f"{stem}.png"))
        path = info.get("path") or " + ".join(str(m.get("path", "")) for m in info.get("members", []))
        rows.append([name or "teacher", path, ", ".join(cells), _millions(teacher.get("parameters"))])
    if not rows:
        return [], values, figures
    return ["## Teacher", "", *_table(["teacher", "path", "metrics (%)", "parameters"], rows), ""], values, figures


def _group_tables(
    groups: list[dict[str, Any]], metrics: list[str], main: str | None, baseline: str | None
) -> list[str]:
    """One table per panel (a student, or teacher x student): a row per method and hyperparameters."""
    paired = bool(baseline and main)
    header = [
        "method",
        "n",
        *(f"{m} (%)" for m in metrics),
        *([f"{main}: difference to {baseline}, paired by seed"] if paired else []),
        "training rows",
        "wall time",
        "trainable params",
        "teacher passes",
        "student FLOPs/ex",
        "total FLOPs",
    ]
    panels: dict[str, list[dict[str, Any]]] = {}
    for g in groups:
        panels.setdefault(panel(g), []).append(g)
    lines: list[str] = []
    for name, members in panels.items():
        table = [
            [
                series(g),
                f"{g['n']}" + (f"/{g['planned']}" if g["n"] < g["planned"] else ""),
                *(_cell(g[m], metric=m) for m in metrics),
                *([_cell(g[main].get("delta"), "+")] if paired else []),
                _flops(g["train_rows"]),
                _duration(g["wall_seconds"]),
                _flops(g["trainable_parameters"]),
                _flops(g["teacher_forward_examples"]),
                _flops(g["student_flops_per_example"]),
                _flops(g["total_flops"]),
            ]
            for g in members
        ]
        lines += [f"## {name}", "", *_table(header, table), ""]
    return lines


def _study_figures(
    study: dict[str, Any],
    groups: list[dict[str, Any]],
    metrics: list[str],
    main: str | None,
    teacher_values: dict[str, float],
    plots: Path,
) -> list[Path]:
    """Accuracy per metric (with the teacher's line), accuracy against compute, and the learning curves."""
    images: list[Path] = []
    for metric in metrics:
        if any(g[metric]["values"] for g in groups):
            slug = metric.replace(" ", "_")
            images.append(accuracy_figure(groups, metric, teacher_values.get(metric), plots / f"accuracy_{slug}.png"))
    cost = compute_figure(groups, main, plots / "accuracy_vs_compute.png") if main else None
    curves = learning_curves(study, plots / "learning_curves.png")
    return images + [p for p in (cost, curves) if p]
