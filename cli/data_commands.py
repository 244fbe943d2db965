"""Commands that show what a run would see: `xkd inspect` (a teacher/student pair) and `xkd augment` (a transfer
set)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from xkd.config import AUTO_AUGMENT, DEFAULTS

from .distill_options import CUSTOM_TASK_OPTIONS
from .options import (
    DATA_DIR_OPTION,
    PROGRESS_OPTION,
    apply,
    echo_err,
    echo_options,
    given,
    max_examples_option,
    parse_pairs,
    task_option,
)


@click.command("inspect")
@click.option("--teacher", multiple=True, help="Teacher [default: the quickstart's]; repeat it for an ensemble.")
@click.option("--teacher-weights", help="Ensemble: the members' weights W1,W2,... [default: equal].")
@click.option("--ensemble-average", type=click.Choice(["logits", "probabilities"]), default=DEFAULTS.ensemble_average,
              show_default=True)  # fmt: skip
@click.option("--student", default=DEFAULTS.student, show_default=True)
@task_option(default=DEFAULTS.task, show_default=True)
@click.option("--student-layers", type=int, default=DEFAULTS.student_layers, show_default=True)
@click.option("-S", "student_options", multiple=True, help="A student option as KEY=VALUE, repeatable.")
@DATA_DIR_OPTION
@click.option("--max-length", type=int, default=DEFAULTS.max_length, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of the table.")
@apply(CUSTOM_TASK_OPTIONS)
def inspect_command(
    teacher, teacher_weights, ensemble_average, student, task, student_layers, student_options, data_dir, max_length,
    as_json, **custom,
) -> None:  # fmt: skip
    """Run one batch through a teacher and a student and print layers, shapes, sizes and applicable methods.

    Nothing is trained or written.

    \b
    Example:
      xkd inspect --student cnn --student-layers 3 -S vectors=glove.6B.50d.txt
    """
    from xkd.config import DistillConfig, coerce_value
    from xkd.pairing import format_inspection, inspect_pair

    ensemble = {
        "ensemble_average": ensemble_average,
        "teacher_weights": coerce_value("teacher_weights", teacher_weights, "--teacher-weights") or [],
    }
    cfg = DistillConfig(
        task=task,
        student=student,
        student_layers=student_layers,
        student_options=parse_pairs(list(student_options)),
        data_dir=data_dir,
        max_length=max_length,
        **({"teacher": coerce_value("teacher", list(teacher), "--teacher")} if teacher else {}),
        **ensemble,
        **given(custom),
    ).validate()
    report = inspect_pair(cfg)
    click.echo(json.dumps(report, indent=2) if as_json else format_inspection(report))


@click.command("augment")
@click.option(
    "--augment",
    "recipe_name",
    help=f"Recipe: tang or tinybert (auto: {AUTO_AUGMENT}, as distill) [default: list the recipes].",
)
@task_option(default=DEFAULTS.task, show_default=True, help="Task whose training texts are augmented.")
@click.option("--augment-factor", "factor", type=int, default=DEFAULTS.augment_factor, show_default=True)
@click.option("-A", "pairs", multiple=True, help="A recipe option as KEY=VALUE, repeatable.")
@click.option("--augment-mlm", "mlm", help="tinybert: a masked LM proposing replacements.")
@click.option("-n", "shown", type=int, default=5, show_default=True, help="Training examples shown with copies.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the whole set (.tsv/.csv/.jsonl/.parquet).")
@DATA_DIR_OPTION
@click.option("--text-column", "text_columns", multiple=True, help="Custom task: a text column (twice for pairs).")
@max_examples_option("Augment at most this many training examples.")
@PROGRESS_OPTION
def augment_command(recipe_name, task, factor, pairs, mlm, shown, out, data_dir, text_columns, max_examples, progress):
    """Make (or show) the augmented transfer set `xkd distill --augment` would use; it is cached and reused.

    Without --augment, list the recipes with their options.

    \b
    Examples:
      xkd augment
      xkd augment --task mr --augment tang -n 5
      xkd augment --task mr --augment tinybert -A vectors=glove.6B.50d.txt --out mr-tinybert.parquet
    """
    from xkd.config import DistillConfig
    from xkd.data import load_splits, write_table
    from xkd.tasks import resolve_task
    from xkd.transfer.augment import RECIPES, augmented_set
    from xkd.transfer.sets import augment_values, check_transfer

    if not recipe_name:
        for name in RECIPES:
            recipe = RECIPES.get(name)
            click.echo(f"{name}: {recipe.summary}")
            echo_options(recipe.options_type.specs())
        return
    recipe_name = AUTO_AUGMENT if recipe_name == "auto" else recipe_name  # the set `xkd distill` makes by default
    cfg = DistillConfig(
        task=task,
        data_dir=data_dir,
        text_columns=list(text_columns) or None,
        augment=recipe_name,
        augment_factor=factor,
        augment_options=parse_pairs(list(pairs)),
        augment_mlm=mlm,
        max_examples=max_examples,
    ).validate()
    check_transfer(cfg)
    spec, raw = load_splits(resolve_task(cfg), data_dir, max_examples)
    train = raw["train"].select_columns(list(spec.text_columns)).to_pandas()
    frame, path = augmented_set(spec, train, recipe_name, augment_values(cfg), factor, echo_err, progress)
    if out:
        write_table(frame, Path(out))
        click.echo(f"wrote {len(frame)} augmented rows to {out}", err=True)
    for row in range(min(shown, len(train))):
        copies = frame[frame["source"] == row].head(3)
        for column in spec.text_columns:
            click.echo(f"{train[column].iloc[row]}")
            for text in copies[column]:
                click.echo(f"  -> {text}")
    click.echo(f"{len(frame)} rows in {path}", err=True)
