"""The optimisation settings of one training run.

They hold no defaults of their own: `xkd.distillation.train_settings` fills them from a `DistillConfig`, the one place
every option's default lives, so distillation, teacher fine-tuning and studies cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_GRAD_NORM = 1.0  # gradient clipping as in BERT's recipe; not an option


@dataclass
class TrainSettings:
    """Optimisation settings shared by distillation and teacher fine-tuning."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    max_steps: int | None
    seed: int
    precision: str  # "no", "bf16" or "fp16" (accelerate's mixed precision)
    grad_accumulation: int
    length_buckets: bool
    checkpoint_every: int  # also checkpoint every N optimizer steps (0: at epoch ends only)
    keep_checkpoints: int  # resumable checkpoints kept on disk (the newest N)
    eval_every: int  # also evaluate (and checkpoint) every N optimizer steps (0: at epoch ends only)
    patience: int  # stop after N evaluations without a better validation score (0: never)
    report_to: list[str]  # accelerate tracker names (empty: metrics.jsonl only)
    log_every: int  # optimizer steps between the trackers' training-loss points
    progress: bool
    max_grad_norm: float = MAX_GRAD_NORM
