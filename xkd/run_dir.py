"""A run's directory: named after what it runs when not given, claimed before anything is written (a finished run
is never overwritten by accident, an interrupted one is pointed to --resume) and marked with its `config.json`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from xkd.config import DistillConfig
from xkd.errors import XKDError
from xkd.files import write_text_atomically
from xkd.processes import process_state
from xkd.training import Checkpoints

RUN_FILES = ("summary.json", "metrics.jsonl", "student", "checkpoints")  # what marks a directory as holding a run


def default_run_dir(cfg: DistillConfig) -> Path:
    """`runs/TASK-STUDENTk-METHOD[-AUGMENT]-STAMP`, with `-2`, `-3`, ... when a run started in the same second has
    the name (two quick runs of one command are two runs, not a refusal)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    student = cfg.student.rpartition(":")[2].rpartition(".")[2]  # a plug-in path names its class
    method = "+".join(part.rpartition(":")[2] for part in cfg.method.split("+"))
    data = (f"-{cfg.augment}{cfg.augment_factor}" if cfg.augment != "none" else "") + ("-transfer" * bool(cfg.transfer))
    base = Path("runs") / f"{cfg.task}-{student}{cfg.student_layers}-{method}{data}-{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


def claim_run_dir(cfg: DistillConfig) -> Path:
    """The run directory, checked (a finished run is never overwritten by accident, an interrupted one is pointed to
    --resume) and marked with the run's `config.json`."""
    state = process_state()
    run_dir = Path(cfg.output_dir) if cfg.output_dir else default_run_dir(cfg)
    if cfg.resume:
        if (run_dir / "summary.json").exists():
            raise XKDError(f"{run_dir} holds a finished run (summary.json); there is nothing to resume")
        if not Checkpoints.exist(run_dir):
            raise XKDError(f"{run_dir} has no checkpoint to resume from; start the run again without --resume")
    elif not cfg.overwrite and any((run_dir / name).exists() for name in RUN_FILES):
        if not (run_dir / "summary.json").exists() and Checkpoints.exist(run_dir):
            raise XKDError(
                f"{run_dir} holds an interrupted run; continue it with --resume {run_dir}, or pass --overwrite to "
                "start again"
            )
        raise XKDError(
            f"{run_dir} already holds a run's results; choose another --output-dir or pass --overwrite to replace them"
        )
    state.wait_for_everyone()  # no process may pass the check above after another wrote config.json
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(run_dir / "config.json", cfg.to_json())
    return run_dir
