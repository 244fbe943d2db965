"""A study's results as tables: one row per run, and per group (everything but the seed) mean, sd and 95% CI.

The confidence interval is Student's t over seeds (mean ± t_{0.975, n-1} · sd / √n): with 3 to 5 seeds the
normal 1.96 would claim intervals about 2x too narrow. Cost columns charge a TAKD run its assistants' training.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from xkd.errors import XKDError
from xkd.files import write_text_atomically
from xkd.metrics import shown_metrics

GROUP_KEYS = ("teacher", "student", "method", "hyperparameters")
COST_KEYS = (
    "train_rows",  # gold + transfer rows per epoch
    "wall_seconds",
    "trainable_parameters",
    "student_parameters",
    "teacher_forward_examples",
    "student_flops_per_example",
    "total_flops",
)


def confidence_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, sample sd, CI half-width) over seeds; sd and half-width are NaN for a single value."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()) if len(x) else math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * sd / math.sqrt(len(x)))
    return float(x.mean()), sd, half


def _summary(directory: Path) -> dict[str, Any] | None:
    path = directory / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load_study(study_dir: str | Path) -> dict[str, Any]:
    path = Path(study_dir) / "study.json"
    if not path.is_file():
        raise XKDError(f"{study_dir} holds no study (no study.json); run xkd study CONFIG first")
    return json.loads(path.read_text())


def run_rows(study: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per planned run of a study (its `study.json`): group, seed, metrics (percent) and costs; unfinished
    runs have no metrics."""
    assistants = {a["id"]: _summary(Path(a["dir"])) for a in study["assistants"]}
    rows = []
    for run in study["runs"]:
        row: dict[str, Any] = {"id": run["id"], **run["group"], "seed": run["seed"]}
        summary = _summary(Path(run["dir"]))
        row["status"] = "finished" if summary else "unfinished"
        if summary is None:
            rows.append(row)
            continue
        for part in ("validation", "test"):
            for split, metrics in summary[part].items():
                for metric, value in shown_metrics(metrics).items():
                    row[f"{split} {metric}"] = 100 * value
        row["best_epoch"] = summary["best_epoch"]
        data = summary.get("data")  # runs from before transfer sets did not record it
        row["train_rows"] = data["train"] + data["transfer"] if data else None
        compute = summary.get("compute", {})
        links = [assistants.get(a) for a in run["assistants"]]
        if any(link is None for link in links):
            row["status"] = "assistant unfinished"
        links = [link for link in links if link]
        row["wall_seconds"] = summary["wall_seconds"] + sum(link["wall_seconds"] for link in links)
        row["trainable_parameters"] = summary.get("trainable_parameters")
        row["student_parameters"] = summary["student"]["parameters"]
        row["teacher_forward_examples"] = compute.get("teacher_forward_examples", 0) + sum(
            link.get("compute", {}).get("teacher_forward_examples", 0) for link in links
        )
        row["student_flops_per_example"] = compute.get("student_flops_per_example")
        row["total_flops"] = compute.get("total_flops", 0) + sum(
            link.get("compute", {}).get("total_flops", 0) for link in links
        )
        rows.append(row)
    return rows


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The metric columns in first-seen order (validation before test)."""
    columns: list[str] = []
    fixed = {"id", "seed", "status", "best_epoch", *GROUP_KEYS, *COST_KEYS}
    for row in rows:
        columns += [k for k in row if k not in fixed and k not in columns]
    return columns


def group_rows(rows: list[dict[str, Any]], baseline: str | None = None) -> list[dict[str, Any]]:
    """Per group: n finished seeds; mean, sd and 95% CI half-width per metric; mean of each cost; and, given a
    baseline method, the difference to it paired by seed (same teacher, student and hyperparameters)."""
    metrics = metric_columns(rows)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in GROUP_KEYS), []).append(row)
    out = []
    for key, members in groups.items():
        done = [r for r in members if r["status"] == "finished"]
        record: dict[str, Any] = {**dict(zip(GROUP_KEYS, key, strict=True)), "n": len(done), "planned": len(members)}
        record["seeds"] = [r["seed"] for r in done]
        for metric in metrics:
            values = [r[metric] for r in done if r.get(metric) is not None]
            mean, sd, half = confidence_interval(values)
            record[metric] = {"mean": mean, "sd": sd, "ci95": half, "values": values}
        for cost in COST_KEYS:
            values = [r[cost] for r in done if r.get(cost) is not None]
            record[cost] = float(np.mean(values)) if values else None
        out.append(record)
    if baseline is not None:
        add_deltas(rows, out, metrics, baseline)
    return out


def add_deltas(rows: list[dict[str, Any]], groups: list[dict[str, Any]], metrics: list[str], baseline: str) -> None:
    """`group[metric]["delta"]`: method minus baseline, per seed both finished, with mean, sd and 95% CI.

    Pairing by seed removes what the seeds share (initial weights, batch order), so the interval of the
    difference is the right one to read "did this method help", not two overlapping intervals.
    """
    value = {
        (*(r[k] for k in GROUP_KEYS), r["seed"], m): r[m]
        for r in rows
        if r["status"] == "finished"
        for m in metrics
        if r.get(m) is not None
    }
    for group in groups:
        if group["method"] == baseline:
            continue
        base_key = (group["teacher"], group["student"], baseline, group["hyperparameters"])
        for metric in metrics:
            diffs = [
                value[(*(group[k] for k in GROUP_KEYS), seed, metric)] - value[(*base_key, seed, metric)]
                for seed in group["seeds"]
                if (*base_key, seed, metric) in value and (*(group[k] for k in GROUP_KEYS), seed, metric) in value
            ]
            if diffs:
                mean, sd, half = confidence_interval(diffs)
                group[metric]["delta"] = {"vs": baseline, "mean": mean, "sd": sd, "ci95": half, "values": diffs}


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    # Six decimals: percentages computed as 100 * a fraction end in float noise (54.50000000000001).
    writer.writerows({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def write_results(study_dir: str | Path, rows: list[dict[str, Any]], groups: list[dict[str, Any]]) -> dict[str, Path]:
    """`results/runs.csv`, `results/groups.csv` and `results/groups.json` of a study; returns their paths."""
    out = Path(study_dir) / "results"
    metrics = metric_columns(rows)
    run_columns = ["id", *GROUP_KEYS, "seed", "status", *metrics, "best_epoch", *COST_KEYS]
    flat = []
    for group in groups:
        row = {k: group[k] for k in (*GROUP_KEYS, "n", "planned", *COST_KEYS)}
        for metric in metrics:
            for stat in ("mean", "sd", "ci95"):
                row[f"{metric} {stat}"] = group[metric][stat]
            delta = group[metric].get("delta")
            for stat in ("mean", "sd", "ci95"):
                row[f"{metric} delta {stat}"] = delta[stat] if delta else None
        flat.append(row)
    group_columns = [
        *GROUP_KEYS,
        "n",
        "planned",
        *(f"{m} {s}" for m in metrics for s in ("mean", "sd", "ci95", "delta mean", "delta sd", "delta ci95")),
        *COST_KEYS,
    ]
    paths = {"runs": out / "runs.csv", "groups": out / "groups.csv", "json": out / "groups.json"}
    write_text_atomically(paths["runs"], _csv(rows, run_columns))
    write_text_atomically(paths["groups"], _csv(flat, group_columns))
    write_text_atomically(paths["json"], json.dumps(groups, indent=2) + "\n")
    return paths
