"""How xkd speaks: every long step takes a `log` callable (print, click.echo to stderr, or `silent`)."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable

Log = Callable[[str], None]


def to_stderr(message: str) -> None:
    """The default log of library calls: a line on stderr (stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)


def silent(message: str) -> None:
    """The log of processes that must not speak (under `accelerate launch`, only the main process does)."""
    return None


# Where the chatter comes from: torch's ONNX exporter (torchvision kernels it skips, axis names it merges),
# torch's own deprecations raised from inside it, transformers' and datasets' load reports and bars.
_CHATTY_MODULES = r"(torch|transformers|datasets|onnxscript|onnxruntime|copyreg)(\.|$)"


def quiet_libraries(verbose: bool = False) -> None:
    """Silence other libraries' chatter (load reports, "Loading weights", "Map" and shard bars, warnings from
    inside torch's ONNX exporter) that buries xkd's own progress lines and results. Errors always show; with
    `verbose` (`xkd --verbose`, `xkd.distill(verbose=True)`) nothing is silenced."""
    if verbose:
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import huggingface_hub
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    for category in (FutureWarning, UserWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=_CHATTY_MODULES)
