"""Faults from the world end cleanly: one line, exit code 2, no traceback, no file lost or half-written.

Output paths that are files, a full disk while writing a checkpoint, a student or a summary, damaged checkpoints
on --resume; and a bug still shows its traceback, with a one-line summary at the end.
"""

from __future__ import annotations

import errno
import json

import pytest
import torch
from tiny import distill, run

import xkd.run_report as run_report
import xkd.students.sentence_encoder as sentence_encoder
import xkd.training.checkpoints as checkpoints
import xkd.training.loop as loop

ARGS = ["--student", "cnn", "--method", "kd", "--batch-size", "8", "--max-length", "16", "--no-progress",
        "--no-latency"]  # fmt: skip


def one_line(result, code: int = 2) -> str:
    """The error: the last line of the output and the only one saying Error (the lines before are progress)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert [line for line in lines if line.startswith("Error")] == lines[-1:], result.output
    return lines[-1]


def leftovers(directory) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if ".partial" in p.name or
                  p.name.endswith(".saving"))  # fmt: skip


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("file", "File exists; it exists and is not a directory"),
        ("file/run", "Not a directory; a part of that path is a file"),
    ],
)
def test_an_output_path_through_a_file(tmp_path, task_dir, bert_teacher_dir, where, message):
    (tmp_path / "file").write_text("keep me\n")
    result = run(*distill(bert_teacher_dir, task_dir), *ARGS, "--output-dir", str(tmp_path / where))
    line = one_line(result)
    assert line.startswith(f"Error: {tmp_path}/") and message in line
    assert (tmp_path / "file").read_text() == "keep me\n"


def disk_full_on(module, name: str, call: int, monkeypatch) -> None:
    """`module.name` raises ENOSPC on its `call`-th call, as a full disk would."""
    original = getattr(module, name)
    calls = {"n": 0}

    def full(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise OSError(errno.ENOSPC, "No space left on device", str(args[1] if len(args) > 1 else args[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, full)


def test_a_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, task_dir, bert_teacher_dir,
                                                                         monkeypatch):  # fmt: skip
    disk_full_on(checkpoints.torch, "save", 3, monkeypatch)
    out = tmp_path / "run"
    args = [*distill(bert_teacher_dir, task_dir), *ARGS, "--epochs", "3", "--checkpoint-every", "3"]
    line = one_line(run(*args, "--output-dir", str(out)))
    assert "No space left on device; the disk is full" in line
    assert leftovers(out) == []
    saved = sorted((out / "checkpoints").glob("step-*.pt"))
    assert [p.name for p in saved] == ["step-00000003.pt", "step-00000006.pt"]
    assert torch.load(saved[-1], weights_only=False)["step"] == 6  # the newest good one is intact


def test_a_full_disk_while_saving_the_student_keeps_the_previous_best(tmp_path, task_dir, bert_teacher_dir,
                                                                        monkeypatch):  # fmt: skip
    out = tmp_path / "run"
    disk_full_on(sentence_encoder, "save_file", 2, monkeypatch)  # the second best student cannot be written
    args = [*distill(bert_teacher_dir, task_dir), *ARGS, "--epochs", "6", "--lr", "0.01"]
    line = one_line(run(*args, "--output-dir", str(out)))  # seeded: the score improves after epoch 1
    assert "No space left on device" in line
    assert leftovers(out) == []
    record = json.loads((out / "student" / "student.json").read_text())
    assert record["epoch"] >= 1 and (out / "student" / "model.safetensors").is_file()


def test_a_full_disk_while_writing_the_summary(tmp_path, task_dir, bert_teacher_dir, monkeypatch):
    out = tmp_path / "run"
    original = run_report.write_text_atomically

    def full(path, text):
        if str(path).endswith("summary.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(path, text)

    monkeypatch.setattr(run_report, "write_text_atomically", full)
    line = one_line(run(*distill(bert_teacher_dir, task_dir), *ARGS, "--epochs", "1", "--output-dir", str(out)))
    assert line.startswith(f"Error: {out / 'summary.json'}: No space left on device; the disk is full")
    assert (out / "student" / "model.safetensors").is_file() and not (out / "summary.json").exists()


def interrupted_run(tmp_path, task_dir, bert_teacher_dir, monkeypatch, out):
    """A run that died at step 14 of 24, with checkpoints every 4 steps (steps 8 and 12 kept)."""
    calls = {"n": 0}
    original = loop.train_step

    def dies(run_, batch):
        calls["n"] += 1
        if calls["n"] == 14:
            raise RuntimeError("the machine went away")
        original(run_, batch)

    monkeypatch.setattr(loop, "train_step", dies)
    args = [*distill(bert_teacher_dir, task_dir), *ARGS, "--epochs", "3", "--checkpoint-every", "4"]
    crashed = run(*args, "--output-dir", str(out))
    assert crashed.exit_code == 1 and "xkd: internal error (RuntimeError: the machine went away)" in crashed.output
    assert "Traceback" in crashed.output  # a bug stays visible
    monkeypatch.setattr(loop, "train_step", original)
    return args


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path, task_dir, bert_teacher_dir, monkeypatch):
    out = tmp_path / "run"
    args = interrupted_run(tmp_path, task_dir, bert_teacher_dir, monkeypatch, out)
    newest = sorted((out / "checkpoints").glob("step-*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # cut short, as a crash of the disk would leave it
    resumed = run("distill", "--resume", str(out), "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert f"checkpoint {newest} cannot be read (" in resumed.output and "trying the one before it" in resumed.output
    whole = run(*args, "--output-dir", str(tmp_path / "whole"))
    assert whole.exit_code == 0
    a, b = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "whole"))
    assert a["validation"] == b["validation"] and a["test"] == b["test"]


def test_resume_with_every_checkpoint_damaged_is_one_line(tmp_path, task_dir, bert_teacher_dir, monkeypatch):
    out = tmp_path / "run"
    interrupted_run(tmp_path, task_dir, bert_teacher_dir, monkeypatch, out)
    for path in (out / "checkpoints").glob("step-*.pt"):
        path.write_bytes(b"not a checkpoint")
    result = run("distill", "--resume", str(out), "--no-progress")
    assert result.exit_code == 2 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: no checkpoint in {out / 'checkpoints'} can be read: step-")
    assert last.endswith("start the run again with --overwrite instead of --resume")
