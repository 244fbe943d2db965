"""`xkd teacher`: fine-tune a pretrained encoder on a task, train its per-layer pseudo classifiers."""

from __future__ import annotations

import json

import click

from xkd.config import DEFAULTS
from xkd.errors import Interrupted

from .distill_options import CUSTOM_TASK_OPTIONS
from .errors import XKDGroup
from .options import (
    DATA_DIR_OPTION,
    PROGRESS_OPTION,
    apply,
    echo_err,
    given,
    max_examples_option,
    task_option,
)


@click.group(cls=XKDGroup)
def teacher() -> None:
    """Prepare teachers: fine-tune a pretrained encoder on a task, train its per-layer pseudo classifiers.

    \b
    Example:
      xkd teacher finetune --model sentence-transformers/all-MiniLM-L6-v2 --task mr --output-dir teachers/mr
      xkd teacher heads --teacher teachers/mr --task mr
    """


@teacher.command("finetune")
@click.option("--model", "model_name", required=True, help="Hub id or directory of a pretrained encoder.")
@task_option(required=True)
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where to save [default: runs/teacher-...].")
@DATA_DIR_OPTION
@click.option("--epochs", type=int, default=DEFAULTS.teacher_epochs, show_default=True)
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size, show_default=True)
@click.option("--lr", type=float, default=DEFAULTS.teacher_lr, show_default=True)
@click.option("--max-length", type=int, default=DEFAULTS.max_length, show_default=True)
@click.option("--max-steps", type=int, help="Stop after this many steps (quick runs).")
@max_examples_option()
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option(
    "--checkpoint-every",
    type=int,
    default=DEFAULTS.checkpoint_every,
    show_default=True,
    help="Also write a resumable checkpoint every N steps (0: epoch ends only; a stop request always writes one).",
)
@click.option("--overwrite/--no-overwrite", default=False, help="Replace a teacher already in --output-dir.")
@PROGRESS_OPTION
@apply(CUSTOM_TASK_OPTIONS)
def teacher_finetune(model_name: str, task: str, output_dir: str | None, data_dir: str | None, **options) -> None:
    """Fine-tune MODEL on TASK and save it with save_pretrained plus metrics.json (validation metrics).

    Interrupted (Ctrl-C, a kill), it keeps a checkpoint: the same command continues from it.

    \b
    Example:
      xkd teacher finetune --model sentence-transformers/all-MiniLM-L6-v2 --task mr --output-dir teachers/minilm-mr
    """
    from xkd.data import check_classes, load_splits
    from xkd.tasks import resolve_task
    from xkd.teachers.finetune import finetune_config, finetune_into

    cfg = finetune_config(model_name, task, data_dir, given(options))
    spec, raw = load_splits(resolve_task(cfg), data_dir, cfg.max_examples)
    check_classes(spec, raw, data_dir)
    try:
        out, summary = finetune_into(cfg, spec, raw, output_dir, options["overwrite"], log=echo_err)
    except Interrupted as e:
        raise e.continue_with("the same xkd teacher finetune command (it continues from its last checkpoint)") from None
    click.echo(
        json.dumps({"output_dir": str(out), "validation": summary["validation"], "test": summary["test"]}, indent=2)
    )


@teacher.command("heads")
@click.option("--teacher", "teacher_path", required=True, help="A fine-tuned teacher (directory or hub id).")
@task_option(required=True)
@click.option("--kind", type=click.Choice(["linear", "pooler"]), default=DEFAULTS.teacher_heads, show_default=True)
@click.option(
    "--epochs", type=int, default=DEFAULTS.heads_epochs, show_default=True, help="Epochs over the stored layer vectors."
)
@click.option("--lr", type=float, default=DEFAULTS.heads_lr, show_default=True)
@DATA_DIR_OPTION
@click.option(
    "--max-length",
    type=int,
    help=f"Maximum tokens [default: the teacher's training length, else {DEFAULTS.max_length}].",
)
@max_examples_option()
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@PROGRESS_OPTION
@apply(CUSTOM_TASK_OPTIONS)
def teacher_heads(
    teacher_path, task, kind, epochs, lr, data_dir, max_length, max_examples, seed, progress, **custom
) -> None:
    """Train a pseudo classifier on every layer of a fine-tuned teacher, its body frozen.

    One frozen pass stores each layer's sentence vector; all heads then train together on those vectors. The
    heads are saved next to the teacher (pseudo_heads.safetensors + pseudo_heads.json with each head's
    validation metrics) and load with it from then on.

    \b
    Example:
      xkd teacher heads --teacher runs/teacher-mr --task mr
    """
    from xkd.config import DistillConfig
    from xkd.data import check_classes, load_splits
    from xkd.errors import XKDError
    from xkd.predict import saved_max_length
    from xkd.processes import process_device
    from xkd.tasks import resolve_task
    from xkd.teachers import heads_dir, load_teacher, train_heads
    from xkd.teachers.heads import heads_info

    if epochs < 1 or not lr > 0:
        raise XKDError("--epochs must be at least 1 and --lr > 0")
    spec, raw = load_splits(resolve_task(DistillConfig(task=task, **given(custom))), data_dir, max_examples)
    check_classes(spec, raw, data_dir)
    model = load_teacher(teacher_path, spec, echo_err).to(process_device())  # layer vectors from the GPU if any
    length = saved_max_length(model.meta, max_length)
    heads, metrics = train_heads(
        model,
        spec,
        raw,
        length,
        kind=kind,
        epochs=epochs,
        lr=lr,
        seed=seed,
        progress=progress,
        log=echo_err,
    )
    directory = heads.save(heads_dir(teacher_path), **heads_info(metrics, spec, max_length=length))
    click.echo(json.dumps({"heads_dir": str(directory), "layer_metrics": metrics}, indent=2))
