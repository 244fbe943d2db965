"""The teacher's outputs a run reads, behind one entry point (`open_teacher_outputs`): the teacher cache of the gold
splits joined with the transfer set's (`xkd.teacher_cache` stores and labels them), an ensemble's members' caches
combined when read, or outputs saved outside xkd (`--teacher-outputs`). `xkd cache build` builds the same caches
ahead of the runs (`build_teacher_caches`)."""

from __future__ import annotations

from typing import Any

from datasets import DatasetDict, concatenate_datasets
from torch import nn

from xkd.config import DistillConfig
from xkd.data import Collator, check_classes, encode, is_labeled, load_splits
from xkd.errors import XKDError
from xkd.log import Log
from xkd.methods import Method, get_method
from xkd.tasks import Task, resolve_task
from xkd.teacher_cache import FIELDS, Storage, TeacherCache, cache_dir, open_or_build, split_key
from xkd.teachers.ensemble import EnsembleCache, EnsembleTeacher, check_ensemble, member_collator, teacher_list
from xkd.teachers.outside import OutsideOutputs, match_outputs
from xkd.teachers.resolve import check_teacher_sizes, ensure_teacher_heads, member_configs, resolve_teacher
from xkd.transfer.sets import SPLIT as TRANSFER
from xkd.transfer.sets import build_transfer, check_transfer, fit_augment

ALL_OUTPUTS = Storage()  # gold splits: every output, float32
TeacherOutputs = TeacherCache | EnsembleCache | OutsideOutputs


def open_teacher_outputs(
    cfg: DistillConfig,
    method: Method,
    task: Task,
    teacher: nn.Module | None,
    info: dict[str, Any],
    splits: DatasetDict,
    collator: Collator,
    log: Log,
    outside: OutsideOutputs | None = None,
) -> TeacherOutputs | None:
    """The teacher outputs the training loop reads (None: the teacher runs online), their directory recorded in
    `info`. An ensemble's members are cached one by one under their own keys (the caches their one-teacher runs
    use) and combined when read. Outside outputs (`--teacher-outputs`) are read as a cache is."""
    if outside is not None:
        info["outputs"] = outside.report
        return outside
    if not isinstance(teacher, EnsembleTeacher):
        cache = teacher_cache(cfg, method, task, teacher, info["path"], info["data_fingerprint"], splits, collator, log)
        if cache is not None:
            info["cache"] = str(cache.directory)
        return cache
    caches = []
    for k, (member, member_info) in enumerate(zip(teacher.members, info["members"], strict=True)):
        view = member_collator(collator, k)
        source = member_info["data_fingerprint"]
        caches.append(teacher_cache(cfg, method, task, member, member_info["path"], source, splits, view, log))
        if caches[-1] is not None:
            member_info["cache"] = str(caches[-1].directory)
    if any(c is None for c in caches):
        return None
    return EnsembleCache(caches, teacher.weights, teacher.average)


def teacher_cache(
    cfg: DistillConfig, method: Method, task: Task, teacher, teacher_path: str, data: str, splits, collator, log
) -> TeacherCache | None:
    """The teacher-output cache when the config and method allow one (see `xkd.teacher_cache`), else None. `data`:
    the gold data's `data_source`."""
    if not method.needs_teacher or cfg.teacher_cache == "off":
        return None
    if method.needs_attentions:
        log(f"teacher cache: not used: {method.name} needs attention maps, which are never cached; teacher runs online")
        return None
    return open_caches(cfg, method, task, teacher, teacher_path, data, splits, collator, log)


def open_caches(
    cfg: DistillConfig, method: Method, task: Task, teacher, teacher_path: str, data: str, splits, collator, log
) -> TeacherCache:
    """The gold splits' cache, joined with the transfer set's (which stores only what `method` reads) if any."""
    cache = open_gold_cache(cfg, task, teacher, teacher_path, data, splits, collator, log)
    if TRANSFER not in splits:
        return cache
    fields = ("logits", *method.reads(cfg.method_options))
    storage = Storage(tuple(f for f in FIELDS if f in fields), cfg.transfer_dtype)
    source = f"transfer:{split_key(splits[TRANSFER], collator)}"  # keyed by content: runs on one set share it
    transfer_splits = DatasetDict({TRANSFER: splits[TRANSFER]})
    transfer = _open_cache(cfg, task, teacher, teacher_path, source, transfer_splits, collator, log, storage)
    return cache.joined(transfer, "train", TRANSFER)


def open_gold_cache(
    cfg: DistillConfig, task: Task, teacher, teacher_path: str, data: str, splits: DatasetDict, collator, log: Log
) -> TeacherCache:
    """The cache of this teacher's outputs on the splits training reads (train, validation, labelled test), keyed by
    `data`, the gold data's `data_source` (the encoded `splits` no longer hold the texts it is computed from)."""
    names = [n for n in splits if n == "train" or n in task.validation_splits or is_labeled(splits[n])]
    names = [n for n in names if n != TRANSFER]  # a transfer set has a cache of its own
    splits = DatasetDict({n: splits[n] for n in names})
    return _open_cache(cfg, task, teacher, teacher_path, data, splits, collator, log)


def _open_cache(cfg, task, teacher, teacher_path, source, splits, collator, log, storage=ALL_OUTPUTS) -> TeacherCache:
    """The cache of `splits` under the key of this teacher, task, data source and length. Under several processes
    all label their share and one writes (see `build_cache`)."""
    directory = cache_dir(teacher_path, task.name, source, cfg.max_length)
    meta = {"teacher": teacher_path, "task": task.name, "max_length": cfg.max_length, "data": source}
    options = {"progress": cfg.progress, "storage": storage, "batch_size": cfg.eval_batch_size}
    return open_or_build(teacher, splits, collator, directory, meta, cfg.max_length, log, **options)


def with_transfer_rows(splits: DatasetDict) -> DatasetDict:
    """The splits training reads: the transfer rows appended to the training split (their `index` continuing after
    the gold rows', as in the joined teacher cache), and no transfer split of their own."""
    if TRANSFER not in splits:
        return splits
    train, extra = splits["train"], splits[TRANSFER]
    extra = extra.map(lambda b: {"index": [i + len(train) for i in b["index"]]}, batched=True)
    rest = {n: s for n, s in splits.items() if n not in ("train", TRANSFER)}
    return DatasetDict({"train": concatenate_datasets([train, extra]), **rest})


def outside_rows(
    cfg: DistillConfig, task: Task, raw: DatasetDict, transfer, log: Log
) -> tuple[DatasetDict, Any, OutsideOutputs | None]:
    """With `--teacher-outputs`: the gold splits and the transfer set less the rows lacking outputs (when dropped;
    else a one-line error), and the outputs served like a teacher cache (`xkd.teachers.outside`); else all as
    they are."""
    if not cfg.teacher_outputs:
        return raw, transfer, None
    joined = DatasetDict({**raw, **({TRANSFER: transfer} if transfer is not None else {})})
    joined, outside = match_outputs(cfg, task, joined, [*task.validation_splits, *task.test_splits], log)
    transfer = joined.pop(TRANSFER) if TRANSFER in joined else None
    return joined, transfer, outside


def build_teacher_caches(cfg: DistillConfig, log: Log = print) -> list[TeacherCache]:
    """`xkd cache build` for one teacher or an ensemble: each member's own cache, the one its one-teacher run and
    the ensemble run both read."""
    if cfg.teacher_outputs:
        raise XKDError("--teacher-outputs are read as they are: there is no teacher to cache; drop it, or --teacher")
    if len(teacher_list(cfg.teacher)) > 1:
        check_ensemble(cfg.validate(), get_method(cfg.method), resolve_task(cfg))
    return [build_teacher_cache(member, log) for member in member_configs(cfg)]


def build_teacher_cache(cfg: DistillConfig, log: Log = print) -> TeacherCache:
    """The teacher cache the distillation `cfg` describes, built (or checked) ahead of the runs.

    The teacher is resolved as `run_distill` does (fine-tuned and cached when needed; pseudo heads trained when the
    method needs them), so the runs find the cache under the same key and fingerprint.
    """
    cfg = fit_augment(cfg)[0].validate()  # the default transfer set too, as the runs will make it
    check_transfer(cfg)
    method = get_method(cfg.method)
    task, raw = load_splits(resolve_task(cfg), cfg.data_dir, cfg.max_examples, cfg.max_train_examples)
    check_classes(task, raw, cfg.data_dir)  # a fine-tune or pseudo heads would train on it
    check_teacher_sizes(cfg)
    teacher, info = resolve_teacher(cfg, task, raw, log)
    ensure_teacher_heads(teacher, info, method.needs_teacher_heads, task, raw, cfg, log)
    transfer, _ = build_transfer(cfg, task, raw, log)
    if transfer is not None:
        raw = DatasetDict({**raw, TRANSFER: transfer})
    tokenizers = {"teacher": teacher.tokenizer}
    splits = DatasetDict({n: encode(s, task, tokenizers, cfg.max_length) for n, s in raw.items()})
    collator = Collator(tokenizers)
    return open_caches(cfg, method, task, teacher, info["path"], info["data_fingerprint"], splits, collator, log)
