"""Which device and how many processes: decided once, by `accelerate`."""

from __future__ import annotations

import os

import torch
from accelerate import PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import parse_flag_from_env

from xkd.errors import XKDError


def use_cpu() -> bool:
    """CPU when asked (`ACCELERATE_USE_CPU`) or when there is no accelerator; accelerate then runs processes
    launched by `accelerate launch`/`torchrun` as a gloo group instead of ignoring the launcher. On an accelerator,
    first checks that this process has a device of its own (`check_local_device`)."""
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()
    if not cpu:
        check_local_device()
    return cpu


def check_local_device() -> None:
    """Each launched process takes the GPU numbered by its LOCAL_RANK: more processes than a machine has GPUs would
    fail deep in CUDA ('invalid device ordinal'); say so, with the two ways out."""
    local, devices = int(os.environ.get("LOCAL_RANK", "0")), torch.accelerator.device_count()
    if local >= devices:
        raise XKDError(
            f"process {local + 1} of this machine has no GPU of its own (the machine has {devices}): launch at most "
            f"{devices} process(es) per machine (accelerate launch --num_processes {devices}), or run every process "
            "on the CPU with ACCELERATE_USE_CPU=1"
        )


def process_state() -> PartialState:
    """The process group (one process unless launched by `accelerate launch` or `torchrun`)."""
    return PartialState(cpu=use_cpu())


def process_device() -> torch.device:
    """Where this process computes: its own GPU when there is one (each process of `accelerate launch` its own),
    else the CPU. A frozen teacher goes there as soon as it is loaded, so that its pseudo heads' layer vectors and
    the teacher cache's labelling pass run on the GPU too, not only the training loop."""
    return process_state().device


def fresh_accelerator_state() -> None:
    """Forget the settings (mixed precision above all) that an earlier run in this process gave accelerate, whose
    state is a process-wide singleton refusing a second `Accelerator` with other settings: a study or a notebook
    whose next run changes `--precision` would fail. The process group (`PartialState`) stays."""
    AcceleratorState._reset_state(reset_partial_state=False)
