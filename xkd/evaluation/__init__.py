"""Evaluation of any Trace-returning model on a task split; of a saved model on a task's splits, `xkd eval`'s
`evaluate_saved` (in `xkd.evaluation.saved`, which loads models as `xkd predict` does: training imports this
module, never the loaders)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from xkd.data import labeled_rows
from xkd.metrics import compute_metrics
from xkd.tasks import Task


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, role: str = "student") -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, C] and labels [N] ([N, C] multi-hot for multi-label tasks) over a loader; batches are moved to the
    model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in loader:
        inputs = {k: v.to(device) for k, v in batch[role].items()}
        logits.append(model(inputs).logits.float().cpu())
        labels.append(batch["labels"].cpu())
    model.train(was_training)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def evaluate(model: nn.Module, loader: DataLoader, task: Task, role: str = "student") -> dict[str, float]:
    """The task's metrics on a labelled split (unlabelled rows, such as GLUE's hidden test labels, are skipped)."""
    return score_logits(task, *predict(model, loader, role))


def score_logits(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics on logits already computed (e.g. a teacher cache's), skipping unlabelled rows."""
    keep = labeled_rows(labels)
    return compute_metrics(task, logits[keep], labels[keep])
