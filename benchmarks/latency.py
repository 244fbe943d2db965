"""CPU inference latency of a teacher and saved students on real examples, at batch 1 and 32, PyTorch and ONNX.

    python benchmarks/latency.py --teacher DIR --task mr STUDENT_DIR [STUDENT_DIR ...]

Median of repeated forward passes per model, one model at a time; each model is also exported to ONNX
(`xkd.export`, checked against PyTorch) and timed in ONNX Runtime on the same batches. Prints a JSON object and a
Markdown table with parameter counts and the teacher/student speed-ups.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import torch

from xkd.data import Collator, encode, load_splits
from xkd.distill import separate_roles
from xkd.export import export_onnx, onnx_latency_ms
from xkd.latency import cpu_latency_ms
from xkd.students import load_student
from xkd.tasks import get_task
from xkd.teachers import load_teacher
from xkd.training import parameter_count


def latency_rows(
    teacher: str,
    students: list[str],
    task: str = "mr",
    data_dir: str | None = None,
    max_length: int = 64,
    repeats: int = 20,
    onnx: bool = True,
) -> dict:
    spec, raw = load_splits(get_task(task), data_dir)
    models = {"teacher": load_teacher(teacher, spec)}
    models.update({path.rstrip("/").split("/")[-2]: load_student(path) for path in students})
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            separate = separate_roles(model, "m")
            tokenizers = {"m": model.tokenizer}
            split = encode(raw[spec.validation_splits[0]], spec, tokenizers, max_length, separate)
            collate = Collator(tokenizers, separate)
            rows[name] = {"parameters": parameter_count(model)}
            graph = None
            if onnx:
                report = export_onnx(model, Path(tmp) / f"{name}.onnx")
                graph, inputs = report["onnx"], report["inputs"]
            for size in (1, 32):
                batch = collate([split[i] for i in range(size)])["m"]
                rows[name][f"batch_{size}_ms"] = cpu_latency_ms(model, batch, repeats=repeats)
                if graph:
                    feed = {k: v for k, v in batch.items() if k in inputs}
                    rows[name][f"onnx_batch_{size}_ms"] = round(onnx_latency_ms(graph, feed, repeats), 3)
    base = rows["teacher"]
    for row in rows.values():
        for key in [k for k in row if k.endswith("_ms")]:
            row[key.replace("_ms", "_speedup")] = round(base[key] / row[key], 1)
    return {"threads": torch.get_num_threads(), "max_length": max_length, "models": rows}


def markdown(result: dict) -> str:
    lines = [
        "| model | parameters | batch 1 (ms) | batch 32 (ms) | ONNX batch 1 (ms) | ONNX batch 32 (ms) | speed-up vs "
        "teacher, batch 1 / 32 (PyTorch; ONNX) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["models"].items():
        onnx = [f"{r.get(f'onnx_batch_{s}_ms', float('nan')):.2f}" for s in (1, 32)]
        speed = f"{r['batch_1_speedup']}x / {r['batch_32_speedup']}x"
        if "onnx_batch_1_speedup" in r:
            speed += f"; {r['onnx_batch_1_speedup']}x / {r['onnx_batch_32_speedup']}x"
        lines.append(
            f"| {name} | {r['parameters'] / 1e6:.2f}M | {r['batch_1_ms']:.2f} | {r['batch_32_ms']:.1f} | "
            f"{onnx[0]} | {onnx[1]} | {speed} |"
        )
    return "\n".join(lines)


@click.command()
@click.option("--teacher", required=True)
@click.option("--task", default="mr", show_default=True)
@click.option("--data-dir", default=None)
@click.option("--max-length", default=64, show_default=True)
@click.option("--repeats", default=20, show_default=True)
@click.option("--onnx/--no-onnx", default=True, show_default=True)
@click.argument("students", nargs=-1)
def main(teacher, task, data_dir, max_length, repeats, onnx, students) -> None:
    result = latency_rows(teacher, list(students), task, data_dir, max_length, repeats, onnx)
    click.echo(json.dumps(result, indent=2))
    click.echo("\n" + markdown(result))


if __name__ == "__main__":
    main()
