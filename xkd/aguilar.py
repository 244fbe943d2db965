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

import torch
from torch import Tensor, nn

from xkd.errors import XKDError
from xkd.layer_maps import uniform_map
from xkd.losses import attention_kl, cls_cosine_loss
from xkd.methods import METHODS, LossTerm, Method, TermContext, gold_term, module_term, soft_term
from xkd.tasks import Task
from xkd.trace import Trace

ALGORITHMS = ("all", "progressive", "stacked")


def active_layers(algorithm: str, stage: int, layers: int) -> list[int]:
    """The student layers (0-based) trained at `stage`; empty once the internal stages are over."""
    if algorithm == "all":
        return list(range(layers))
    if stage >= layers:
        return []
    return [stage] if algorithm == "progressive" else list(range(stage + 1))


class InternalLoss(nn.Module):
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
        if unit not in ("epochs", "steps") or per_layer < 1:
            raise XKDError("aguilar needs unit=epochs|steps and per_layer >= 1")
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
        if heads not in ("same", "average"):
            raise XKDError(f"heads must be same or average, got '{heads}'")
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

    @property
    def internal_done(self) -> bool:
        return self.algorithm != "all" and int(self.stage) >= self.layers

    @property
    def frozen_layers(self) -> int:
        """How many bottom student layers (and the embeddings) get no update now: under progressive with
        `freeze`, those below the layer being distilled; none once the internal stages are over."""
        return int(self.stage) if self.freezes and not self.internal_done else 0

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


def aguilar_terms(
    context: TermContext | None,
    temperature: float,
    alpha: float,
    algorithm: str,
    unit: str,
    per_layer: int,
    threshold: float,
    heads: str,
    attention: float,
    cosine: float,
    kd_after_stages: bool,
    freeze: bool,
) -> list[LossTerm]:
    if context is None:
        raise XKDError("aguilar needs the student and teacher shapes to map layers")
    module = InternalLoss(context, algorithm, unit, per_layer, threshold, heads, attention, cosine, freeze)
    soft = soft_term(temperature)

    def gated_soft(student: Trace, teacher: Trace | None, labels: Tensor, task: Task) -> Tensor:
        value = soft(student, teacher, labels, task)
        waiting = kd_after_stages and algorithm != "all" and not module.internal_done
        return value * 0 if waiting else value

    return [
        LossTerm("ce", 1.0 - alpha, gold_term),
        LossTerm("kd", alpha, gated_soft),
        module_term("internal", 1.0, module),
    ]


METHODS.add(
    "aguilar",
    Method(
        name="aguilar",
        summary="Aguilar et al. 2020 internal KD: attention KL per head and query row + [CLS] 1-cos on uniformly "
        "mapped layers; algorithms all, progressive (PID), stacked (SID); KD after the internal stages",
        make_terms=aguilar_terms,
        options={
            "temperature": 2.0,
            "alpha": 0.5,
            "algorithm": "all",
            "unit": "epochs",
            "per_layer": 1,
            "threshold": 0.0,
            "heads": "same",
            "attention": 1.0,
            "cosine": 1.0,
            "kd_after_stages": True,
            "freeze": False,
        },
        needs_attentions=True,
        applies_to="transformer students sharing the teacher's tokenizer and head count (heads=average: any count)",
    ),
)
