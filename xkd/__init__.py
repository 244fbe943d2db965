"""xkd: cross-architecture knowledge distillation for text classifiers.

The public API is small: `distill` and `study` (the CLI's commands as functions, same options and defaults),
`Predictor` (a saved model on new text), `DistillationTrainer` (xkd's methods inside a Hugging Face `Trainer`),
and the `Trace` contract every model fills. Teachers and students live in `xkd.teachers` and `xkd.students`.
"""

from __future__ import annotations

from typing import Any

from xkd.errors import XKDError
from xkd.trace import Trace

__version__ = "0.1.0"

__all__ = ["DistillationTrainer", "Predictor", "Trace", "XKDError", "__version__", "distill", "study"]

# Imported on first use: `import xkd` stays light, and the Trainer's transformers import is paid only by its users.
_LAZY = {
    "Predictor": "xkd.predict",
    "distill": "xkd.api",
    "study": "xkd.api",
    "DistillationTrainer": "xkd.trainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xkd' has no attribute '{name}'")
