"""Which device and how many processes: decided once, by `accelerate`."""

from __future__ import annotations

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env


def use_cpu() -> bool:
    """CPU when asked (`ACCELERATE_USE_CPU`) or when there is no accelerator; accelerate then runs processes
    launched by `accelerate launch`/`torchrun` as a gloo group instead of ignoring the launcher."""
    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()


def process_state() -> PartialState:
    """The process group (one process unless launched by `accelerate launch` or `torchrun`)."""
    return PartialState(cpu=use_cpu())
