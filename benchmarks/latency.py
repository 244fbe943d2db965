"""CPU inference latency and validation accuracy of a teacher and saved students, at batch 1 and 32: PyTorch float,
ONNX Runtime float and ONNX Runtime int8, side by side.

    python benchmarks/latency.py --teacher DIR --task mr STUDENT_DIR [STUDENT_DIR ...]
    python benchmarks/latency.py --teacher DIR --task mr --examples 32 --repeats 2 --out /tmp/smoke STUDENT_DIR

Median of repeated forward passes per model, one model at a time, on the first real validation examples; each
model is also exported to ONNX (`xkd.export`, checked against PyTorch), quantized to int8 by ONNX Runtime's
quantizer (`--int8 dynamic|static|off`; `xkd.export.export_int8`) and timed in ONNX Runtime on the same batches.
Validation accuracy is measured for each form, so a speed-up is never read without its cost. Prints a JSON object
and a Markdown table (parameters, accuracies, latencies, teacher/student speed-ups) and writes both to
benchmarks/results/latency-<task>.{json,md} (or --out).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import torch
from datasets import DatasetDict

from xkd.data import Collator, encode, load_splits, make_loader, separate_roles
from xkd.evaluation import evaluate
from xkd.export import export_int8, export_onnx, graph_feed, onnx_latency_ms
from xkd.latency import cpu_latency_ms
from xkd.students import load_student
from xkd.tasks import Task, get_task
from xkd.teachers import load_teacher
from xkd.training import parameter_count

RESULTS = Path(__file__).resolve().parent / "results"
FORMS = (("batch", "PyTorch"), ("onnx_batch", "ONNX"), ("int8_batch", "ONNX int8"))  # row-key prefix, column name


def latency_rows(
    teacher: str,
    students: list[str],
    task: str = "mr",
    data_dir: str | None = None,
    max_length: int = 64,
    repeats: int = 20,
    onnx: bool = True,
    int8: str = "dynamic",
    examples: int | None = None,
) -> dict:
    """One row per model: parameters, validation accuracy and latency of each form, speed-ups over the teacher.

    `int8` is the calibration ("dynamic" or "static", which calibrates on the training split) or "off";
    `examples` caps every split (a quick check of the benchmark, not a measurement).
    """
    spec, raw = load_splits(get_task(task), data_dir, examples)
    models = {"teacher": load_teacher(teacher, spec)}
    models.update({path.rstrip("/").split("/")[-2]: load_student(path) for path in students})
    int8 = int8 if onnx else "off"
    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            name: model_row(name, model, spec, raw, Path(tmp), max_length, repeats, onnx, int8)
            for name, model in models.items()
        }
    base = rows["teacher"]
    for row in rows.values():
        for key in [k for k in row if k.endswith("_ms")]:
            row[key.replace("_ms", "_speedup")] = round(base[key] / row[key], 1)
    validation = spec.validation_splits[0]
    return {
        "threads": torch.get_num_threads(),
        "max_length": max_length,
        "task": spec.name,
        "validation_examples": len(raw[validation]),
        "int8": int8,
        "models": rows,
    }


def model_row(
    name: str,
    model: torch.nn.Module,
    spec: Task,
    raw: DatasetDict,
    tmp: Path,
    max_length: int,
    repeats: int,
    onnx: bool,
    int8: str,
) -> dict:
    """Measure one model in every form asked for; its graphs live in `tmp` only for the run."""
    separate = separate_roles(model, "m")
    tokenizers = {"m": model.tokenizer}
    split = encode(raw[spec.validation_splits[0]], spec, tokenizers, max_length, separate)
    collate = Collator(tokenizers, separate)
    row: dict = {"parameters": parameter_count(model)}
    accuracy = evaluate(model, make_loader(split, collate, 64, shuffle=False), spec, role="m").get("accuracy")
    row["accuracy"] = None if accuracy is None else round(float(accuracy), 4)
    graphs: dict[str, str] = {}
    inputs: list[str] = []
    if onnx:
        report = export_onnx(model, tmp / f"{name}.onnx")
        graphs["onnx"], inputs = report["onnx"], report["inputs"]
        if int8 != "off":
            quantized = export_int8(
                model, report["onnx"], tmp / f"{name}.int8.onnx", int8, spec, raw, max_length, log=lambda m: None
            )
            graphs["int8"] = quantized["path"]
            row.update(int8_mode=quantized["mode"], int8_agreement=quantized.get("agreement"))
            row.update(onnx_accuracy=quantized.get("accuracy_float"), int8_accuracy=quantized.get("accuracy_int8"))
    pad = model.tokenizer.pad_token_id or 0
    for size in (1, 32):
        batch = collate([split[i] for i in range(min(size, len(split)))])["m"]
        row[f"batch_{size}_ms"] = cpu_latency_ms(model, batch, repeats=repeats)
        for form, graph in graphs.items():
            feed = graph_feed(batch, inputs, pad)  # int8 graphs keep the float graph's inputs
            row[f"{form}_batch_{size}_ms"] = round(onnx_latency_ms(graph, feed, repeats), 3)
    return row


def _cell(row: dict, key: str, pattern: str) -> str:
    value = row.get(key)
    return "–" if value is None else pattern.format(value)


def markdown(result: dict) -> str:
    """The result as one table: each quantity as PyTorch / ONNX / ONNX int8 ('–' where not measured)."""
    forms = " / ".join(label for _, label in FORMS)
    lines = [
        f"| model | parameters | validation accuracy ({forms}) | batch 1 ms ({forms}) | batch 32 ms ({forms}) | "
        f"speed-up vs teacher, batch 1 ({forms}) | speed-up vs teacher, batch 32 ({forms}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["models"].items():
        accuracy = " / ".join(_cell(r, key, "{:.2%}") for key in ("accuracy", "onnx_accuracy", "int8_accuracy"))
        times = [" / ".join(_cell(r, f"{prefix}_{s}_ms", "{:.2f}") for prefix, _ in FORMS) for s in (1, 32)]
        speed = [" / ".join(_cell(r, f"{prefix}_{s}_speedup", "{}x") for prefix, _ in FORMS) for s in (1, 32)]
        lines.append(
            f"| {name} | {r['parameters'] / 1e6:.2f}M | {accuracy} | {' | '.join(times)} | {' | '.join(speed)} |"
        )
    return "\n".join(lines)


def write_results(result: dict, out: Path) -> tuple[Path, Path]:
    """JSON and Markdown side by side: `out` names the JSON (a directory gets latency-<task>.json)."""
    if out.suffix != ".json":
        out = out / f"latency-{result['task']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = out.with_suffix(".md")
    header = f"# CPU latency and validation accuracy, {result['task']} ({result['threads']} threads)\n\n"
    table.write_text(header + markdown(result) + "\n")
    return out, table


@click.command()
@click.option("--teacher", required=True)
@click.option("--task", default="mr", show_default=True)
@click.option("--data-dir", default=None)
@click.option("--max-length", default=64, show_default=True)
@click.option("--repeats", default=20, show_default=True)
@click.option("--onnx/--no-onnx", default=True, show_default=True)
@click.option("--int8", type=click.Choice(["dynamic", "static", "off"]), default="dynamic", show_default=True)
@click.option("--examples", type=int, help="Use at most this many examples per split (a quick check).")
@click.option("--out", type=click.Path(), default=str(RESULTS), show_default=True, help="Directory or .json file.")
@click.argument("students", nargs=-1)
def main(teacher, task, data_dir, max_length, repeats, onnx, int8, examples, out, students) -> None:
    result = latency_rows(teacher, list(students), task, data_dir, max_length, repeats, onnx, int8, examples)
    click.echo(json.dumps(result, indent=2))
    click.echo("\n" + markdown(result))
    for path in write_results(result, Path(out)):
        click.echo(f"wrote {path}", err=True)


if __name__ == "__main__":
    main()
