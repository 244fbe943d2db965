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

import numpy as np

from xkd.errors import XKDError
from xkd.files import save_figure_atomically, write_text_atomically
from xkd.results import GROUP_KEYS, group_rows, load_study, metric_columns, run_rows, write_results


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _last_attention(run_dir: Path) -> dict[str, dict]:
    """term -> the last epoch's attention record of a run."""
    path = run_dir / "attention.jsonl"
    last: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            last[record["term"]] = record
    return last


def heatmap(alpha: list[list[float]], title: str, out: Path) -> Path:
    """Rows: student layers; columns: teacher layers; cells: mean attention α."""
    plt = _pyplot()
    m, n = len(alpha), len(alpha[0])
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * n, 1.2 + 0.6 * m))
    image = ax.imshow(alpha, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for j in range(m):
        for i in range(n):
            ax.text(i, j, f"{alpha[j][i]:.2f}", ha="center", va="center", color="w" if alpha[j][i] < 0.6 else "k")
    ax.set_xticks(range(n), [str(i + 1) for i in range(n)])
    ax.set_yticks(range(m), [str(j + 1) for j in range(m)])
    ax.set_xlabel("teacher layer")
    ax.set_ylabel("student layer" if m > 1 else "student output")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    save_figure_atomically(fig, out, dpi=120)
    plt.close(fig)
    return out


def attention_heatmaps(run_dir: Path) -> list[Path]:
    """One heatmap per projection term of the last epoch's mean α."""
    return [
        heatmap(
            record["alpha"],
            f"{term}: mean attention α ({record['split']}, epoch {record['epoch']})",
            run_dir / f"attention_{term}.png",
        )
        for term, record in _last_attention(run_dir).items()
    ]


def _heads_info(teacher_summary: dict[str, Any]) -> dict[str, Any] | None:
    heads = teacher_summary.get("heads")
    path = Path(heads) / "pseudo_heads.json" if heads else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def _main_metric(info: dict[str, Any]) -> str:
    metric = info.get("main_metric", "score")
    names = [k for k in info["layer_metrics"][0] if k != "score"]
    return names[0] if metric == "score" and len(names) == 1 else metric  # say "accuracy", not "score"


def teacher_heads_figure(teacher_summary: dict[str, Any], out: Path) -> list[Path]:
    """The teacher's per-layer pseudo-classifier score, with its final classifier for reference."""
    info = _heads_info(teacher_summary)
    if info is None:
        return []
    metric = _main_metric(info)
    values = [100 * m[metric] for m in info["layer_metrics"]]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    layers = range(1, len(values) + 1)
    ax.plot(layers, values, marker="o", label="pseudo classifier")
    final = next(iter(teacher_summary.get("metrics", {}).values()), {}).get(metric)
    if final is not None:
        ax.axhline(100 * final, color="grey", linestyle="--", label="teacher classifier")
    ax.set_xticks(list(layers))
    ax.set_xlabel("teacher layer")
    ax.set_ylabel(f"validation {metric} (%)")
    ax.set_title(f"teacher pseudo classifiers on {info.get('task', '')}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomically(fig, out, dpi=120)
    plt.close(fig)
    return [out]


def teacher_heads_plot(run_dir: Path) -> list[Path]:
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return []
    teacher = json.loads(summary_path.read_text())["teacher"]
    return teacher_heads_figure(teacher, run_dir / "teacher_heads.png")


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
        s = json.loads(summary_path.read_text())
        lines += [
            f"{s['task']}: {s['teacher'].get('source', '')} ({s['teacher']['layers']} layers) -> "
            f"{s['student']['name']} ({s['student']['layers']} layers) with {s['method']['name']} "
            f"({', '.join(f'{k} {v:g}' for k, v in s['method']['terms'].items())}); best epoch {s['best_epoch']}.",
            "",
        ]
        rows = []
        for split, metrics in s["teacher"]["metrics"].items():
            student = s["validation"].get(split) or s["test"].get(split, {})
            for name, value in metrics.items():
                if name != "score" or len(metrics) > 2:
                    rows.append([f"{split} {name} (%)", _pct(value), _pct(student.get(name))])
        rows.append(
            ["parameters", f"{s['teacher']['parameters'] / 1e6:.1f}M", f"{s['student']['parameters'] / 1e6:.1f}M"]
        )
        compute = s.get("compute", {})
        if compute:
            rows.append(
                [
                    "forward FLOPs per example",
                    _flops(compute["teacher_flops_per_example"]),
                    _flops(compute["student_flops_per_example"]),
                ]
            )
        for size, ms in s.get("latency_ms", {}).get("teacher", {}).items():
            rows.append(
                [f"CPU latency {size.replace('_', ' ')} (ms)", f"{ms:.2f}", f"{s['latency_ms']['student'][size]:.2f}"]
            )
        lines += _table(["", "teacher", "student"], rows) + [""]
        if compute:
            lines += [
                f"Wall time {s['wall_seconds'] / 60:.1f} min (student training {s['train_seconds']:.0f} s); training "
                f"compute {_flops(compute['total_flops'])}FLOPs ({compute['train_examples']} training examples, "
                f"{compute['teacher_forward_examples']} teacher forward passes"
                + (f", assistants {_flops(compute['assistant_flops'])}FLOPs" if compute["assistant_flops"] else "")
                + ").",
                "",
            ]
    metrics_path = run_dir / "metrics.jsonl"
    if metrics_path.is_file():
        records = [json.loads(line) for line in metrics_path.read_text().splitlines()]
        terms = list(records[0]["train"]) if records else []
        splits = [k for k in records[0] if k not in ("epoch", "step", "train", "elapsed_s")] if records else []
        rows = [
            [str(r["epoch"]), *(f"{r['train'][t]:.4f}" for t in terms), *(_pct(r[sp].get("score")) for sp in splits)]
            for r in records
        ]
        lines += ["## Per epoch", ""] + _table(["epoch", *terms, *(f"{sp} score (%)" for sp in splits)], rows) + [""]
    if plots:
        lines += ["## Plots", "", *_images(plots, run_dir), ""]
    report = write_text_atomically(run_dir / "report.md", "\n".join(lines))
    return [report, *plots]


def _group_label(group: dict[str, Any], keys: tuple[str, ...]) -> str:
    return " / ".join(str(group[k]) for k in keys if group.get(k))


def _cell(stat: dict[str, Any] | None, sign: str = "") -> str:
    """mean ± sd [95% CI]; `sign="+"` writes differences with their sign."""
    if not stat or not stat["values"]:
        return ""
    mean = f"{stat['mean']:{sign}.2f}"
    if math.isnan(stat["sd"]):
        return mean
    low, high = stat["mean"] - stat["ci95"], stat["mean"] + stat["ci95"]
    return f"{mean} ± {stat['sd']:.2f} [{low:{sign}.2f}, {high:{sign}.2f}]"


def accuracy_figure(groups: list[dict[str, Any]], metric: str, teacher_value: float | None, out: Path) -> Path:
    """Mean per method with 95% CI error bars, one panel per teacher/student, seeds as dots."""
    plt = _pyplot()
    panels: dict[str, list[dict[str, Any]]] = {}
    for g in groups:
        panels.setdefault(_group_label(g, ("teacher", "student")) or "student", []).append(g)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(1.5 + 1.3 * max(len(v) for v in panels.values()) * len(panels), 3.6), squeeze=False
    )
    for ax, (panel, members) in zip(axes[0], panels.items(), strict=True):
        labels = [_group_label(g, ("method", "hyperparameters")) for g in members]
        for x, g in enumerate(members):
            stat = g[metric]
            if not stat["values"]:
                continue
            error = 0 if math.isnan(stat["ci95"]) else stat["ci95"]
            ax.errorbar([x], [stat["mean"]], yerr=[error], fmt="o", capsize=4, color="C0")
            ax.scatter([x] * len(stat["values"]), stat["values"], s=10, color="grey", alpha=0.7, zorder=3)
        if teacher_value is not None:
            ax.axhline(teacher_value, color="grey", linestyle="--", linewidth=1, label="teacher")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(panel, fontsize=9)
        ax.set_ylabel(f"{metric} (%)")
    fig.suptitle(f"{metric}: mean and 95% CI over seeds (dots: seeds)", fontsize=9)
    fig.tight_layout()
    save_figure_atomically(fig, out, dpi=120)
    plt.close(fig)
    return out


def compute_figure(groups: list[dict[str, Any]], metric: str, out: Path) -> Path | None:
    """Accuracy against total training compute (TAKD rows include their assistants), one colour per student."""
    points = [g for g in groups if g[metric]["values"] and g.get("total_flops")]
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    panels = sorted({_group_label(g, ("teacher", "student")) for g in points})
    for colour, panel in enumerate(panels):
        members = [g for g in points if _group_label(g, ("teacher", "student")) == panel]
        for g in members:
            stat = g[metric]
            error = 0 if math.isnan(stat["ci95"]) else stat["ci95"]
            ax.errorbar(g["total_flops"], stat["mean"], yerr=error, fmt="o", capsize=3, color=f"C{colour}")
            ax.annotate(_group_label(g, ("method", "hyperparameters")), (g["total_flops"], stat["mean"]),
                        textcoords="offset points", xytext=(4, 3), fontsize=7)  # fmt: skip
        ax.plot([], [], "o", color=f"C{colour}", label=panel or "student")
    ax.set_xscale("log")
    ax.set_xlabel("total training FLOPs per run (log scale; TAKD includes its assistant)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{metric} against compute (mean, 95% CI over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomically(fig, out, dpi=120)
    plt.close(fig)
    return out


def learning_curves(study: dict[str, Any], out: Path) -> Path | None:
    """Validation score per epoch, mean over seeds, one panel per student, one line per method."""
    curves: dict[str, dict[str, list[list[float]]]] = {}
    for run in study["runs"]:
        path = Path(run["dir"]) / "metrics.jsonl"
        if not path.is_file() or not (Path(run["dir"]) / "summary.json").is_file():
            continue
        records = [json.loads(line) for line in path.read_text().splitlines()]
        split = (
            next((k for k in records[0] if k not in ("epoch", "step", "train", "elapsed_s")), None) if records else None
        )
        if split is None:
            continue
        panel = _group_label(run["group"], ("teacher", "student")) or "student"
        line = _group_label(run["group"], ("method", "hyperparameters")) or "run"
        curves.setdefault(panel, {}).setdefault(line, []).append([100 * r[split]["score"] for r in records])
    if not curves:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, (panel, lines) in zip(axes[0], curves.items(), strict=True):
        for label, series in lines.items():
            length = min(len(s) for s in series)
            mean = np.mean([s[:length] for s in series], axis=0)
            ax.plot(range(1, length + 1), mean, marker="o", markersize=3, label=label)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation score (%)")
        ax.legend(fontsize=7)
    fig.suptitle("learning curves (mean over seeds)", fontsize=9)
    fig.tight_layout()
    save_figure_atomically(fig, out, dpi=120)
    plt.close(fig)
    return out


def study_heatmaps(study: dict[str, Any], plots: Path) -> list[Path]:
    """Per group and projection term: the last epoch's α averaged over seeds."""
    sums: dict[tuple[str, str], list[np.ndarray]] = {}
    for run in study["runs"]:
        for term, record in _last_attention(Path(run["dir"])).items():
            label = _group_label(run["group"], GROUP_KEYS)
            sums.setdefault((label, term), []).append(np.asarray(record["alpha"]))
    outputs = []
    for (label, term), alphas in sums.items():
        name = "attention_" + "".join(c if c.isalnum() or c in "-_=." else "_" for c in f"{label}_{term}") + ".png"
        title = f"{label}\n{term}: mean α over {len(alphas)} seed(s), last epoch"
        outputs.append(heatmap(np.mean(alphas, axis=0).tolist(), title, plots / name))
    return outputs


def report_study(study_dir: str | Path) -> list[Path]:
    """Tables and plots of a study (finished runs only; unfinished ones are counted)."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    paths = write_results(study_dir)
    rows = run_rows(study_dir)
    baseline = study.get("baseline")
    groups = group_rows(rows, baseline)
    metrics = metric_columns(rows)
    plots = study_dir / "plots"
    main = next((m for m in reversed(metrics) if any(g[m]["values"] for g in groups)), None)
    done = sum(r["status"] == "finished" for r in rows)
    lines = [
        f"# Study report: {study['name']}",
        "",
        f"From `{study['source']}`: {len(study['runs'])} runs ({done} finished), seeds {study['seeds']}; teacher "
        f"fine-tune and pseudo heads shared (seed {study['teacher_seed']}), one teacher cache per teacher and task"
        + (
            f", {len(study['assistants'])} TAKD assistant run(s) shared by the students of each seed"
            if study["assistants"]
            else ""
        )
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
    teacher_rows = []
    teacher_values: dict[str, float] = {}
    heads_figures: list[Path] = []
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
        for split, values in teacher["metrics"].items():
            for metric, value in values.items():
                if metric != "score" or len(values) > 2:
                    cells.append(f"{split} {metric} {_pct(value)}")
                    teacher_values[f"{split} {metric}"] = 100 * value
        out = plots / f"teacher_heads{'_' + name if name else ''}.png"
        heads_figures += teacher_heads_figure(teacher, out)
        teacher_rows.append(
            [
                name or "teacher",
                info.get("path", ""),
                ", ".join(cells),
                f"{teacher['parameters'] / 1e6:.1f}M",
            ]
        )
    if teacher_rows:
        lines += ["## Teacher", ""] + _table(["teacher", "path", "metrics (%)", "parameters"], teacher_rows) + [""]
    panels: dict[str, list[dict[str, Any]]] = {}
    for g in groups:
        panels.setdefault(_group_label(g, ("teacher", "student")) or "all runs", []).append(g)
    header = [
        "method",
        "n",
        *(f"{m} (%)" for m in metrics),
        *([f"{main}: difference to {baseline}, paired by seed"] if baseline and main else []),
        "wall time",
        "trainable params",
        "teacher passes",
        "student FLOPs/ex",
        "total FLOPs",
    ]
    for panel, members in panels.items():
        table = []
        for g in members:
            table.append(
                [
                    _group_label(g, ("method", "hyperparameters")) or "run",
                    f"{g['n']}" + (f"/{g['planned']}" if g["n"] < g["planned"] else ""),
                    *(_cell(g[m]) for m in metrics),
                    *([_cell(g[main].get("delta"), "+")] if baseline and main else []),
                    _duration(g["wall_seconds"]),
                    _flops(g["trainable_parameters"]),
                    _flops(g["teacher_forward_examples"]),
                    _flops(g["student_flops_per_example"]),
                    _flops(g["total_flops"]),
                ]
            )
        lines += [f"## {panel}", ""] + _table(header, table) + [""]
    images: list[Path] = []
    for metric in metrics:
        if any(g[metric]["values"] for g in groups):
            slug = metric.replace(" ", "_")
            images.append(accuracy_figure(groups, metric, teacher_values.get(metric), plots / f"accuracy_{slug}.png"))
    cost = compute_figure(groups, main, plots / "accuracy_vs_compute.png") if main else None
    images += [cost] if cost else []
    curves = learning_curves(study, plots / "learning_curves.png")
    images += [curves] if curves else []
    images += heads_figures
    images += study_heatmaps(study, plots)
    lines += ["## Plots", "", *_images(images, study_dir), ""]
    lines += [
        "Files: `results/runs.csv` (one row per run), `results/groups.csv` and `results/groups.json` (per group, "
        "with the per-seed values); each run's own files are in `runs/<id>/`.",
        "",
    ]
    report = write_text_atomically(study_dir / "report.md", "\n".join(lines))
    return [report, *paths.values(), *images]
