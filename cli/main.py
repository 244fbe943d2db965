"""The `xkd` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from xkd import __version__
from xkd.config import DEFAULTS
from xkd.errors import Interrupted
from xkd.paths import saved_meta

from .distill_options import CUSTOM_TASK_OPTIONS, DISTILL_GROUPS, DISTILL_OPTIONS
from .errors import XKDGroup
from .options import apply, apply_grouped, given, parse_pairs


@click.group(cls=XKDGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xkd")
@click.option("--verbose", is_flag=True, help="Keep other libraries' warnings, load reports and progress bars.")
def cli(verbose: bool) -> None:
    """xkd: distil fine-tuned BERT/RoBERTa teachers into small students, layer by layer.

    \b
    Quickstart (offline; on 2 CPU cores about 20 minutes the first time, 10 once the teacher is cached):
      HF_HUB_OFFLINE=1 HF_HUB_CACHE=../shared/hf-hub XKD_DATA_DIR=../shared/data xkd distill
    """
    from xkd.log import quiet_libraries

    quiet_libraries(verbose)


@cli.command()
@apply_grouped(DISTILL_OPTIONS, DISTILL_GROUPS)
def distill(config_file: str | None, student_config: str | None, resume_dir: str | None, **options) -> None:
    """Distil a teacher into a student on a task; with no options, run the quickstart recipe.

    The quickstart fine-tunes all-MiniLM-L6-v2 on MR (cached after the first run), trains a pseudo classifier on
    each of its layers, distils it into a 2-layer student initialised from its layers with Universal-KD, and
    prints teacher vs student accuracy, size and CPU latency.
    Results: RUN_DIR/{config.json, metrics.jsonl, summary.json, student/}.

    \b
    Examples:
      xkd distill
      xkd distill --student cnn -S vectors=teacher --method universal --augment tang
      xkd distill --student cnn -S vectors=glove.6B.50d.txt --method kd --temperature 4 --epochs 5
      xkd distill --task reviews --data-dir ./reviews --text-column text --label-column stars --teacher ./my-bert
      xkd distill --config recipe.toml --seed 2
      xkd distill --resume runs/mr-bert-k2-universal-20261121-101500
    """
    from xkd.distillation import run_distill
    from xkd.run_report import format_summary

    if resume_dir:
        cfg = _resume_config(resume_dir, config_file, student_config, options)
    else:
        cfg = _distill_config(config_file, student_config, options)
    summary = run_distill(cfg, log=lambda m: click.echo(m, err=True))
    click.echo(format_summary(summary))
    click.echo(f"results: {Path(summary['student']['dir']).parent}/summary.json")


def _resume_config(run_dir: str, config_file: str | None, student_config: str | None, options: dict):
    """The interrupted run's own config, set to resume; other options would make it another run."""
    from xkd.api import resume_config

    changed = [k for k in given(options) if k != "progress"] + (["config"] if config_file or student_config else [])
    return resume_config(run_dir, changed, options.get("progress"))


def _distill_config(config_file: str | None, student_config: str | None, options: dict):
    """The run's config: defaults < --config file < --student-config < options on the command line."""
    from xkd.api import distill_config

    return distill_config(config_file, student_config, options)


@cli.group(cls=XKDGroup)
def cache() -> None:
    """The teacher-output cache: one teacher pass per split, reused by every run, seed and method.

    `xkd distill` builds and reuses it by itself (--teacher-cache auto); `build` pays for it ahead of a study.
    Caches live in $XKD_CACHE_DIR/traces (default ~/.cache/xkd/traces).

    \b
    Examples:
      xkd cache build --teacher teachers/mr --task mr
      xkd cache build --config recipe.toml
      xkd cache info
      xkd cache clear --task mr
    """


@cache.command("build")
@apply_grouped(DISTILL_OPTIONS, DISTILL_GROUPS)
def cache_build(config_file: str | None, student_config: str | None, **options) -> None:
    """Build (or check) the teacher cache that `xkd distill` with the same options would use.

    \b
    Examples:
      xkd cache build --teacher teachers/mr --task mr --max-length 64
      xkd cache build --config recipe.toml
    """
    from xkd.processes import process_state
    from xkd.teacher_outputs import build_teacher_caches

    cfg = _distill_config(config_file, student_config, options)
    main = process_state().is_main_process  # under `accelerate launch`, every process labels and one speaks
    try:
        built = build_teacher_caches(cfg, log=(lambda m: click.echo(m, err=True)) if main else (lambda m: None))
    except Interrupted as e:
        raise e.continue_with("the same xkd cache build command (labelling continues where it stopped)") from None
    if main:  # an ensemble (several --teacher): a list, one cache per member
        shown = [{"dir": str(cache.directory), **cache.meta} for cache in built]
        click.echo(json.dumps(shown[0] if len(shown) == 1 else shown, indent=2))


@cache.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def cache_info(as_json: bool) -> None:
    """List the teacher caches: teacher, task, splits, size, when built.

    \b
    Example:
      xkd cache info --json
    """
    from xkd.teacher_cache import list_caches, traces_root

    caches = list_caches()
    if as_json:
        click.echo(json.dumps(caches, indent=2))
        return
    if not caches:
        click.echo(f"no teacher caches in {traces_root()}")
        return
    for c in caches:
        if "damaged" in c:
            click.echo(f"{c['dir']}\n  damaged ({c['damaged']}): rebuilt when next used, or 'xkd cache clear' it")
            continue
        splits = ", ".join(f"{k} {v}" for k, v in c["splits"].items())
        click.echo(f"{c['dir']}\n  teacher {c['teacher']}  task {c['task']}  max length {c['max_length']}")
        click.echo(f"  {splits}  |  {c['size_mib']} MiB  |  built {c['created']} in {c['build_seconds']} s")


@cache.command("clear")
@click.argument("directories", nargs=-1, type=click.Path(file_okay=False))
@click.option("--task", help="Only the caches of this task.")
@click.option("--all", "everything", is_flag=True, help="Every cache.")
def cache_clear(directories: tuple[str, ...], task: str | None, everything: bool) -> None:
    """Delete teacher caches: the given directories, a task's, or --all. They are rebuilt when next needed.

    \b
    Examples:
      xkd cache clear --task mr
      xkd cache clear --all
    """
    from xkd.errors import XKDError
    from xkd.teacher_cache import clear_caches, list_caches, traces_root

    if not (directories or task or everything):
        raise XKDError("say which caches to clear: directories, --task NAME, or --all (see 'xkd cache info')")
    known = {c["dir"]: c for c in list_caches()}
    chosen = [Path(d) for d in directories]
    for d in chosen:
        if str(d) not in known and str(d.resolve()) not in known:
            raise XKDError(f"{d} is not a teacher cache; 'xkd cache info' lists them")
    chosen += [Path(d) for d, c in known.items() if everything or (task and c.get("task") == task)]
    removed = clear_caches(dict.fromkeys(chosen))
    click.echo(f"removed {len(removed)} teacher cache(s) from {traces_root()}")


@cli.group(cls=XKDGroup)
def teacher() -> None:
    """Prepare teachers: fine-tune a pretrained encoder on a task, train its per-layer pseudo classifiers.

    \b
    Example:
      xkd teacher finetune --model sentence-transformers/all-MiniLM-L6-v2 --task mr --output-dir teachers/mr
      xkd teacher heads --teacher teachers/mr --task mr
    """


@teacher.command("finetune")
@click.option("--model", "model_name", required=True, help="Hub id or directory of a pretrained encoder.")
@click.option("--task", required=True, help="Task name (see 'xkd tasks').")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where to save [default: runs/teacher-...].")
@click.option("--data-dir", type=click.Path(), help="Directory of train/validation/test files.")
@click.option("--epochs", type=int, default=DEFAULTS.teacher_epochs, show_default=True)
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size, show_default=True)
@click.option("--lr", type=float, default=DEFAULTS.teacher_lr, show_default=True)
@click.option("--max-length", type=int, default=DEFAULTS.max_length, show_default=True)
@click.option("--max-steps", type=int, help="Stop after this many steps (quick runs).")
@click.option("--max-examples", type=int, help="Use at most this many examples per split (quick runs).")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option(
    "--checkpoint-every",
    type=int,
    default=DEFAULTS.checkpoint_every,
    show_default=True,
    help="Also write a resumable checkpoint every N steps (0: epoch ends only; a stop request always writes one).",
)
@click.option("--overwrite/--no-overwrite", default=False, help="Replace a teacher already in --output-dir.")
@click.option("--progress/--no-progress", default=True)
@apply(CUSTOM_TASK_OPTIONS)
def teacher_finetune(model_name: str, task: str, output_dir: str | None, data_dir: str | None, **options) -> None:
    """Fine-tune MODEL on TASK and save it with save_pretrained plus metrics.json (validation metrics).

    Interrupted (Ctrl-C, a kill), it keeps a checkpoint: the same command continues from it.

    \b
    Example:
      xkd teacher finetune --model sentence-transformers/all-MiniLM-L6-v2 --task mr --output-dir teachers/minilm-mr
    """
    from xkd.data import check_classes, load_splits
    from xkd.errors import Interrupted, XKDError
    from xkd.tasks import resolve_task
    from xkd.teachers.finetune import finetune
    from xkd.training import TrainSettings
    from xkd.training.checkpoints import Checkpoints

    cfg = finetune_config(model_name, task, data_dir, options)
    spec, raw = load_splits(resolve_task(cfg), data_dir, cfg.max_examples)
    check_classes(spec, raw, data_dir)
    slug = model_name.strip("/").replace("/", "--")
    out = Path(output_dir) if output_dir else Path("runs") / f"teacher-{spec.name}-{slug}"
    if (out / "metrics.json").exists() and not options["overwrite"]:
        raise XKDError(f"{out} already holds a fine-tuned teacher; choose another --output-dir or pass --overwrite")
    resume = Checkpoints.exist(out) and not options["overwrite"]  # an interrupted fine-tune continues, never restarts
    if resume:
        click.echo(f"teacher: continuing the interrupted fine-tune in {out}", err=True)
    try:
        _, summary = finetune(
            model_name, spec, raw, TrainSettings.from_config(cfg, teacher=True), cfg.max_length, out, resume=resume
        )
    except Interrupted as e:
        raise e.continue_with("the same xkd teacher finetune command (it continues from its last checkpoint)") from None
    click.echo(
        json.dumps({"output_dir": str(out), "validation": summary["validation"], "test": summary["test"]}, indent=2)
    )


def finetune_config(model_name: str, task: str, data_dir: str | None, options: dict):
    """`xkd teacher finetune`'s options as the distillation config whose teacher fine-tune they describe, so both
    entry points train (and cache) the same teacher from the same defaults."""
    from xkd.config import DistillConfig

    renamed = {"epochs": "teacher_epochs", "lr": "teacher_lr"}
    values = {renamed.get(k, k): v for k, v in given(options).items() if k != "overwrite"}
    return DistillConfig(task=task, teacher=model_name, data_dir=data_dir, **values).validate()


@teacher.command("heads")
@click.option("--teacher", "teacher_path", required=True, help="A fine-tuned teacher (directory or hub id).")
@click.option("--task", required=True, help="Task name (see 'xkd tasks').")
@click.option("--kind", type=click.Choice(["linear", "pooler"]), default=DEFAULTS.teacher_heads, show_default=True)
@click.option(
    "--epochs", type=int, default=DEFAULTS.heads_epochs, show_default=True, help="Epochs over the stored layer vectors."
)
@click.option("--lr", type=float, default=DEFAULTS.heads_lr, show_default=True)
@click.option("--data-dir", type=click.Path(), help="Directory of train/validation/test files.")
@click.option(
    "--max-length",
    type=int,
    help=f"Maximum tokens [default: the teacher's training length, else {DEFAULTS.max_length}].",
)
@click.option("--max-examples", type=int, help="Use at most this many examples per split (quick runs).")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--progress/--no-progress", default=True)
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
    from xkd.processes import process_device
    from xkd.tasks import resolve_task
    from xkd.teachers import heads_dir, load_teacher, train_heads
    from xkd.teachers.heads import heads_info

    if epochs < 1 or not lr > 0:
        raise XKDError("--epochs must be at least 1 and --lr > 0")
    spec, raw = load_splits(resolve_task(DistillConfig(task=task, **given(custom))), data_dir, max_examples)
    check_classes(spec, raw, data_dir)
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    model = load_teacher(teacher_path, spec, say).to(process_device())  # its layer vectors come from the GPU if any
    length = max_length or int(model.meta.get("max_length", DEFAULTS.max_length))
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
        log=say,
    )
    directory = heads.save(heads_dir(teacher_path), **heads_info(metrics, spec, max_length=length))
    click.echo(json.dumps({"heads_dir": str(directory), "layer_metrics": metrics}, indent=2))


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
    from xkd.errors import XKDError
    from xkd.processes import process_state
    from xkd.studies import load_plan, run_state, run_study

    plan = load_plan(config_file, output_dir)
    filters: dict[str, set[str]] = {}
    for item in only:
        key, sep, names = item.partition("=")
        if not sep or not names:
            raise XKDError(f"--only {item}: write KEY=NAME[,NAME...], e.g. --only student=cnn,bilstm")
        filters.setdefault(key.strip(), set()).update(n.strip() for n in names.split(","))
    selected = plan.select(filters)
    if dry_run:
        for run in selected:
            click.echo(f"{run_state(plan.run_dir(run)):<12} {plan.run_dir(run)}")
        click.echo(f"{len(plan.runs)} runs, {len(plan.assistants)} assistants in {plan.directory}")
        return
    try:
        outcome = run_study(plan, log=lambda m: click.echo(m, err=True), progress=progress, only=filters)
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


@cli.command("eval")
@click.option("--model", "model_dir", required=True, help="A saved teacher or student directory (or hub id).")
@click.option("--task", required=True, help="Task name (see 'xkd tasks').")
@click.option("--split", "split_names", multiple=True, help="Split(s) to score [default: validation and test].")
@click.option("--data-dir", type=click.Path(), help="Directory of the task's split files.")
@click.option("--batch-size", type=int, default=DEFAULTS.eval_batch_size, show_default=True)
@click.option("--max-length", type=int, help="Maximum tokens [default: the length the model was trained with].")
@click.option("--max-examples", type=int, help="Score at most this many examples per split.")
@click.option("--text-column", "text_columns", multiple=True, help="Custom task: a text column (twice for pairs).")
@click.option("--label-column", default="label", show_default=True, help="Custom task: the label column.")
@click.option("--regression/--classification", default=False, help="Custom task: regression target.")
@click.option(
    "--multi-label/--single-label",
    default=DEFAULTS.multi_label,
    help="Custom task: several labels per row (scored by micro F1, macro F1 and subset accuracy).",
)
@click.option(
    "--label-separator",
    default=DEFAULTS.label_separator,
    show_default=True,
    help="Custom multi-label task: the string between label names in a .tsv/.csv cell.",
)
def eval_command(
    model_dir,
    task,
    split_names,
    data_dir,
    batch_size,
    max_length,
    max_examples,
    text_columns,
    label_column,
    regression,
    multi_label,
    label_separator,
) -> None:
    """Score a saved teacher or student on a task's splits; prints JSON.

    \b
    Example:
      xkd eval --model runs/mr-bert-k2-kd-20260101-120000/student --task mr --split test
    """
    from xkd.config import DistillConfig
    from xkd.data import Collator, encode, is_labeled, load_splits, make_loader, separate_roles
    from xkd.errors import XKDError
    from xkd.evaluation import evaluate
    from xkd.processes import process_device
    from xkd.students import load_student
    from xkd.students.sentence_encoder import CONFIG_FILE
    from xkd.tasks import resolve_task
    from xkd.teachers import load_teacher

    cfg = DistillConfig(
        task=task,
        text_columns=list(text_columns) or None,
        label_column=label_column,
        regression=regression,
        multi_label=multi_label,
        label_separator=label_separator,
    )
    spec, raw = load_splits(resolve_task(cfg), data_dir, max_examples)
    is_encoder_student = (Path(model_dir) / CONFIG_FILE).is_file()
    model = load_student(model_dir) if is_encoder_student else load_teacher(model_dir, spec, labels=False)
    model.to(process_device())
    if model.num_labels != spec.output_size:
        raise XKDError(f"{model_dir} has {model.num_labels} output(s) but task '{spec.name}' needs {spec.output_size}")
    check_scored_labels(model_dir, model, spec, is_encoder_student)
    length = max_length or int(saved_meta(model_dir).get("max_length", DEFAULTS.max_length))
    names = list(split_names) or [n for n in (*spec.validation_splits, *spec.test_splits) if n in raw]
    unknown = [n for n in names if n not in raw]
    if unknown:
        raise XKDError(f"task '{spec.name}' has no split '{unknown[0]}'; choose from {', '.join(raw)}")
    tokenizers = {"student": model.tokenizer}
    separate = separate_roles(model)
    collator = Collator(tokenizers, separate)
    result = {}
    for name in names:
        split = encode(raw[name], spec, tokenizers, length, separate)
        if is_labeled(split):
            result[name] = evaluate(model, make_loader(split, collator, batch_size, shuffle=False), spec)
    click.echo(json.dumps({"model": model_dir, "task": spec.name, "metrics": result}, indent=2))


def check_scored_labels(model_dir: str, model, spec, is_encoder_student: bool) -> None:
    """Scored by position: a model whose label names are not the task's would be scored silently wrong."""
    from xkd.students.sentence_encoder import CONFIG_FILE
    from xkd.tasks import check_label_names
    from xkd.teachers.loading import model_label_names

    meta = getattr(model, "meta", None) or {}
    labels = meta.get("labels") if is_encoder_student else model_label_names(model.config, meta)
    kept = f"the labels of its {CONFIG_FILE}" if is_encoder_student else "id2label and label2id in its config.json"
    fix = f"score it on the task it was trained for, or, if only its names are wrong, rename or reorder {kept}"
    labels = labels if isinstance(labels, list | tuple) else None
    check_label_names(f"model '{model_dir}'", labels, spec, fix, log=lambda m: click.echo(m, err=True))


@cli.command("predict")
@click.argument("texts", nargs=-1)
@click.option("--model", "model_dir", required=True, help="A saved student (RUN_DIR/student) or teacher directory.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), help="Run this ONNX export of the model.")
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Texts from a file: .txt (one per line, blank lines too; a tab between the texts of a pair), "
    ".tsv/.csv/.jsonl/.parquet (other columns, such as an id, are kept in the output), or - for standard input.",
)
@click.option("--text-column", "text_columns", multiple=True, help="The input table's text column (twice for pairs).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), help="Write JSON lines here, not stdout.")
@click.option("--batch-size", type=int, default=DEFAULTS.eval_batch_size, show_default=True)
@click.option("--max-length", type=int, help="Tokens per text [default: what the model was trained with].")
@click.option("--progress/--no-progress", default=True, help="A progress bar for files.  [default: on]")
def predict_command(
    texts, model_dir, onnx_path, input_path, text_columns, output_path, batch_size, max_length, progress
) -> None:
    """Label texts with a saved model: one JSON line per text (label and probabilities, or a value).

    Texts come as arguments or from --input; pair models read a tab between the two texts of an argument.

    \b
    Examples:
      xkd predict --model runs/mr-cnn/student "a gripping , beautifully acted film ." "dull ."
      xkd predict --model runs/mr-cnn/student --input reviews.txt --output labels.jsonl
      cat reviews.txt | xkd predict --model runs/mr-cnn/student --input -
      xkd predict --model runs/mr-cnn/student --onnx cnn.onnx "dull ."
    """
    from xkd.errors import XKDError
    from xkd.files import write_text_atomically
    from xkd.predict import Predictor, read_inputs

    if bool(texts) == bool(input_path):
        raise XKDError("give texts either as arguments or with --input FILE (one of the two)")
    predictor = Predictor(model_dir, onnx=onnx_path, batch_size=batch_size, max_length=max_length)
    pair = predictor.labels.pair
    extras: list[dict] = []
    if input_path:
        rows, extras = read_inputs(input_path, text_columns, pair)
    else:
        rows = [tuple(t.split("\t", 1)) if pair else t for t in texts]
    answers = predictor(rows, progress=progress and input_path is not None)
    # allow_nan=False: a NaN would be invalid JSON; Predictor refuses non-finite outputs, so none can reach here.
    kept = [_carried(extra, answer) for extra, answer in zip(extras or [{}] * len(rows), answers, strict=True)]
    records = [{**extra, "text": row, **answer} for extra, row, answer in zip(kept, rows, answers, strict=True)]
    lines = [json.dumps(record, ensure_ascii=False, allow_nan=False) for record in records]
    if output_path:
        write_text_atomically(Path(output_path), "".join(line + "\n" for line in lines))
        click.echo(f"{len(lines)} predictions: {output_path}", err=True)
    else:
        click.echo("\n".join(lines))


def _carried(extra: dict, answer: dict) -> dict:
    """An input row's other columns, renamed `input_<name>` where the prediction has the same key (a gold `label`
    column stays beside the predicted label instead of being overwritten)."""
    return {(f"input_{k}" if k in answer or k == "text" else k): v for k, v in extra.items()}


@cli.command("export")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), help="Write an ONNX graph here.")
@click.option(
    "--model2vec",
    "model2vec_dir",
    type=click.Path(file_okay=False),
    help="Static student: write it as a model2vec pipeline directory here (embeddings, tokenizer and head).",
)
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset version.")
@click.option("--quantize", metavar="int8", help="Also write an int8 graph next to the float one: FILE.int8.onnx.")
@click.option(
    "--calibration",
    default="dynamic",
    show_default=True,
    metavar="dynamic|static",
    help="int8 kind: dynamic (needs no data; BERT-k, BiLSTM) or static (ranges calibrated on --task's train; CNN).",
)
@click.option("--calibration-examples", type=int, default=256, show_default=True, help="Static: train examples used.")
@click.option("--task", help="Check the int8 graph on this task's validation split (and calibrate on its train).")
@click.option("--data-dir", type=click.Path(), help="Directory of the task's split files.")
@click.option("--max-length", type=int, help="Maximum tokens [default: the length the model was trained with].")
@click.option("--max-examples", type=int, help="Use at most this many examples per split (quick checks).")
@click.option("--overwrite/--no-overwrite", default=False, help="Replace existing files.")
def export_command(
    model_dir: str,
    onnx_path: str | None,
    model2vec_dir: str | None,
    opset: int,
    quantize: str | None,
    calibration: str,
    calibration_examples: int,
    task: str | None,
    data_dir: str | None,
    max_length: int | None,
    max_examples: int | None,
    overwrite: bool,
) -> None:
    """Export a saved student (or teacher) for serving: token ids in, logits out; dynamic batch and length.

    The export is checked against PyTorch on real sentences (two batch shapes) before it is written; the report
    (inputs, size, largest difference) is printed as JSON. Needs `pip install 'xkd[export]'`.

    With --quantize int8, ONNX Runtime's quantizer also writes FILE.int8.onnx (FILE stays the float graph), and
    the report's "int8" entry compares its predictions with the float graph's: on --task's validation split
    (agreement and both accuracies), else on a few check sentences.

    With --model2vec, a static student is written by model2vec as a `StaticModelPipeline` directory: the same
    computation (checked on check sentences), loaded by model2vec (`StaticModelPipeline.from_pretrained`) and, the
    embeddings alone, by `StaticModel.from_pretrained`.

    \b
    Examples:
      xkd export runs/mr-bert-k2/student --onnx student.onnx
      xkd export runs/mr-cnn/student --onnx cnn.onnx --opset 17
      xkd export runs/mr-cnn/student --onnx cnn.onnx --quantize int8 --calibration static --task mr
      xkd export runs/mr-static/student --model2vec mr-static-m2v
    """
    from xkd.errors import XKDError
    from xkd.export import check_int8_request, export_int8, export_onnx, int8_path, load_check_data
    from xkd.students import load_student

    if not Path(model_dir).is_dir():
        raise XKDError(f"{model_dir} is not a directory; pass a saved student such as RUN_DIR/student")
    if model2vec_dir is not None:
        return _export_model2vec(model_dir, model2vec_dir, onnx_path is not None or bool(quantize), overwrite)
    check_int8_request(quantize, calibration, task, onnx_path)
    if onnx_path is None:
        raise XKDError("say where to write the export: --onnx PATH or --model2vec DIR")
    targets = [Path(onnx_path), *([int8_path(onnx_path)] if quantize else [])]
    taken = next((path for path in targets if path.exists()), None)
    if taken is not None and not overwrite:
        raise XKDError(f"{taken} exists; choose another path or pass --overwrite")
    model = load_student(model_dir)
    spec, splits = load_check_data(model, task, data_dir, max_examples) if task else (None, None)
    report = export_onnx(model, onnx_path, opset=opset)
    if quantize:
        length = max_length or int(saved_meta(model_dir).get("max_length", DEFAULTS.max_length))
        data = {"task": spec, "splits": splits, "max_length": length, "calibration_examples": calibration_examples}
        report["int8"] = export_int8(model, onnx_path, targets[1], calibration, **data, log=_to_stderr)
    click.echo(json.dumps(report, indent=2))


def _export_model2vec(model_dir: str, out: str, also_onnx: bool, overwrite: bool) -> None:
    """`xkd export --model2vec`: an export of its own, reported as JSON like the ONNX one."""
    from xkd.errors import XKDError
    from xkd.model2vec_export import export_model2vec

    if also_onnx:
        raise XKDError("--model2vec is an export of its own: run --onnx (and --quantize) in another call")
    click.echo(json.dumps(export_model2vec(model_dir, out, overwrite=overwrite), indent=2))


def _to_stderr(message: str) -> None:
    """Notes while exporting go to stderr: stdout is the JSON report."""
    click.echo(message, err=True)


@cli.command("inspect")
@click.option("--teacher", multiple=True, help="Teacher [default: the quickstart's]; repeat it for an ensemble.")
@click.option("--teacher-weights", help="Ensemble: the members' weights W1,W2,... [default: equal].")
@click.option("--ensemble-average", type=click.Choice(["logits", "probabilities"]), default=DEFAULTS.ensemble_average,
              show_default=True)  # fmt: skip
@click.option("--student", default=DEFAULTS.student, show_default=True)
@click.option("--task", default=DEFAULTS.task, show_default=True)
@click.option("--student-layers", type=int, default=DEFAULTS.student_layers, show_default=True)
@click.option("-S", "student_options", multiple=True, help="A student option as KEY=VALUE, repeatable.")
@click.option("--data-dir", type=click.Path(), help="Directory of the task's split files.")
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


@cli.command("augment")
@click.option("--augment", "recipe_name", help="Recipe: tang or tinybert [default: list the recipes].")
@click.option("--task", default=DEFAULTS.task, show_default=True, help="Task whose training texts are augmented.")
@click.option("--augment-factor", "factor", type=int, default=DEFAULTS.augment_factor, show_default=True)
@click.option("-A", "pairs", multiple=True, help="A recipe option as KEY=VALUE, repeatable.")
@click.option("--augment-mlm", "mlm", help="tinybert: a masked LM proposing replacements.")
@click.option("-n", "shown", type=int, default=5, show_default=True, help="Training examples shown with copies.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the whole set (.tsv/.csv/.jsonl/.parquet).")
@click.option("--data-dir", type=click.Path(), help="Directory of the task's split files.")
@click.option("--text-column", "text_columns", multiple=True, help="Custom task: a text column (twice for pairs).")
@click.option("--max-examples", type=int, help="Augment at most this many training examples.")
@click.option("--progress/--no-progress", default=True)
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
            _echo_options(recipe.options_type.specs())
        return
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
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    frame, path = augmented_set(spec, train, recipe_name, augment_values(cfg), factor, log, progress)
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


@cli.command("tasks")
def tasks_command() -> None:
    """List the registered tasks: text columns, label count, metrics.

    \b
    Example:
      xkd tasks
    """
    from xkd.tasks import TASKS

    for name in TASKS:
        t = TASKS.get(name)
        kind = "pair" if t.is_pair else "single"
        click.echo(f"{name:6} {kind:6} labels={t.output_size} metrics={','.join(t.metrics):18} {t.description}")


@cli.command("students")
def students_command() -> None:
    """List the built-in students with their options, and plug-ins registered under `xkd.students`.

    \b
    Example:
      xkd students
    """
    from xkd.students import STUDENTS
    from xkd.students.plugins import entry_point_students

    for name in STUDENTS:
        spec = STUDENTS.get(name)
        click.echo(f"{name}: {spec.summary}")
        click.echo("    options: " + (", ".join(f"{k}={v!r}" for k, v in spec.options.items()) or "none"))
    for name, entry in sorted(entry_point_students().items()):
        click.echo(f"{name}: plug-in {entry.value}")
    click.echo("any other: --student package.module:Class (see the plug-in protocol in the README)")


@cli.command("methods")
def methods_command() -> None:
    """List the registered methods: their loss terms (weights under the defaults), options and the students and
    teachers they apply to.

    \b
    Example:
      xkd methods
    """
    from xkd.errors import XKDError
    from xkd.methods import METHODS
    from xkd.methods.base import load_entry_point_methods

    load_entry_point_methods()
    for name in METHODS:
        m = METHODS.get(name)
        click.echo(f"{name}: {m.summary}")
        try:
            terms = ", ".join(f"{term} x {weight:g}" for term, weight in m.default_terms())
        except XKDError:  # a plugged-in method that cannot be built on the example pairing
            terms = "depend on the student and teacher"
        click.echo(f"    terms: {terms}")
        specs = m.option_specs()
        click.echo("    options: " + ("(name=default, allowed values, what it does)" if specs else "none"))
        _echo_options(specs)
        click.echo(f"    applies to: {m.applies_to}")
        reads = ", ".join([*m.reads(), *(["attention maps (online)"] if m.needs_attentions else [])])
        click.echo(
            f"    reads of the teacher (default options): {reads or 'nothing'}; "
            f"multi-label tasks: {'yes' if m.multi_label else 'no'}"
        )


def _echo_options(specs) -> None:
    """One line per option: name=default, allowed values, what it does (methods and augmentation recipes)."""
    for spec in specs:
        click.echo(f"      {f'{spec.name}={spec.default}':<26} {spec.allowed():<26} {spec.help}")


def main() -> None:
    cli(prog_name="xkd")


if __name__ == "__main__":
    sys.exit(main())
