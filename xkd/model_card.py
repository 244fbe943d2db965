"""A model card (`README.md` in Hugging Face's format) for every saved student, written from the run's own files.

A student leaves the run directory alone (copied to a server, pushed to the hub); its card says what it is and how
well it does without the run beside it: the YAML header (task, metrics, library, base model) that the hub indexes,
then the teacher, method and options, data, metrics next to the teacher's, size, latency and how to use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from xkd.files import write_text_atomically
from xkd.metrics import shown_metrics
from xkd.tasks import TASKS

CARD_FILE = "README.md"
TRANSFORMER_STUDENTS = ("bert-k", "distilroberta")  # saved as plain Hugging Face checkpoints


def write_model_card(run_dir: str | Path) -> Path:
    """Write `RUN_DIR/student/README.md` from the run's `summary.json` and `config.json`."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    path = Path(summary["student"]["dir"]) / CARD_FILE
    return write_text_atomically(path, model_card(summary, config))


def model_card(summary: dict[str, Any], config: dict[str, Any]) -> str:
    """The card's text: YAML header, then the body."""
    return f"---\n{yaml.safe_dump(header(summary, config), sort_keys=False)}---\n\n{body(summary, config)}"


def header(summary: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Hugging Face model-card metadata: library, pipeline, tags, data set and the test results (model-index)."""
    task, student, method = summary["task"], summary["student"], summary["method"]["name"]
    registered = TASKS.get(task) if task in TASKS else None
    dataset = {"name": task, "type": (registered.hub_path if registered and registered.hub_path else task)}
    if registered and registered.hub_config:
        dataset["config"] = registered.hub_config
    results = [
        {"type": name, "value": round(value, 4), "name": f"{split} {name}"}
        for part in ("test", "validation")
        for split, metrics in summary.get(part, {}).items()
        for name, value in shown_metrics(metrics).items()
    ]
    meta: dict[str, Any] = {
        "library_name": "transformers" if student["name"] in TRANSFORMER_STUDENTS else "xkd",
        "pipeline_tag": "text-classification",
        "tags": ["xkd", "knowledge-distillation", f"student-{student['name']}", f"method-{method}"],
        "datasets": [dataset["type"]],
        "metrics": sorted({r["type"] for r in results}),
    }
    if student["name"] in TRANSFORMER_STUDENTS:
        meta["base_model"] = str(summary["teacher"]["source"])
    meta["model-index"] = [
        {
            "name": f"{student['name']}-{student['layers']}-{method}-{task}",
            "results": [{"task": {"type": "text-classification"}, "dataset": dataset, "metrics": results}],
        }
    ]
    return meta


def body(summary: dict[str, Any], config: dict[str, Any]) -> str:
    teacher, student = summary["teacher"], summary["student"]
    title = f"# {student['name']} ({student['layers']} layers) distilled from {teacher['source']}"
    title += f" on {summary['task']}"
    lines = [title, "", made_by(summary), "", "## Results", "", *results_table(summary), "", *subset_note(summary)]
    lines += ["## How it was made", "", *how_made(summary, config), ""]
    lines += ["## Use it", "", *usage(summary), ""]
    return "\n".join(lines)


def made_by(summary: dict[str, Any]) -> str:
    method = summary["method"]
    terms = ", ".join(f"{name} x {weight:g}" for name, weight in method["terms"].items())
    return (
        "Made by xkd (cross-architecture knowledge distillation): `xkd distill` with the "
        f"`{method['name']}` method (loss terms: {terms})."
    )


def results_table(summary: dict[str, Any]) -> list[str]:
    teacher, student = summary["teacher"], summary["student"]
    rows = ["| | teacher | this student |", "|---|---|---|"]
    for part in ("validation", "test"):
        for split, metrics in summary.get(part, {}).items():
            theirs = teacher.get("metrics", {}).get(split, {})
            for name, value in shown_metrics(metrics).items():
                other = f"{100 * theirs[name]:.2f}" if name in theirs else "-"
                rows.append(f"| {split} {name} (%) | {other} | {100 * value:.2f} |")
    rows.append(f"| layers | {teacher['layers'] or 'n/a'} | {student['layers']} |")  # n/a: outside outputs
    theirs = f"{teacher['parameters'] / 1e6:.1f}M" if teacher["parameters"] is not None else "n/a"
    rows.append(f"| parameters | {theirs} | {student['parameters'] / 1e6:.2f}M |")
    for size, ms in summary.get("latency_ms", {}).get("teacher", {}).items():
        mine = summary["latency_ms"]["student"][size]
        rows.append(f"| CPU latency, {size.replace('_', ' ')} (ms) | {ms:.1f} | {mine:.1f} ({ms / mine:.1f}x faster) |")
    return rows


def subset_note(summary: dict[str, Any]) -> list[str]:
    """For a run on part of its data (`summary["subset"]`): what the metrics above were computed on."""
    subset = summary.get("subset")
    if not subset:
        return []
    rows, full = subset["rows"], subset.get("full_rows", {})

    def kept(name: str) -> str:
        return f"{name} {rows[name]}" + (f" of {full[name]}" if name in full else "")

    if subset.get("max_examples") is not None:
        n = subset["max_examples"]
        return [
            f"These metrics are on a subset of at most {n} random examples per split (`--max-examples {n}`: "
            f"{', '.join(kept(name) for name in rows)} rows), validation and test included, not on the full "
            "splits.",
            "",
        ]
    return [
        f"The student trained on a subset ({kept('train')} training rows, `--max-train-examples "
        f"{subset['max_train_examples']}`); the metrics are on the full validation and test splits.",
        "",
    ]


def how_made(summary: dict[str, Any], config: dict[str, Any]) -> list[str]:
    data = summary.get("data", {})
    transfer = data.get("transfer", 0)
    lines = [
        f"- Teacher: `{summary['teacher']['source']}` ({summary['teacher']['layers'] or 'saved outputs, no'} layers).",
        f"- Student: `{summary['student']['name']}` with options `{json.dumps(config.get('student_options', {}))}`"
        + (f", vocabulary `{summary['student']['vocab']}`" if summary["student"].get("vocab") else "")
        + ".",
        f"- Method: `{summary['method']['name']}`, options `{json.dumps(config.get('method_options', {}))}`"
        + (f", temperature {config['temperature']}" if config.get("temperature") is not None else "")
        + (f", alpha {config['alpha']}" if config.get("alpha") is not None else "")
        + ".",
        f"- Data: task `{summary['task']}`, {data.get('train', '?')} labelled training examples"
        + (f" and {transfer} teacher-labelled transfer examples" if transfer else "")
        + (
            f" (augmentation `{config['augment']}` x{config['augment_factor']})"
            if config.get("augment") != "none"
            else ""
        )
        + f"; texts cut at {config.get('max_length')} tokens.",
        f"- Training: {config.get('epochs')} epochs, batch {config.get('batch_size')}, seed {config.get('seed')}; "
        f"the best validation score came at epoch {summary.get('best_epoch')}"
        + (f" (stopped early at step {summary['stopped_early']['step']})" if summary.get("stopped_early") else "")
        + f"; {summary.get('train_seconds', 0) / 60:.1f} min of student training on {summary.get('device', 'cpu')}.",
    ]
    return lines


def usage(summary: dict[str, Any]) -> list[str]:
    lines = [
        "```bash",
        'xkd predict --model . "a text to label"',
        "```",
        "",
        "```python",
        "import xkd",
        "",
        'predict = xkd.Predictor(".")  # this directory',
        'print(predict(["a text to label"]))',
        "```",
    ]
    if summary["student"]["name"] in TRANSFORMER_STUDENTS:
        lines += [
            "",
            "It is also a plain Hugging Face checkpoint:",
            "",
            "```python",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "",
            'model = AutoModelForSequenceClassification.from_pretrained(".")',
            'tokenizer = AutoTokenizer.from_pretrained(".")',
            "```",
        ]
    else:
        lines += ["", 'Load the module itself with `xkd.students.load_student(".")` (returns an `xkd.Trace`).']
    return lines
