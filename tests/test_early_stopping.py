"""`--patience` and `--eval-every`: evaluations within epochs, early stopping at the right evaluation, the best
student kept, and exact resumption of a run that evaluates within epochs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from tiny import distill, metrics_lines, run

import xkd.training.loop as loop

# 64 training rows in batches of 8: 8 steps per epoch.
ARGS = ["--student-layers", "1", "--method", "kd", "--batch-size", "8", "--max-length", "16"]
QUIET = ["--no-progress", "--no-latency"]


def lines(directory):
    return metrics_lines(directory)


def test_patience_stops_after_n_evaluations_without_a_better_score(tmp_path, task_dir, bert_teacher_dir):
    # A learning rate too small to move any prediction: the first evaluation is the best, every later one ties.
    args = [*distill(bert_teacher_dir, task_dir), *ARGS, "--lr", "1e-12", "--epochs", "8", "--patience", "2"]
    result = run(*args, *QUIET, "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in lines(tmp_path / "run")] == [1, 2, 3]  # 1 best, then 2 without a gain: stop
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped_early"] == {"step": 24, "patience": 2, "evaluations": 3, "evaluate_every": "epoch"}
    assert summary["best_epoch"] == 1 and summary["best_step"] == 8 and summary["steps"] == 24
    assert "stopped early at step 24" in result.output
    saved = json.loads((tmp_path / "run" / "student" / "xkd.json").read_text())
    assert saved["epoch"] == 1 and saved["step"] == 8


def test_no_patience_trains_every_epoch(tmp_path, task_dir, bert_teacher_dir):
    args = [*distill(bert_teacher_dir, task_dir), *ARGS, "--lr", "1e-12", "--epochs", "4"]
    assert run(*args, *QUIET, "--output-dir", str(tmp_path / "run")).exit_code == 0
    assert len(lines(tmp_path / "run")) == 4
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stopped_early"] is None


def test_eval_every_evaluates_within_epochs_and_keeps_the_best(tmp_path, task_dir, bert_teacher_dir):
    args = [*distill(bert_teacher_dir, task_dir), *ARGS, "--epochs", "2", "--eval-every", "3"]
    assert run(*args, *QUIET, "--output-dir", str(tmp_path / "run")).exit_code == 0
    records = lines(tmp_path / "run")
    # Within epoch 1: steps 3 and 6; its end: 8; epoch 2: steps 9, 12, 15 and its end, 16.
    assert [(r["epoch"], r["step"], r.get("at")) for r in records] == [
        (1, 3, "step"), (1, 6, "step"), (1, 8, None), (2, 9, "step"), (2, 12, "step"), (2, 15, "step"), (2, 16, None)
    ]  # fmt: skip
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    scores = {r["step"]: r["validation"]["score"] for r in records}
    best = max(scores.values())
    assert summary["best_step"] == min(s for s, v in scores.items() if v == best)  # the first evaluation at the best
    assert summary["validation"]["validation"]["score"] == best
    saved = json.loads((tmp_path / "run" / "student" / "xkd.json").read_text())
    assert saved["step"] == summary["best_step"]
    report = run("report", str(tmp_path / "run"))
    assert report.exit_code == 0 and "1 (step 3)" in (tmp_path / "run" / "report.md").read_text()


def test_a_run_that_evaluates_within_epochs_resumes_exactly(tmp_path, task_dir, bert_teacher_dir, monkeypatch):
    args = [*distill(bert_teacher_dir, task_dir), *ARGS, "--epochs", "3", "--eval-every", "3", "--patience", "4"]
    whole = run(*args, *QUIET, "--output-dir", str(tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output

    steps = json.loads((tmp_path / "whole" / "summary.json").read_text())["steps"]
    calls = {"n": 0}
    original = loop.train_step

    def interrupted(run_, batch):  # dies in the last step: after evaluations, checkpoints and patience counts
        calls["n"] += 1
        if calls["n"] == steps:
            raise KeyboardInterrupt
        original(run_, batch)

    monkeypatch.setattr(loop, "train_step", interrupted)
    killed = run(*args, *QUIET, "--output-dir", str(tmp_path / "killed"), "--checkpoint-every", "5")
    assert killed.exit_code != 0 and not (tmp_path / "killed" / "summary.json").exists()
    monkeypatch.setattr(loop, "train_step", original)
    # The resumed run keeps the lines its checkpoint covers and writes the rest again: no line twice, none lost.
    resumed = run("distill", "--resume", str(tmp_path / "killed"), "--no-progress")
    assert resumed.exit_code == 0, resumed.output

    def comparable(directory):
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in lines(directory)]

    assert comparable(tmp_path / "killed") == comparable(tmp_path / "whole")
    a, b = (json.loads((d / "summary.json").read_text()) for d in (tmp_path / "killed", tmp_path / "whole"))
    assert (a["best_step"], a["stopped_early"], a["test"]) == (b["best_step"], b["stopped_early"], b["test"])
    wa, wb = (load_file(d / "student" / "model.safetensors") for d in (tmp_path / "killed", tmp_path / "whole"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize(("option", "value"), [("--patience", "-1"), ("--eval-every", "-2")])
def test_negative_values_are_refused(tmp_path, task_dir, bert_teacher_dir, option, value):
    result = run(*distill(bert_teacher_dir, task_dir), option, value)
    assert result.exit_code == 2 and "must be 0 (off) or more" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_lines_a_checkpoint_covers(tmp_path):
    """The checkpoint of an epoch's last step comes before that epoch's end line, the epoch's own after it; an
    evaluation within an epoch comes before its checkpoint."""
    from xkd.training.checkpoints import drop_lines_after

    path = tmp_path / "metrics.jsonl"
    records = [{"epoch": 1, "step": 3, "at": "step"}, {"epoch": 1, "step": 4}, {"epoch": 2, "step": 7, "at": "step"},
               {"epoch": 2, "step": 8}, {"epoch": 1, "term": "universal"}]  # fmt: skip
    cases = [  # (epoch to train next, step) of the checkpoint -> the records kept
        ((1, 3), [0]),  # within epoch 1, after the evaluation at step 3
        ((1, 4), [0]),  # epoch 1's last step, before its end line
        ((2, 4), [0, 1, 4]),  # epoch 1's end
        ((2, 6), [0, 1, 4]),
        ((2, 7), [0, 1, 2, 4]),
        ((3, 8), [0, 1, 2, 3, 4]),
    ]
    for (epoch, step), kept in cases:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        drop_lines_after(path, epoch, step)
        assert [json.loads(line) for line in path.read_text().splitlines()] == [records[i] for i in kept], (epoch, step)
