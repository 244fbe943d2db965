"""Aguilar et al. (AAAI 2020): distilling a BERT teacher through its internal representations.

Per mapped layer pair (uniform map j <-> round((j+1)n/m)-1): the KL between self-attention rows (per head and
per real query row) and 1 - cos between [CLS] vectors. Three algorithms decide which layers train when:
- `all`: every mapped layer from the first step;
- `progressive` (PID): one layer at a time, bottom-up;
- `stacked` (SID): stage k trains the sum over layers 1..k.
With `freeze` (progressive only), the embeddings and the layers below the one being distilled get no updates until
the internal stages end. A stage lasts `per_layer` epochs or steps (`unit`), or, with `threshold` > 0, until the
active layer's loss (an exponential moving average) falls below it. Soft-label KD on the classifier comes on after
the internal stages (`kd_after_stages`; under `all` it is on throughout). Attention KL compares positions, so
teacher and student must share a tokenizer, and heads one to one unless `heads=average` averages each side's heads
first. The stage lives in buffers of the term module, so it is saved and restored with the rest of the training
state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xkd.errors import XKDError
from xkd.layer_maps import uniform_map
from xkd.methods.base import LossTerm, TermContext, TermModule, gold_term, method, module_term, needs_context, soft_term
from xkd.methods.kd import KDOptions
from xkd.methods.losses import attention_kl, cls_cosine_loss
from xkd.options import option
from xkd.tasks import Task
from xkd.trace import Trace

ALGORITHMS = ("all", "progressive", "stacked")
UNITS = ("epochs", "steps")
HEAD_PAIRINGS = ("same", "average")


@dataclass(frozen=True)
class AguilarOptions(KDOptions):
    algorithm: str = option("all", "all layers at once, progressive (PID) or stacked (SID)", choices=ALGORITHMS)
    unit: str = option("epochs", "what per_layer counts", choices=UNITS)
    per_layer: int = option(1, "length of each internal stage, in units", minimum=1)
    threshold: float = option(
        0.0, "> 0: a stage ends when its layer loss falls below it; 0: stages by count", minimum=0
    )
    heads: str = option(
        "same", "same: pair heads one to one; average: average each side's heads", choices=HEAD_PAIRINGS
    )
    attention: float = option(1.0, "weight of the attention KL", weight=True)
    cosine: float = option(1.0, "weight of the [CLS] 1 - cos term", weight=True)
    kd_after_stages: bool = option(True, "KD on the logits only once the internal stages are over")
    freeze: bool = option(False, "progressive: no updates below the layer being distilled")


def active_layers(algorithm: str, stage: int, layers: int) -> list[int]:
    """The student layers (0-based) trained at `stage`; empty once the internal stages are over."""
    if algorithm == "all":
        return list(range(layers))
    if stage >= layers:
        return []
    return [stage] if algorithm == "progressive" else list(range(stage + 1))


class InternalLoss(TermModule):
    """The internal term: per mapped layer, attention KL and [CLS] 1 - cos; its stage lives in buffers."""

    def __init__(
        self,
        context: TermContext,
        algorithm: str,
        unit: str,
        per_layer: int,
        threshold: float,
        heads: str,
        attention_weight: float,
        cosine_weight: float,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        if algorithm not in ALGORITHMS:
            raise XKDError(f"unknown algorithm '{algorithm}'; choose one of: {', '.join(ALGORITHMS)}")
        if attention_weight > 0:
            if context.student_attention_heads is None or context.teacher_attention_heads is None:
                raise XKDError(
                    "attention KL needs self-attention in both models; use a transformer student or -O attention=0"
                )
            if not context.shared_tokenizer:
                raise XKDError("attention KL compares token positions, so the student must use the teacher's tokenizer")
            if heads == "same" and context.student_attention_heads != context.teacher_attention_heads:
                raise XKDError(
                    f"attention KL pairs heads one to one, but the student has {context.student_attention_heads} and "
                    f"the teacher {context.teacher_attention_heads}; pass -O heads=average"
                )
        self.algorithm, self.threshold, self.heads = algorithm, threshold, heads
        self.freezes = freeze and algorithm == "progressive"
        self.attention_weight, self.cosine_weight = attention_weight, cosine_weight
        self.layers = context.student_layers
        self.teacher_layers = uniform_map(context.teacher_layers, context.student_layers)
        steps = per_layer * (context.steps_per_epoch or 1) if unit == "epochs" else per_layer
        self.steps_per_stage = steps
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps_in_stage", torch.zeros((), dtype=torch.long))
        self.register_buffer("loss_average", torch.full((), float("inf")))
        self.frozen_now = 0  # layers frozen for the batch being trained (the stage before its forward moved it on)

    @property
    def internal_done(self) -> bool:
        return self.algorithm != "all" and int(self.stage) >= self.layers

    @property
    def frozen_layers(self) -> int:
        """How many bottom student layers (and the embeddings) get no update now: under progressive with
        `freeze`, those below the layer being distilled; none once the internal stages are over."""
        return int(self.stage) if self.freezes and not self.internal_done else 0

    def start(self, student: nn.Module) -> None:
        if self.freezes and not hasattr(student, "layer_modules"):
            raise XKDError("freezing layers needs a student with layer_modules() (BERT-k has it); drop -O freeze=true")

    def after_backward(self, student: nn.Module) -> None:
        """Drop the gradients of the embeddings and the layers below the one being distilled (AdamW then skips
        those parameters: no update, no weight decay)."""
        if not self.frozen_now:
            return
        for layer in student.layer_modules()[: self.frozen_now + 1]:
            for p in layer.parameters():
                p.grad = None

    def layer_loss(self, student: Trace, teacher: Trace, j: int) -> Tensor:
        i = self.teacher_layers[j]
        loss = self.cosine_weight * cls_cosine_loss(student.layer_vectors[:, j], teacher.layer_vectors[:, i])
        if self.attention_weight > 0:
            s, t = student.attentions[:, j], teacher.attentions[:, i]
            if self.heads == "average":
                s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
            loss = loss + self.attention_weight * attention_kl(s, t, student.attention_mask)
        return loss

    def forward(self, student: Trace, teacher: Trace) -> Tensor:
        if self.training:
            self.frozen_now = self.frozen_layers
        layers = active_layers(self.algorithm, int(self.stage), self.layers)
        if not layers:
            return student.logits.sum() * 0
        losses = [self.layer_loss(student, teacher, j) for j in layers]
        if self.training:
            self._advance(float(losses[-1].detach()))
        return torch.stack(losses).sum()

    def _advance(self, newest_layer_loss: float) -> None:
        """Count a step of the current stage and move to the next stage when it is over."""
        if self.algorithm == "all":
            return
        self.steps_in_stage += 1
        if self.threshold > 0:
            previous = float(self.loss_average)
            average = newest_layer_loss if previous == float("inf") else 0.9 * previous + 0.1 * newest_layer_loss
            self.loss_average.fill_(average)
            done = average < self.threshold
        else:
            done = int(self.steps_in_stage) >= self.steps_per_stage
        if done:
            self.stage += 1
            self.steps_in_stage.zero_()
            self.loss_average.fill_(float("inf"))


@method(
    "aguilar",
    AguilarOptions,
    summary="Aguilar et al. 2020 internal KD: attention KL per head and query row + [CLS] 1-cos on uniformly "
    "mapped layers; algorithms all, progressive (PID), stacked (SID); KD after the internal stages",
    needs_attentions=True,
    applies_to="transformer students sharing the teacher's tokenizer and head count (heads=average: any count)",
    multi_label=True,  # attention and [CLS] terms are label-free; KD is per-label Bernoulli (`soft_term`)
)
def aguilar_terms(context: TermContext | None, o: AguilarOptions) -> list[LossTerm]:
    context = needs_context(context, "aguilar", "map layers")
    module = InternalLoss(
        context, o.algorithm, o.unit, o.per_layer, o.threshold, o.heads, o.attention, o.cosine, o.freeze
    )
    soft = soft_term(o.temperature)

    def gated_soft(student: Trace, teacher: Trace | None, labels: Tensor, task: Task) -> Tensor:
        value = soft(student, teacher, labels, task)
        waiting = o.kd_after_stages and o.algorithm != "all" and not module.internal_done
        return value * 0 if waiting else value

    return [
        LossTerm("ce", 1.0 - o.alpha, gold_term),
        LossTerm("kd", o.alpha, gated_soft),
        module_term("internal", 1.0, module),
    ]
