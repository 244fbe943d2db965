"""CPU inference latency of a teacher and saved students on real examples, at batch 1 and 32.

    python benchmarks/latency.py --teacher DIR --task mr STUDENT_DIR [STUDENT_DIR ...]

Median of repeated forward passes per model, one model at a time; prints a JSON object and a Markdown table
with parameter counts and the teacher/student speed-up.
"""

from __future__ import annotations

import json

import click
import torch

from xkd.data import Collator, encode, load_splits
from xkd.distill import separate_roles
from xkd.latency import cpu_latency_ms
from xkd.students import load_student
from xkd.tasks import get_task
from xkd.teachers import load_teacher
from xkd.training import parameter_count


@click.command()
@click.option("--teacher", required=True)
@click.option("--task", default="mr", show_default=True)
@click.option("--data-dir", default=None)
@click.option("--max-length", default=64, show_default=True)
@click.option("--repeats", default=20, show_default=True)
@click.argument("students", nargs=-1)
def main(teacher, task, data_dir, max_length, repeats, students) -> None:
    spec, raw = load_splits(get_task(task), data_dir)
    models = {"teacher": load_teacher(teacher, spec)}
    models.update({path.rstrip("/").split("/")[-2]: load_student(path) for path in students})
    rows = {}
    for name, model in models.items():
        separate = separate_roles(model, "m")
        tokenizers = {"m": model.tokenizer}
        split = encode(raw[spec.validation_splits[0]], spec, tokenizers, max_length, separate)
        collate = Collator(tokenizers, separate)
        rows[name] = {"parameters": parameter_count(model)}
        for size in (1, 32):
            batch = collate([split[i] for i in range(size)])["m"]
            rows[name][f"batch_{size}_ms"] = cpu_latency_ms(model, batch, repeats=repeats)
    base = rows["teacher"]
    for row in rows.values():
        for size in (1, 32):
            row[f"speedup_{size}"] = round(base[f"batch_{size}_ms"] / row[f"batch_{size}_ms"], 1)
    click.echo(json.dumps({"threads": torch.get_num_threads(), "max_length": max_length, "models": rows}, indent=2))
    click.echo("\n| model | parameters | batch 1 (ms) | batch 32 (ms) | speed-up 1 / 32 |\n|---|---|---|---|---|")
    for name, r in rows.items():
        click.echo(
            f"| {name} | {r['parameters'] / 1e6:.2f}M | {r['batch_1_ms']:.2f} | {r['batch_32_ms']:.1f} "
            f"| {r['speedup_1']}x / {r['speedup_32']}x |"
        )


if __name__ == "__main__":
    main()
