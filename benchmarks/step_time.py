"""Training-step time of distillation methods with the online teacher, as ratios to vanilla KD.

Same teacher, same student initialisation, same batches; methods are timed in alternating rounds so that
machine drift hits all of them alike. Prints a JSON object and a Markdown table.

    python benchmarks/step_time.py --teacher DIR --task mr --methods kd,universal --steps 30 --rounds 3
"""

from __future__ import annotations

import json
import statistics
import time

import click
import torch
from datasets import DatasetDict

from xkd.data import Collator, encode, load_splits, make_loader
from xkd.methods import TermContext, get_method, weighted_loss
from xkd.students import build_student
from xkd.tasks import get_task
from xkd.teachers import load_teacher


@click.command()
@click.option("--teacher", required=True, help="Fine-tuned teacher directory (with pseudo heads for universal).")
@click.option("--task", default="mr", show_default=True)
@click.option("--data-dir", default=None)
@click.option("--methods", default="kd,universal", show_default=True)
@click.option("--student-layers", default=2, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--max-length", default=64, show_default=True)
@click.option("--steps", default=30, show_default=True, help="Timed steps per method per round.")
@click.option("--rounds", default=3, show_default=True)
def main(teacher, task, data_dir, methods, student_layers, batch_size, max_length, steps, rounds) -> None:
    result = time_methods(
        teacher, task, data_dir, methods.split(","), student_layers, batch_size, max_length, steps, rounds
    )
    names = list(result["seconds_per_step"])
    click.echo(json.dumps(result, indent=2))
    click.echo(f"\n| method | s/step | ratio to {names[0]} |\n|---|---|---|")
    for n in names:
        click.echo(f"| {n} | {result['seconds_per_step'][n]:.4f} | {result[f'ratio_to_{names[0]}'][n]:.3f} |")


def time_methods(
    teacher: str,
    task: str = "mr",
    data_dir: str | None = None,
    names: list[str] | tuple[str, ...] = ("kd", "universal"),
    student_layers: int = 2,
    batch_size: int = 32,
    max_length: int = 64,
    steps: int = 30,
    rounds: int = 3,
) -> dict:
    """Median seconds per training step of each method (online teacher), and ratios to the first method."""
    spec, raw = load_splits(get_task(task), data_dir)
    model = load_teacher(teacher, spec)
    setups = {}
    for name in names:
        torch.manual_seed(0)
        student = build_student("bert-k", model, spec, layers=student_layers)
        context = TermContext(student.num_layers, student.layer_width, model.num_layers, model.layer_width, 2)
        terms = get_method(name).terms(context)
        params = list(student.parameters()) + [p for t in terms if t.module for p in t.module.parameters()]
        setups[name] = (student, terms, torch.optim.AdamW(params, lr=1e-4))
    tokenizers = {"teacher": model.tokenizer, "student": model.tokenizer}
    train = DatasetDict({"train": encode(raw["train"], spec, tokenizers, max_length)})["train"]
    loader = make_loader(train, Collator(tokenizers), batch_size, shuffle=True, seed=0)
    batches = [b for _, b in zip(range(steps + 2), loader, strict=False)]

    def step(name: str, batch: dict) -> None:
        student, terms, optimizer = setups[name]
        with torch.no_grad():
            t_trace = model(batch["teacher"])
        loss, _ = weighted_loss(terms, student(batch["student"]), t_trace, batch["labels"], spec)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for name in names:  # warm-up
        for batch in batches[:2]:
            step(name, batch)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for name in names:
            start = time.perf_counter()
            for batch in batches[2:]:
                step(name, batch)
            times[name].append((time.perf_counter() - start) / steps)
    base = statistics.median(times[names[0]])
    result = {
        "teacher": teacher,
        "batch_size": batch_size,
        "steps_per_round": steps,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "seconds_per_step": {n: round(statistics.median(t), 4) for n, t in times.items()},
        f"ratio_to_{names[0]}": {n: round(statistics.median(t) / base, 3) for n, t in times.items()},
    }
    return result


if __name__ == "__main__":
    main()
