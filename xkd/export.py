"""ONNX export of a trained student, checked against PyTorch before it is trusted.

Only the inference path is exported: token ids in, logits out. Student pseudo heads and projectors are training
aids and are not part of a saved student, so they never reach the graph. Batch size and sequence length stay
dynamic. The export is written to a temporary file and renamed, so a failed export never leaves a broken model
where a good one was.

int8 graphs come from ONNX Runtime's own quantizer (`export_int8`, `quantize_onnx`), never from hand-written
rounding, and are written next to the float graph (`student.onnx` -> `student.int8.onnx`). They cannot match the
float graph to 1e-4, so they are checked the way a user would judge them: the share of predictions that stay the
same, and the task's accuracy of both graphs, on its validation split.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch import nn

from xkd.data import UNLABELED, Collator, encode, make_loader
from xkd.errors import XKDError
from xkd.evaluation import score_logits
from xkd.latency import median_ms
from xkd.metrics import predictions
from xkd.tasks import Task

CHECK_TEXTS = (
    "a gripping , beautifully acted film .",
    "dull .",
    "the plot wanders for two hours and never finds its way home , though the cast tries hard to rescue it .",
)


class LogitsOnly(nn.Module):
    """Positional tensors in, logits out: the shape an ONNX graph can have (a Trace cannot be a graph output)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.names, tensors, strict=True))).logits


def example_inputs(model: nn.Module, texts: tuple[str, ...] = CHECK_TEXTS) -> dict[str, torch.Tensor]:
    """Tokenized, padded example inputs in the student's own format (both texts for pair students)."""
    tokenizer = model.tokenizer
    pair = bool(getattr(getattr(model, "config", None), "pair", False))
    if getattr(model, "pair_encoding", "joint") == "separate":
        inputs = dict(tokenizer(list(texts), padding=True, return_tensors="pt", return_token_type_ids=False))
        if pair:
            # Both texts of a pair are padded to one length: the graph has a single sequence axis.
            seconds = [" ".join(t.split()[:5]) for t in reversed(texts)]
            length = inputs["input_ids"].shape[1]
            other = tokenizer(
                seconds, padding="max_length", max_length=length, return_tensors="pt", return_token_type_ids=False
            )
            inputs.update({f"{k}_b": v for k, v in other.items()})
        return inputs
    return dict(tokenizer(list(texts), padding=True, return_tensors="pt"))


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int = 18, atol: float = 1e-4) -> dict[str, Any]:
    """Export `model` to `path` and check ONNX Runtime against PyTorch on real sentences.

    The two texts of a pair student share one padded length in the graph (pad both to the longer).
    Returns a report (inputs, opset, size, max absolute difference). Raises XKDError when the outputs differ by
    more than `atol`, keeping no file.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise XKDError("ONNX export needs onnx and onnxruntime: pip install 'xkd[export]'") from None
    model = copy.deepcopy(model).cpu().eval()  # the caller's model stays where it is
    if hasattr(model, "for_export"):  # e.g. the BiLSTM trades packed sequences for an exportable equivalent
        model = model.for_export().eval()
    inputs = example_inputs(model)
    names = list(inputs)
    wrapper = LogitsOnly(model, names).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    if getattr(model, "onnx_exporter", "dynamo") == "torchscript":
        # torch.export unrolls LSTMs over time and fixes the length; the TorchScript exporter emits ONNX's own
        # LSTM operator, which keeps it dynamic.
        axes = {name: {0: "batch", 1: "sequence"} for name in names}
        exporter = {"dynamo": False, "dynamic_axes": {**axes, "logits": {0: "batch"}}}
    else:
        dims = tuple({0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")} for _ in names)
        exporter = {"dynamo": True, "dynamic_shapes": (dims,), "external_data": False, "verbose": False}
    with torch.no_grad():  # forward(*tensors): the dynamic shapes are one entry, the tuple
        torch.onnx.export(
            wrapper,
            tuple(inputs.values()),
            str(tmp),
            input_names=names,
            output_names=["logits"],
            opset_version=opset,
            **exporter,
        )
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    # Check on the export batch and on a batch of another size and length, to prove the axes are dynamic.
    worst = 0.0
    for feed in (inputs, example_inputs(model, CHECK_TEXTS[:2])):
        with torch.no_grad():
            expected = wrapper(*feed.values()).numpy()
        got = session.run(["logits"], {k: v.numpy() for k, v in feed.items()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > atol:
        tmp.unlink(missing_ok=True)
        raise XKDError(f"the ONNX export differs from PyTorch by {worst:.2e} (> {atol}); please report this student")
    os.replace(tmp, path)
    return {
        "onnx": str(path),
        "inputs": names,
        "opset": opset,
        "megabytes": round(path.stat().st_size / 2**20, 2),
        "max_abs_diff": worst,
    }


def onnx_latency_ms(
    path: str | os.PathLike, inputs: dict[str, torch.Tensor] | dict[str, np.ndarray], repeats: int = 20
) -> float:
    """Median ONNX Runtime latency on CPU, timed like `cpu_latency_ms` (tensors or a ready graph feed)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    return median_ms(lambda: session.run(None, feed), repeats, warmup=3)


# ---------------------------------------------------------------------------------------------- int8


QUANTIZE_KINDS = ("int8",)
CALIBRATIONS = ("dynamic", "static")
# ONNX Runtime has int8 kernels for these only through dynamic quantization: static QDQ would leave them in float.
DYNAMIC_ONLY_OPS = frozenset({"LSTM"})
# Static int8 on the ops that hold the weights and do the arithmetic, per output channel. The quantizer's default
# set also wraps LayerNormalization (whose outputs have outliers) and Where: on MR's validation split with the
# MiniLM teacher it kept 77% of the float predictions, these ops 94%, per channel 95% (dynamic: 96%).
STATIC_OPS = ("Conv", "Gemm", "MatMul", "Gather")
CALIBRATION_BATCH = 32
CHECK_BATCH = 64


def int8_path(path: str | os.PathLike) -> Path:
    """Where the int8 graph of the float graph at `path` goes: `student.onnx` -> `student.int8.onnx`.

    Both are kept: the float graph is the reference the int8 one is checked against, and the safe fallback.
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.int8{path.suffix or '.onnx'}")


def check_int8_request(quantize: str | None, calibration: str, task: str | None, onnx_path: str | None) -> None:
    """Reject a quantization request that cannot work before anything is exported (one line each)."""
    if quantize is None:
        if task is not None or calibration != "dynamic":
            raise XKDError("--task and --calibration set up the int8 graph: add --quantize int8")
        return
    if quantize not in QUANTIZE_KINDS:
        raise XKDError(f"unknown --quantize '{quantize}'; choose one of: {', '.join(QUANTIZE_KINDS)}")
    if onnx_path is None:
        raise XKDError("--quantize int8 quantizes the ONNX export: add --onnx PATH")
    if calibration not in CALIBRATIONS:
        raise XKDError(f"unknown --calibration '{calibration}'; choose one of: {', '.join(CALIBRATIONS)}")
    if calibration == "static" and task is None:
        raise XKDError("--calibration static calibrates on the task's training data: add --task (and --data-dir)")


def graph_feed(batch: dict[str, torch.Tensor], names: list[str], pad_id: int = 0) -> dict[str, np.ndarray]:
    """A collated batch as a graph feed: only the graph's inputs, every one padded to one length.

    The Collator pads the two texts of a pair apart, but the graph has a single sequence axis (see `export_onnx`).
    """
    feed = {name: batch[name].numpy() for name in names}
    steps = max(v.shape[1] for v in feed.values())
    return {
        k: np.pad(v, ((0, 0), (0, steps - v.shape[1])), constant_values=pad_id if k.startswith("input_ids") else 0)
        for k, v in feed.items()
    }


class FeedReader:
    """The `CalibrationDataReader` protocol (`get_next`, None when done) over feeds prepared in advance."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def onnx_session(path: str | os.PathLike):
    """A CPU session, the provider every latency and agreement figure here is measured on."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def graph_inputs(path: str | os.PathLike) -> list[str]:
    return [i.name for i in onnx_session(path).get_inputs()]


def onnx_logits(path: str | os.PathLike, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Logits of a graph over a list of feeds, concatenated in order."""
    session = onnx_session(path)
    return np.concatenate([session.run(["logits"], feed)[0] for feed in feeds])


def _preprocessed(source: Path, target: Path) -> bool:
    """Run ONNX Runtime's recommended pre-processing (graph optimisation and shape inference) into `target`.

    Symbolic shape inference is skipped: it fails on both exporters' graphs (dynamo's Unsqueeze chains, the
    LSTM's Shape arithmetic), and on failure leaves sym_shape_infer_temp.onnx in the working directory; ONNX's
    own shape inference is enough for the quantizer. False when even that fails, and the float graph is quantized
    as it is.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001 - an optimisation only: quantization works without it
        return False
    return True


def _without_weight_shapes(source: Path, target: Path) -> Path:
    """`source` without the value_info entries that describe initializers, written to `target` when it had any.

    The dynamo exporter records every weight's shape in value_info. ONNX Runtime's dynamic quantizer (1.30; 1.32
    names the copy apart) turns Gemm into MatMul by transposing the weight in place under its own name, so that
    stale entry then contradicts the weight and ONNX shape inference stops ("existing shape differ"): int8 export
    failed with torch 2.11's image on a GPU machine. An initializer carries its own shape: the entries say nothing
    more.
    """
    import onnx

    model = onnx.load(str(source))
    weights = {tensor.name for tensor in model.graph.initializer}
    kept = [info for info in model.graph.value_info if info.name not in weights]
    if len(kept) == len(model.graph.value_info):
        return source
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    onnx.save(model, str(target))
    return target


def quantize_onnx(
    float_path: str | os.PathLike,
    out_path: str | os.PathLike,
    mode: str = "dynamic",
    calibration_feeds: list[dict[str, np.ndarray]] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Quantize a float graph to int8 with ONNX Runtime's tools and write it (atomically) to `out_path`.

    dynamic: int8 weights, activations quantized per batch at run time; needs no data, suits transformers and
    LSTMs. static: activation ranges fixed from `calibration_feeds` (MinMax, QDQ format); suits CNNs, whose
    dynamic form (ConvInteger) runs slower than float on CPU. Graphs with ops ONNX Runtime quantizes only
    dynamically (the BiLSTM's LSTM) fall back to dynamic with a message, since static would leave their main cost
    in float. Returns the path, mode and size.
    """
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static

    if mode not in CALIBRATIONS:
        raise XKDError(f"unknown calibration '{mode}'; choose one of: {', '.join(CALIBRATIONS)}")
    if mode == "static" and not calibration_feeds:
        raise XKDError("static int8 needs calibration inputs: pass --task so its training data can calibrate it")
    float_path, out_path = Path(float_path), Path(out_path)
    report: dict[str, Any] = {"path": str(out_path), "mode": mode}
    blocking = sorted(_op_types(float_path) & DYNAMIC_ONLY_OPS)
    if mode == "static" and blocking:
        note = (
            f"static int8 would leave the {', '.join(blocking)} op(s) in float (ONNX Runtime quantizes them only "
            "dynamically): quantized dynamically instead"
        )
        log(note)
        report.update(mode="dynamic", requested="static", note=note)
    partial = out_path.with_name(out_path.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="xkd-int8-") as tmp:
        source = Path(tmp) / "pre.onnx"
        report["preprocessed"] = _preprocessed(float_path, source)
        source = _without_weight_shapes(source if report["preprocessed"] else float_path, Path(tmp) / "in.onnx")
        if report["mode"] == "dynamic":
            quantize_dynamic(source, partial)
        else:
            # QDQ: the format ONNX Runtime recommends on CPU; it fuses Q/DQ pairs into int8 kernels at load time.
            reader = FeedReader(calibration_feeds)
            options = {"quant_format": QuantFormat.QDQ, "op_types_to_quantize": STATIC_OPS, "per_channel": True}
            quantize_static(source, partial, reader, **options)
    try:
        onnx_session(partial)  # a graph ONNX Runtime cannot load is no export
    except Exception as error:
        partial.unlink(missing_ok=True)
        raise XKDError(f"the int8 graph does not load in ONNX Runtime ({error}); please report this student") from None
    os.replace(partial, out_path)
    report["megabytes"] = round(out_path.stat().st_size / 2**20, 2)
    return report


def _op_types(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


def agreement(task: Task | None, reference: np.ndarray, other: np.ndarray) -> float:
    """The share of rows predicted alike: the argmax class, or for a multi-label task the whole label set."""
    if task is not None and task.multi_label:
        return float(np.mean((predictions(task, reference) == predictions(task, other)).all(axis=-1)))
    return float(np.mean(reference.argmax(-1) == other.argmax(-1)))


def compare_int8(
    float_path: str | os.PathLike,
    quantized_path: str | os.PathLike,
    feeds: list[dict[str, np.ndarray]],
    labels: np.ndarray | None = None,
    task: Task | None = None,
) -> dict[str, Any]:
    """How far the int8 graph strays from the float one on the same inputs.

    `agreement` is the share of predictions that match (what a user of a classifier sees); with labels,
    the task's accuracy of both (or its metrics, for tasks without accuracy) says what that costs.
    """
    reference, quantized = onnx_logits(float_path, feeds), onnx_logits(quantized_path, feeds)
    out: dict[str, Any] = {
        "examples": len(reference),
        "max_abs_diff": round(float(np.abs(quantized - reference).max()), 5),
    }
    if task is None or not task.regression:
        out["agreement"] = round(agreement(task, reference, quantized), 4)
    if labels is not None and task is not None and np.any(labels != UNLABELED):
        scores = {"float": score_logits(task, reference, labels), "int8": score_logits(task, quantized, labels)}
        for kind, metrics in scores.items():
            if "accuracy" in metrics:
                out[f"accuracy_{kind}"] = round(float(metrics["accuracy"]), 4)
            else:
                out[f"metrics_{kind}"] = {k: round(float(v), 4) for k, v in metrics.items()}
    return out


def task_feeds(
    model: nn.Module, task: Task, split: Dataset, names: list[str], max_length: int, batch_size: int
) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """A split tokenized by the model's own tokenizer, batched by length (little padding), as graph feeds + labels.

    The same encoding and collation as training and `xkd eval`, so the check measures what serving will see.
    """
    from xkd.data import separate_roles

    tokenizers = {"student": model.tokenizer}
    separate = separate_roles(model)
    encoded = encode(split, task, tokenizers, max_length, separate)
    loader = make_loader(encoded, Collator(tokenizers, separate), batch_size, shuffle=False, buckets=True)
    pad = model.tokenizer.pad_token_id or 0
    batches = list(loader)
    feeds = [graph_feed(batch["student"], names, pad) for batch in batches]
    return feeds, torch.cat([batch["labels"] for batch in batches]).numpy()


def load_check_data(
    model: nn.Module, task_name: str, data_dir: str | os.PathLike | None = None, max_examples: int | None = None
) -> tuple[Task, DatasetDict]:
    """A task's splits for checking (and calibrating) the int8 graph of `model`, loaded before anything is
    exported, so a wrong task fails before any file is written."""
    from xkd.data import load_splits
    from xkd.tasks import get_task

    task, splits = load_splits(get_task(task_name), data_dir, max_examples)
    if model.num_labels != task.output_size:
        raise XKDError(f"the model has {model.num_labels} output(s) but task '{task.name}' needs {task.output_size}")
    return task, splits


def calibration_sample(split: Dataset, examples: int, seed: int = 0) -> Dataset:
    """A fixed random subset of the training split: files are often sorted by label, and calibration ranges
    should see both."""
    return split.shuffle(seed=seed).select(range(min(examples, len(split))))


def export_int8(
    model: nn.Module,
    float_path: str | os.PathLike,
    out_path: str | os.PathLike,
    mode: str = "dynamic",
    task: Task | None = None,
    splits: DatasetDict | None = None,
    max_length: int = 128,
    calibration_examples: int = 256,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Quantize the checked float export of `model` and check the int8 graph against it.

    With a task (`task` and its loaded `splits`): static calibration on a sample of its training split, and the
    check on its first validation split with accuracies. Without: the check sentences, agreement only.
    """
    names = graph_inputs(float_path)
    calibration = None
    if task is not None and splits is not None:
        where = task.validation_splits[0]
        feeds, labels = task_feeds(model, task, splits[where], names, max_length, CHECK_BATCH)
        if mode == "static":
            sample = calibration_sample(splits["train"], calibration_examples)
            calibration = task_feeds(model, task, sample, names, max_length, CALIBRATION_BATCH)[0]
    else:
        where, labels = "check sentences", None
        feeds = [graph_feed(example_inputs(model), names, model.tokenizer.pad_token_id or 0)]
    report = quantize_onnx(float_path, out_path, mode, calibration, log)
    report.update(compare_int8(float_path, out_path, feeds, labels, task), split=where)
    return report
