"""Use a saved model on new text: `xkd.Predictor(DIR)(["a text", ...])` and `xkd predict`.

Any model xkd saves answers the same way: built-in students (BERT-k, DistilRoBERTa, CNN, BiLSTM), plug-in students
that follow the protocol, fine-tuned teachers, and ONNX exports of them (run by ONNX Runtime). Each text gets its
label name and the probability of every label, or the predicted value for a regression task; a multi-label model
gives the list of its labels whose sigmoid exceeds 0.5 and every label's own probability.

Texts are tokenized exactly as training and `xkd eval` tokenize them (`xkd.data.tokenize_texts`) and batched in
order of length, so little padding is computed and the predictions equal `xkd eval`'s.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from xkd.config import DEFAULTS
from xkd.data import pad_rows, tokenize_texts
from xkd.errors import XKDError
from xkd.paths import MODEL_META_FILE, STUDENT_FILE, saved_model_dir
from xkd.tasks import TASKS, label_names

Text = str | tuple[str, str]
MODEL_FILE = MODEL_META_FILE  # transformer students and teachers; STUDENT_FILE: CNN, BiLSTM, static, plug-ins


@dataclass(frozen=True)
class Labels:
    """What a model's outputs mean: label names in output order (empty for regression), the text count, and whether
    each label is its own sigmoid (`multi_label`) rather than one softmax over them."""

    names: tuple[str, ...]
    regression: bool
    pair: bool
    multi_label: bool = False

    @classmethod
    def of(cls, meta: dict[str, Any], num_labels: int, config: Any = None) -> Labels:
        """From the model's saved record; older records name only the task, whose registry entry then answers."""
        task = TASKS.get(meta["task"]) if meta.get("task") in TASKS else None
        regression = bool(meta.get("regression", task.regression if task else num_labels == 1))
        if "text_columns" in meta:
            pair = len(meta["text_columns"]) == 2
        else:
            pair = task.is_pair if task else bool(getattr(config, "pair", False))
        names = tuple(meta.get("labels") or (label_names(task) if task else ())) or _config_names(config, num_labels)
        if not regression and len(names) != num_labels:
            names = tuple(str(i) for i in range(num_labels))
        problem_type = getattr(config, "problem_type", None)  # a foreign HF checkpoint says it here, if anywhere
        multi_label = bool(meta.get("multi_label", problem_type == "multi_label_classification"))
        return cls(() if regression else names, regression, pair, multi_label and not regression)


def _config_names(config: Any, num_labels: int) -> tuple[str, ...]:
    """A Hugging Face config's id2label when it names labels (not the generated LABEL_0, LABEL_1, ...)."""
    id2label = getattr(config, "id2label", None) or {}
    names = tuple(str(id2label.get(i, id2label.get(str(i), i))) for i in range(num_labels))
    return () if all(n == f"LABEL_{i}" for i, n in enumerate(names)) else names


def load_model(directory: str | os.PathLike, what: str = "model") -> tuple[nn.Module, dict[str, Any]]:
    """A saved student or teacher and the record xkd wrote beside it ({} for a foreign HF checkpoint); `what` names
    a Hugging Face checkpoint in errors."""
    from xkd.students import load_student
    from xkd.teachers import HFEncoderClassifier

    directory = Path(saved_model_dir(str(directory)))  # a run directory: its student
    if not directory.is_dir():
        raise XKDError(f"{directory} is not a directory; pass a saved student (RUN_DIR/student) or teacher")
    if (directory / STUDENT_FILE).is_file():
        model = load_student(directory)
        return model, json.loads((directory / STUDENT_FILE).read_text())
    if not (directory / "config.json").is_file():
        raise XKDError(
            f"{directory} holds no model (no {STUDENT_FILE} or config.json); pass a saved student such as "
            "RUN_DIR/student or a fine-tuned teacher directory"
        )
    model = HFEncoderClassifier.from_pretrained(str(directory), what=what)
    meta_path = directory / MODEL_FILE
    return model, json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def saved_max_length(meta: dict[str, Any], given: int | None = None) -> int:
    """Tokens per text for a saved model: `given`, else the length it was trained with, else the config's default
    (the one rule of `xkd predict`, `xkd eval` and `Predictor`)."""
    return int(given or meta.get("max_length") or DEFAULTS.max_length)


class Predictor:
    """Labels and probabilities for texts from a saved model, in PyTorch or through an ONNX export.

    Example:
        predictor = Predictor("runs/mr-cnn/student")
        predictor(["a gripping , beautifully acted film .", "dull ."])
        # [{"label": "positive", "probabilities": {"negative": 0.04, "positive": 0.96}}, ...]

    `onnx` runs that exported graph (`xkd export DIR --onnx FILE`) with the directory's tokenizer and labels.
    Pair models take `(first, second)` tuples. `max_length` defaults to the length the model was trained with.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        onnx: str | os.PathLike | None = None,
        batch_size: int = DEFAULTS.eval_batch_size,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if batch_size < 1:
            raise XKDError(f"batch size must be at least 1, got {batch_size}")
        self.model, meta = load_model(model_dir)
        self.tokenizer = self.model.tokenizer
        self.labels = Labels.of(meta, self.model.num_labels, getattr(self.model, "config", None))
        self.max_length = saved_max_length(meta, max_length)
        self.batch_size = batch_size
        self.separate = getattr(self.model, "pair_encoding", "joint") == "separate"
        self.session = _onnx_session(onnx) if onnx is not None else None
        if self.session is None:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.model.to(self.device).eval()

    def __call__(self, texts: Sequence[Text], progress: bool = False) -> list[dict[str, Any]]:
        """One dict per text: `label` and `probabilities` (classification), `labels` (a list, maybe empty) and
        `probabilities` (multi-label) or `value` (regression)."""
        return self.describe(self.logits(texts, progress))

    def describe(self, logits: np.ndarray) -> list[dict[str, Any]]:
        """Rows of logits [N, labels] as a person reads them. The softmax runs over all rows at once: row by row it
        took a tenth of a fast student's prediction time."""
        if self.labels.regression:
            return [{"value": float(row[0])} for row in logits]
        if self.labels.multi_label:
            return [describe_multi_label(self.labels.names, row) for row in logits]
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        names = self.labels.names
        return [
            {"label": names[best], "probabilities": {n: round(p, 6) for n, p in zip(names, row, strict=True)}}
            for best, row in zip(probs.argmax(axis=1).tolist(), probs.tolist(), strict=True)
        ]

    def logits(self, texts: Sequence[Text], progress: bool = False) -> np.ndarray:
        """Raw outputs [N, labels] in the order of `texts`."""
        columns = self._columns(texts)
        encoded = tokenize_texts(self.tokenizer, columns, self.max_length, self.separate)
        rows = [dict(zip(encoded, values, strict=True)) for values in zip(*encoded.values(), strict=True)]
        order = np.argsort([len(r["input_ids"]) + len(r.get("input_ids_b", ())) for r in rows], kind="stable")
        out = np.zeros((len(rows), self.model.num_labels), dtype=np.float32)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="predict", unit="batch", disable=not progress):
            out[batch] = self._forward(pad_rows(self.tokenizer, [rows[i] for i in batch]))
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if len(bad):  # refused, never written: NaN is no probability (and not JSON)
            text = " | ".join(column[bad[0]] for column in columns)
            raise XKDError(
                f"the model gave non-finite outputs (NaN or infinity) for {len(bad)} of {len(rows)} text(s), first "
                f"text {bad[0] + 1} ({text[:50]!r}); the model cannot read such texts (a plug-in student must give "
                "finite outputs for every input, empty texts included) or its weights are damaged: check it with "
                "xkd eval, or retrain it"
            )
        return out

    def _columns(self, texts: Sequence[Text]) -> list[list[str]]:
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise XKDError("no texts to predict; pass at least one")
        width = 2 if self.labels.pair else 1
        for i, text in enumerate(texts):
            parts = (text,) if isinstance(text, str) else tuple(text)
            if len(parts) != width or not all(isinstance(p, str) for p in parts):
                shape = "(first, second) text pairs" if width == 2 else "single strings"
                raise XKDError(f"text {i + 1} is {text!r}, but this model reads {shape}")
        return [[t if isinstance(t, str) else t[c] for t in texts] for c in range(width)]

    @torch.no_grad()
    def _forward(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        if self.session is not None:
            return self._onnx_forward(inputs)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return self.model(inputs).logits.float().cpu().numpy()

    def _onnx_forward(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        names = [i.name for i in self.session.get_inputs()]
        if "input_ids_b" in inputs:  # the graph has one sequence axis: both texts of a pair share a padded length
            inputs = pad_pair(self.tokenizer, inputs)
        if inputs["input_ids"].shape[1] == 0:  # a batch of empty texts: one padding step, as the students give it
            inputs = pad_pair(self.tokenizer, inputs, length=1)
        missing = [n for n in names if n not in inputs]
        if missing:
            raise XKDError(f"the ONNX graph wants input '{missing[0]}', which this model's tokenizer does not give")
        return self.session.run(None, {n: inputs[n].numpy() for n in names})[0]


def describe_multi_label(names: Sequence[str], logits: np.ndarray) -> dict[str, Any]:
    """Every label's sigmoid, and the labels above 0.5 (logit > 0: the same test, free of rounding near 0.5), in
    output order."""
    probs = 0.5 * (1 + np.tanh(logits.astype(np.float64) / 2))  # σ(z), without overflow for large |z|
    return {
        "labels": [n for n, z in zip(names, logits, strict=True) if z > 0],
        "probabilities": {n: round(float(p), 6) for n, p in zip(names, probs, strict=True)},
    }


def pad_pair(tokenizer: Any, inputs: dict[str, torch.Tensor], length: int = 0) -> dict[str, torch.Tensor]:
    """Pad the shorter text of separately encoded pairs to the other's length (and every input to `length`)."""
    length = max(length, *(inputs[k].shape[1] for k in ("input_ids", "input_ids_b") if k in inputs))
    pad_id = tokenizer.pad_token_id or 0
    out = {}
    for key, value in inputs.items():
        fill = pad_id if key.startswith("input_ids") else 0
        out[key] = torch.nn.functional.pad(value, (0, length - value.shape[1]), value=fill)
    return out


def _onnx_session(path: str | os.PathLike):
    try:
        import onnxruntime as ort
    except ImportError:
        raise XKDError("running an ONNX model needs onnxruntime: pip install 'xkd[export]'") from None
    if not Path(path).is_file():
        raise XKDError(f"{path} does not exist; export one with 'xkd export STUDENT_DIR --onnx {path}'")
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise XKDError(f"cannot load the ONNX model {path}: {first}; export it again") from None


def read_texts(path: str | os.PathLike, columns: Sequence[str] = (), pair: bool = False) -> list[Text]:
    """Texts from a file (see `read_inputs`)."""
    return read_inputs(path, columns, pair)[0]


def read_inputs(
    path: str | os.PathLike, columns: Sequence[str] = (), pair: bool = False
) -> tuple[list[Text], list[dict[str, Any]]]:
    """Texts from a file, and each row's other columns (an `id`, say) to carry into the predictions: `.txt` (or
    `-`, standard input) one text per line, a blank line included (it gets a prediction too, so line n of the
    input is line n of the output), a tab between the two texts of a pair; or a table (`.tsv/.csv/.jsonl/.parquet`)
    whose text column(s) are named by `columns`, or found by name."""
    from xkd.data import read_table

    if str(path) == "-":
        return _lines(sys.stdin.read(), pair), []
    path = Path(path)
    if not path.is_file():
        raise XKDError(f"{path} does not exist; pass a .txt, .tsv, .csv, .jsonl or .parquet file of texts, or -")
    if path.suffix == ".txt":
        return _lines(path.read_text(encoding="utf-8"), pair), []
    frame = read_table(path)
    chosen = list(columns) or _text_columns(frame.columns, pair, path)
    missing = [c for c in chosen if c not in frame.columns]
    if missing:
        raise XKDError(f"{path} has no column '{missing[0]}'; its columns are {', '.join(map(str, frame.columns))}")
    values = [frame[c].fillna("").astype(str).tolist() for c in chosen]
    others = frame.drop(columns=chosen)
    extras = json.loads(others.to_json(orient="records")) if len(others.columns) else []  # JSON-safe values
    return (list(zip(*values, strict=True)) if len(values) == 2 else values[0]), extras


def _lines(text: str, pair: bool) -> list[Text]:
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the file
    if not pair:
        return lines  # type: ignore[return-value]
    return [tuple(line.split("\t", 1)) if line else ("", "") for line in lines]  # type: ignore[misc]


TEXT_NAMES = ("sentence", "text", "sentence1", "question1", "premise", "question")


def _text_columns(names: Iterable[str], pair: bool, path: Path) -> list[str]:
    names = [str(n) for n in names]
    known = [n for n in names if n in TEXT_NAMES or n in ("sentence2", "question2", "hypothesis")]
    want = 2 if pair else 1
    if len(known) >= want:
        return known[:want]
    if len(names) == want:
        return names
    raise XKDError(
        f"which column of {path} holds the text? pass --text-column NAME{' twice' if pair else ''} "
        f"(columns: {', '.join(names)})"
    )
