"""Pseudo classifiers: one small classifier head on every layer's sentence vector.

Universal-KD compares models in the label space, so every teacher and student layer needs its own logits. The
heads of all layers are held as stacked weights and applied with one einsum, not a Python loop over layers.
Teacher heads are trained after fine-tuning with the body frozen (`xkd.teachers.heads`); student heads train
jointly with the student and are left out of the exported model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from xkd.damage import damaged, first_line
from xkd.errors import XKDError
from xkd.files import write_text_atomically

KINDS = ("linear", "pooler")
WEIGHTS_FILE = "pseudo_heads.safetensors"
INFO_FILE = "pseudo_heads.json"


class DamagedHeads(XKDError):
    """Stored pseudo classifiers that cannot be loaded. They derive from their model, so a run that needs them
    retrains them (and says `why`); elsewhere the message says how to."""

    def __init__(self, directory: str | os.PathLike, why: str) -> None:
        super().__init__(
            f"the pseudo classifiers in {directory} cannot be loaded: {why}; retrain them with 'xkd teacher heads'"
        )
        self.directory, self.why = Path(directory), why


class PseudoHeads(nn.Module):
    """`layers` independent heads mapping [B, L, D] sentence vectors to [B, L, C] pseudo-logits.

    `linear`: z_l = W_l h_l + b_l. `pooler`: z_l = W_l tanh(P_l h_l + p_l) + b_l, like BERT's pooler + classifier.
    Inputs are standardised first: with fixed statistics (`set_input_statistics`, teacher heads trained on stored
    vectors), or, with `batch_norm`, with batch statistics (student heads, whose layers change while they train).
    """

    def __init__(
        self, layers: int, width: int, num_labels: int, kind: str = "linear", batch_norm: bool = False
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise XKDError(f"unknown pseudo-head kind '{kind}'; choose one of: {', '.join(KINDS)}")
        self.layers, self.width, self.num_labels, self.kind = layers, width, num_labels, kind
        # eps far below the default 1e-5: a shallow [CLS] dimension varies by ~1e-3 (variance ~1e-6)
        self.batch_norm = nn.BatchNorm1d(layers * width, eps=1e-8, affine=False) if batch_norm else None
        bound = 1 / math.sqrt(width)
        if kind == "pooler":
            self.pool_weight = nn.Parameter(torch.empty(layers, width, width).uniform_(-bound, bound))
            self.pool_bias = nn.Parameter(torch.zeros(layers, width))
        self.weight = nn.Parameter(torch.empty(layers, width, num_labels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(layers, num_labels))
        if not batch_norm:
            self.register_buffer("input_mean", torch.zeros(layers, width))
            self.register_buffer("input_std", torch.ones(layers, width))

    def forward(self, layer_vectors: Tensor) -> Tensor:
        if layer_vectors.shape[1:] != (self.layers, self.width):
            raise XKDError(
                f"pseudo heads expect [batch, {self.layers}, {self.width}] layer vectors, got "
                f"{list(layer_vectors.shape)}; retrain the heads for this model"
            )
        if self.batch_norm is not None:
            h = self.batch_norm(layer_vectors.float().flatten(1)).view(-1, self.layers, self.width)
        else:
            h = (layer_vectors - self.input_mean) / self.input_std
        if self.kind == "pooler":
            h = torch.tanh(torch.einsum("bld,lde->ble", h, self.pool_weight) + self.pool_bias)
        return torch.einsum("bld,ldc->blc", h, self.weight) + self.bias

    @torch.no_grad()
    def set_input_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Standardise each layer's inputs as `(h - mean) / std` ([L, D] statistics, saved with the weights).

        A shallow layer's [CLS] vector barely moves between inputs (per-dimension spread ~1e-3 against a norm ~10
        in MiniLM's first layers): on raw vectors a linear head would need weights a thousand times larger than the
        optimiser reaches and stays at chance confidence. The statistics are kept as buffers rather than folded
        into the weights, because folding subtracts numbers ~1e5 in float32 and loses the signal.
        """
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def config(self) -> dict[str, Any]:
        return {"layers": self.layers, "width": self.width, "num_labels": self.num_labels, "kind": self.kind}

    def save(self, directory: str | os.PathLike, **info: Any) -> Path:
        """Write the weights (safetensors) and a JSON of the config plus `info` (e.g. per-head metrics)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (WEIGHTS_FILE + ".tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(tmp))
        os.replace(tmp, directory / WEIGHTS_FILE)
        write_text_atomically(directory / INFO_FILE, json.dumps({**self.config(), **info}, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> PseudoHeads:
        """The heads stored in `directory`; `DamagedHeads` when their files cannot be read or do not fit each other."""
        directory = Path(directory)
        try:
            info = json.loads((directory / INFO_FILE).read_text())
            heads = cls(info["layers"], info["width"], info["num_labels"], info.get("kind", "linear"))
            state = load_file(str(directory / WEIGHTS_FILE))
            # Heads saved before input statistics existed take raw vectors: keep the identity statistics.
            missing = set(heads.load_state_dict(state, strict=False).missing_keys) - {"input_mean", "input_std"}
        except (OSError, XKDError):
            raise
        except Exception as e:  # truncated or overwritten files, or weights that do not fit the recorded shapes
            raise DamagedHeads(directory, damaged(directory, (INFO_FILE, WEIGHTS_FILE)) or first_line(e)) from None
        if missing:
            raise DamagedHeads(directory, f"{WEIGHTS_FILE} lacks {', '.join(sorted(missing))}")
        return heads

    @staticmethod
    def exists(directory: str | os.PathLike) -> bool:
        return (Path(directory) / WEIGHTS_FILE).is_file() and (Path(directory) / INFO_FILE).is_file()

    @staticmethod
    def fingerprint(directory: str | os.PathLike) -> str | None:
        """SHA-256 of the stored weights (None when there are none): runs record it, so a study can tell results
        distilled from heads that have since been retrained."""
        path = Path(directory) / WEIGHTS_FILE
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None

    @staticmethod
    def info(directory: str | os.PathLike) -> dict[str, Any]:
        return json.loads((Path(directory) / INFO_FILE).read_text())
