"""Soak (slow; `pytest -m slow`): one tiny run killed with SIGKILL at 20 random points, some of them while a
checkpoint is being written, and resumed after each; it ends exactly as the uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from tiny import distill, run, save_tiny, write_task_dir

KILLS = 20


def metrics(directory):
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
            for line in (directory / "metrics.jsonl").read_text().splitlines()]  # fmt: skip


def steps(out) -> int:
    saved = [int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.pt")]
    return max(saved, default=0)


@pytest.mark.slow
def test_twenty_kills_and_resumes_end_as_the_uninterrupted_run(tmp_path):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    data = write_task_dir(tmp_path / "data", sizes=(480, 32, 32))
    args = [*distill(teacher, data), "--student-layers", "1", "--method", "universal", "--epochs", "4",
            "--batch-size", "8", "--max-length", "16", "--no-progress", "--no-latency", "--checkpoint-every", "1",
            "--eval-every", "25"]  # fmt: skip
    assert run(*args, "--output-dir", str(tmp_path / "whole")).exit_code == 0
    out = tmp_path / "killed"
    rng = random.Random(0)
    first = [sys.executable, "-m", "xkd.cli.main", *args, "--output-dir", str(out)]
    resume = [sys.executable, "-m", "xkd.cli.main", "distill", "--resume", str(out), "--no-progress"]
    kills = in_writes = 0
    while kills < KILLS:
        command = resume if (out / "checkpoints").is_dir() and steps(out) else first
        proc = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        start, target = steps(out), steps(out) + rng.randint(1, 12)
        during_write = rng.random() < 0.4  # kill as soon as a checkpoint is being written
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            writing = any((out / "checkpoints").glob("*.partial")) if (out / "checkpoints").is_dir() else False
            if (during_write and writing and steps(out) > start) or steps(out) >= target:
                proc.send_signal(signal.SIGKILL)
                kills += 1
                in_writes += during_write and writing
                break
            time.sleep(0.001)
        proc.wait()
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read()[-2000:]
        if proc.returncode == 0:
            break  # finished before the next kill point
    if not (out / "summary.json").exists():
        finished = subprocess.run(resume, env=os.environ.copy(), capture_output=True, text=True)
        assert finished.returncode == 0, finished.stderr[-2000:]
    assert kills >= 10, f"only {kills} kills happened before the run ended"
    assert not list(out.rglob("*.partial"))
    assert metrics(out) == metrics(tmp_path / "whole")
    a, b = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "whole"))
    assert (a["validation"], a["test"], a["best_step"]) == (b["validation"], b["test"], b["best_step"])
    wa, wb = (load_file(d / "student" / "model.safetensors") for d in (out, tmp_path / "whole"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    print(f"{kills} kills, {in_writes} of them while a checkpoint was being written")
