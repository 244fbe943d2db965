"""CPU inference latency: what a user shipping the student will see."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def median_ms(run: Callable[[], object], repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time in milliseconds of `run()` over `repeats` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 3)


@torch.inference_mode()
def cpu_latency_ms(model: nn.Module, inputs: dict[str, torch.Tensor], repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time in milliseconds of one forward pass on CPU over `repeats` runs."""
    model = copy.deepcopy(model).to("cpu").eval()
    inputs = {k: v.to("cpu") for k, v in inputs.items()}
    return median_ms(lambda: model(inputs), repeats, warmup)
