"""Plots of a run: where each student layer looks in the teacher, and how much each teacher layer knows."""

from __future__ import annotations

import json
from pathlib import Path

from xkd.errors import XKDError
from xkd.files import save_figure_atomically


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def attention_heatmaps(run_dir: Path) -> list[Path]:
    """One heatmap per projection term of the last epoch's mean α (rows: student layers, columns: teacher)."""
    path = run_dir / "attention.jsonl"
    if not path.is_file():
        return []
    last: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        last[record["term"]] = record
    plt = _pyplot()
    outputs = []
    for term, record in last.items():
        alpha = record["alpha"]
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
        ax.set_title(f"{term}: mean attention α ({record['split']}, epoch {record['epoch']})", fontsize=9)
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        out = run_dir / f"attention_{term}.png"
        save_figure_atomically(fig, out, dpi=120)
        plt.close(fig)
        outputs.append(out)
    return outputs


def teacher_heads_plot(run_dir: Path) -> list[Path]:
    """The teacher's per-layer pseudo-classifier score, with its final classifier for reference."""
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return []
    summary = json.loads(summary_path.read_text())
    heads = summary.get("teacher", {}).get("heads")
    info_path = Path(heads) / "pseudo_heads.json" if heads else None
    if info_path is None or not info_path.is_file():
        return []
    info = json.loads(info_path.read_text())
    metric = info.get("main_metric", "score")
    names = [k for k in info["layer_metrics"][0] if k != "score"]
    if metric == "score" and len(names) == 1:
        metric = names[0]  # a one-metric task: say "accuracy", not "score"
    values = [100 * m[metric] for m in info["layer_metrics"]]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    layers = range(1, len(values) + 1)
    ax.plot(layers, values, marker="o", label="pseudo classifier")
    final = next(iter(summary["teacher"]["metrics"].values()), {}).get(metric)
    if final is not None:
        ax.axhline(100 * final, color="grey", linestyle="--", label="teacher classifier")
    ax.set_xticks(list(layers))
    ax.set_xlabel("teacher layer")
    ax.set_ylabel(f"validation {metric} (%)")
    ax.set_title(f"teacher pseudo classifiers on {info.get('task', '')}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = run_dir / "teacher_heads.png"
    save_figure_atomically(fig, out, dpi=120)
    plt.close(fig)
    return [out]


def report_run(run_dir: str | Path) -> list[Path]:
    """Draw every plot the run has data for; returns the PNG paths."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise XKDError(f"run directory {run_dir} does not exist; pass the --output-dir of an xkd distill run")
    outputs = attention_heatmaps(run_dir) + teacher_heads_plot(run_dir)
    if not outputs:
        raise XKDError(
            f"{run_dir} has nothing to plot (no attention.jsonl, no teacher heads); run xkd distill --method universal"
        )
    return outputs
