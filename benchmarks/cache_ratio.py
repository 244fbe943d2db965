"""One training epoch with the teacher cache vs one epoch of the student alone, through xkd's real training loop.

Both runs use the same student initialisation, batches, optimiser and per-epoch validation; the only difference
is the loss: vanilla KD reading the teacher's logits from the cache, or CE alone with no teacher. The cache is
built first (and timed apart): it is paid once per teacher, task and length, not per run.

    python benchmarks/cache_ratio.py --teacher DIR --student bert-k --student-layers 2
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from pathlib import Path

import click
from datasets import DatasetDict

from xkd.config import DistillConfig
from xkd.data import Collator, encode, load_splits, separate_roles
from xkd.methods import get_method
from xkd.students import build_student
from xkd.students.configured import student_settings
from xkd.tasks import get_task
from xkd.teacher_cache import open_or_build
from xkd.teachers import load_teacher
from xkd.training import TrainJob, train


def epoch_ratio(
    teacher_dir: str,
    task: str = "mr",
    data_dir: str | None = None,
    student: str = "bert-k",
    student_layers: int = 2,
    student_options: dict | None = None,
    batch_size: int = 32,
    lr: float = 1e-4,
    max_length: int = 64,
    max_steps: int | None = None,
    cache_root: str | None = None,
) -> dict:
    spec, raw = load_splits(get_task(task), data_dir)
    teacher = load_teacher(teacher_dir, spec)
    model = build_student(
        student,
        teacher,
        spec,
        [t for c in spec.text_columns for t in raw["train"][c]],
        layers=student_layers,
        log=lambda m: None,
        **(student_options or {}),
    )
    tokenizers = {"teacher": teacher.tokenizer, "student": model.tokenizer}
    separate = separate_roles(model)
    splits = DatasetDict({n: encode(s, spec, tokenizers, max_length, separate) for n, s in raw.items()})
    collator = Collator(tokenizers, separate)
    root = Path(cache_root or tempfile.mkdtemp(prefix="xkd-bench-cache-"))  # removed at the end unless given
    start = time.perf_counter()
    cache = open_or_build(teacher, splits, collator, root / "cache", {}, max_length, log=lambda m: None, progress=False)
    build_seconds = time.perf_counter() - start
    config = DistillConfig(epochs=1, batch_size=batch_size, lr=lr, max_steps=max_steps, progress=False)
    settings = student_settings(config)
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, method, kwargs in (
            ("student_only", "none", {}),
            ("cached_kd", "kd", {"teacher": teacher, "teacher_cache": cache}),
        ):
            terms = get_method(method).terms()
            job = TrainJob(copy.deepcopy(model), spec, splits, collator, terms, settings, Path(tmp) / name, **kwargs)
            summary = train(job)
            seconds[name] = summary["train_seconds"]
            steps = summary["steps"]
    if cache_root is None:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "student": f"{student}{student_layers if student == 'bert-k' else ''}",
        "steps": steps,
        "cache_build_seconds": round(build_seconds, 2),
        "epoch_seconds": seconds,
        "ratio_cached_to_student_only": round(seconds["cached_kd"] / seconds["student_only"], 3),
    }


@click.command()
@click.option("--teacher", required=True, help="Fine-tuned teacher directory.")
@click.option("--task", default="mr", show_default=True)
@click.option("--data-dir", default=None)
@click.option("--student", default="bert-k", show_default=True)
@click.option("--student-layers", default=2, show_default=True)
@click.option("-S", "student_options", multiple=True, help="Student option KEY=VALUE.")
@click.option("--lr", default=1e-4, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Cap each epoch (quick check).")
def main(teacher, task, data_dir, student, student_layers, student_options, lr, max_steps) -> None:
    options = dict(pair.split("=", 1) for pair in student_options)
    result = epoch_ratio(teacher, task, data_dir, student, student_layers, options, lr=lr, max_steps=max_steps)
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
