"""Outside soft labels: a teacher's outputs saved elsewhere (e.g. a large model behind an API) standing in for a
teacher model.

`--teacher-outputs FILE` (.jsonl, .parquet, .tsv or .csv) holds one row per text, keyed by the text (the task's
text column(s), or a `text` column for single-text tasks) or by `id`, the row's position in the training split.
Each row holds one output column: `logits` (C floats), `probabilities` (C floats summing to 1), `log_probabilities`
or a hard `label` (a label name or index). All become logit-like rows: logits as given; probabilities and labels
as log-probabilities (a softmax of them gives the distribution back), a hard label as a one-hot distribution. Zero
probabilities are floored at `FLOOR` (1e-7) before the log, since KD's KL divergence is NaN on a log of zero.

`OutsideOutputs` serves these rows exactly as the teacher cache serves a teacher's (`has`, `trace`, `logits`), so
the training loop, which reads teacher outputs only through that interface, runs unchanged. The file holds only
final outputs: methods that read a teacher's layers, pseudo classifiers or attention maps are refused before
anything loads (`check_outside`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset, DatasetDict
from torch import Tensor

from xkd.data import SUFFIXES, read_table
from xkd.errors import XKDError
from xkd.log import Log
from xkd.tasks import Task
from xkd.trace import Trace

if TYPE_CHECKING:
    from xkd.config import DistillConfig
    from xkd.methods import Method

FORMS = ("logits", "probabilities", "log_probabilities", "label")
FLOOR = 1e-7  # the least probability kept: log(0) would make KD's KL divergence NaN
TOLERANCE = 1e-3  # how far from 1 a row of probabilities may sum
SAME = 1e-5  # two rows for one text agree when their outputs differ by no more (batched inference's rounding)
SHOWN = 3  # rows without outputs named in a message
TRANSFER = "transfer"  # the transfer split's name (`xkd.transfer.sets.SPLIT`)
TEACHER_STUDENTS = {
    "bert-k": "BERT-k copies the teacher's layers; pass -S checkpoint=PATH (a small pretrained encoder)",
    "distilroberta": "DistilRoBERTa copies a RoBERTa teacher's layers; pass -S checkpoint=distilroberta-base",
}


def outside_info(path: str | Path) -> dict[str, Any]:
    """What a run (and a study) records as its teacher when saved outputs stand in for one."""
    return {"source": f"outputs:{path}"}


def check_outside(cfg: DistillConfig, method: Method, task: Task, default_teacher: str) -> None:
    """Everything `--teacher-outputs` cannot do, refused before anything loads, each in one line with the reason:
    a teacher model besides the file, methods reading more than final outputs, TAKD, students built from a
    teacher, and a file that is missing or of an unknown kind."""
    if not cfg.teacher_outputs:
        return
    if cfg.teacher != default_teacher or cfg.teacher_weights:
        raise XKDError(
            "--teacher and --teacher-outputs both name a teacher; give one: a model with --teacher, or its saved "
            "outputs with --teacher-outputs"
        )
    missing = _needs_more(method, cfg.method_options)
    if missing:
        raise XKDError(
            f"{method.name} needs {missing}; --teacher-outputs holds only final outputs (use kd or logit-mse)"
        )
    if cfg.assistant_layers:
        raise XKDError(
            "TAKD distils assistants from a teacher model; --teacher-outputs has none, drop --assistant-layers"
        )
    _check_student(cfg)
    path = Path(cfg.teacher_outputs)
    if path.suffix not in SUFFIXES:
        raise XKDError(f"teacher outputs file {path} must end in {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise XKDError(f"teacher outputs file {path} does not exist; pass the file of the outputs you saved")


def _needs_more(method: Method, options: dict[str, Any]) -> str | None:
    """What `method` reads beyond final logits under its `options`, in words, or None."""
    fields = method.reads(options)
    if method.needs_attentions:
        return "the teacher's attention maps"
    if "pseudo_logits" in fields:
        return "the teacher's per-layer pseudo classifiers"
    if "layer_vectors" in fields:
        return "the teacher's per-layer vectors"
    return None


def _check_student(cfg: DistillConfig) -> None:
    """Students built from a teacher model have none to be built from."""
    options = cfg.student_options
    if cfg.student in TEACHER_STUDENTS and not options.get("checkpoint"):
        raise XKDError(
            f"student '{cfg.student}' is built from a teacher model and --teacher-outputs has none: "
            f"{TEACHER_STUDENTS[cfg.student]}, or use --student cnn/bilstm"
        )
    if cfg.student in ("cnn", "bilstm") and options.get("vocab") == "teacher":
        raise XKDError(
            f"student '{cfg.student}' with vocab=teacher reads a teacher model's tokenizer and --teacher-outputs has "
            "none; use -S vocab=word or -S vocab=sentencepiece"
        )
    if str(options.get("vectors", "")) == "teacher" and not options.get("vectors_teacher"):
        raise XKDError(
            f"student '{cfg.student}' with vectors=teacher distils its input vectors from a teacher model and "
            "--teacher-outputs has none; pass -S vectors_teacher=MODEL or -S vectors=FILE (GloVe)"
        )


# ------------------------------------------------------------------------------------------------- reading


@dataclass
class OutputTable:
    """The file's rows as key -> logit-like vector; keys are text tuples, or train row ids (`by == "id"`)."""

    path: Path
    forms: list[str]  # the output columns the file has (each row fills one)
    by: str  # "text" or "id"
    rows: dict[Any, np.ndarray] = field(default_factory=dict)


def read_outputs(path: str | Path, task: Task) -> OutputTable:
    """The outputs file as a lookup table, every row checked (one line naming the first bad row)."""
    path = Path(path)
    frame = read_table(path)
    if len(frame) == 0:
        raise XKDError(f"teacher outputs file {path} holds no rows; write one row per text with its outputs")
    forms = [f for f in FORMS if f in frame.columns]
    if not forms:
        raise XKDError(f"teacher outputs file {path} has none of the columns {', '.join(FORMS)}; add the outputs")
    key_columns, by = _key_columns(frame, task, path)
    table = OutputTable(path, forms, by)
    keys = frame[key_columns].astype(str).itertuples(index=False, name=None) if by == "text" else frame["id"]
    outputs = frame[forms].itertuples(index=False, name=None)
    first: dict[Any, tuple[int, str]] = {}  # the row that gave each key its outputs, and those outputs as given
    for number, (key, values) in enumerate(zip(keys, outputs, strict=True), start=1):
        where = f"{path} row {number}"
        form, value = _one_output(forms, values, where)
        key = _row_id(key, path, number) if by == "id" else key
        vector = _vector(value, form, task, where)
        if key not in table.rows:
            table.rows[key], first[key] = vector, (number, _given(form, value, where))
        elif not np.allclose(table.rows[key], vector, rtol=SAME, atol=SAME):  # the same outputs twice: one row
            shown = f"id {key}" if by == "id" else f"the text {' | '.join(key)[:50]!r}"
            raise XKDError(
                f"{path} rows {first[key][0]} and {number} give {shown} different outputs ({first[key][1]} and "
                f"{_given(form, value, where)}); keep one row per text"
            )
    return table


def _one_output(forms: list[str], values: tuple, where: str) -> tuple[str, Any]:
    """The one output a row fills (a file may mix forms across rows, e.g. labels where an API gave no scores)."""
    filled = [(form, value) for form, value in zip(forms, values, strict=True) if not _blank(value)]
    if len(filled) != 1:
        what = "none" if not filled else " and ".join(form for form, _ in filled)
        raise XKDError(f"{where} fills {what} of {', '.join(forms)}; give each row exactly one output")
    return filled[0]


def _blank(value: Any) -> bool:
    """An empty cell: None, NaN or an empty string (JSON lines and tables leave other rows' columns so)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    return isinstance(value, float) and math.isnan(value)


def _key_columns(frame: pd.DataFrame, task: Task, path: Path) -> tuple[list[str], str]:
    """The text column(s) rows are keyed by, else `id`."""
    columns = list(task.text_columns)
    if all(c in frame.columns for c in columns):
        return columns, "text"
    if len(columns) == 1 and "text" in frame.columns:
        return ["text"], "text"
    if "id" in frame.columns:
        return ["id"], "id"
    wanted = " and ".join(columns) + (" (or text)" if len(columns) == 1 else "")
    raise XKDError(f"teacher outputs file {path} has no column {wanted} and no id column; key each row by its text")


def _row_id(value: Any, path: Path, number: int) -> int:
    try:
        number_value = float(value)
    except (TypeError, ValueError):
        number_value = math.nan
    if not (number_value >= 0 and number_value == int(number_value)):
        raise XKDError(f"{path} row {number}: id '{value}' is not a training row number (0, 1, 2, ...)")
    return int(number_value)


def _vector(value: Any, form: str, task: Task, where: str) -> np.ndarray:
    """One row's output as a float32 logit-like vector of the task's output size."""
    multi_label = task.multi_label  # independent labels: no distribution to normalise, so logits only
    if (task.regression and form not in ("logits", "label")) or (multi_label and form != "logits"):
        raise XKDError(
            f"{where}: task '{task.name}' takes its teacher's outputs as 'logits' (one per output), not {form}"
        )
    if form == "label":
        return _one_hot(value, task, where)
    values = _numbers(value, form, where)
    size = task.output_size
    if len(values) != size:
        raise XKDError(
            f"{where}: '{form}' has {len(values)} value(s) but task '{task.name}' needs {size} (one per label)"
        )
    if form == "logits":
        return values
    probabilities = values if form == "probabilities" else np.exp(values.astype(np.float64))
    total = float(probabilities.sum())
    if probabilities.min() < -TOLERANCE:
        position = int(probabilities.argmin())
        raise XKDError(
            f"{where}: '{form}' holds a negative probability, {_number(probabilities[position])} (value "
            f"{position + 1} of {_shown(values)}); probabilities lie between 0 and 1, fix the row"
        )
    if abs(total - 1) > TOLERANCE:
        raise XKDError(
            f"{where}: '{form}' describe probabilities summing to {total:.4f}, not 1; fix or renormalise the row"
        )
    return np.log(np.clip(probabilities, FLOOR, None)).astype(np.float32)


def _numbers(value: Any, form: str, where: str) -> np.ndarray:
    """A list of finite floats from a JSON list, a parquet array, a number, or a TSV/CSV cell holding JSON."""
    cell = value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.asarray(None, dtype=object)  # not numbers: refused below
    if array.ndim != 1 or array.dtype != np.float64:
        raise XKDError(f"{where}: '{form}' is {str(cell)[:60]!r}, not a list of numbers such as [0.2, 0.8]")
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(~np.isfinite(array.astype(np.float32)))
    if len(bad):
        # Shown from the numbers, not the cell: pandas reads a JSON NaN inside a list as None.
        x = array[bad[0]]
        what = _number(x) if not np.isfinite(x) else f"{_number(x)}, beyond float32's range,"
        raise XKDError(
            f"{where}: '{form}' holds {what} (value {bad[0] + 1} of {_shown(array)}); every value must be a finite "
            "number"
        )
    return array.astype(np.float32)


def _given(form: str, value: Any, where: str) -> str:
    """A row's output as the file gives it, for a message: `label 'positive'`, `logits [0.5, 1]`."""
    return f"{form} {value!r}" if form == "label" else f"{form} {_shown(_numbers(value, form, where))}"


def _number(x: Any) -> str:
    """A float as a message shows it: NaN and Infinity by name (as JSON writes them), else 6 significant digits."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return f"{x:.6g}"


def _shown(values: Any) -> str:
    """A row of numbers for a message, e.g. [NaN, 1]; long rows are cut after 8 values."""
    values = list(np.asarray(values, dtype=np.float64).ravel())
    text = ", ".join(_number(x) for x in values[:8])
    return f"[{text}{', ...' if len(values) > 8 else ''}]"


def _one_hot(value: Any, task: Task, where: str) -> np.ndarray:
    """A hard label (a name or an index) as the log of a one-hot distribution; a regression target as is."""
    if task.regression:
        return _numbers(value, "label", where)[:1]
    names = list(task.label_names or [])
    if isinstance(value, float) and value.is_integer():  # an index in a column pandas read as floats (NaN rows)
        value = int(value)
    if str(value) in names:
        index = names.index(str(value))
    else:
        try:
            index = int(str(value))
        except ValueError:
            index = -1
    if not 0 <= index < task.output_size:
        known = ", ".join(names) if names else f"0..{task.output_size - 1}"
        raise XKDError(f"{where}: label '{value}' is not one of the labels of task '{task.name}' ({known})")
    vector = np.full(task.output_size, math.log(FLOOR), dtype=np.float32)
    vector[index] = 0.0
    return vector


# ------------------------------------------------------------------------------------------------ matching


@dataclass
class OutsideOutputs:
    """Outside outputs per split, row-aligned with the splits training reads: served like a teacher cache."""

    path: Path
    arrays: dict[str, np.ndarray]
    report: dict[str, Any] = field(default_factory=dict)  # what the summary records: file, forms, drops, splits
    examples: int = 0  # no teacher pass was paid for: the compute columns charge nothing

    def has(self, split: str) -> bool:
        return split in self.arrays

    def trace(self, split: str, index: Tensor, attention_mask: Tensor | None = None) -> Trace:
        logits = torch.from_numpy(self.arrays[split][index.cpu().numpy()]).to(index.device)
        return Trace(logits=logits, layer_vectors=torch.zeros(len(logits), 0, 0, device=index.device))

    def logits(self, split: str) -> np.ndarray:
        return self.arrays[split]


def match_outputs(
    cfg: DistillConfig, task: Task, raw: DatasetDict, held_out: Sequence[str], log: Log
) -> tuple[DatasetDict, OutsideOutputs]:
    """The splits with the file's outputs row by row: training and transfer rows without outputs fail the run or,
    with `--missing-outputs drop`, are dropped (and counted); a held-out split (`held_out`) is served only when
    every row has outputs (then its "teacher" metrics are the outside labels'). Returns the splits and the source
    (its `report` is what the summary records)."""
    table = read_outputs(cfg.teacher_outputs, task)
    if table.by == "id" and _subset_flag(cfg):
        cut = _subset_flag(cfg)
        raise XKDError(f"{table.path} keys rows by id (training row numbers); drop {cut}, or key rows by text")
    found = {name: _lookup(table, task, split, name) for name, split in raw.items()}
    report: dict[str, Any] = {"file": str(table.path), "forms": table.forms, "keyed_by": table.by}
    raw = _drop_or_fail(cfg, raw, found, table, task, report, log)
    trained = [v for n in ("train", TRANSFER) if n in raw for v in found[n]]  # as training reads them: see
    arrays = {"train": np.stack(trained).astype(np.float32)}  # `with_transfer_rows` (transfer rows after gold)
    for name in held_out:
        if name in raw and all(v is not None for v in found[name]):
            arrays[name] = np.stack(found[name]).astype(np.float32)
        elif name in raw and any(v is not None for v in found[name]):  # partly covered: say why it is unused
            covered = sum(v is not None for v in found[name])
            log(f"teacher outputs: {name} has outputs for {covered} of {len(found[name])} rows; teacher metrics n/a")
    report["splits"] = sorted(arrays)
    return raw, OutsideOutputs(table.path, arrays, report)


def _lookup(table: OutputTable, task: Task, split: Dataset, name: str) -> list[np.ndarray | None]:
    """Each row's outputs or None; row ids address the training split only."""
    if table.by == "id":
        return [table.rows.get(i) for i in range(len(split))] if name == "train" else [None] * len(split)
    keys = zip(*(split[c] for c in task.text_columns), strict=True)
    return [table.rows.get(tuple(str(t) for t in key)) for key in keys]


def _subset_flag(cfg: DistillConfig) -> str | None:
    if cfg.max_examples is not None:
        return "--max-examples"
    return "--max-train-examples" if cfg.max_train_examples is not None else None


def _drop_or_fail(cfg, raw, found, table, task, report, log) -> DatasetDict:
    """Training (and transfer) rows without outputs: one line with the count, the first texts and the fix, or
    (`--missing-outputs drop`) the splits without them."""
    trained = [n for n in ("train", TRANSFER) if n in raw]
    missing = {n: [i for i, v in enumerate(found[n]) if v is None] for n in trained}
    count = sum(len(rows) for rows in missing.values())
    if count == 0:
        return raw
    if cfg.missing_outputs == "fail":
        texts = [" | ".join(str(raw[n][i][c]) for c in task.text_columns)[:50] for n in trained for i in missing[n]]
        shown = ", ".join(repr(t) for t in texts[:SHOWN])
        rows = sum(len(raw[n]) for n in trained)
        cut = _subset_flag(cfg)
        raise XKDError(
            f"{count} of {rows} training rows have no outputs in {table.path} (first: {shown}); add their outputs "
            "to the file, or pass --missing-outputs drop to train without them"
            + (f" ({cut} keeps a random subset of the training split, which the file need not cover)" if cut else "")
        )
    kept = {n: [i for i, v in enumerate(found[n]) if v is not None] for n in trained}
    if not kept["train"]:
        cut = _subset_flag(cfg)
        hint = f" (with {cut}, a random subset of the training split may miss the file's texts: drop it)" if cut else ""
        raise XKDError(
            f"no training row has outputs in {table.path}; check that its texts are the training split's" + hint
        )
    for n in trained:
        found[n] = [found[n][i] for i in kept[n]]
        report[f"dropped_{n}"] = len(missing[n])
    log(
        f"teacher outputs: dropped {len(missing['train'])} training row(s)"
        + (f" and {len(missing[TRANSFER])} transfer row(s)" if TRANSFER in missing else "")
        + f" without outputs in {table.path}"
    )
    return DatasetDict({n: s.select(kept[n]) if n in kept else s for n, s in raw.items()})
