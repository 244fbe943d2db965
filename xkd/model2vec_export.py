"""A static student as a model2vec pipeline: `xkd export DIR --model2vec OUT`.

The static student is model2vec's model plus a head: an embedding row per vocabulary entry, a mean over the text's
tokens (padding and special tokens skipped, as model2vec skips them), then Linear + ReLU layers and a linear
classifier. model2vec's `StaticModelPipeline` holds exactly that (a `StaticModel` and an `MLPHead` of ReLU layers), so
the export is the student itself, not an approximation: the directory loads with
`model2vec.inference.StaticModelPipeline.from_pretrained(OUT)` (the classifier) and with
`model2vec.StaticModel.from_pretrained(OUT)` (its embeddings alone). It is written by model2vec's own
`save_pretrained`, so the files are what model2vec writes (its `modules.json` for sentence-transformers included), and
checked against the student on check sentences before the call returns.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xkd.errors import XKDError
from xkd.export import CHECK_TEXTS

INSTALL = "pip install 'model2vec>=0.10'"


def export_model2vec(
    model_dir: str | Path, out: str | Path, overwrite: bool = False, atol: float = 1e-4
) -> dict[str, Any]:
    """Write the saved static student in `model_dir` as a model2vec pipeline directory `out`; return a report.

    Only the static student has model2vec's form (other students convolve or recur over the text). A pair task's
    student reads two texts and a model2vec pipeline one, so it is refused too.
    """
    from xkd.predict import Predictor

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise XKDError(f"{out} exists and is not empty; choose another directory or pass --overwrite")
    predictor = Predictor(model_dir, device="cpu")
    model = predictor.model
    _check_exportable(model, model_dir)
    pipeline = _pipeline(model, predictor)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as scratch:
        staged = Path(scratch) / "model2vec"
        pipeline.save_pretrained(str(staged))  # model2vec's own writer: its files, its config keys
        report = _check(staged, predictor, atol)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staged), out)  # a failed check leaves no directory behind
    return {"model2vec": str(out), **report}


def _check_exportable(model: torch.nn.Module, model_dir: str | Path) -> None:
    kind = getattr(model, "kind", None)
    if kind != "static":
        raise XKDError(
            f"--model2vec exports the static student only (a mean of token vectors, then dense layers, as model2vec "
            f"computes); '{model_dir}' holds a {kind or 'transformer'} student: export it with --onnx, or distil "
            "--student static"
        )
    if model.config.pair:
        raise XKDError(
            f"'{model_dir}' classifies text pairs and a model2vec pipeline reads one text; export it with --onnx"
        )


def _pipeline(model: torch.nn.Module, predictor: Any) -> Any:
    """model2vec's `StaticModelPipeline` holding the student's embeddings, tokenizer, dense layers and classifier."""
    try:
        from model2vec import StaticModel
        from model2vec.inference import StaticModelPipeline
        from model2vec.inference.mlp import Activation, Layer, MLPHead
    except ImportError as error:
        raise XKDError(f"--model2vec needs model2vec: {INSTALL}") from error

    def array(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    # Truncation at xkd's max length: model2vec truncates the token ids before dropping [UNK], as xkd does. xkd's
    # length counts the special tokens its tokenizer adds ([CLS] ... [SEP] of a teacher's vocabulary) and model2vec
    # encodes without them, so model2vec keeps that many fewer: otherwise a long text kept two more tokens there and
    # its probabilities moved by up to 0.05 (4 of amazon_sent's 299 test texts). (model2vec also cuts a text first to
    # max_length x the median token length in characters, a speed-up of its own: texts longer than
    # `exact_up_to_characters` in the report may lose words xkd keeps.)
    content = predictor.max_length - model.tokenizer.num_special_tokens_to_add(pair=False)
    base = model.meta.get("teacher") or None
    static = StaticModel(
        array(model.embedding.weight),
        model.tokenizer.backend_tokenizer,
        config={"model_type": "model2vec", "architectures": ["StaticModel"], "hidden_dim": model.config.embedding_dim},
        base_model_name=str(base) if base else None,
        max_length=content,
    )
    linears = [*model.dense, *(m for m in model.classifier if isinstance(m, torch.nn.Linear))]
    layers = [Layer(weight=array(m.weight), bias=array(m.bias)) for m in linears]
    labels = predictor.labels
    if labels.regression:
        activation, classes = Activation.IDENTITY, None
    else:
        activation = Activation.SIGMOID if labels.multi_label else Activation.SOFTMAX
        classes = np.asarray(labels.names)
    return StaticModelPipeline(static, MLPHead(layers=layers, activation=activation, classes=classes))


def _outputs(logits: np.ndarray, labels: Any) -> np.ndarray:
    """What model2vec's `predict_proba` gives for these logits: softmax, per-label sigmoid, or the values."""
    from scipy.special import expit, softmax

    if labels.regression:
        return logits
    return expit(logits) if labels.multi_label else softmax(logits, axis=1)


def _check(directory: Path, predictor: Any, atol: float) -> dict[str, Any]:
    """Reload the written pipeline with model2vec and compare its outputs with the student's on check sentences."""
    from model2vec.inference import StaticModelPipeline

    loaded = StaticModelPipeline.from_pretrained(str(directory))
    # model2vec first cuts a text to max_length x the median token length in characters (its speed-up, reported as
    # `exact_up_to_characters`): the check compares what both read, or a short-word vocabulary (a median of 4
    # characters at max length 16: 64) fails on a long check text while the weights agree.
    exact = loaded.model.max_length * loaded.model.median_token_length if loaded.model.max_length else None
    texts = [text[:exact] for text in CHECK_TEXTS]
    ours = _outputs(np.asarray(predictor.logits(texts), dtype=np.float64), predictor.labels)
    answer = loaded.predict if predictor.labels.regression else loaded.predict_proba  # values, or probabilities
    theirs = np.asarray(answer(texts, use_multiprocessing=False), dtype=np.float64).reshape(ours.shape)
    difference = float(np.abs(ours - theirs).max())
    if not difference <= atol:
        raise XKDError(
            f"the model2vec export differs from the student by {difference:.2e} on check sentences (> {atol}); "
            "nothing was written: report it with the student directory"
        )
    return {
        "vocabulary": int(loaded.model.embedding.shape[0]),
        "dim": int(loaded.model.dim),
        "head_layers": len(loaded.head.layers),
        "max_abs_diff": difference,
        "check_texts": len(texts),
        "max_length": loaded.model.max_length,
        "exact_up_to_characters": loaded.model.max_length * loaded.model.median_token_length,
    }
