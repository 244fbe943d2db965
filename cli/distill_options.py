"""The options of `xkd distill` (and `xkd cache build`, which takes the same), declared once from the config's
fields, and their help sections; a custom task's options, shared by every command that reads a task."""

from __future__ import annotations

import click

from xkd.config import AUTO_AUGMENT

from .options import config_option

# How a custom task is declared: the same options wherever one is (distill, teacher finetune and heads, eval).
CUSTOM_TASK_OPTIONS = [
    config_option("text_columns", "Custom task: a text column (twice for pairs).", multiple=True, flag="--text-column"),
    config_option("label_column", "Custom task: the label column."),
    config_option("num_labels", "Custom task: label count [default: counted in train].", type=int),
    config_option("regression", "Custom task: regression target.", flag="--regression/--classification"),
    config_option(
        "multi_label",
        "Custom task: several labels per row (a JSON list in .jsonl/.parquet, names joined by --label-separator in "
        ".tsv/.csv; an empty cell: none); sigmoid outputs, scored by micro F1.",
        flag="--multi-label/--single-label",
    ),
    config_option("label_separator", "Custom multi-label task: the string between label names in a .tsv/.csv cell."),
]

DISTILL_OPTIONS = [
    click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML or YAML file of options."),
    config_option("task", "Task name (mr, sst2, mnli, ...; see 'xkd tasks'), or a custom task's name."),
    config_option(
        "teacher",
        "Teacher: hub id or directory of a sequence classifier (or a bare encoder); repeat it for an ensemble "
        "whose members' outputs are averaged.",
        multiple=True,
    ),
    config_option(
        "teacher_weights",
        "Ensemble: the members' weights W1,W2,... in --teacher order (normalised to sum to 1) [default: equal].",
    ),
    config_option(
        "ensemble_average",
        "Ensemble: average the members' logits, or their probabilities (the student then sees the log of the mean "
        "distribution).",
        type=click.Choice(["logits", "probabilities"]),
    ),
    config_option(
        "teacher_outputs",
        "Saved teacher outputs instead of a teacher model (e.g. from an API): .jsonl/.parquet/.tsv/.csv, rows keyed "
        "by text or id, with logits, probabilities, log_probabilities or label.",
    ),
    config_option(
        "missing_outputs",
        "Training rows without outputs in --teacher-outputs: fail (name them), or drop them.",
        type=click.Choice(["fail", "drop"]),
    ),
    config_option(
        "finetune_teacher",
        "Fine-tune the teacher first: auto (when it has no trained classifier; cached), always, never.",
        type=click.Choice(["auto", "always", "never"]),
    ),
    config_option("student", "Student architecture (see 'xkd students')."),
    config_option("student_layers", "Student depth (BERT-k: k).", type=int),
    config_option("student_init", "BERT-k init: uniform, first, last or random."),
    click.option(
        "--student-config",
        "student_config",
        type=click.Path(dir_okay=False),
        help="TOML/YAML/JSON file of student options (-S pairs override it).",
    ),
    config_option(
        "student_options",
        "A student option as KEY=VALUE, repeatable (e.g. -S vectors=glove.txt -S gated=true; see 'xkd students').",
        multiple=True,
        flag="-S",
    ),
    config_option("method", "Distillation method by name ('xkd methods' lists them, their loss terms and options)."),
    config_option("temperature", "KD temperature τ (> 0) of methods with a KD term [method default: 2.0].", type=float),
    config_option(
        "alpha",
        "Weight α in [0, 1] of the teacher's term, CE getting 1-α, in every method with an alpha (kd, universal, "
        "pkd, aguilar, logit-mse; alp weighs with -O eta/lam) [method default: 0.5].",
        type=float,
    ),
    config_option(
        "method_options",
        "A method option as KEY=VALUE, repeatable (e.g. -O gamma=2 -O score=hidden; see 'xkd methods').",
        multiple=True,
        flag="-O",
    ),
    config_option(
        "transfer",
        "Unlabelled text the teacher labels for the student: .txt (one text per line) or a table with the task's "
        "text column(s); repeatable. Texts in validation/test or train, and repeats, are dropped and counted.",
        multiple=True,
    ),
    config_option(
        "augment",
        "Augmentation recipe adding a transfer set: tang, tinybert, none ('xkd augment --help'); auto: "
        f"{AUTO_AUGMENT}, unless the method reads gold labels only, the teacher is --teacher-outputs or --transfer "
        "text is given.",
    ),
    config_option("augment_factor", "Augmented examples per training example.", type=int),
    config_option(
        "augment_options",
        "An augmentation option as KEY=VALUE, repeatable (e.g. -A p_mask=0.1 -A vectors=glove.txt; 'xkd augment').",
        multiple=True,
        flag="-A",
    ),
    config_option("augment_mlm", "tinybert: a masked LM (directory or hub id) proposing word replacements."),
    config_option(
        "transfer_dtype",
        "Storage of the teacher's outputs on the transfer set: float32, or float16 (half the disk).",
        type=click.Choice(["float32", "float16"]),
    ),
    config_option("second_stage_epochs", "CE-only epochs without the teacher after distillation.", type=int),
    config_option(
        "assistant_layers",
        "TAKD: distil through a BERT-k teacher assistant of this depth first (repeat for a longer chain).",
        type=int,
        multiple=True,
    ),
    config_option("epochs", "Training epochs.", type=int),
    config_option("batch_size", "Batch size.", type=int),
    config_option("eval_batch_size", "Batch size without gradients: evaluation, teacher caching and heads.", type=int),
    config_option(
        "lr",
        "Peak learning rate (AdamW, linear warmup and decay) [default: the student's: 1e-4; CNN/BiLSTM 2e-3].",
        type=float,
    ),
    config_option("warmup_ratio", "Fraction of steps spent warming up.", type=float),
    config_option("weight_decay", "AdamW weight decay.", type=float),
    config_option("max_length", "Maximum tokens per example.", type=int),
    config_option("max_steps", "Stop after this many optimizer steps (quick runs).", type=int),
    config_option(
        "max_examples",
        "Use at most this many random examples of every split, validation and test included (quick runs): the "
        "metrics are then a subset's, as summary.json and the model card say.",
        type=int,
    ),
    config_option(
        "max_train_examples",
        "Use at most this many random labelled training examples; validation and test stay whole.",
        type=int,
    ),
    config_option("seed", "Random seed.", type=int),
    config_option("precision", "Mixed precision on GPU: no, bf16, fp16.", type=click.Choice(["no", "bf16", "fp16"])),
    config_option("grad_accumulation", "Accumulate gradients over N batches before each optimizer step.", type=int),
    config_option(
        "length_buckets",
        "Batch examples of similar length together (less padding).",
        flag="--length-buckets/--no-length-buckets",
    ),
    config_option(
        "teacher_cache",
        "Cache the frozen teacher's outputs once and reuse them (auto), or run the teacher every step (off). "
        "Methods that need attention maps always run it online.",
        type=click.Choice(["auto", "off"]),
    ),
    config_option(
        "checkpoint_every", "Also write a resumable checkpoint every N steps (0: epoch ends only).", type=int
    ),
    config_option("keep_checkpoints", "Resumable checkpoints kept per run (the newest).", type=int),
    config_option(
        "eval_every",
        "Also evaluate on validation (and checkpoint) every N optimizer steps, for long epochs such as transfer "
        "sets (0: at epoch ends only).",
        type=int,
    ),
    config_option(
        "report_to",
        "Also log to an experiment tracker: tensorboard, mlflow, wandb, ... (repeatable or comma-separated; files "
        "under RUN_DIR/tracking, offline).",
        multiple=True,
    ),
    config_option("log_every", "Optimizer steps between the trackers' training-loss points (--report-to).", type=int),
    config_option(
        "patience",
        "Stop after N evaluations without a better validation score; the best student is kept (0: never).",
        type=int,
    ),
    click.option(
        "--resume",
        "resume_dir",
        type=click.Path(file_okay=False),
        help="Continue an interrupted run from its newest checkpoint (the run's own config.json is used).",
    ),
    config_option("teacher_epochs", "Epochs when fine-tuning the teacher.", type=int),
    config_option("teacher_lr", "Learning rate when fine-tuning the teacher.", type=float),
    config_option(
        "teacher_heads",
        "Pseudo-classifier kind when the teacher's heads are trained on the fly.",
        type=click.Choice(["linear", "pooler"]),
    ),
    config_option("heads_epochs", "Epochs when training the teacher's pseudo classifiers.", type=int),
    config_option("heads_lr", "Learning rate when training the teacher's pseudo classifiers.", type=float),
    config_option("output_dir", "Run directory [default: runs/<task>-<student><k>-<method>-<time>]."),
    config_option("overwrite", "Replace the results already in --output-dir.", flag="--overwrite/--no-overwrite"),
    config_option("data_dir", "Directory of train/validation/test .tsv/.csv/.jsonl/.parquet files."),
    *CUSTOM_TASK_OPTIONS,
    config_option("latency", "Measure CPU latency at the end.", flag="--latency/--no-latency"),
    config_option("progress", "Show progress bars.", flag="--progress/--no-progress"),
]


# `xkd distill --help` in sections, in the order a run reads them.
DISTILL_GROUPS: dict[str, tuple[str, ...]] = {
    "Task and data": (
        "task",
        "data_dir",
        "text_columns",
        "label_column",
        "num_labels",
        "regression",
        "multi_label",
        "label_separator",
        "max_length",
        "max_examples",
        "max_train_examples",
    ),
    "Teacher": (
        "teacher",
        "teacher_weights",
        "ensemble_average",
        "teacher_outputs",
        "missing_outputs",
        "finetune_teacher",
        "teacher_epochs",
        "teacher_lr",
        "teacher_heads",
        "heads_epochs",
        "heads_lr",
        "teacher_cache",
    ),
    "Student": ("student", "student_layers", "student_init", "student_config", "student_options"),
    "Method": ("method", "temperature", "alpha", "method_options", "assistant_layers", "second_stage_epochs"),
    "Transfer set": ("transfer", "augment", "augment_factor", "augment_options", "augment_mlm", "transfer_dtype"),
    "Training": (
        "epochs",
        "batch_size",
        "eval_batch_size",
        "lr",
        "warmup_ratio",
        "weight_decay",
        "max_steps",
        "seed",
        "precision",
        "grad_accumulation",
        "length_buckets",
        "eval_every",
        "patience",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
    ),
    "Run and output": (
        "config_file",
        "output_dir",
        "overwrite",
        "resume_dir",
        "report_to",
        "latency",
        "progress",
    ),
}


def config_from(config_file: str | None, student_config: str | None, options: dict):
    """A run's config from `xkd distill`'s (or `cache build`'s) options: defaults < --config file <
    --student-config < options on the command line."""
    from xkd.api import distill_config

    return distill_config(config_file, student_config, options)
