"""Fine-tuning a teacher on a task, and a cache of fine-tuned teachers for recipes.

A teacher is fine-tuned by the same training loop as students (method `none`, no teacher). The cache keys a
fine-tuned copy by model, task, data, seed and hyperparameters, so a recipe that needs "MiniLM fine-tuned on
MR" pays for it once per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed
from datasets import DatasetDict

from xkd.config import DistillConfig
from xkd.damage import MODEL_FILES, TOKENIZER_FILES, damaged
from xkd.data import Collator, encode
from xkd.errors import XKDError
from xkd.files import file_lock, write_text_atomically
from xkd.log import Log, to_stderr
from xkd.methods import get_method
from xkd.paths import cache_root, model_key
from xkd.tasks import Task, task_record
from xkd.training import Checkpoints, TrainJob, TrainSettings, train

from .hf_encoder import META_FILE, HFEncoderClassifier, freeze

METRICS_FILE = "metrics.json"


def finetune(
    model_name: str,
    task: Task,
    raw_splits: DatasetDict,
    settings: TrainSettings,
    max_length: int,
    output_dir: str | os.PathLike,
    resume: bool = False,
    log=to_stderr,
) -> tuple[HFEncoderClassifier, dict[str, Any]]:
    """Fine-tune `model_name` on `task`; save the best epoch with `save_pretrained` plus `metrics.json`.

    Returns the frozen fine-tuned teacher and its summary (validation and test metrics, timings).
    """
    output_dir = Path(output_dir)
    set_seed(settings.seed)  # a bare encoder's new classifier head is drawn here: the same seed, the same teacher
    model = HFEncoderClassifier.from_pretrained(model_name, num_labels=task.output_size, what="teacher")
    if task.label_names:
        model.config.id2label = dict(enumerate(task.label_names))
        model.config.label2id = {n: i for i, n in enumerate(task.label_names)}
    if task.multi_label:  # saved in config.json: HF reloads (and its own loss) then read sigmoids, not a softmax
        model.config.problem_type = "multi_label_classification"
    tokenizers = {"student": model.tokenizer}
    splits = DatasetDict({n: encode(s, task, tokenizers, max_length) for n, s in raw_splits.items()})
    meta = {"role": "teacher", "base_model": model_name, **task_record(task), "max_length": max_length}
    terms = get_method("none").terms()
    job = TrainJob(model, task, splits, Collator(tokenizers), terms, settings, output_dir, save_dir=output_dir,
                   meta=meta, resume=resume)  # fmt: skip
    summary = train(job, log)
    summary["base_model"] = model_name
    write_text_atomically(output_dir / METRICS_FILE, json.dumps(summary, indent=2) + "\n")
    Checkpoints.discard(output_dir)  # finished (its metrics.json written): the model is the result
    return freeze(model), summary


def finetune_key(model_name: str, task: Task, data_source: str, settings: TrainSettings, max_length: int) -> str:
    # Settings that cannot change the fine-tuned weights stay out of the key.
    # eval_every and patience are always off for teachers (`train_settings`); keys made before they existed stay.
    ignored = (
        "progress",
        "eval_batch_size",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_every",
        "patience",
        "report_to",
        "log_every",
    )
    hyper = {k: v for k, v in asdict(settings).items() if k not in ignored}
    # A multi-label task of the same name and data is another teacher; single-label keys stay as they were.
    multi = {"multi_label": True, "label_separator": task.label_separator} if task.multi_label else {}
    # The model by its resolved path (or hub id) and the data by what it is (`xkd.teachers.resolve.data_source`: the
    # rows' fingerprint), never by a path as spelled: keys made before named the data directory as given, so the
    # same spelling in another folder found another data set's teacher. Fine-tunes cached under those keys are not
    # found again (nothing recorded in them proves what data they saw): each is fine-tuned once more under its new
    # key, and the old directories are left for `rm` (under <cache root>/teachers/).
    identity = {"model": model_key(model_name), "task": task.name, "data": data_source, "max_length": max_length}
    blob = json.dumps({**identity, **hyper, **multi}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def cache_damage(directory: Path) -> str | None:
    """Why a complete cached fine-tune cannot be used (a file that does not read, the model missing), or None.
    Pseudo heads stored beside it are not its business: a run that needs them retrains damaged ones."""
    problem = damaged(directory, (METRICS_FILE, META_FILE, *MODEL_FILES, *TOKENIZER_FILES))
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    if problem is None and not (directory / "config.json").is_file():
        problem = "config.json is missing"
    if problem is None and not any((directory / name).is_file() for name in weights):
        problem = "model.safetensors is missing"
    if problem is None and not isinstance(json.loads((directory / METRICS_FILE).read_text()), dict):
        problem = f"{METRICS_FILE} is damaged (it holds no summary)"
    return problem


def cached_summary(directory: Path) -> dict[str, Any] | None:
    """The summary of the fine-tune cached in `directory`; None when there is none or it is damaged."""
    if not (directory / METRICS_FILE).is_file() or cache_damage(directory) is not None:
        return None
    return json.loads((directory / METRICS_FILE).read_text())


def cached_finetune(
    model_name: str,
    task: Task,
    raw_splits: DatasetDict,
    settings: TrainSettings,
    max_length: int,
    data_source: str,
    log=print,
) -> tuple[Path, dict[str, Any], bool]:
    """The directory of `model_name` fine-tuned on `task`, training it only when no cached copy exists.

    Returns (directory, its summary, whether it came from the cache). A copy counts as cached only once its
    `metrics.json` is written, which happens last, so an interrupted fine-tune is redone, not reused.
    """
    slug = model_key(model_name).strip("/").replace("/", "--")
    key = finetune_key(model_name, task, data_source, settings, max_length)
    directory = cache_root() / "teachers" / f"{task.name}--{slug}--{key}"
    summary = cached_summary(directory)
    if summary is not None:
        return directory, summary, True
    # Processes that want the same teacher (two runs started side by side) fine-tune it once: one trains in the
    # work directory while the others wait for the lock, then find the finished copy.
    with file_lock(directory.with_name(f".{directory.name}.lock")) as free:
        if not free:
            log(f"teacher: another process is fine-tuning {model_name} into {directory}; waiting for it")
    with file_lock(directory.with_name(f".{directory.name}.lock"), wait=True):
        summary = cached_summary(directory)
        if summary is not None:
            return directory, summary, True
        if (directory / METRICS_FILE).is_file():  # complete, but a file of it was truncated or overwritten since
            why = cache_damage(directory)
            log(f"teacher: the cached fine-tune in {directory} is damaged ({why}); fine-tuning again")
        log(f"fine-tuning teacher {model_name} on {task.name} (cached afterwards in {directory})")
        work = directory.with_name(directory.name + ".partial")
        resume = Checkpoints.exist(work)  # an interrupted fine-tune of this very key continues where it stopped
        if resume:
            log(f"teacher: continuing the interrupted fine-tune in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        _, summary = finetune(model_name, task, raw_splits, settings, max_length, work, resume=resume, log=log)
        shutil.rmtree(directory, ignore_errors=True)
        work.rename(directory)
    return directory, summary, False


def finetune_config(model_name: str, task: str, data_dir: str | None, values: dict[str, Any]) -> DistillConfig:
    """`xkd teacher finetune`'s given options as the distillation config whose teacher fine-tune they describe, so
    both entry points train (and cache) the same teacher from the same defaults (`--epochs` and `--lr` are the
    teacher's)."""
    renamed = {"epochs": "teacher_epochs", "lr": "teacher_lr"}
    values = {renamed.get(k, k): v for k, v in values.items() if k != "overwrite"}
    return DistillConfig(task=task, teacher=model_name, data_dir=data_dir, **values).validate()


def finetune_into(
    cfg: DistillConfig, task: Task, raw: DatasetDict, output_dir: str | None, overwrite: bool, log: Log = to_stderr
) -> tuple[Path, dict[str, Any]]:
    """`xkd teacher finetune`: fine-tune `cfg.teacher` into `output_dir` (default `runs/teacher-TASK-MODEL`). A
    directory holding a finished teacher is refused unless `overwrite`; one holding an interrupted fine-tune
    continues from its checkpoint (never restarts) unless `overwrite`."""
    slug = cfg.teacher.strip("/").replace("/", "--")
    out = Path(output_dir) if output_dir else Path("runs") / f"teacher-{task.name}-{slug}"
    if (out / METRICS_FILE).exists() and not overwrite:
        raise XKDError(f"{out} already holds a fine-tuned teacher; choose another --output-dir or pass --overwrite")
    resume = Checkpoints.exist(out) and not overwrite
    if resume:
        log(f"teacher: continuing the interrupted fine-tune in {out}")
    settings = TrainSettings.from_config(cfg, teacher=True)
    _, summary = finetune(cfg.teacher, task, raw, settings, cfg.max_length, out, resume=resume, log=log)
    return out, summary
