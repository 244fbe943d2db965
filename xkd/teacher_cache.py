"""An exact cache of the frozen teacher's outputs, so a study pays for the teacher once.

The teacher is frozen and in eval mode, so its outputs on a split are a pure function of its weights, its pseudo
heads, its tokenizer, the data and the maximum length. One pass over each split stores the final logits, the
per-layer sentence vectors and the per-layer pseudo-logits as `.npy` files that training opens memory-mapped and
indexes by example, across epochs, seeds and methods. Attention maps ([L, H, T, T] per example) are never stored:
methods that need them run the teacher online.

Layout: `<cache root>/traces/<task>--<teacher>--<key>/` with `meta.json` and `<split>/<field>.npy`. The key names
what the cache is *for* (the teacher's resolved path or hub id, task, the data's row fingerprint, max length: no path
as spelled; caches keyed before by the data directory as given are not found again but labelled once more);
`meta.json` holds a fingerprint of what it *contains* (weights, heads, tokenizer, token ids and labels), checked on
every open: a teacher re-fine-tuned in place or an edited data file makes a stale cache, which is rebuilt, and said.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch import nn
from tqdm.auto import tqdm

from xkd.config import DEFAULTS
from xkd.damage import damaged, first_line
from xkd.data import Collator, hash_tensors, make_loader, tokenizer_fingerprint, tokenizer_spec_fingerprint
from xkd.errors import Interrupted, XKDError
from xkd.files import file_lock, write_text_atomically
from xkd.interrupts import StopRequest, stop_requests
from xkd.log import Log, to_stderr
from xkd.paths import cache_root, model_key
from xkd.processes import process_state
from xkd.trace import Trace

FORMAT = 1
FIELDS = ("logits", "layer_vectors", "pseudo_logits")


def traces_root() -> Path:
    return cache_root() / "traces"


def _hash_column(h: Any, split: Dataset, column: str) -> None:
    values = split.data.column(column).combine_chunks()
    if hasattr(values, "flatten"):  # token ids: a list column; hash the values and the row boundaries
        h.update(np.asarray(values.offsets).astype(np.int64).tobytes())
        values = values.flatten()
    array = values.to_numpy(zero_copy_only=False)
    h.update(str(array.dtype).encode() + array.tobytes())


def _hash_teacher_inputs(h: Any, split: Dataset, collator: Collator) -> None:
    source = collator.aliases["teacher"]
    for column in sorted(c for c in split.column_names if c.startswith(f"{source}__")):
        _hash_column(h, split, column)


def split_key(split: Dataset, collator: Collator) -> str:
    """A short hash of the teacher's token ids of a split: what names a transfer set's cache directory."""
    h = hashlib.sha1()
    _hash_teacher_inputs(h, split, collator)
    return h.hexdigest()[:16]


class _Hashes:
    """Several hashes fed the same bytes (one pass over the weights and token ids for two fingerprints)."""

    def __init__(self, *hashes: Any) -> None:
        self.hashes = hashes

    def update(self, data: bytes) -> None:
        for h in self.hashes:
            h.update(data)


def fingerprints(teacher: nn.Module, splits: DatasetDict, collator: Collator, max_length: int) -> tuple[str, str]:
    """What the cached outputs are a function of: weights, heads, tokenizer, token ids, labels and max length.

    Returns (the fingerprint, the one caches were stored under before): the earlier one also hashed the fast
    tokenizer's padding/truncation state, which depends on whether the tokenizer was called before (an ensemble
    member sharing another member's encoding never is); a cache stored under it is still reused."""
    head = hashlib.sha1(f"format={FORMAT};max_length={max_length}".encode())
    now, before = head.copy(), head.copy()
    now.update(tokenizer_fingerprint(teacher.tokenizer).encode())
    before.update(tokenizer_spec_fingerprint(teacher.tokenizer).encode())
    h = _Hashes(now, before)
    hash_tensors(h, teacher.state_dict())  # includes the pseudo heads when attached
    for name in sorted(splits):
        h.update(name.encode())
        _hash_teacher_inputs(h, splits[name], collator)
        _hash_column(h, splits[name], "labels")
    return now.hexdigest(), before.hexdigest()


@dataclass(frozen=True)
class Storage:
    """Which teacher outputs a cache stores, and at what precision (a large transfer set may keep only the logits
    the method reads, in float16)."""

    fields: tuple[str, ...] = FIELDS
    dtype: str = "float32"

    @classmethod
    def of(cls, meta: dict[str, Any]) -> Storage:
        return cls(tuple(meta.get("fields", FIELDS)), meta.get("dtype", "float32"))

    def holds(self, wanted: Storage) -> bool:
        return set(self.fields) >= set(wanted.fields) and self.dtype == wanted.dtype

    def union(self, other: Storage) -> Storage:
        return Storage(tuple(f for f in FIELDS if f in self.fields or f in other.fields), self.dtype)

    def describe(self) -> str:
        return f"{', '.join(self.fields)} as {self.dtype}"

    def as_kwargs(self) -> dict[str, Any]:
        return {"fields": self.fields, "dtype": self.dtype}


class StackedArray:
    """Row-wise concatenation of arrays (memory-mapped ones stay on disk), indexable by an array of row numbers:
    the training split of a run with a transfer set is the gold rows followed by the transfer rows."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0, *(len(p) for p in parts)])
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])
        self.nbytes = sum(p.nbytes for p in parts)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.float32)
        for k in np.unique(part):
            picked = part == k
            out[picked] = self.parts[k][rows[picked] - self.offsets[k]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[np.arange(len(self))] if dtype is None else self[np.arange(len(self))].astype(dtype)


@dataclass
class TeacherCache:
    """Memory-mapped teacher outputs per split; `trace` rebuilds the teacher's Trace for a batch of examples."""

    directory: Path
    meta: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]

    def has(self, split: str) -> bool:
        return split in self.arrays

    def trace(self, split: str, index: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Trace:
        """The teacher's Trace for examples `index` of `split`, on the device of `index` (float32 whatever the
        storage). A field the cache does not store (layer vectors of a transfer set no method reads) is empty."""
        rows = index.cpu().numpy()
        fields = {
            name: torch.from_numpy(np.asarray(array[rows])).to(index.device).float()
            for name, array in self.arrays[split].items()
        }
        return Trace(
            logits=fields["logits"],
            layer_vectors=fields.get("layer_vectors", torch.zeros(len(rows), 0, 0, device=index.device)),
            pseudo_logits=fields.get("pseudo_logits"),
            attention_mask=attention_mask,
        )

    def logits(self, split: str) -> np.ndarray:
        return np.asarray(self.arrays[split]["logits"])

    def joined(self, other: TeacherCache, split: str, other_split: str) -> TeacherCache:
        """This cache with `split` extended by the rows of `other`'s `other_split` (indices continue after this
        split's rows), keeping the fields both store."""
        mine, theirs = self.arrays[split], other.arrays[other_split]
        stacked = {f: StackedArray([mine[f], theirs[f]]) for f in mine if f in theirs}
        return TeacherCache(self.directory, self.meta, {**self.arrays, split: stacked})

    @property
    def examples(self) -> int:
        """Examples the teacher ran on to build the cache (one pass per cached split)."""
        return sum(len(split["logits"]) for split in self.arrays.values())

    @property
    def size_bytes(self) -> int:
        return sum(a.nbytes for split in self.arrays.values() for a in split.values())


class DamagedCache(XKDError):
    """A complete cache (its meta.json is written last) whose files do not read: truncated by a full disk or an
    interrupted copy, or overwritten. It is a cache, so `open_or_build` rebuilds it and says `why`."""

    def __init__(self, directory: Path, why: str) -> None:
        super().__init__(f"teacher cache {directory} is damaged ({why}); remove it with 'xkd cache clear {directory}'")
        self.directory, self.why = directory, why


def open_cache(directory: Path) -> TeacherCache | None:
    """The cache stored in `directory`, memory-mapped, or None when it is absent or incomplete; `DamagedCache` when
    its meta.json or an array does not read, or an array does not hold a row per example."""
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        rows = {str(split): int(n) for split, n in meta["splits"].items()}
        stored = set(meta.get("fields", FIELDS))
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # not JSON, or not the meta xkd writes
        raise DamagedCache(directory, f"meta.json is damaged or truncated ({first_line(e)})") from None
    arrays = {split: _open_arrays(directory, split, n, stored) for split, n in rows.items()}
    return TeacherCache(directory, meta, arrays)


def _open_arrays(directory: Path, split: str, rows: int, stored: set[str]) -> dict[str, np.ndarray]:
    arrays = {}
    for field in FIELDS:
        path = directory / split / f"{field}.npy"
        if not path.is_file():
            if field in stored and field != "pseudo_logits":  # (a teacher without heads has no pseudo-logits)
                raise DamagedCache(directory, f"{split}/{field}.npy is missing")
            continue
        try:
            array = np.load(path, mmap_mode="r")
        except OSError:
            raise  # unreadable (permissions, ...), not damaged: the error says so
        except Exception as e:  # a header that does not parse or describes more data than the file holds
            raise DamagedCache(directory, f"{split}/{field}.npy is damaged or truncated ({first_line(e)})") from None
        if array.ndim == 0 or len(array) != rows:
            raise DamagedCache(directory, f"{split}/{field}.npy holds {array.shape} values, not {rows} rows")
        arrays[field] = array
    return arrays


SAVE_EVERY_SECONDS = 30.0  # how much labelling an interruption may cost at most


@dataclass
class LabellingPass:
    """One teacher pass over a cache's splits, as far as it got: what labels (the teacher, batched by `collator`),
    what is stored, where it is written, which batches of each split are done, and the process group and stop
    request it answers to."""

    teacher: nn.Module
    collator: Collator
    batch_size: int
    progress: bool
    fields: tuple[str, ...]
    dtype: str
    work: Path
    identity: dict[str, Any]  # what the work directory's batches were labelled with (`progress.json`)
    done: dict[str, int]  # split -> batches written
    start: float
    group: Any  # the process group (`xkd.processes.process_state`)
    stop: StopRequest


@torch.no_grad()
def build_cache(
    teacher: nn.Module,
    splits: DatasetDict,
    collator: Collator,
    directory: Path,
    meta: dict[str, Any],
    batch_size: int = DEFAULTS.eval_batch_size,
    progress: bool = True,
    fields: tuple[str, ...] = FIELDS,
    dtype: str = "float32",
    log: Log = to_stderr,
) -> TeacherCache | None:
    """One teacher pass per split, written to a work directory that replaces `directory` when complete. Only
    `fields` are stored, as `dtype`.

    Under `accelerate launch` every process calls it: each labels its share of the batches and the main process
    writes (it returns the cache; the others return None and open it once the main process is done).

    Resumable: the work directory records how many batches of each split are written (`progress.json`, saved after
    the arrays are flushed, at least every `SAVE_EVERY_SECONDS`), so a pass that was interrupted or killed continues
    where it stopped when the same cache is asked for again; batches come in a fixed order (by length), and a work
    directory left by another teacher, data or storage is started over.
    """
    group = process_state()
    work = directory.with_name(f"{directory.name}.building")
    identity = {"fingerprint": meta.get("fingerprint"), "fields": list(fields), "dtype": dtype, "batch": batch_size}
    identity["processes"] = group.num_processes  # rounds of batches are dealt by process count
    done = _resumable(work, identity, log) if group.is_main_process else {}
    if group.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        done = broadcast_object_list([done])[0]
    start = time.perf_counter() - done.pop("seconds", 0.0)
    was_training = teacher.training
    teacher.eval()
    with stop_requests() as stop:
        labelling = LabellingPass(teacher, collator, batch_size, progress, fields, dtype, work, identity, done, start,
                                  group, stop)  # fmt: skip
        for name, split in splits.items():
            _label_split(labelling, name, split)
    teacher.train(was_training)
    if not group.is_main_process:
        return None  # the main process writes the cache; callers open it after waiting for it
    meta = {
        **meta,
        "format": FORMAT,
        "splits": {name: len(split) for name, split in splits.items()},
        "fields": list(fields),
        "dtype": dtype,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    (work / "progress.json").unlink(missing_ok=True)
    (work / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(work, directory)
    cache = open_cache(directory)
    assert cache is not None
    return cache


def _resumable(work: Path, identity: dict[str, Any], log: Log) -> dict[str, Any]:
    """Batches already written per split (and the seconds spent) when `work` holds an interrupted pass of the same
    cache; otherwise an empty work directory and nothing done. A pass whose progress record or arrays do not read
    (truncated, overwritten) is started over, and said."""
    progress_file = work / "progress.json"
    if progress_file.is_file():
        problem = None
        try:
            saved = json.loads(progress_file.read_text())
            same = saved.get("identity") == identity
            done = {str(split): int(n) for split, n in saved["done"].items()}
            seconds = float(saved.get("seconds", 0.0))
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # not JSON, or not the record xkd writes
            same, problem = False, f"progress.json is damaged or truncated ({first_line(e)})"
        if same:
            problem = damaged(work, [f"{split}/*.npy" for split, n in done.items() if n > 0])
            if problem is None:
                return {**done, "seconds": seconds}
        if problem is not None:
            log(f"teacher cache: the interrupted build in {work} is damaged ({problem}); starting that build over")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return {}


def _label_split(labelling: LabellingPass, name: str, split: Dataset) -> None:
    """Write the teacher's outputs on one split into `<work>/<name>/<field>.npy`, skipping the batches a previous,
    interrupted pass wrote; the bar shows texts per second and the time left.

    Under several processes the batches are dealt out in rounds (process p labels batch round·P + p); each round's
    outputs are gathered to the main process, which alone writes files."""
    work, done, group, progress = labelling.work, labelling.done, labelling.group, labelling.progress
    teacher, collator, fields = labelling.teacher, labelling.collator, labelling.fields
    rank, world, main = group.process_index, group.num_processes, group.is_main_process
    device = next(teacher.parameters()).device
    order = list(make_loader(split, collator, labelling.batch_size, shuffle=False, buckets=True).batch_sampler)
    first_round = done.get(name, 0) // world
    files = _open_split_files(work / name, fields, resume=first_round > 0) if main else {}
    bar = tqdm(total=len(split), desc=f"teacher labels {name}", unit=" texts", disable=not (progress and main),
               dynamic_ncols=True, initial=sum(len(b) for b in order[: first_round * world]))  # fmt: skip
    saved_at = time.perf_counter()

    def launch(mine: int):
        return _launch_batch(teacher, collator, split, order[mine], fields, device) if mine < len(order) else None

    pending = launch(first_round * world + rank)
    for start in range(first_round * world, len(order), world):
        following = launch(start + world + rank)  # queued on the device before this batch is waited for
        outputs, pending = _finished(pending), following
        for rows, values in _gathered(outputs, group):
            _write_rows(files, work / name, len(split), rows, values, labelling.dtype)
            bar.update(len(rows))
        done[name] = min(start + world, len(order))
        if labelling.stop.agreed(group):  # Ctrl-C / SIGTERM: keep what is labelled, then stop
            if main:
                _save_progress(files, labelling)
            bar.close()
            labelled = sum(len(b) for b in order[: done[name]])
            raise Interrupted(
                f"teacher labelling stopped at {labelled} of {len(split)} texts of '{name}'; the labelled part is kept "
                f"in {work}",
                labelling.stop.signal or signal.SIGINT,
            )
        if main and time.perf_counter() - saved_at > SAVE_EVERY_SECONDS:
            _save_progress(files, labelling)
            saved_at = time.perf_counter()
    bar.close()
    if main:
        _save_progress(files, labelling)


def _open_split_files(directory: Path, fields: tuple[str, ...], resume: bool) -> dict[str, np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    if not resume:
        return {}
    return {f: np.load(directory / f"{f}.npy", mmap_mode="r+") for f in fields if (directory / f"{f}.npy").is_file()}


def _launch_batch(teacher, collator, split, rows: list[int], fields, device) -> tuple:
    """Start the teacher on the given rows: (row numbers, field -> float32 CPU tensor being copied, the event that
    marks the copies done, or None on the CPU).

    On a GPU the copies are asynchronous, so the next batch's collation (CPU) overlaps this batch's forward pass
    instead of waiting for it: a pass that waits batch by batch ran at 2/3 of plain inference on an H100."""
    batch = collator([split[i] for i in rows])
    trace = teacher({k: v.to(device) for k, v in batch["teacher"].items()})
    values = {
        f: getattr(trace, f).float().to("cpu", non_blocking=True) for f in fields if getattr(trace, f) is not None
    }
    event = torch.accelerator.current_stream(device).record_event() if device.type != "cpu" else None
    return batch["index"].numpy(), values, event


def _finished(launched) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """A launched batch's (row numbers, field -> float32 array), once its copies are done."""
    if launched is None:
        return None
    rows, values, event = launched
    if event is not None:
        event.synchronize()
    return rows, {f: v.numpy() for f, v in values.items()}


def _gathered(outputs, group) -> list:
    """This round's outputs of every process, on the main process (others get an empty list)."""
    if group.num_processes == 1:
        return [outputs] if outputs is not None else []
    from accelerate.utils import gather_object

    everything = gather_object([outputs])
    return [o for o in everything if o is not None] if group.is_main_process else []


def _write_rows(files, directory: Path, rows_total: int, rows: np.ndarray, values: dict, dtype: str) -> None:
    for field, value in values.items():
        if field not in files:
            shape = (rows_total, *value.shape[1:])
            files[field] = np.lib.format.open_memmap(directory / f"{field}.npy", "w+", dtype, shape)
        files[field][rows] = value


def _save_progress(files: dict[str, np.ndarray], labelling: LabellingPass) -> None:
    """Flush the arrays, then record what they hold (in that order: the record never runs ahead of the data)."""
    for array in files.values():
        array.flush()
    seconds = time.perf_counter() - labelling.start
    record = {"identity": labelling.identity, "done": labelling.done, "seconds": seconds}
    write_text_atomically(labelling.work / "progress.json", json.dumps(record))


def cache_dir(teacher_path: str, task: str, data_source: str, max_length: int, root: Path | None = None) -> Path:
    """Where the cache for this teacher, task, data and length lives (its contents are checked on open). A local
    teacher counts by its resolved path, in the key and the name alike, so every spelling of it finds one cache;
    `data_source` names the data by its rows (`xkd.teachers.resolve.data_source`), never by a path as spelled."""
    teacher = model_key(teacher_path)
    identity = json.dumps(
        {
            "teacher": teacher,
            "task": task,
            "data": data_source,
            "max_length": max_length,
        },
        sort_keys=True,
    )
    key = hashlib.sha1(identity.encode()).hexdigest()[:12]
    slug = Path(teacher.rstrip("/")).name.replace("/", "--") or "teacher"
    return (root or traces_root()) / f"{task}--{slug}--{key}"


@dataclass
class CacheJob:
    """What `open_or_build` opens, or builds: the teacher's outputs on `splits`, in `directory`, with `storage`.
    `accepted`: the fingerprints a reusable cache may carry (see `fingerprints`)."""

    teacher: nn.Module
    splits: DatasetDict
    collator: Collator
    directory: Path
    meta: dict[str, Any]
    accepted: tuple[str, ...]
    log: Log
    progress: bool
    storage: Storage
    batch_size: int

    def build(self, storage: Storage) -> TeacherCache | None:
        """One labelling pass with `storage` (see `build_cache`)."""
        meta = {**self.meta, "fingerprint": self.accepted[0]}
        options = {**storage.as_kwargs(), "log": self.log}
        return build_cache(self.teacher, self.splits, self.collator, self.directory, meta, self.batch_size,
                           self.progress, **options)  # fmt: skip


def open_or_build(
    teacher: nn.Module,
    splits: DatasetDict,
    collator: Collator,
    directory: Path,
    meta: dict[str, Any],
    max_length: int,
    log: Log,
    progress: bool = True,
    storage: Storage = Storage(),
    batch_size: int = DEFAULTS.eval_batch_size,
) -> TeacherCache:
    """Reuse the cache in `directory` when its fingerprint matches the teacher and data and it stores the wanted
    fields at the wanted precision; otherwise (re)build it (keeping the fields it stored before, so runs of
    different methods do not rebuild it in turn).

    Processes sharing the cache (study workers) check and build it under a lock, so one builds while the others
    wait and then reuse it."""
    wanted, before = fingerprints(teacher, splits, collator, max_length)
    lock = directory.with_name(f".{directory.name}.lock")
    job = CacheJob(teacher, splits, collator, directory, meta, (wanted, before), log, progress, storage, batch_size)
    if process_state().num_processes > 1:
        return _open_or_build_together(lock, job)
    with file_lock(lock) as free:
        if free:
            return _open_or_build(job)
    log(f"teacher cache: another process is building {directory}; waiting for it")
    with file_lock(lock, wait=True):
        return _open_or_build(job)


def _plan(job: CacheJob) -> tuple[TeacherCache | None, Storage | None]:
    """(the cache to reuse, None) or (None, the storage to build with), said in the log."""
    directory, splits, accepted, storage, log = job.directory, job.splits, job.accepted, job.storage, job.log
    try:
        cache = open_cache(directory)
    except DamagedCache as e:
        log(f"teacher cache: {directory} is damaged ({e.why}); rebuilding it")
        return None, storage
    stored = cache.meta.get("fingerprint") if cache is not None else None
    same = stored in accepted and set(cache.meta["splits"]) >= set(splits)
    if same and Storage.of(cache.meta).holds(storage):
        log(f"teacher cache: reusing {directory} ({cache.size_bytes / 2**20:.0f} MiB)")
        return cache, None
    if same:
        storage = storage.union(Storage.of(cache.meta))
        log(f"teacher cache: {directory} lacks some of {storage.describe()}; building it again with them")
    elif cache is not None:
        log(
            f"teacher cache: {directory} does not match this teacher and data (fingerprint "
            f"{str(stored)[:12]} != {accepted[0][:12]}: weights, heads, tokenizer or data changed); "
            "rebuilding it"
        )
    else:
        log(f"teacher cache: one teacher pass over {', '.join(splits)} into {directory}")
    return None, storage


def _open_or_build(job: CacheJob) -> TeacherCache:
    cache, storage = _plan(job)
    if cache is not None:
        return cache
    cache = job.build(storage)
    job.log(f"teacher cache: built in {cache.meta['build_seconds']:.0f} s ({cache.size_bytes / 2**20:.0f} MiB)")
    return cache


def _open_or_build_together(lock: Path, job: CacheJob) -> TeacherCache:
    """Under several processes: the main process decides (holding the lock other studies' processes respect), all
    label their share when a pass is needed, and all open the result."""
    from accelerate.utils import broadcast_object_list

    group = process_state()
    with file_lock(lock, wait=True) if group.is_main_process else nullcontext(True):
        plan = [_plan(job)[1]] if group.is_main_process else [None]
        storage = broadcast_object_list(plan)[0]  # None: reuse the cache as it is
        if storage is not None:
            job.build(storage)
        group.wait_for_everyone()
    cache = open_cache(job.directory)
    if cache is None:
        raise RuntimeError(f"teacher cache {job.directory} is missing after it was built")
    if storage is not None:
        job.log(f"teacher cache: built in {cache.meta['build_seconds']:.0f} s ({cache.size_bytes / 2**20:.0f} MiB)")
    return cache


def list_caches(root: Path | None = None) -> list[dict[str, Any]]:
    """Every complete cache under the root, with its meta and size on disk; a damaged one has only `dir`,
    `size_mib` and `damaged` (why), so that it can be cleared."""
    root = root or traces_root()
    out = []
    for directory in sorted(root.glob("*")) if root.is_dir() else []:
        try:
            cache = open_cache(directory)
        except DamagedCache as e:
            size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
            out.append({"dir": str(directory), "size_mib": round(size / 2**20, 1), "damaged": e.why})
            continue
        if cache is not None:
            out.append({"dir": str(directory), "size_mib": round(cache.size_bytes / 2**20, 1), **cache.meta})
    return out


def clear_caches(directories: Iterable[Path]) -> list[Path]:
    removed = []
    for directory in directories:
        if directory.is_dir():
            shutil.rmtree(directory)
            removed.append(directory)
    return removed
