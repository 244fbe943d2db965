"""Exact resume: a run killed with SIGKILL at a random step and resumed ends exactly like an uninterrupted run."""

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
from tiny import distill, metrics_lines, run, save_tiny, write_task_dir

ARGS = ["--epochs", "3", "--batch-size", "8", "--max-length", "16", "--no-progress", "--no-latency"]


def _metrics(directory):
    lines = metrics_lines(directory)
    for line in lines:
        line.pop("elapsed_s")
    return lines


@pytest.mark.parametrize("method", ["universal", "aguilar"])
def test_sigkill_at_a_random_step_then_resume_equals_an_uninterrupted_run(tmp_path, method):
    teacher = save_tiny(tmp_path / "teacher", layers=4)
    data = write_task_dir(tmp_path / "data", sizes=(96, 32, 32))
    options = ["-O", "algorithm=progressive", "-O", "unit=steps", "-O", "per_layer=10"] if method == "aguilar" else []
    args = [*distill(teacher, data), "--method", method, *options, "--student-layers", "2", *ARGS]
    whole = run(*args, "--output-dir", str(tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output

    out = tmp_path / "killed"
    kill_after = random.Random().randint(3, 30)  # of 36 steps
    command = [sys.executable, "-m", "xkd.cli.main", *args, "--output-dir", str(out), "--checkpoint-every", "1"]
    proc = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.pt")]
        if steps and max(steps) >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill: {proc.stderr.read()[-2000:]}"
    assert not (out / "summary.json").exists()
    assert len(list((out / "checkpoints").glob("step-*.pt"))) <= 2  # keep-checkpoints 2 bounds the disk

    refused = run(*args, "--output-dir", str(out))
    assert refused.exit_code == 2 and "--resume" in refused.output  # a plain rerun would lose the work
    resumed = run("distill", "--resume", str(out), "--no-progress")
    assert resumed.exit_code == 0, resumed.output

    assert _metrics(out) == _metrics(tmp_path / "whole")
    a, b = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "whole"))
    assert a["validation"] == b["validation"] and a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]
    wa, wb = (load_file(d / "student" / "model.safetensors") for d in (out, tmp_path / "whole"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_errors(tmp_path, task_dir, bert_teacher_dir):
    missing = run("distill", "--resume", str(tmp_path / "nothing"))
    assert missing.exit_code == 2 and "no config.json" in missing.output
    args = [*distill(bert_teacher_dir, task_dir), "--method", "kd", "--student-layers", "1", *ARGS, "--epochs", "1"]
    done = run(*args, "--output-dir", str(tmp_path / "done"))
    assert done.exit_code == 0, done.output
    finished = run("distill", "--resume", str(tmp_path / "done"))
    assert finished.exit_code == 2 and "finished run" in finished.output
    extra = run("distill", "--resume", str(tmp_path / "done"), "--epochs", "5")
    assert extra.exit_code == 2 and "drop --epochs" in extra.output


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_a_kill_at_any_instant_of_a_checkpoint_save_leaves_at_most_keep(tmp_path, keep, monkeypatch):
    """What a SIGKILL would find on disk at every instant of `save` (each file operation), and what resuming keeps."""
    import xkd.training.checkpoints as checkpoints

    store = checkpoints.Checkpoints(tmp_path / "checkpoints", keep=keep)
    on_disk: list[int] = []
    seen = lambda: on_disk.append(len(store.paths()))  # noqa: E731
    real_save, real_replace, real_unlink = torch.save, os.replace, checkpoints.Path.unlink
    monkeypatch.setattr(checkpoints.torch, "save", lambda *a, **k: (seen(), real_save(*a, **k), seen()))
    monkeypatch.setattr(checkpoints.os, "replace", lambda *a: (seen(), real_replace(*a), seen()))
    monkeypatch.setattr(checkpoints.Path, "unlink", lambda self, **k: (seen(), real_unlink(self, **k), seen()))
    for step in range(1, 7):
        store.save({"step": step})
    assert max(on_disk) == (2 if keep == 1 else keep)  # keep 1: its only checkpoint outlives the rename
    newest = [f"step-{s:08d}.pt" for s in range(7 - keep, 7)]
    assert [p.name for p in store.paths()] == newest

    (store.directory / "step-00000000.pt").write_bytes(b"")  # one over keep: keep 1 killed at the rename
    (store.directory / "step-00000007.pt.partial").write_bytes(b"half")  # killed while writing
    store.clean()  # what resuming does first
    assert [p.name for p in store.paths()] == newest and not list(store.directory.glob("*.partial"))
    assert store.latest()["step"] == 6
