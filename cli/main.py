"""The `xkd` command line: the group, `xkd distill`, `xkd study` and `xkd report`; the other commands live in
their modules (cache, teacher, model, data, catalog) and are added here."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from xkd import __version__
from xkd.errors import Interrupted

from .cache_commands import cache
from .catalog_commands import methods_command, students_command, tasks_command
from .data_commands import augment_command, inspect_command
from .distill_options import DISTILL_GROUPS, DISTILL_OPTIONS, config_from
from .errors import XKDGroup
from .model_commands import eval_command, export_command, predict_command
from .options import apply_grouped, echo_err, given
from .teacher_commands import teacher


@click.group(cls=XKDGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xkd")
@click.option("--verbose", is_flag=True, help="Keep other libraries' warnings, load reports and progress bars.")
def cli(verbose: bool) -> None:
    """xkd: distil fine-tuned BERT/RoBERTa teachers into small students, layer by layer.

    \b
    Quickstart (offline; on 2 CPU cores about 18 minutes the first time, less once the teacher is cached):
      HF_HUB_OFFLINE=1 HF_HUB_CACHE=../shared/hf-hub XKD_DATA_DIR=../shared/data xkd distill
    """
    from xkd.log import quiet_libraries

    quiet_libraries(verbose)


@cli.command()
@apply_grouped(DISTILL_OPTIONS, DISTILL_GROUPS)
def distill(config_file: str | None, student_config: str | None, resume_dir: str | None, **options) -> None:
    """Distil a teacher into a student on a task; with no options, run the quickstart recipe.

    The quickstart fine-tunes all-MiniLM-L6-v2 on MR (cached after the first run), trains a pseudo classifier on
    each of its layers, has it label 10 augmented copies of each training text (tang), distils it into a CNN on
    its own tokens with Universal-KD, and prints teacher vs student accuracy, size and CPU latency.
    Results: RUN_DIR/{config.json, metrics.jsonl, summary.json, student/}.

    \b
    Examples:
      xkd distill
      xkd distill --student bert-k --augment none
      xkd distill --student cnn -S vectors=glove.6B.50d.txt --method kd --temperature 4 --epochs 5
      xkd distill --task reviews --data-dir ./reviews --text-column text --label-column stars --teacher ./my-bert
      xkd distill --config recipe.toml --seed 2
      xkd distill --resume runs/mr-cnn2-universal-tang10-20261203-101500
    """
    from xkd.distillation import run_distill
    from xkd.run_report import format_summary

    if resume_dir:
        cfg = _resume_config(resume_dir, config_file, student_config, options)
    else:
        cfg = config_from(config_file, student_config, options)
    summary = run_distill(cfg, log=echo_err)
    click.echo(format_summary(summary))
    click.echo(f"results: {Path(summary['student']['dir']).parent}/summary.json")


def _resume_config(run_dir: str, config_file: str | None, student_config: str | None, options: dict):
    """The interrupted run's own config, set to resume; other options would make it another run."""
    from xkd.api import resume_config

    changed = [k for k in given(options) if k != "progress"] + (["config"] if config_file or student_config else [])
    return resume_config(run_dir, changed, options.get("progress"))


@cli.command("study")
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--output-dir", type=click.Path(file_okay=False), help="Study directory [default: studies/<name>].")
@click.option("--dry-run", is_flag=True, help="Check the file and list the runs with their state; train nothing.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write report.md and plots at the end.")
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="KEY=NAMES",
    help="Run part of the grid now: student=cnn,bilstm, method=kd, seed=42, ... (repeatable; all must match).",
)
@click.option("--progress/--no-progress", default=True, help="Training progress bars of each run.")
def study_command(
    config_file: str, output_dir: str | None, dry_run: bool, report: bool, only: tuple[str, ...], progress: bool
) -> None:
    """Run a grid of distillations (teachers x students x methods x hyperparameters x seeds) from one file.

    Shares one teacher fine-tune, one set of pseudo heads and one teacher cache per teacher and task, and one
    TAKD assistant per seed. Resumable: run the same command again and finished runs are skipped, interrupted
    ones continue from their last checkpoint, failed ones are retried. The file format is in the README
    ("Studies") and in recipes/.

    \b
    Example:
      xkd study recipes/mr-methods.toml
    """
    from xkd.processes import process_state
    from xkd.studies import load_plan, run_state, run_study
    from xkd.studies.plan import only_filters

    plan = load_plan(config_file, output_dir)
    filters = only_filters(only)
    selected = plan.select(filters)
    if dry_run:
        for run in selected:
            click.echo(f"{run_state(plan.run_dir(run)):<12} {plan.run_dir(run)}")
        click.echo(f"{len(plan.runs)} runs, {len(plan.assistants)} assistants in {plan.directory}")
        return
    try:
        outcome = run_study(plan, log=echo_err, progress=progress, only=filters)
    except Interrupted as e:
        raise e.continue_with(f"xkd study {config_file} (the same command)") from None
    if not process_state().is_main_process:
        return
    if report:
        from xkd.studies.report import report_study

        click.echo(f"report: {report_study(plan.directory)[0]}", err=True)
    if outcome["elsewhere"]:
        click.echo(
            f"{len(outcome['elsewhere'])} run(s) are still running in other processes "
            f"({outcome['elsewhere'][0]}{', ...' if len(outcome['elsewhere']) > 1 else ''})",
            err=True,
        )
    if outcome["failed"]:
        first, message = next(iter(outcome["failed"].items()))
        click.echo(
            f"{len(outcome['failed'])} of {outcome['total']} runs failed (first: {first}: {message}); the others are "
            "saved; fix the cause and run the same command again to retry them",
            err=True,
        )
        raise SystemExit(1)


@cli.command("report")
@click.argument("run_dir", metavar="DIR", type=click.Path(file_okay=False))
def report_command(run_dir: str) -> None:
    """Write DIR/report.md and its PNG plots, for a run (xkd distill) or a study (xkd study).

    \b
    Examples:
      xkd report runs/mr-bert-k2-universal-20260101-120000
      xkd report studies/mr-methods
    """
    from xkd.studies.report import report_run

    for path in report_run(run_dir):
        click.echo(str(path))


for command in (cache, teacher, eval_command, predict_command, export_command, inspect_command, augment_command,
                tasks_command, students_command, methods_command):  # fmt: skip
    cli.add_command(command)


def main() -> None:
    cli(prog_name="xkd")


if __name__ == "__main__":
    sys.exit(main())
