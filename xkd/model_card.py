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
from xkd.paths import model_key
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
    """Hugging Face model-card metadata: library, pipeline, tags, the teacher as `base_model`, the data set (its hub
    id only when the data came from the hub) and one model-index result per scored split."""
    task, student, method = summary["task"], summary["student"], summary["method"]["name"]
    hub_id = data_hub_id(summary)
    results = [
        {
            "task": {"type": "text-classification"},
            "dataset": {**dataset_entry(summary, hub_id), "split": split},
            "metrics": [
                {"type": name, "value": round(value, 4), "name": f"{split} {name}"}
                for name, value in shown_metrics(metrics).items()
            ],
        }
        for part in ("test", "validation")
        for split, metrics in summary.get(part, {}).items()
    ]
    meta: dict[str, Any] = {
        "library_name": "transformers" if student["name"] in TRANSFORMER_STUDENTS else "xkd",
        "pipeline_tag": "text-classification",
        "tags": ["xkd", "knowledge-distillation", f"student-{student['name']}", f"method-{method}"],
        "base_model": teacher_name(summary),
    }
    if hub_id is not None:
        meta["datasets"] = [hub_id]
    meta["metrics"] = sorted({m["type"] for r in results for m in r["metrics"]})
    meta["model-index"] = [{"name": f"{student['name']}-{student['layers']}-{method}-{task}", "results": results}]
    return meta


def data_hub_id(summary: dict[str, Any]) -> str | None:
    """The hub id of the gold data when it came from the hub (`data.source` is `hub:<id>`), else None: a run on
    local files names no hub data set, whatever its task's registered hub copy."""
    source = summary.get("data", {}).get("source", "")
    return source.removeprefix("hub:") if source.startswith("hub:") else None


def dataset_entry(summary: dict[str, Any], hub_id: str | None) -> dict[str, Any]:
    task = summary["task"]
    if hub_id is None:
        return {"name": f"{task} (local files)", "type": task}
    entry = {"name": task, "type": hub_id}
    registered = TASKS.get(task) if task in TASKS else None
    if registered and registered.hub_config:
        entry["config"] = registered.hub_config
    return entry


def teacher_name(summary: dict[str, Any]) -> str | list[str]:
    """The teacher as a hub id or an absolute path (a relative one means nothing beside the copied student); an
    ensemble's members in order."""
    source = summary["teacher"]["source"]
    if isinstance(source, list):
        return [model_key(s) for s in source]
    return model_key(str(source))


def plural(n: int | None, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def body(summary: dict[str, Any], config: dict[str, Any]) -> str:
    student = summary["student"]
    teachers = teacher_name(summary)
    named = ", ".join(teachers) if isinstance(teachers, list) else teachers
    title = f"# {student['name']} ({plural(student['layers'], 'layer')}) distilled from {named}"
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


def data_line(summary: dict[str, Any], config: dict[str, Any]) -> str:
    """Where the data came from (a local directory or the hub id) and each split's rows as used."""
    data = summary.get("data", {})
    hub_id, source = data_hub_id(summary), data.get("source")
    where = f"the hub's `{hub_id}`" if hub_id else (f"local files in `{source}`" if source else "its data")
    splits = ", ".join(f"{name} {rows:,}" for name, rows in data.get("splits", {}).items())
    transfer = data.get("transfer", 0)
    return (
        f"- Data: task `{summary['task']}`, {where}"
        + (f" ({splits} rows)" if splits else "")
        + (f", and {transfer:,} teacher-labelled transfer texts" if transfer else "")
        + (
            f" (augmentation `{config['augment']}` x{config['augment_factor']})"
            if config.get("augment") != "none"
            else ""
        )
        + f"; texts cut at {config.get('max_length')} tokens."
    )


def training_line(summary: dict[str, Any], config: dict[str, Any]) -> str:
    steps = config.get("max_steps")
    length = plural(config.get("epochs"), "epoch") + (
        f", at most {plural(steps, 'step')} (`--max-steps`)" if steps else ""
    )
    stopped = f" (stopped early at step {summary['stopped_early']['step']})" if summary.get("stopped_early") else ""
    return (
        f"- Training: {length}, batch {config.get('batch_size')}, seed {config.get('seed')}; the best validation "
        f"score came at epoch {summary.get('best_epoch')}{stopped}; "
        f"{duration(summary.get('train_seconds', 0))} of student training on {summary.get('device', 'cpu')}."
    )


def how_made(summary: dict[str, Any], config: dict[str, Any]) -> list[str]:
    layers = summary["teacher"]["layers"]
    teachers = teacher_name(summary)
    named = ", ".join(f"`{t}`" for t in teachers) if isinstance(teachers, list) else f"`{teachers}`"
    lines = [
        f"- Teacher: {named} (" + (plural(layers, "layer") if layers else "saved outputs, no layers") + ").",
        f"- Student: `{summary['student']['name']}` with options `{json.dumps(config.get('student_options', {}))}`"
        + (f", vocabulary `{summary['student']['vocab']}`" if summary["student"].get("vocab") else "")
        + ".",
        f"- Method: `{summary['method']['name']}`, options `{json.dumps(config.get('method_options', {}))}`"
        + (f", temperature {config['temperature']}" if config.get("temperature") is not None else "")
        + (f", alpha {config['alpha']}" if config.get("alpha") is not None else "")
        + ".",
        data_line(summary, config),
        training_line(summary, config),
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
        lines += [
            "",
            'Load the module itself with `xkd.students.load_student(".")`: it returns the student (a torch module',
            "whose forward pass gives an `xkd.Trace`: logits and every layer's sentence vector).",
        ]
    return lines
