"""Everything a resumable checkpoint holds, in one object with one `state_dict()` / `load_state_dict()` pair."""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from xkd.training.settings import TrainSettings
from xkd.training.teacher_source import TeacherSource


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainState:
    """The trained objects (student, loss-term modules with their stage buffers, optimizer, scheduler, AMP scaler)
    and where training stands: step, the epoch to train next and how many of its batches are done, the epoch's
    running loss sums, example counts, elapsed time, and the best validation score, epoch, metrics and weights.

    A checkpoint is `state_dict()`; `load_state_dict()` puts a run back exactly where it was, RNG included.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: nn.Module,
        term_modules: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        settings: TrainSettings,
        source: TeacherSource,
        initial_best: float = -math.inf,
    ) -> None:
        self.accelerator, self.model, self.term_modules = accelerator, model, term_modules
        self.optimizer, self.scheduler, self.settings, self.source = optimizer, scheduler, settings, source
        self.step = 0
        self.epoch = 1  # the epoch to train next
        self.batches_done = 0  # batches of `epoch` already trained on
        self.sums: dict[str, float] = {}  # running sums of the logged losses over this epoch's batches
        self.seen = 0  # batches this epoch
        self.trained = 0  # examples trained on (this process); the teacher's are counted by `source`
        self.best_score, self.best_epoch = initial_best, 0
        self.best_val: dict[str, Any] = {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step = 0
        self.evals_without_gain = 0  # evaluations since the best score last improved (early stopping)
        self.evaluations = 0  # validation passes so far, epoch ends and --eval-every steps
        self.stopped_at: int | None = None  # the step early stopping ended training at
        self._earlier_seconds = 0.0  # training time before an interruption
        self._clock = time.perf_counter()

    def start_clock(self) -> None:
        self._clock = time.perf_counter() - self._earlier_seconds

    def elapsed(self) -> float:
        """Training seconds, including those before an interruption."""
        return time.perf_counter() - self._clock

    @property
    def earlier_seconds(self) -> float:
        """Training seconds of the processes before this one (0 unless resumed): a resumed run's wall time adds
        them, so it reports the whole run, not its last stretch."""
        return self._earlier_seconds

    def student(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def state_dict(self) -> dict[str, Any]:
        scaler = self.accelerator.scaler
        return {
            "student": self.student().state_dict(),
            "terms": self.accelerator.unwrap_model(self.term_modules).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
            "step": self.step,
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "sums": self.sums,
            "seen": self.seen,
            "counts": (self.trained, self.source.forward_examples),
            "elapsed": self.elapsed(),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_val": self.best_val,
            "best_state": self.best_state,
            "early_stopping": (self.best_step, self.evals_without_gain, self.stopped_at),
            "evaluations": self.evaluations,
            "settings": asdict(self.settings),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.student().load_state_dict(state["student"])
        self.accelerator.unwrap_model(self.term_modules).load_state_dict(state["terms"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])  # nothing draws from it before the next step (loaders have own generators)
        self.step, self.epoch, self.batches_done = state["step"], state["epoch"], state["batches_done"]
        self.sums, self.seen = dict(state["sums"]), state["seen"]
        self.trained, self.source.forward_examples = state.get("counts", (0, 0))
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_val, self.best_state = state["best_val"], state["best_state"]
        self.best_step, self.evals_without_gain, self.stopped_at = state.get("early_stopping", (0, 0, None))
        self.evaluations = state.get("evaluations", 0)  # checkpoints before it was kept: counted from here on
        self._earlier_seconds = state["elapsed"]
