"""Plug-in students: by import path (`--student mypkg.models:MyStudent`) or the `xkd.students` entry-point group.

The protocol a plug-in follows (see the README for a complete example):
- a class with a classmethod `build(teacher, task, train_texts, layers, **options)`, or a plain function with that
  signature, returning an `nn.Module`;
- the module's `forward(inputs: dict[str, Tensor], output_attentions=False)` returns an `xkd.Trace` with at least
  `logits` and `layer_vectors` [B, layers, width]; `inputs` holds `input_ids` and `attention_mask` from the
  module's `tokenizer` (plus `input_ids_b`/`attention_mask_b` for pairs when `pair_encoding = "separate"`);
- attributes `tokenizer` (a Hugging Face tokenizer), `num_layers`, `layer_width`, `num_labels`;
- `save(directory, **meta)`, and a classmethod `load(directory)` to reload it with `xkd eval` / `load_student`.
Subclassing `xkd.students.SentenceEncoderStudent` gives all of this except `encode`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from torch import nn

from xkd.errors import XKDError
from xkd.registry import import_plugin

GROUP = "xkd.students"
REQUIRED = ("num_layers", "layer_width", "num_labels", "tokenizer", "save")


def import_target(path: str, what: str = "student") -> Any:
    """`package.module:Name` -> the object (a plug-in student or method); a one-line error names what could not be
    found."""
    module, attribute = import_plugin(path, what)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise XKDError(f"module '{module.__name__}' has no '{attribute}' ({what} '{path}')") from None


def entry_point_students() -> dict[str, Any]:
    """Students other packages registered under the `xkd.students` entry-point group, loaded lazily."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def builder_of(target: Any, name: str):
    build = getattr(target, "build", None) if isinstance(target, type) else target
    if not callable(build):
        raise XKDError(f"student '{name}' has no build(teacher, task, train_texts, layers, **options); see the README")
    return build


def check_protocol(model: Any, name: str) -> nn.Module:
    """Fail early, in one line, when a plug-in misses part of the protocol."""
    if not isinstance(model, nn.Module):
        raise XKDError(f"student '{name}' built a {type(model).__name__}, not a torch nn.Module")
    missing = [attr for attr in REQUIRED if not hasattr(model, attr)]
    if missing:
        raise XKDError(f"student '{name}' lacks {', '.join(missing)}; see the plug-in protocol in the README")
    return model
