"""xkd: cross-architecture knowledge distillation for text classifiers.

The public API is small: the `Trace` contract every model fills, the task/method/student registries, and
`run_distill` (what `xkd distill` calls). Teachers and students live in `xkd.teachers` and `xkd.students`.
"""

from xkd.errors import XKDError
from xkd.trace import Trace

__version__ = "0.1.0"

__all__ = ["Trace", "XKDError", "__version__"]
