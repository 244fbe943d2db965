"""The PNG plots of runs and studies, drawn from the JSON files they wrote (matplotlib, files only)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from xkd.files import save_figure_atomically
from xkd.studies.results import GROUP_KEYS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    """Lay out, write atomically, and free the figure (pyplot keeps every open figure alive)."""
    fig.tight_layout()
    save_figure_atomically(fig, out, dpi=120)
    _pyplot().close(fig)
    return out


def metric_splits(record: dict[str, Any]) -> list[str]:
    """The evaluated splits of one `metrics.jsonl` line (every key but the bookkeeping ones)."""
    return [k for k in record if k not in ("epoch", "step", "at", "train", "elapsed_s")]


def panel(group: dict[str, Any]) -> str:
    """The plot panel / report table of a group: its teacher and student."""
    return group_label(group, ("teacher", "student")) or "student"


def series(group: dict[str, Any]) -> str:
    """A group's label within its panel: its method and hyperparameters."""
    return group_label(group, ("method", "hyperparameters")) or "run"


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
    return _save(fig, out)


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
    return [_save(fig, out)]


def teacher_heads_plot(run_dir: Path) -> list[Path]:
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return []
    teacher = json.loads(summary_path.read_text())["teacher"]
    return teacher_heads_figure(teacher, run_dir / "teacher_heads.png")


def group_label(group: dict[str, Any], keys: tuple[str, ...]) -> str:
    return " / ".join(str(group[k]) for k in keys if group.get(k))


def accuracy_figure(groups: list[dict[str, Any]], metric: str, teacher_value: float | None, out: Path) -> Path:
    """Mean per method with 95% CI error bars, one panel per teacher/student, seeds as dots."""
    plt = _pyplot()
    panels: dict[str, list[dict[str, Any]]] = {}
    for g in groups:
        panels.setdefault(panel(g), []).append(g)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(1.5 + 1.3 * max(len(v) for v in panels.values()) * len(panels), 3.6), squeeze=False
    )
    for ax, (name, members) in zip(axes[0], panels.items(), strict=True):
        labels = [series(g) for g in members]
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
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(f"{metric} (%)")
    fig.suptitle(f"{metric}: mean and 95% CI over seeds (dots: seeds)", fontsize=9)
    return _save(fig, out)


def compute_figure(groups: list[dict[str, Any]], metric: str, out: Path) -> Path | None:
    """Accuracy against total training compute (TAKD rows include their assistants), one colour per student."""
    points = [g for g in groups if g[metric]["values"] and g.get("total_flops")]
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = sorted({panel(g) for g in points})
    for colour, name in enumerate(names):
        members = [g for g in points if panel(g) == name]
        for g in members:
            stat = g[metric]
            error = 0 if math.isnan(stat["ci95"]) else stat["ci95"]
            ax.errorbar(g["total_flops"], stat["mean"], yerr=error, fmt="o", capsize=3, color=f"C{colour}")
            ax.annotate(series(g), (g["total_flops"], stat["mean"]),
                        textcoords="offset points", xytext=(4, 3), fontsize=7)  # fmt: skip
        ax.plot([], [], "o", color=f"C{colour}", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("total training FLOPs per run (log scale; TAKD includes its assistant)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{metric} against compute (mean, 95% CI over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, out)


def learning_curves(study: dict[str, Any], out: Path) -> Path | None:
    """Validation score per epoch, mean over seeds, one panel per student, one line per method."""
    curves: dict[str, dict[str, list[list[float]]]] = {}
    for run in study["runs"]:
        path = Path(run["dir"]) / "metrics.jsonl"
        if not path.is_file() or not (Path(run["dir"]) / "summary.json").is_file():
            continue
        records = [json.loads(line) for line in path.read_text().splitlines()]
        records = [r for r in records if r.get("at") != "step"]  # evaluations within epochs (--eval-every)
        splits = metric_splits(records[0]) if records else []
        if not splits:
            continue
        curves.setdefault(panel(run["group"]), {}).setdefault(series(run["group"]), []).append(
            [100 * r[splits[0]]["score"] for r in records]
        )
    if not curves:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, (name, lines) in zip(axes[0], curves.items(), strict=True):
        for label, runs in lines.items():
            length = min(len(r) for r in runs)
            mean = np.mean([r[:length] for r in runs], axis=0)
            ax.plot(range(1, length + 1), mean, marker="o", markersize=3, label=label)
        ax.set_title(name, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation score (%)")
        ax.legend(fontsize=7)
    fig.suptitle("learning curves (mean over seeds)", fontsize=9)
    return _save(fig, out)


def study_heatmaps(study: dict[str, Any], plots: Path) -> list[Path]:
    """Per group and projection term: the last epoch's α averaged over seeds."""
    sums: dict[tuple[str, str], list[np.ndarray]] = {}
    for run in study["runs"]:
        for term, record in _last_attention(Path(run["dir"])).items():
            label = group_label(run["group"], GROUP_KEYS)
            sums.setdefault((label, term), []).append(np.asarray(record["alpha"]))
    outputs = []
    for (label, term), alphas in sums.items():
        name = "attention_" + "".join(c if c.isalnum() or c in "-_=." else "_" for c in f"{label}_{term}") + ".png"
        title = f"{label}\n{term}: mean α over {len(alphas)} seed(s), last epoch"
        outputs.append(heatmap(np.mean(alphas, axis=0).tolist(), title, plots / name))
    return outputs
