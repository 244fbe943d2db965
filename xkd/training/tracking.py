"""Experiment trackers (`--report-to tensorboard`, mlflow, wandb, ...) through accelerate's trackers.

xkd's own record stays `metrics.jsonl` and `summary.json`; trackers receive the same numbers as they happen: the
running mean of every loss term every `--log-every` steps, the learning rate, validation metrics at every evaluation,
test metrics at the end, and the terms' epoch records as heatmap images where the tracker takes images (the
Universal-KD projector's attention over teacher layers). Everything works offline: TensorBoard and MLflow write
under the run directory (`RUN_DIR/tracking/`), W&B runs in offline mode unless `WANDB_MODE` says otherwise.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator

from xkd.errors import XKDError

TRACKING_DIR = "tracking"
# accelerate's tracker names and the package each needs.
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
    "comet_ml": ("comet_ml",),
    "aim": ("aim",),
    "clearml": ("clearml",),
    "dvclive": ("dvclive",),
    "swanlab": ("swanlab",),
    "trackio": ("trackio",),
}


def check_trackers(names: list[str]) -> list[str]:
    """Known and installed tracker names, or a one-line error naming the fix; before anything is trained."""
    for name in names:
        if name not in TRACKERS:
            raise XKDError(f"unknown tracker '{name}' in --report-to; choose from {', '.join(TRACKERS)}")
        if not any(importlib.util.find_spec(package) for package in TRACKERS[name]):
            raise XKDError(f"--report-to {name} needs the {TRACKERS[name][0]} package: pip install {TRACKERS[name][0]}")
    return list(dict.fromkeys(names))


class Tracking:
    """The run's trackers (none when `--report-to` is empty: every call is then free)."""

    def __init__(self, accelerator: Accelerator, names: list[str]) -> None:
        self.accelerator, self.names = accelerator, names

    @classmethod
    def start(cls, accelerator: Accelerator, names: list[str], run_dir: Path, config: dict[str, Any]) -> Tracking:
        if names and accelerator.is_main_process:
            directory = run_dir / TRACKING_DIR
            directory.mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("WANDB_MODE", "offline")  # never needs the network; `wandb sync` uploads later
            os.environ.setdefault("MLFLOW_TRACKING_URI", (directory / "mlruns").resolve().as_uri())
            init = {"wandb": {"dir": str(directory)}} if "wandb" in names else {}
            accelerator.init_trackers(run_dir.name, config=scalar_config(config), init_kwargs=init)
        return cls(accelerator, names if accelerator.is_main_process else [])

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.names:
            self.accelerator.log(values, step=step)

    def heatmap(self, name: str, matrix: list[list[float]], step: int) -> None:
        """A [rows x columns] matrix in [0, 1] as an image, for the trackers that take images."""
        if not self.names:
            return
        image = render_heatmap(matrix, name)
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({name: image[None]}, step=step, dataformats="NHWC")
            elif tracker.name == "wandb":
                tracker.log_images({name: [image]}, step=step)

    def end(self) -> None:
        if self.names:
            self.accelerator.end_training()


def scalar_config(values: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as trackers store them: scalars only (lists and dicts as text, None as 'none')."""
    out = {}
    for key, value in values.items():
        if value is None:
            out[key] = "none"
        elif isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def render_heatmap(matrix: list[list[float]], title: str) -> np.ndarray:
    """An RGB image [H, W, 3] (uint8) of a heatmap, drawn as the report's attention heatmaps are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alpha = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * alpha.shape[1], 1.0 + 0.5 * alpha.shape[0]), dpi=80)
    ax.imshow(alpha, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("teacher layer", fontsize=7)
    ax.set_ylabel("student layer", fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image
