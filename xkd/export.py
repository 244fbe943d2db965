"""ONNX export of a trained student, checked against PyTorch before it is trusted.

Only the inference path is exported: token ids in, logits out. Student pseudo heads and projectors are training
aids and are not part of a saved student, so they never reach the graph. Batch size and sequence length stay
dynamic. The export is written to a temporary file and renamed, so a failed export never leaves a broken model
where a good one was.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xkd.errors import XKDError
from xkd.latency import median_ms

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


def onnx_latency_ms(path: str | os.PathLike, inputs: dict[str, torch.Tensor], repeats: int = 20) -> float:
    """Median ONNX Runtime latency on CPU, timed like `cpu_latency_ms`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {k: v.numpy() for k, v in inputs.items()}
    return median_ms(lambda: session.run(None, feed), repeats, warmup=3)
