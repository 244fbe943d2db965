"""Ensembles of teachers: several `--teacher`s that the student learns from as one.

Each member is an ordinary teacher: resolved, fine-tuned and given pseudo heads exactly as a one-teacher run would
(so its fine-tune, heads and teacher cache are shared with that run), and cached under its own key. The members'
outputs are combined only when read (`combine_traces`), so the weights and the averaging can change without a
new teacher pass, and an ensemble costs nothing beyond its members' caches.

Members may use different tokenizers: each then gets a collator role of its own (`teacher`, `teacher2`, ...;
identical tokenizers share one encoding, as `xkd.data.Collator` dedups them), and `EnsembleCollator` packs every
member's padded inputs into the one `batch["teacher"]` dict the training loop hands to a teacher, with keys
`input_ids`, ... for the first member and `2/input_ids`, ... for the second. The loop, the FLOP counter and the
latency probe thus see one teacher module, and stay ignorant of ensembles.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from xkd.data import Collator
from xkd.errors import XKDError
from xkd.trace import Trace

if TYPE_CHECKING:
    from xkd.config import DistillConfig
    from xkd.methods import Method
    from xkd.tasks import Task

AVERAGES = ("logits", "probabilities")
ROLE = "teacher"  # the first member's role; the k-th (k >= 2) is `teacher{k}`
SEPARATOR = "/"  # `2/input_ids`: the second member's inputs inside the packed teacher inputs


def member_role(k: int) -> str:
    """The collator role of member `k` (0-based): the first keeps the one-teacher role, so its encoding and its
    cache are a one-teacher run's."""
    return ROLE if k == 0 else f"{ROLE}{k + 1}"


def is_member_role(role: str) -> bool:
    return role == ROLE or (role.startswith(ROLE) and role[len(ROLE) :].isdigit())


def normalized(weights: Sequence[float], members: int) -> list[float]:
    """Weights summing to 1 (equal when none are given): the combination is a weighted *mean*, so `2,1` and
    `0.67,0.33` mean the same ensemble."""
    chosen = list(weights) or [1.0] * members
    total = float(sum(chosen))
    return [float(w) / total for w in chosen]


def combine_logits(logits: Sequence[Tensor], weights: Sequence[float], average: str) -> Tensor:
    """The ensemble's final logits [B, C].

    `logits`: the weighted mean of the members' logits (for regression, the mean prediction). `probabilities`:
    the log of the weighted mean of the members' softmax distributions, computed as a log-sum-exp of
    log-probabilities (stable for confident members), so a downstream softmax gives exactly the averaged
    distribution (at temperature 1; KD's temperature then softens that distribution). `sigmoids`: what
    `probabilities` means for a multi-label task, whose labels are independent sigmoids, not one softmax: each
    label's probability is averaged and returned as its logit, so a downstream sigmoid gives the mean.
    """
    stacked = torch.stack([z.float() for z in logits])  # [K, B, C]
    w = torch.tensor(normalized(weights, len(logits)), dtype=stacked.dtype, device=stacked.device)
    if average == "logits":
        return torch.einsum("k,kbc->bc", w, stacked)
    log_w = torch.log(w)[:, None, None]
    if average == "probabilities":
        return torch.logsumexp(log_w + torch.log_softmax(stacked, dim=-1), dim=0)
    if average == "sigmoids":  # multi-label: each label's probability averaged, as the logit log(p / (1 - p))
        on = torch.logsumexp(log_w + F.logsigmoid(stacked), dim=0)
        return on - torch.logsumexp(log_w + F.logsigmoid(-stacked), dim=0)
    raise XKDError(f"ensemble-average must be one of {', '.join(AVERAGES)}, got '{average}'")


def concatenated_layers(tensors: Sequence[Tensor | None]) -> Tensor | None:
    """Per-layer outputs of every member side by side along the layer axis, [B, L1 + L2 + ..., D], so a method
    that attends over teacher layers (Universal-KD's projector) attends over all members' layers together; None
    when a member lacks them."""
    if any(t is None for t in tensors):
        return None
    return torch.cat([t.float() for t in tensors], dim=1)  # type: ignore[union-attr]


def combine_traces(traces: Sequence[Trace], weights: Sequence[float], average: str = "logits") -> Trace:
    """One teacher Trace from the members' traces of the same batch.

    - `logits`: see `combine_logits` (`average` = logits or probabilities).
    - `pseudo_logits`: concatenated along the layer axis (the context's teacher layer count is their sum).
    - `layer_vectors`: concatenated along the layer axis when every member has the same width; otherwise
      [B, L1 + L2 + ..., 0], which keeps the layer count: methods reading them are refused before training
      (`check_ensemble_widths`), since vectors of different widths have no common space.
    - `attention_mask`: the first member's; `attentions`: none (attention methods are refused for ensembles:
      members' maps cover different tokens and head counts).
    """
    vectors = [t.layer_vectors for t in traces]
    widths = {v.shape[-1] for v in vectors if v.shape[1] > 0}
    if len(widths) <= 1:
        layer_vectors = torch.cat([v.float() for v in vectors], dim=1)
    else:
        rows, layers = vectors[0].shape[0], sum(v.shape[1] for v in vectors)
        layer_vectors = torch.zeros(rows, layers, 0, device=vectors[0].device)
    return Trace(
        logits=combine_logits([t.logits for t in traces], weights, average),
        layer_vectors=layer_vectors,
        attention_mask=traces[0].attention_mask,
        pseudo_logits=concatenated_layers([t.pseudo_logits for t in traces]),
    )


class EnsembleTeacher(nn.Module):
    """Frozen member teachers run on their own inputs (unpacked from `EnsembleCollator`'s packed dict) and combined
    by `combine_traces`. Exposes what the engine reads from a teacher: `num_layers` (the members' sum, what the
    combined pseudo logits hold), `layer_width` (the first member's; equal for all when a method reads layer
    vectors), `num_labels`, and `tokenizer` (the first member's: students built from a teacher use the first)."""

    def __init__(
        self, members: Sequence[nn.Module], weights: Sequence[float], average: str = "logits", multi_label: bool = False
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        # Probabilities of a multi-label task are each label's sigmoid, not one softmax (see `combine_logits`).
        self.average = "sigmoids" if multi_label and average == "probabilities" else average
        self.weights = normalized(weights, len(members))

    @property
    def first(self) -> nn.Module:
        return self.members[0]

    @property
    def num_layers(self) -> int:
        return sum(m.num_layers for m in self.members)

    @property
    def layer_width(self) -> int:
        return self.first.layer_width

    @property
    def num_labels(self) -> int:
        return self.first.num_labels

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.first.tokenizer

    def forward(self, inputs: dict[str, Tensor], output_attentions: bool = False) -> Trace:
        traces = [member(member_inputs(inputs, k)) for k, member in enumerate(self.members)]
        return combine_traces(traces, self.weights, self.average)


def member_inputs(packed: Mapping[str, Tensor], k: int) -> dict[str, Tensor]:
    """Member `k`'s own inputs from the packed teacher inputs (see `EnsembleCollator`)."""
    if k == 0:
        return {key: v for key, v in packed.items() if SEPARATOR not in key}
    prefix = f"{k + 1}{SEPARATOR}"
    return {key[len(prefix) :]: v for key, v in packed.items() if key.startswith(prefix)}


class EnsembleCollator(Collator):
    """A `Collator` whose teacher inputs hold every member's padded inputs (the first member's under their own
    names, member k's as `k/name`), so the training loop passes one dict to one teacher module."""

    def without(self, role: str) -> Collator:
        other = super().without(role)
        if role == ROLE:  # a cached ensemble needs no member's inputs
            other.aliases = {r: s for r, s in other.aliases.items() if not is_member_role(r)}
        return other

    def __call__(self, features: list[dict]) -> dict:
        batch = super().__call__(features)
        roles = sorted((r for r in batch if is_member_role(r) and r != ROLE), key=lambda r: int(r[len(ROLE) :]))
        if ROLE in batch:
            packed = dict(batch[ROLE])  # a copy: the first member's dict may be the student's too
            for role in roles:
                packed.update({f"{role[len(ROLE) :]}{SEPARATOR}{key}": v for key, v in batch[role].items()})
            batch[ROLE] = packed
        for role in roles:
            del batch[role]
        return batch


def ensemble_collator(
    tokenizers: Mapping[str, PreTrainedTokenizerBase], separate: Collection[str] = (), members: int = 1
) -> Collator:
    """The run's collator: a plain `Collator` for one teacher (as before), an `EnsembleCollator` for several."""
    return EnsembleCollator(tokenizers, separate) if members > 1 else Collator(tokenizers, separate)


def member_collator(collator: Collator, k: int) -> Collator:
    """A collator whose `teacher` inputs are member `k`'s alone, encoded as its one-teacher run encodes them: what
    builds (and fingerprints) the member's own teacher cache, and evaluates it alone."""
    view = Collator.__new__(Collator)
    view.tokenizers = dict(collator.tokenizers)
    view.aliases = {ROLE: collator.aliases[member_role(k)]}
    return view


def teacher_tokenizers(teacher: nn.Module | None) -> dict[str, PreTrainedTokenizerBase]:
    """Role -> tokenizer of the teacher's inputs: `teacher`, and `teacher2`, ... for an ensemble's members; none
    without a teacher model (outside outputs)."""
    if teacher is None:
        return {}
    if isinstance(teacher, EnsembleTeacher):
        return {member_role(k): m.tokenizer for k, m in enumerate(teacher.members)}
    return {ROLE: teacher.tokenizer}


@dataclass
class EnsembleCache:
    """The members' teacher caches read as one: `trace` combines the members' cached traces of the same rows.

    Offers what the training loop and the run summary read from a `TeacherCache` (`has`, `trace`, `logits`,
    `examples`), and `members`, each member's own cache.
    """

    members: list[Any]  # TeacherCache each
    weights: list[float]
    average: str

    def has(self, split: str) -> bool:
        return all(m.has(split) for m in self.members)

    def trace(self, split: str, index: Tensor, attention_mask: Tensor | None = None) -> Trace:
        traces = [m.trace(split, index, attention_mask) for m in self.members]
        return combine_traces(traces, self.weights, self.average)

    def logits(self, split: str) -> np.ndarray:
        member_logits = [torch.from_numpy(np.array(m.logits(split), dtype=np.float32)) for m in self.members]
        return combine_logits(member_logits, self.weights, self.average).numpy()

    @property
    def examples(self) -> int:
        """Examples the ensemble ran on to fill the caches: one ensemble pass (every member once) per example, so
        the compute columns charge the ensemble's FLOPs per example once, not once per member."""
        return max(m.examples for m in self.members)


def ensemble_info(infos: Sequence[dict[str, Any]], weights: Sequence[float], average: str) -> dict[str, Any]:
    """What the summary records about an ensemble: its members (each as a one-teacher run records its teacher,
    plus its weight), the normalised weights and the averaging."""
    shares = normalized(weights, len(infos))
    members = [{**copy.deepcopy(info), "weight": w} for info, w in zip(infos, shares, strict=True)]
    return {
        "source": " + ".join(str(info["source"]) for info in infos),
        "members": members,
        "weights": shares,
        "average": average,
    }


def teacher_list(teacher: str | Sequence[str]) -> list[str]:
    """The `teacher` config value as a list of teachers (a string is one teacher, as it always was)."""
    return [teacher] if isinstance(teacher, str) else list(teacher)


def check_ensemble(cfg: DistillConfig, method: Method, task: Task) -> None:
    """What an ensemble cannot do, refused before anything loads, each in one line with the reason."""
    names = teacher_list(cfg.teacher)
    if cfg.teacher_weights and len(cfg.teacher_weights) != len(names):
        raise XKDError(
            f"--teacher-weights has {len(cfg.teacher_weights)} value(s) for {len(names)} teacher(s); give one "
            "weight per --teacher, in the same order"
        )
    if any(not w > 0 for w in cfg.teacher_weights):
        raise XKDError(f"teacher weights must all be > 0, got {cfg.teacher_weights}; drop a teacher instead of 0")
    if len(names) == 1:
        return
    if len(set(names)) != len(names):
        raise XKDError(f"teacher '{next(n for n in names if names.count(n) > 1)}' is given twice; weigh it instead")
    if cfg.assistant_layers:
        raise XKDError(
            "TAKD assistants learn from one teacher, not an ensemble; drop --assistant-layers or give one --teacher"
        )
    if method.needs_attentions:
        raise XKDError(
            f"method '{method.name}' compares attention maps with one teacher's, and an ensemble's members attend "
            "over different tokens and heads; use one --teacher, or a method without attention maps"
        )
    if task.regression and cfg.ensemble_average == "probabilities":
        raise XKDError(
            f"task '{task.name}' is a regression task: its teachers' outputs are values, not distributions; use "
            "--ensemble-average logits (the mean prediction)"
        )


def check_ensemble_widths(method: Method, options: Mapping[str, Any], widths: Mapping[str, int]) -> None:
    """Methods that read the teacher's layer vectors (under these `options`) need one width across the ensemble:
    vectors of different widths have no common space to concatenate in."""
    if "layer_vectors" in method.reads(options) and len(set(widths.values())) > 1:
        shown = ", ".join(f"{name} {width}" for name, width in widths.items())
        raise XKDError(
            f"method '{method.name}' reads the teacher's layer vectors, and the ensemble's members have different "
            f"widths ({shown}); use teachers of one width, or a method that reads only outputs (kd, logit-mse)"
        )


def first_member(teacher: nn.Module | None) -> nn.Module | None:
    """The teacher students are built from (BERT-k's layers, `vocab=teacher`): an ensemble's first member."""
    return teacher.first if isinstance(teacher, EnsembleTeacher) else teacher
