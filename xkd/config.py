"""The distillation config: one dataclass whose keys mirror the CLI options.

Precedence: the dataclass defaults (the quickstart recipe) < a TOML or YAML file (`--config`) < options given on
the command line. Every value is checked before data or models load, so a typo costs a second, not a run.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from xkd.errors import XKDError, closest
from xkd.limits import MAX_AUGMENT_FACTOR, MAX_BATCH_SIZE, MAX_EPOCHS, MAX_LAYERS, MAX_SEQUENCE_LENGTH, at_most

DEFAULT_TEACHER = "sentence-transformers/all-MiniLM-L6-v2"
AUTO_AUGMENT = "tang"  # what augment="auto" makes: Tang et al.'s recipe needs no model of its own (tinybert's MLM)


@dataclass
class DistillConfig:
    """Everything a distillation run needs; the defaults are the offline quickstart recipe (MR, MiniLM)."""

    task: str = "mr"
    teacher: str | list[str] = DEFAULT_TEACHER  # several: an ensemble (see xkd.teachers.ensemble)
    finetune_teacher: str = "auto"  # auto: fine-tune (cached) when the teacher has no trained classifier
    teacher_weights: list[float] = field(default_factory=list)  # ensemble members' weights (none: equal)
    ensemble_average: str = "logits"  # combine members' logits, or probabilities (log of their mean)
    teacher_outputs: str | None = None  # a file of saved teacher outputs standing in for a teacher model
    missing_outputs: str = "fail"  # training rows without outside outputs: fail, or drop them
    student: str = "cnn"  # ~10x MiniLM-L6's CPU speed; 1.63 under it on MR with the default set (docs/results/static)
    student_layers: int = 2
    student_init: str = "uniform"
    student_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"vectors": "glove.txt", "gated": true}
    method: str = "universal"
    temperature: float | None = None  # None: the method's default
    alpha: float | None = None
    method_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"gamma": 2.0, "score": "hidden"}
    transfer: list[str] = field(default_factory=list)  # unlabelled text files the teacher labels (.txt or tables)
    augment: str = "auto"  # augmentation recipe making a transfer set from the training texts: tang, tinybert,
    # none; auto: AUTO_AUGMENT where the run can use it (`xkd.transfer.sets.fit_augment`)
    augment_factor: int = 10  # augmented examples per training example (Tang et al.'s and TinyBERT's N: 20)
    augment_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"p_mask": 0.1, "vectors": "glove.txt"}
    augment_mlm: str | None = None  # tinybert: a masked LM proposing replacements
    transfer_dtype: str = "float32"  # how the teacher's outputs on the transfer set are stored (float16: half)
    second_stage_epochs: int = 0  # CE-only epochs without the teacher after distillation
    assistant_layers: list[int] = field(default_factory=list)  # TAKD: BERT-k teacher assistants, e.g. [4]
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128  # validation, test, teacher labelling and caching (no gradients: larger batches)
    lr: float | None = None  # None: the student's default (1e-4 for transformers, 2e-3 for CNN/BiLSTM)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    max_steps: int | None = None
    max_examples: int | None = None  # every split, validation and test included: a quick run's metrics are a subset's
    max_train_examples: int | None = None  # the training split only: validation and test stay whole
    seed: int = 42
    precision: str = "no"
    grad_accumulation: int = 1  # optimizer step every N batches (effective batch = N x batch-size x processes)
    length_buckets: bool = True  # batch examples of similar length (less padding)
    checkpoint_every: int = 0  # resumable checkpoints every N optimizer steps too (0: at epoch ends only)
    keep_checkpoints: int = 2  # resumable checkpoints kept per run (the newest)
    eval_every: int = 0  # also evaluate on validation every N optimizer steps (0: at epoch ends only)
    patience: int = 0  # stop after N evaluations without a better validation score (0: never)
    report_to: list[str] = field(default_factory=list)  # experiment trackers (tensorboard, mlflow, wandb, ...)
    log_every: int = 50  # optimizer steps between the trackers' training-loss points (dense enough for curves)
    resume: bool = False  # continue the run in output_dir from its newest checkpoint
    teacher_cache: str = "auto"  # auto: cache the teacher's outputs once when the method allows; off: run it online
    teacher_epochs: int = 2
    teacher_lr: float = 1e-4
    teacher_heads: str = "linear"  # pseudo-classifier kind when the teacher's heads are trained on the fly
    heads_epochs: int = 10
    heads_lr: float = 1e-3
    output_dir: str | None = None
    overwrite: bool = False  # allow an output dir that already holds a run's results
    data_dir: str | None = None
    text_columns: list[str] | None = None  # custom tasks
    label_column: str = "label"
    num_labels: int | None = None
    regression: bool = False
    multi_label: bool = False  # custom tasks: several labels per row (a list, or names joined by label_separator)
    label_separator: str = ","  # between label names in a .tsv/.csv cell of a multi-label task
    latency: bool = True
    progress: bool = True

    def validate(self) -> DistillConfig:
        positive_ints = (
            "epochs",
            "batch_size",
            "eval_batch_size",
            "student_layers",
            "max_length",
            "teacher_epochs",
            "heads_epochs",
            "grad_accumulation",
            "augment_factor",
            "log_every",
        )
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise XKDError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("eval_every", "patience"):
            if getattr(self, name) < 0:
                raise XKDError(f"{name.replace('_', '-')} must be 0 (off) or more, got {getattr(self, name)}")
        for name in ("max_steps", "max_examples", "max_train_examples", "num_labels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise XKDError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("lr", "teacher_lr", "heads_lr"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise XKDError(f"{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.temperature is not None and not self.temperature > 0:
            raise XKDError(f"temperature must be > 0, got {self.temperature}")
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            raise XKDError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not 0 <= self.warmup_ratio < 1:
            raise XKDError(f"warmup-ratio must lie in [0, 1), got {self.warmup_ratio}")
        if any(k < 1 for k in self.assistant_layers):
            raise XKDError(f"assistant-layers must be at least 1, got {self.assistant_layers}")
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise XKDError(
                f"checkpoint-every must be >= 0 and keep-checkpoints >= 1, got {self.checkpoint_every} and "
                f"{self.keep_checkpoints}"
            )
        if self.second_stage_epochs < 0:
            raise XKDError(f"second-stage-epochs must be >= 0, got {self.second_stage_epochs}")
        if self.weight_decay < 0:
            raise XKDError(f"weight-decay must be >= 0, got {self.weight_decay}")
        self.check_limits()  # sizes far outside sense (see xkd.limits for each limit and why)
        choices = {
            "finetune_teacher": ("auto", "always", "never"),
            "precision": ("no", "bf16", "fp16"),
            "teacher_heads": ("linear", "pooler"),
            "teacher_cache": ("auto", "off"),
            "transfer_dtype": ("float32", "float16"),
            "ensemble_average": ("logits", "probabilities"),
            "missing_outputs": ("fail", "drop"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise XKDError(
                    f"{name.replace('_', '-')} must be one of {', '.join(allowed)}, got '{getattr(self, name)}'"
                )
        return self

    def check_limits(self) -> None:
        """The absolute caps on the config's sizes (`CONFIG_LIMITS`; the lower bounds are `validate`'s)."""
        for name, (limit, why) in CONFIG_LIMITS.items():
            at_most(f"--{name.replace('_', '-')}", getattr(self, name), limit, why)
        for k in self.assistant_layers:
            at_most("--assistant-layers", k, MAX_LAYERS, "deeper than the deepest common encoders")

    @property
    def trackers(self) -> list[str]:
        """`--report-to` values, repeatable or comma-separated."""
        return [name.strip() for value in self.report_to for name in value.split(",") if name.strip()]

    def optimizer_steps(self, rows: int | None, epochs: int | None = None) -> int | None:
        """Optimizer steps of a run over `rows` training rows for `epochs` (the student's by default); None when
        the rows are not known."""
        if rows is None:
            return None
        steps = math.ceil(rows / self.batch_size / self.grad_accumulation) * (epochs or self.epochs)
        return min(steps, self.max_steps) if self.max_steps else steps

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


_EPOCHS_WHY = "no distillation recipe comes near it; --max-steps bounds a run by steps"

# Config field -> (limit, why), checked by `DistillConfig.validate` (each limit's reasons: `xkd.limits`).
CONFIG_LIMITS: dict[str, tuple[int, str]] = {
    "epochs": (MAX_EPOCHS, _EPOCHS_WHY),
    "teacher_epochs": (MAX_EPOCHS, _EPOCHS_WHY),
    "heads_epochs": (MAX_EPOCHS, _EPOCHS_WHY),
    "second_stage_epochs": (MAX_EPOCHS, _EPOCHS_WHY),
    "augment_factor": (MAX_AUGMENT_FACTOR, "recipes use 20 copies per example; each copy is labelled by the teacher"),
    "student_layers": (MAX_LAYERS, "deeper than the deepest common encoders; a student should be small"),
    "max_length": (MAX_SEQUENCE_LENGTH, "the longest position range of common encoders"),
    "batch_size": (MAX_BATCH_SIZE, "a batch is held in memory at once"),
    "eval_batch_size": (MAX_BATCH_SIZE, "a batch is held in memory at once"),
}


DEFAULTS = DistillConfig()  # the one source of every default: other entry points read theirs from here
CONFIG_FIELDS = {f.name: f for f in fields(DistillConfig)}


def coerce_value(name: str, value: Any, source: str = "the config file") -> Any:
    """Check a value from a config file or `xkd.distill(...)` against the field's type (TOML/YAML and Python
    already give ints, floats and bools)."""
    default = CONFIG_FIELDS[name].default
    kind = type(default) if default not in (MISSING, None) else None
    annotation = str(CONFIG_FIELDS[name].type)
    if value is None:
        return None
    if "dict" in annotation:
        if isinstance(value, dict):
            return {str(k).replace("-", "_"): v for k, v in value.items()}
    elif annotation == "str | list[str]":  # one teacher, or an ensemble (a one-item list is one teacher)
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            return value[0] if len(value) == 1 else value
    elif "list[float]" in annotation:
        floats = _floats(value)
        if floats is not None:
            return floats
    elif "list[int]" in annotation:
        values = value if isinstance(value, list) else [value]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return values
    elif "list" in annotation:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    elif kind is bool or annotation == "bool":
        if isinstance(value, bool):
            return value
    elif kind is int or "int" in annotation:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float or "float" in annotation:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, str):
        return value
    raise XKDError(f"config key '{name}' should be {annotation}, got {value!r}; fix its value in {source}")


def _floats(value: Any) -> list[float] | None:
    """A list of numbers from a list, a number or a comma-separated string (`--teacher-weights 2,1`); None when it
    is none of these."""
    if isinstance(value, str):
        try:
            return [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            return None
    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    return None


def read_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The top-level key -> value pairs of a TOML, YAML or JSON file, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise XKDError(f"{what} {path} does not exist; pass the path of a .toml, .yaml or .json file")
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(path.read_text()) or {}
        elif path.suffix == ".json":
            raw = json.loads(path.read_text())
        else:
            raise XKDError(f"{what} {path} must end in .toml, .yaml, .yml or .json")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as e:
        first = str(e).strip().splitlines()[0]
        raise XKDError(f"cannot parse {what} {path}: {first}") from None
    if not isinstance(raw, dict):
        raise XKDError(f"{what} {path} must hold key = value pairs at the top level")
    return raw


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The checked key -> value pairs of a TOML, YAML or JSON file; keys may use '-' or '_'."""
    raw = read_mapping(path)
    values = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in CONFIG_FIELDS:
            raise XKDError(
                f"unknown config key '{key}' in {path}{closest(name, CONFIG_FIELDS)}; run 'xkd distill --help' for keys"
            )
        values[name] = coerce_value(name, value)
    return values


def build_config(file_values: dict[str, Any], cli_values: dict[str, Any]) -> DistillConfig:
    """Defaults < file < command line; `cli_values` holds only options the user actually gave.

    Method and student options merge key by key, so `-O gamma=2` keeps the file's other method options.
    """
    merged = {**file_values, **cli_values}
    for key in ("method_options", "student_options", "augment_options"):
        merged[key] = {**file_values.get(key, {}), **cli_values.get(key, {})}
    return DistillConfig(**merged).validate()
