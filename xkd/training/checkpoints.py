"""Files training writes so that a crash costs little: resumable checkpoints and atomically saved models."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xkd.files import write_text_atomically


class Checkpoints:
    """Resumable training states in one directory, written atomically, the newest `keep` kept."""

    def __init__(self, directory: Path, keep: int, enabled: bool = True) -> None:
        self.directory, self.keep, self.enabled = directory, max(keep, 1), enabled

    def paths(self) -> list[Path]:
        return sorted(self.directory.glob("step-*.pt"))

    @classmethod
    def exist(cls, run_dir: Path) -> bool:
        """Whether `run_dir` holds a resumable checkpoint."""
        return bool(cls(Path(run_dir) / "checkpoints", keep=1).paths())

    def save(self, state: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"step-{state['step']:08d}.pt"
        tmp = final.with_name(final.name + ".partial")
        torch.save(state, tmp)
        os.replace(tmp, final)  # a crash mid-write leaves the previous checkpoint as the newest
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)

    def latest(self) -> dict[str, Any] | None:
        paths = self.paths()
        return torch.load(paths[-1], map_location="cpu", weights_only=False) if paths else None


def save_atomically(model: nn.Module, directory: Path, meta: dict[str, Any]) -> None:
    """Save into a temporary sibling, then move each file into place with an atomic rename.

    A crash mid-save never leaves a half-written weights file; files the directory already holds (a run's logs)
    are kept.
    """
    tmp = directory.with_name(directory.name + ".saving")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp, **meta)
    directory.mkdir(parents=True, exist_ok=True)
    for path in tmp.iterdir():
        os.replace(path, directory / path.name)
    tmp.rmdir()


def drop_lines_after(path: Path, epoch: int, step: int) -> None:
    """Keep only the JSON lines a checkpoint at (`epoch` to train next, `step`) covers: those logged at or before
    `step`, or, for records without a step (term records), of epochs before `epoch`. A resumed run writes the rest
    again."""

    def covered(record: dict[str, Any]) -> bool:
        return record["step"] <= step if "step" in record else record["epoch"] < epoch

    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if covered(json.loads(line))]
        write_text_atomically(path, "".join(line + "\n" for line in lines))
