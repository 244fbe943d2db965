"""Loading, checking and tokenizing task data.

Sources, in order: an explicit `data_dir` holding `<split>.{tsv,csv,jsonl,parquet}`; `$XKD_DATA_DIR/<task>/`; the
Hugging Face hub. Every split is checked before any training starts (columns present, labels in the task's label
set, finite regression targets), so a bad file costs seconds, not a run.

Teacher and student may use different tokenizers (a CNN student has its own vocabulary), so each example is
tokenized once per distinct tokenizer and every batch carries one padded input per model role.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset, DatasetDict, DatasetInfo, SplitDict, SplitInfo
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedTokenizerBase

from xkd.errors import XKDError
from xkd.tasks import Task, label_names

SUFFIXES = (".tsv", ".csv", ".jsonl", ".parquet")
DATA_DIR_ENV = "XKD_DATA_DIR"
UNLABELED = -1  # GLUE's hidden test labels


def read_table(path: Path) -> pd.DataFrame:
    """Read one split file; TSV/CSV with quoting off, since MR has a sentence holding a lone `"`."""
    try:
        if path.suffix in (".tsv", ".csv"):
            return pd.read_csv(
                path,
                sep="\t" if path.suffix == ".tsv" else ",",
                quoting=csv.QUOTE_NONE if path.suffix == ".tsv" else csv.QUOTE_MINIMAL,
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8",
            )
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        return pd.read_parquet(path)
    except UnicodeDecodeError as e:
        line = _first_undecodable_line(path)
        raise XKDError(f"{path}: line {line} is not valid UTF-8 ({e.reason}); re-save the file as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise XKDError(f"{path} is empty; write a header row and at least one example") from None
    except (ValueError, pd.errors.ParserError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise XKDError(f"cannot parse {path}: {first}; check the file's format matches its suffix") from None


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table in the format its suffix names (TSV with quoting off, as `read_table` reads it)."""
    if path.suffix not in SUFFIXES:
        raise XKDError(f"{path} must end in {', '.join(SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_NONE, escapechar="\\")
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _first_undecodable_line(path: Path) -> int:
    # The parser's error offset is relative to its read buffer, so find the line ourselves.
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def split_file(directory: Path, split: str) -> Path | None:
    for suffix in SUFFIXES:
        candidate = directory / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def local_data_dir(task: Task, data_dir: str | os.PathLike | None) -> Path | None:
    """The directory to read the task from, or None to fall back to the hub."""
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise XKDError(f"data dir {path} does not exist; pass a directory holding train/validation files")
        return path
    env = os.environ.get(DATA_DIR_ENV)
    if env and (Path(env) / task.name).is_dir():
        return Path(env) / task.name
    return None


def load_splits(
    task: Task,
    data_dir: str | os.PathLike | None = None,
    max_examples: int | None = None,
    max_train_examples: int | None = None,
) -> tuple[Task, DatasetDict]:
    """Load and check every split of `task`.

    Returns the task (completed with the label count and names of a custom task) and its splits as `datasets`
    objects holding the text columns and `labels`. Test splits without labels are kept but marked unlabeled;
    a missing test split is skipped. `max_examples` caps every split with a fixed random subset, for quick runs
    (validation and test included: their metrics are then a subset's); `max_train_examples` caps the training split
    alone. A split so cut records its full size, as Hugging Face does for a sliced split (see `full_rows`).
    """
    directory = local_data_dir(task, data_dir)
    if directory is not None:
        frames = {}
        for split in task.splits:
            path = split_file(directory, split)
            if path is None:
                if split in task.test_splits:
                    continue
                raise XKDError(f"{directory} has no {split} split; add {split}.tsv (or .csv/.jsonl/.parquet) to it")
            frames[split] = read_table(path)
            _refuse_scalar_labels(task, frames[split], path)
        source = str(directory)
    else:
        frames, source = _from_hub(task)

    if task.hub_path is None and not task.regression and task.num_labels == 0:
        task = _infer_labels(task, frames["train"], source)
    full = {name: len(df) for name, df in frames.items()}
    caps = {name: max_examples for name in frames}
    if max_train_examples is not None and "train" in caps:
        caps["train"] = min(max_train_examples, max_examples or max_train_examples)
    # A fixed random subset, not the head: split files are often sorted by label.
    frames = {
        name: df if caps[name] is None else df.sample(n=min(caps[name], len(df)), random_state=0).sort_index()
        for name, df in frames.items()
    }
    splits = DatasetDict()
    for name, df in frames.items():
        info = _cut_from(name, full[name]) if len(df) < full[name] else None
        splits[name] = Dataset.from_pandas(_checked(task, name, df, source), info=info, preserve_index=False)
    return task, splits


def _cut_from(name: str, rows: int) -> DatasetInfo:
    splits = SplitDict()
    splits.add(SplitInfo(name=name, num_examples=rows))
    return DatasetInfo(splits=splits)


def full_rows(split: Dataset, name: str) -> int:
    """The rows split `name` had before `load_splits` cut it to `split` (--max-examples, --max-train-examples);
    its own length when it was not cut."""
    recorded = (split.info.splits or {}).get(name)
    return int(recorded.num_examples) if recorded is not None else len(split)


def _from_hub(task: Task) -> tuple[dict[str, pd.DataFrame], str]:
    if task.hub_path is None:
        raise XKDError(f"task '{task.name}' has no hub source; pass --data-dir DIR with train/validation files")
    try:
        from datasets import load_dataset

        ds = load_dataset(task.hub_path, task.hub_config)
    except Exception as e:  # offline, unreachable or missing: all say the same to the user
        env = os.environ.get(DATA_DIR_ENV)
        looked = f"{env}/{task.name}" if env else f"${DATA_DIR_ENV} (unset)"
        raise XKDError(
            f"no local data for task '{task.name}' (looked in {looked}) and the hub failed "
            f"({type(e).__name__}); pass --data-dir DIR or set {DATA_DIR_ENV}"
        ) from None
    frames = {split: ds[split].to_pandas() for split in task.splits if split in ds}
    return frames, f"hub:{task.hub_path}"


def _infer_labels(task: Task, train: pd.DataFrame, source: str) -> Task:
    if task.label_column not in train.columns:
        return task  # the column check below reports it
    if task.multi_label:
        return _infer_multi_labels(task, train[task.label_column], f"{source} [train]")
    _refuse_lists(task, train[task.label_column], f"{source} [train]")
    values = train[task.label_column].dropna().unique()
    if len(values) == 1:  # the label set is what the training split holds: one class is no classifier
        raise one_class(task, values[0], f"{source} [train]")
    if all(isinstance(v, (int, np.integer)) for v in values):
        return replace(task, num_labels=int(max(values)) + 1 if len(values) else 0)
    names = tuple(sorted(str(v) for v in values))
    return replace(task, num_labels=len(names), label_names=names)


def one_class(task: Task, label: Any, where: str, cut: tuple[int, int] | None = None) -> XKDError:
    """The error for a training split whose rows all hold one label (`label`: its name or index); `cut`, the
    (kept, full) row counts when --max-examples or --max-train-examples cut the split."""
    fix = f"check the label column '{task.label_column}' and the data"
    if cut is not None:
        fix += f", or raise --max-examples/--max-train-examples (they kept {cut[0]} random rows of {cut[1]})"
    return XKDError(
        f"the training split of task '{task.name}' ({where}) holds one class ({label}); a classifier needs at least "
        f"two: {fix}"
    )


def check_classes(
    task: Task,
    splits: Mapping[str, Dataset],
    data_dir: str | os.PathLike | None = None,
) -> None:
    """What trains on `splits["train"]` (a student, a teacher's fine-tune, pseudo heads) needs two classes in it
    (single-label classification; a multi-label row may hold several labels or none). `data_dir` as given to
    `load_splits`, to name the data; a split it cut says so (`full_rows`)."""
    if task.regression or task.multi_label or "train" not in splits:
        return
    train = splits["train"]
    labels = np.unique(np.asarray(train["labels"]))
    labels = labels[labels != UNLABELED]
    if len(labels) == 1:
        names, index = label_names(task), int(labels[0])
        directory = local_data_dir(task, data_dir)
        source = str(directory) if directory is not None else f"hub:{task.hub_path}"
        cut = (len(train), full_rows(train, "train")) if len(train) < full_rows(train, "train") else None
        raise one_class(task, names[index] if 0 <= index < len(names) else index, f"{source} [train]", cut)


def _infer_multi_labels(task: Task, column: pd.Series, where: str) -> Task:
    """The label set of a multi-label task from its training rows: label ids when every label is an integer (the
    count is the largest id + 1, as for single labels), else the sorted names."""
    values = {label for cell in column for label in label_list(cell, task.label_separator)}
    if not values:
        raise XKDError(f"{where}: no row holds a label; a multi-label task needs labels in its training split")
    if all(isinstance(v, int) for v in values):
        return replace(task, num_labels=max(values) + 1)
    names = tuple(sorted(str(v) for v in values))
    return replace(task, num_labels=len(names), label_names=names)


def label_list(cell: Any, separator: str) -> list[int | str]:
    """One multi-label cell as its labels: a list as is (JSON lists of .jsonl/.parquet files), a string split at
    `separator` (.tsv/.csv; a JSON list written as text is read as one), an empty cell as no labels. Names that
    are whole numbers become integer ids, as a single-label integer column does."""
    if isinstance(cell, str):
        text = cell.strip()
        parsed = _json_list(text) if text.startswith("[") else None
        items = parsed if parsed is not None else text.split(separator)
    elif isinstance(cell, (list, tuple, np.ndarray)):
        items = list(cell)
    elif cell is None or (isinstance(cell, float) and np.isnan(cell)):
        items = []
    else:
        items = [cell]
    labels: list[int | str] = []
    for item in items:
        text = str(item).strip()
        if text.isdecimal() or (isinstance(item, (int, np.integer)) and not isinstance(item, bool)):
            labels.append(int(text))
        elif text:
            labels.append(text)
    return labels


def _json_list(text: str) -> list | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _refuse_scalar_labels(task: Task, frame: pd.DataFrame, path: Path) -> None:
    """A multi-label file whose label cells are numbers or booleans (e.g. a 0/1 column): each would silently become
    a label of its own, so the file is refused, naming the row and the form a multi-label cell takes."""
    if not task.multi_label or task.label_column not in frame.columns:
        return
    column = frame[task.label_column]
    scalar = column.map(lambda v: isinstance(v, (bool, int, float, np.bool_, np.number)) and not pd.isna(v))
    rows = np.flatnonzero(scalar.to_numpy(dtype=bool))
    if not len(rows):
        return
    sep, name = task.label_separator, task.label_column
    if path.suffix in (".tsv", ".csv"):
        form = f"label names joined by '{sep}' in each cell, e.g. sports{sep}politics (an empty cell for none)"
    else:
        form = f'a list of label names per row, e.g. "{name}": ["sports", "politics"] ([] for none)'
        form += f", or one string of names joined by '{sep}'"
    value = column.iloc[rows[0]]
    value = value.item() if isinstance(value, np.generic) else value
    raise XKDError(
        f"{path} row {rows[0] + 1}: --multi-label reads a set of labels per row, but the label column '{name}' "
        f"holds {value!r}, a single value; write {form}, or drop --multi-label if each row has one label"
    )


def _refuse_lists(task: Task, column: pd.Series, where: str) -> None:
    """A single-label task whose label cells are lists: the data is multi-label, which must be asked for."""
    rows = np.flatnonzero(column.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).to_numpy(dtype=bool))
    if len(rows):
        raise XKDError(
            f"{where}: the label column '{task.label_column}' holds lists (row {rows[0] + 1}: "
            f"{list(column.iloc[rows[0]])}); for several labels per row pass --multi-label"
        )


def _checked(task: Task, split: str, df: pd.DataFrame, source: str) -> pd.DataFrame:
    """The split's text columns and numeric `labels`, or a one-line error naming what is wrong."""
    where = f"{source} [{split}]"
    if len(df) == 0:
        raise XKDError(f"{where} has no examples; fill the file or remove it")
    missing = [c for c in task.text_columns if c not in df.columns]
    if missing:
        raise XKDError(
            f"{where} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))}); "
            f"rename them or pass --text-column"
        )
    out = pd.DataFrame({c: df[c].fillna("").astype(str) for c in task.text_columns})
    is_test = split in task.test_splits
    if task.label_column not in df.columns:
        if not is_test:
            raise XKDError(f"{where} lacks the label column '{task.label_column}'; add it or pass --label-column")
        if task.multi_label:
            out["labels"] = list(np.full((len(df), task.num_labels), UNLABELED, dtype=np.float32))
        else:
            out["labels"] = np.full(len(df), UNLABELED, dtype=np.float32 if task.regression else np.int64)
        return out
    out["labels"] = _labels(task, df[task.label_column], where, is_test)
    return out


def _labels(task: Task, column: pd.Series, where: str, is_test: bool) -> np.ndarray | list[np.ndarray]:
    if task.multi_label:
        return list(multi_hot(task, column, where))
    _refuse_lists(task, column, where)
    if task.regression:
        values = pd.to_numeric(column, errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=np.float64)))
        if len(bad):
            raise XKDError(
                f"{where}: label on row {bad[0] + 1} is '{column.iloc[bad[0]]}', not a number; "
                "regression targets must be finite numbers"
            )
        if task.label_range is not None and not (is_test and (values == UNLABELED).all()):
            low, high = task.label_range
            out = np.flatnonzero((values < low) | (values > high))
            if len(out):
                raise XKDError(
                    f"{where}: label {values.iloc[out[0]]} on row {out[0] + 1} is outside [{low}, {high}]; "
                    "fix the target or use a custom task"
                )
        return values.to_numpy(dtype=np.float32)

    if task.label_names and not pd.api.types.is_numeric_dtype(column):
        index = {name: i for i, name in enumerate(task.label_names)}
        ids = column.astype(str).map(index)
        if ids.isna().any():
            row = int(np.flatnonzero(ids.isna().to_numpy())[0])
            raise XKDError(
                f"{where}: label '{column.iloc[row]}' on row {row + 1} is not one of "
                f"{', '.join(task.label_names)}; fix the label or the task's label names"
            )
        return ids.to_numpy(dtype=np.int64)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    allowed = np.isfinite(values) & (values == np.round(values))
    allowed &= ((values >= 0) & (values < task.num_labels)) | (is_test & (values == UNLABELED))
    bad = np.flatnonzero(~allowed)
    if len(bad):
        raise XKDError(
            f"{where}: label '{column.iloc[bad[0]]}' on row {bad[0] + 1} is not in the task's label set "
            f"0..{task.num_labels - 1}; fix the data or pick the right task"
        )
    return values.astype(np.int64)


def multi_hot(task: Task, column: pd.Series, where: str) -> np.ndarray:
    """A multi-label column as float rows [N, C] with 1 for each label a row holds (an empty cell: no labels, a
    row of zeros: "none of these" is a valid answer); a label outside the task's set is a one-line error."""
    names = label_names(task)
    index = {name: i for i, name in enumerate(names)}
    out = np.zeros((len(column), len(names)), dtype=np.float32)
    for row, cell in enumerate(column):
        for label in label_list(cell, task.label_separator):
            if str(label) not in index:
                raise XKDError(
                    f"{where}: label '{label}' on row {row + 1} is not one of {', '.join(names)}; fix the label or "
                    "the task's label names"
                )
            out[row, index[str(label)]] = 1.0
    return out


def labeled_rows(labels: np.ndarray) -> np.ndarray:
    """Which rows carry a gold label: rows not marked UNLABELED (all their entries, for multi-hot rows [N, C])."""
    labels = np.asarray(labels)
    return labels != UNLABELED if labels.ndim == 1 else (labels != UNLABELED).all(axis=-1)


def is_labeled(split: Dataset) -> bool:
    return len(split) > 0 and bool(np.any(np.asarray(split["labels"]) != UNLABELED))


# ---------------------------------------------------------------------------------------------- fingerprint


def hash_tensors(h: Any, state: Mapping[str, torch.Tensor]) -> None:
    """Feed a state dict's names, shapes, dtypes and bytes to `h`: what a model's outputs are a function of."""
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def data_fingerprint(task: Task, splits: Mapping[str, Dataset]) -> str:
    """What the loaded data *is*, for cache keys: a hash of every split's rows (its text columns and labels, in
    order) and of the task's columns and label names. The same rows reached by any path (relative or absolute, a
    symlink, a copy, another working directory) give one fingerprint; other rows (a flipped label, another subset,
    an edited text) another. The one source of the data's identity in every cache key (fine-tuned teachers,
    teacher outputs). Hashes the Arrow buffers, not Python strings: MR's 10.6k rows take about 2 ms."""
    head = {
        "format": 1,
        "text_columns": list(task.text_columns),
        "label_names": list(label_names(task)),
        "regression": task.regression,
        "multi_label": task.multi_label,
    }
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for name in sorted(splits):
        split = splits[name]
        table = split.with_format("arrow")[:] if split._indices is not None else split.data  # a selection: its rows
        h.update(f"\x1d{name}:{len(split)}".encode())
        for column in (*task.text_columns, "labels"):
            h.update(f"\x1e{column}".encode())
            _hash_values(h, table.column(column).combine_chunks())
    return h.hexdigest()[:16]


def _hash_values(h: Any, array: Any) -> None:
    """Feed one Arrow array's values to `h`, independent of chunking, slicing and 32/64-bit string offsets."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
        h.update(b"text" + np.diff(offsets).tobytes())  # the lengths, then the bytes: no separator to collide
        data = array.buffers()[2]
        if data is not None and len(offsets) and offsets[-1] > offsets[0]:
            h.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
    elif pa.types.is_list(array.type) or pa.types.is_large_list(array.type):  # multi-hot labels
        h.update(b"list" + pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
        _hash_values(h, array.flatten())
    else:
        values = np.ascontiguousarray(array.to_numpy(zero_copy_only=False))
        h.update(str(values.dtype).encode() + values.tobytes())


# ---------------------------------------------------------------------------------------------- tokenization


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Same fingerprint = same token ids for the same text, so teacher and student can share one encoding (and
    compare attention maps position by position). The backend's padding and truncation state is left out: a call
    such as `tokenizer(texts, padding="max_length")` changes it on a fast tokenizer without changing any token id."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer_spec_fingerprint(tokenizer)
    spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("padding", "truncation")}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def tokenizer_spec_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """The whole backend spec as it is, state included: part of the teacher cache's fingerprint, whose token ids
    are hashed as well; kept as it was when caches were first keyed, so existing caches stay valid."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else f"{tokenizer.name_or_path}:{len(tokenizer)}"
    return hashlib.sha1(text.encode()).hexdigest()


def shared_roles(tokenizers: Mapping[str, PreTrainedTokenizerBase], separate: Collection[str] = ()) -> dict[str, str]:
    """Map each role to the first role with the same tokenizer and pair mode, so identical encodings are computed
    once."""
    first: dict[tuple[str, bool], str] = {}
    return {
        role: first.setdefault((tokenizer_fingerprint(tok), role in separate), role) for role, tok in tokenizers.items()
    }


def separate_roles(model: Any, role: str = "student") -> set[str]:
    """{role} when the model reads the two texts of a pair apart (CNN, BiLSTM), else nothing: `encode`'s
    `separate`."""
    return {role} if getattr(model, "pair_encoding", "joint") == "separate" else set()


def encode(
    split: Dataset,
    task: Task,
    tokenizers: Mapping[str, PreTrainedTokenizerBase],
    max_length: int,
    separate: Collection[str] = (),
) -> Dataset:
    """Tokenize a split once per distinct tokenizer (batched `datasets.map`), without padding.

    Columns come out as `<role>__input_ids` etc.; padding happens per batch in `Collator`. Roles in `separate`
    encode the two texts of a pair apart (`input_ids` and `input_ids_b`), for students such as CNNs and BiLSTMs
    that read each sentence with a shared encoder; other roles read a pair as one sequence, as BERT does.
    """
    aliases = shared_roles(tokenizers, separate)
    roles = sorted(set(aliases.values()))

    def tokenize(batch: dict, indices: list[int]) -> dict:
        texts = [batch[c] for c in task.text_columns]
        out = {"index": indices}  # the row, so cached teacher outputs can be looked up per example
        for role in roles:
            enc = tokenize_texts(tokenizers[role], texts, max_length, role in separate)
            out.update({f"{role}__{key}": value for key, value in enc.items()})
        return out

    return split.map(tokenize, batched=True, with_indices=True, remove_columns=list(task.text_columns), desc=None)


def tokenize_texts(
    tokenizer: PreTrainedTokenizerBase, texts: list[list[str]], max_length: int, separate: bool = False
) -> dict[str, list]:
    """Token ids of one or two parallel text columns, unpadded: the one tokenization training, evaluation and
    prediction share. `separate` encodes the two texts of a pair apart (keys `input_ids` and `input_ids_b`)."""
    if separate and len(texts) == 2:
        out = {}
        for suffix, column in (("", texts[0]), ("_b", texts[1])):
            enc = tokenizer(column, truncation=True, max_length=max_length, return_token_type_ids=False)
            out.update({f"{key}{suffix}": value for key, value in enc.items()})
        return out
    if len(texts) == 1 and _plain_fast(tokenizer):
        return _backend_encode(tokenizer, texts[0], max_length)
    return dict(tokenizer(*texts, truncation=True, max_length=max_length))


def _plain_fast(tokenizer: PreTrainedTokenizerBase) -> bool:
    """A fast tokenizer whose batch encoding is transformers' own (no subclass adds steps to it)."""
    from transformers import PreTrainedTokenizerFast

    return isinstance(tokenizer, PreTrainedTokenizerFast) and (
        type(tokenizer)._encode_plus is PreTrainedTokenizerFast._encode_plus
    )


def _backend_encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> dict[str, list]:
    """What `tokenizer(texts, truncation=True, max_length=...)` gives, from the Rust encodings directly.

    transformers turns each encoding into a dict of lists and then stacks them, which took 23% of a static
    student's prediction time (10,620 texts: 0.49 s of 2.1 s); the same settings (transformers' own
    `set_truncation_and_padding`) and the same keys, in the same order, tested equal on every tokenizer kind."""
    from transformers.tokenization_utils_base import PaddingStrategy, TruncationStrategy

    tokenizer.set_truncation_and_padding(
        padding_strategy=PaddingStrategy.DO_NOT_PAD,
        truncation_strategy=TruncationStrategy.LONGEST_FIRST,
        max_length=max_length,
        stride=0,
        pad_to_multiple_of=None,
        padding_side=None,
    )
    backend = tokenizer.backend_tokenizer
    if backend.encode_special_tokens != tokenizer.split_special_tokens:
        backend.encode_special_tokens = tokenizer.split_special_tokens
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no character offsets: 18% faster
    encodings = encode(list(texts), add_special_tokens=True)
    out: dict[str, list] = {"input_ids": [e.ids for e in encodings]}
    if "token_type_ids" in tokenizer.model_input_names:
        out["token_type_ids"] = [e.type_ids for e in encodings]
    if "attention_mask" in tokenizer.model_input_names:
        out["attention_mask"] = [[1] * len(ids) for ids in out["input_ids"]]
    return out


class Collator:
    """Pads each model role's inputs to the longest example of the batch (dynamic padding)."""

    def __init__(self, tokenizers: Mapping[str, PreTrainedTokenizerBase], separate: Collection[str] = ()) -> None:
        self.tokenizers = dict(tokenizers)
        self.aliases = shared_roles(tokenizers, separate)

    def without(self, role: str) -> Collator:
        """The same collator minus one model role's inputs (a cached teacher needs no padded inputs)."""
        other = copy.copy(self)
        other.aliases = {r: source for r, source in self.aliases.items() if r != role}
        return other

    def __call__(self, features: list[dict]) -> dict:
        labels = torch.tensor([f["labels"] for f in features])
        batch: dict = {"labels": labels}
        if "index" in features[0]:
            batch["index"] = torch.tensor([f["index"] for f in features])
        padded: dict[str, dict[str, torch.Tensor]] = {}
        for role, source in self.aliases.items():
            if source not in padded:
                prefix = f"{source}__"
                rows = [{k[len(prefix) :]: v for k, v in f.items() if k.startswith(prefix)} for f in features]
                padded[source] = pad_rows(self.tokenizers[source], rows)
            batch[role] = padded[source]
        return batch


def pad_rows(tokenizer: PreTrainedTokenizerBase, rows: list[dict]) -> dict[str, torch.Tensor]:
    """Pad unpadded rows of `tokenize_texts` to a batch; the second texts of separate pairs are padded apart."""
    second = [{k[:-2]: v for k, v in r.items() if k.endswith("_b")} for r in rows]
    first = [{k: v for k, v in r.items() if not k.endswith("_b")} for r in rows]
    out = _padded(tokenizer, first)
    if second[0]:
        out.update({f"{k}_b": v for k, v in _padded(tokenizer, second).items()})
    return out


def _padded(tokenizer: PreTrainedTokenizerBase, rows: list[dict]) -> dict[str, torch.Tensor]:
    """`tokenizer.pad(rows, return_tensors="pt")`, written into one array per key (transformers' pad took 16% of a
    static student's prediction time); keys it does not know how to pad go through transformers."""
    values = {
        "input_ids": tokenizer.pad_token_id,
        "token_type_ids": tokenizer.pad_token_type_id,
        "attention_mask": 0,
        "special_tokens_mask": 1,
    }
    if tokenizer.pad_token_id is None or any(k not in values for k in rows[0]):
        return dict(tokenizer.pad(rows, return_tensors="pt"))
    steps = max(len(r["input_ids"]) for r in rows)
    left = tokenizer.padding_side == "left"
    out = {}
    for key in rows[0]:
        array = np.full((len(rows), steps), values[key], dtype=np.int64)
        for i, row in enumerate(rows):
            start = steps - len(row[key]) if left else 0
            array[i, start : start + len(row[key])] = row[key]
        out[key] = torch.from_numpy(array)
    return out


def example_lengths(split: Dataset) -> np.ndarray:
    """Tokens per example, the longest over model roles (a pair read apart counts both texts)."""
    import pyarrow.compute as pc

    lengths = np.zeros(len(split), dtype=np.int64)
    roles: dict[str, np.ndarray] = {}
    for column in split.column_names:
        role, sep, key = column.partition("__")
        if sep and key in ("input_ids", "input_ids_b"):
            counts = pc.list_value_length(split.data.column(column)).to_numpy(zero_copy_only=False)
            roles[role] = roles.get(role, 0) + counts.astype(np.int64)
    for counts in roles.values():
        lengths = np.maximum(lengths, counts)
    return lengths


class LengthBuckets(Sampler[list[int]]):
    """Batches of similar length, so dynamic padding pads little.

    Training (`shuffle`): a permutation seeded by seed + epoch is cut into chunks of `chunk` batches, each chunk
    sorted by length and cut into batches, and the batches shuffled: batches are random, but each holds examples
    of similar length. Evaluation: batches in order of length. Call `for_epoch` before each epoch (deliberately not
    `set_epoch`, which accelerate calls with its own counter, and only in multi-process runs).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, chunk: int = 50) -> None:
        self.lengths, self.batch_size, self.shuffle, self.seed, self.chunk = lengths, batch_size, shuffle, seed, chunk
        self.epoch = 0

    def for_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            yield from (order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size))
            return
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        size = self.batch_size * self.chunk
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")] for c in chunks])
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        for i in rng.permutation(len(batches)):
            yield batches[i]


def make_loader(
    split: Dataset,
    collator: Collator,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    buckets: bool = False,
) -> DataLoader:
    """Batches of `split`; with `buckets`, examples of similar length share a batch (see `LengthBuckets`).

    Shuffled loaders always go through `LengthBuckets` (without buckets, chunks of one batch: a plain shuffle),
    so any epoch's batches follow from the seed and the epoch alone, which is what makes resuming exact.
    """
    if buckets or shuffle:
        sampler = LengthBuckets(example_lengths(split), batch_size, shuffle, seed, chunk=50 if buckets else 1)
        # A generator of its own: starting an epoch then draws nothing from the global RNG, so dropout masks do
        # not depend on where an epoch starts (what lets a resumed run restore the RNG once).
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(split, batch_sampler=sampler, collate_fn=collator, generator=generator)
    return DataLoader(split, batch_size=batch_size, shuffle=False, collate_fn=collator)
