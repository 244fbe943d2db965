"""Ctrl-C and SIGTERM: training, teacher labelling and studies stop within seconds, keep their work, print the
command that continues and exit 130/143; continuing ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny import distill, run, save_tiny, write_task_dir

import xkd.teacher_cache as teacher_cache
import xkd.training.loop as loop
from xkd.interrupts import StopRequest

ARGS = ["--student-layers", "1", "--method", "kd", "--batch-size", "8", "--max-length", "16", "--no-progress",
        "--no-latency"]  # fmt: skip


def metrics(directory):
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
            for line in (directory / "metrics.jsonl").read_text().splitlines()]  # fmt: skip


def same_student(a, b) -> bool:
    wa, wb = (load_file(d / "student" / "model.safetensors") for d in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize(("signal_number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_training_keeps_a_checkpoint_and_says_how_to_continue(tmp_path, signal_number, code):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    data = write_task_dir(tmp_path / "data", sizes=(800, 32, 32))  # 100 steps per epoch
    args = [*distill(teacher, data), *ARGS, "--epochs", "2"]
    out = tmp_path / "stopped"
    command = [sys.executable, "-m", "xkd.cli.main", *args, "--output-dir", str(out)]
    env = os.environ.copy()  # the same threads as the in-process run above: the same floating-point sums
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (out / "metrics.jsonl").is_file():
        time.sleep(0.01)  # wait for the first epoch's end: the second is under way
    sent = time.time()
    proc.send_signal(signal_number)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr[-2000:]
    assert time.time() - sent < 10  # within a few seconds
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Interrupted: training stopped at step") and "Traceback" not in stderr
    assert last.endswith(f"continue with: xkd distill --resume {out}")
    assert not (out / "summary.json").exists() and list((out / "checkpoints").glob("step-*.pt"))
    if signal_number != signal.SIGINT:
        return  # how a stopped run continues does not depend on the signal that stopped it: checked once, below

    assert run(*args, "--output-dir", str(tmp_path / "whole")).exit_code == 0
    resumed = run("distill", "--resume", str(out), "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert metrics(out) == metrics(tmp_path / "whole") and same_student(out, tmp_path / "whole")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_seconds_before_resume"] > 0  # the stretch before the signal counts in the run's times
    assert summary["wall_seconds"] >= summary["train_seconds"] > summary["train_seconds_before_resume"]


@contextmanager
def asked_after(calls: int, signal_number: int = signal.SIGINT):
    """A stop request that rises on its `calls`-th look, as if Ctrl-C came then."""
    request = StopRequest()
    looks = {"n": 0}

    def agreed(processes=None) -> bool:
        looks["n"] += 1
        if looks["n"] >= calls:
            request.signal = signal_number
        return bool(request)

    request.agreed = agreed
    yield request


def test_ctrl_c_during_labelling_keeps_the_labelled_part(tmp_path, task_dir, bert_teacher_dir, monkeypatch):
    cache = ["cache", "build", "--teacher", str(bert_teacher_dir), "--data-dir", str(task_dir), "--method", "kd",
             "--max-length", "16", "--eval-batch-size", "8", "--no-progress"]  # fmt: skip
    whole = run(*cache)
    assert whole.exit_code == 0, whole.output
    built = json.loads(whole.stdout)["dir"]
    whole_arrays = {p.relative_to(built): np.load(p) for p in sorted(Path(built).rglob("*.npy"))}
    assert run("cache", "clear", "--all").exit_code == 0

    original = teacher_cache.stop_requests
    monkeypatch.setattr(teacher_cache, "stop_requests", lambda: asked_after(3))
    stopped = run(*cache)
    assert stopped.exit_code == 130, stopped.output
    line = stopped.output.strip().splitlines()[-1]
    assert line.startswith("Interrupted: teacher labelling stopped at 24 of 64 texts of 'train'")
    assert line.endswith("continue with: the same xkd cache build command (labelling continues where it stopped)")
    monkeypatch.setattr(teacher_cache, "stop_requests", original)  # (not undo(): it would undo the test's cache dir)
    again = run(*cache)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["dir"] == built, again.output
    arrays = {p.relative_to(built): np.load(p) for p in sorted(Path(built).rglob("*.npy"))}
    assert arrays.keys() == whole_arrays.keys()
    assert all(np.array_equal(arrays[k], whole_arrays[k]) for k in arrays)


def test_ctrl_c_in_a_study_marks_the_run_interrupted_not_failed(tmp_path, task_dir, bert_teacher_dir, monkeypatch):
    recipe = tmp_path / "s.toml"
    recipe.write_text(
        f'name = "stop"\nseeds = [1]\n[base]\nteacher = "{bert_teacher_dir}"\ndata_dir = "{task_dir}"\n'
        'student = "cnn"\nepochs = 2\nbatch_size = 8\nmax_length = 16\nlatency = false\n'
        '[methods.kd]\nmethod = "kd"\n[methods.none]\nmethod = "none"\n'
    )
    study = ["study", str(recipe), "--output-dir", str(tmp_path / "study"), "--no-progress", "--no-report"]
    original = loop.stop_requests
    monkeypatch.setattr(loop, "stop_requests", lambda: asked_after(5))
    stopped = run(*study)
    assert stopped.exit_code == 130, stopped.output
    line = stopped.output.strip().splitlines()[-1]
    assert line.startswith("Interrupted: study stop stopped in run") and "training stopped at step 5" in line
    assert line.endswith(f"continue with: xkd study {recipe} (the same command)")
    interrupted = [d for d in (tmp_path / "study" / "runs").iterdir() if (d / "checkpoints").is_dir()]
    assert len(interrupted) == 1 and not (interrupted[0] / "error.txt").exists()
    monkeypatch.setattr(loop, "stop_requests", original)
    listed = run("study", str(recipe), "--output-dir", str(tmp_path / "study"), "--dry-run")
    assert f"interrupted  {interrupted[0]}" in listed.output
    again = run(*study)
    assert again.exit_code == 0, again.output
    assert all((d / "summary.json").is_file() for d in (tmp_path / "study" / "runs").iterdir())


def test_an_interrupted_teacher_finetune_continues_with_the_same_command(tmp_path, task_dir, monkeypatch):
    base = save_tiny(tmp_path / "bare", bare=True)
    common = ["teacher", "finetune", "--model", str(base), "--task", "mr", "--data-dir", str(task_dir)]
    quick = ["--epochs", "2", "--batch-size", "16", "--max-length", "16", "--no-progress"]
    whole = run(*common, *quick, "--output-dir", str(tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output
    original = loop.stop_requests
    monkeypatch.setattr(loop, "stop_requests", lambda: asked_after(3))
    stopped = run(*common, *quick, "--output-dir", str(tmp_path / "t"))
    assert stopped.exit_code == 130, stopped.output
    line = stopped.output.strip().splitlines()[-1]
    assert line.endswith("continue with: the same xkd teacher finetune command (it continues from its last checkpoint)")
    assert not (tmp_path / "t" / "metrics.json").exists()
    monkeypatch.setattr(loop, "stop_requests", original)  # (not undo(): it would undo the test's cache dir)
    resumed = run(*common, *quick, "--output-dir", str(tmp_path / "t"))
    assert resumed.exit_code == 0, resumed.output
    assert "continuing the interrupted fine-tune" in resumed.output
    assert not (tmp_path / "t" / "checkpoints").exists() and not (tmp_path / "whole" / "checkpoints").exists()
    done = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "t")]
    assert done[0]["validation"] == done[1]["validation"] and done[0]["test"] == done[1]["test"]
    wa, wb = (load_file(tmp_path / d / "model.safetensors") for d in ("whole", "t"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # the same teacher, bit for bit
