"""Task metrics computed with scikit-learn and scipy (no run-time downloads, unlike `evaluate`)."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from xkd.tasks import Task


def _corr(fn, a: np.ndarray, b: np.ndarray) -> float:
    # A constant prediction has no correlation; report 0 rather than NaN so best-checkpoint logic stays sane.
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(fn(a, b)[0])


METRICS = {
    "accuracy": lambda p, y: float(accuracy_score(y, p)),
    "f1": lambda p, y: float(f1_score(y, p)),
    "matthews": lambda p, y: float(matthews_corrcoef(y, p)),
    "pearson": lambda p, y: _corr(pearsonr, p, y),
    "spearman": lambda p, y: _corr(spearmanr, p, y),
    # Multi-label: predictions and labels are multi-hot [N, C]. A label nobody predicts or holds gets F1 0 in the
    # macro mean (zero_division=0) rather than a warning and an undefined value.
    "micro_f1": lambda p, y: float(f1_score(y, p, average="micro", zero_division=0)),
    "macro_f1": lambda p, y: float(f1_score(y, p, average="macro", zero_division=0)),
    "subset_accuracy": lambda p, y: float(accuracy_score(y, p)),  # the whole label set exactly right
}


def predictions(task: Task, logits: np.ndarray) -> np.ndarray:
    """Class ids, or the regression value, from raw logits [N, C]; for a multi-label task the multi-hot rows
    [N, C] of labels whose sigmoid exceeds 0.5 (logit > 0, the same test without rounding near 0.5)."""
    if task.multi_label:
        return (logits > 0).astype(np.int64)
    return logits[:, 0] if task.regression else logits.argmax(axis=-1)


def shown_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics worth printing: `score` only when it averages several (for one metric it repeats it)."""
    return {k: v for k, v in metrics.items() if k != "score" or len(metrics) > 2}


def compute_metrics(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics plus `score`, their mean (the number used to pick the best checkpoint)."""
    preds = predictions(task, logits)
    if task.multi_label:
        labels = np.asarray(labels).astype(np.int64)  # stored as floats (the BCE target); scikit-learn wants ints
    result = {name: METRICS[name](preds, labels) for name in task.metrics}
    result["score"] = float(np.mean(list(result.values())))
    return result
