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
}


def predictions(task: Task, logits: np.ndarray) -> np.ndarray:
    """Class ids, or the regression value, from raw logits [N, C]."""
    return logits[:, 0] if task.regression else logits.argmax(axis=-1)


def shown_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics worth printing: `score` only when it averages several (for one metric it repeats it)."""
    return {k: v for k, v in metrics.items() if k != "score" or len(metrics) > 2}


def compute_metrics(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics plus `score`, their mean (the number used to pick the best checkpoint)."""
    preds = predictions(task, logits)
    result = {name: METRICS[name](preds, labels) for name in task.metrics}
    result["score"] = float(np.mean(list(result.values())))
    return result
