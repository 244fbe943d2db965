"""Files training writes so that a crash costs little: resumable checkpoints and atomically saved models."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xkd.errors import XKDError
from xkd.files import removed_on_failure, write_text_atomically
from xkd.log import Log, to_stderr


class Checkpoints:
    """Resumable training states in one directory, written atomically, the newest `keep` kept."""

    def __init__(self, directory: Path, keep: int, enabled: bool = True, log: Log = to_stderr) -> None:
        self.directory, self.keep, self.enabled, self.log = directory, max(keep, 1), enabled, log

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
        with removed_on_failure(tmp):  # a full disk: no half-written file stays behind, the older ones are intact
            torch.save(state, tmp)
        # Written: make room before it becomes a checkpoint, so a kill at any instant leaves at most `keep` of them.
        # With keep 1 the only checkpoint must outlive the rename, so two exist for that instant (clean() prunes).
        self._prune(max(self.keep - 1, 1))
        os.replace(tmp, final)  # a crash mid-write leaves the previous checkpoint as the newest
        self._prune(self.keep)

    def _prune(self, keep: int) -> None:
        for old in self.paths()[:-keep]:
            old.unlink(missing_ok=True)

    @classmethod
    def discard(cls, run_dir: Path) -> None:
        """Delete a finished run's checkpoints: its saved model and summary are the result, and resuming a finished
        run is refused, so they only hold disk (a 12-layer teacher's fine-tune kept 3.3 GB)."""
        shutil.rmtree(Path(run_dir) / "checkpoints", ignore_errors=True)

    def clean(self) -> None:
        """Remove what a process killed mid-write left (`*.partial`, and with keep 1 the older of two checkpoints)."""
        for stale in self.directory.glob("*.partial"):
            stale.unlink(missing_ok=True)
        self._prune(self.keep)  # keep 1 killed mid-write leaves two

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads; a damaged one (a disk error, a file cut short) is skipped with a line
        saying which and why. None when there is none; an error when every one is damaged."""
        damaged = []
        for path in reversed(self.paths()):
            try:
                return torch.load(path, map_location="cpu", weights_only=False)
            except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError... for a damaged file
                why = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                damaged.append(f"{path.name} ({why})")
                self.log(f"checkpoint {path} cannot be read ({why}); trying the one before it")
        if damaged:
            raise XKDError(
                f"no checkpoint in {self.directory} can be read: {'; '.join(damaged)}; start the run again with "
                "--overwrite instead of --resume"
            )
        return None


def save_atomically(model: nn.Module, directory: Path, meta: dict[str, Any]) -> None:
    """Save into a temporary sibling, then move each file into place with an atomic rename.

    A crash mid-save never leaves a half-written weights file; files the directory already holds (a run's logs)
    are kept.
    """
    tmp = directory.with_name(directory.name + ".saving")
    shutil.rmtree(tmp, ignore_errors=True)
    with removed_on_failure(tmp):
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
        if "step" not in record:
            return record["epoch"] < epoch
        if record.get("at") != "step" and record["epoch"] >= epoch:
            return False  # an epoch's end line comes after the checkpoint of its last step, before the epoch's own
        return record["step"] <= step

    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if covered(json.loads(line))]
        write_text_atomically(path, "".join(line + "\n" for line in lines))
