"""The optimisation settings of one training run.

They hold no defaults of their own: `TrainSettings.from_config` fills them from a `DistillConfig`, the one place
every option's default lives, so distillation, teacher fine-tuning and studies cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from xkd.config import CONFIG_FIELDS, DistillConfig

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

    @classmethod
    def from_config(cls, cfg: DistillConfig, teacher: bool = False, default_lr: float | None = None) -> TrainSettings:
        """The student's run settings, or the teacher's fine-tune's (`teacher_epochs`, `teacher_lr`), from the config:
        every other setting has the config's value under the same name. The student's rate is `--lr`, else
        `default_lr` (its student's default for the run's length: `xkd.students.configured.student_settings`)."""
        shared = {f.name: getattr(cfg, f.name) for f in fields(cls) if f.name in CONFIG_FIELDS}
        shared["report_to"] = cfg.trackers
        if teacher:  # early stopping and trackers are the student's: the fine-tune (and its key) stays as it was
            return cls(**{**shared, "epochs": cfg.teacher_epochs, "lr": cfg.teacher_lr, "eval_every": 0,
                          "patience": 0, "report_to": []})  # fmt: skip
        lr = cfg.lr or default_lr
        if lr is None:
            raise ValueError("a student's settings need --lr or the student's default_lr")
        return cls(**{**shared, "epochs": cfg.epochs, "lr": lr})
