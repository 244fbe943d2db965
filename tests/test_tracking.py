"""`--report-to tensorboard`: the event files hold the logged terms, validation and test metrics and the
projector's attention as an image; bad tracker names are one line."""

from __future__ import annotations

import json

import pytest
from tiny import distill, metrics_lines, run

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def events(directory):
    files = list(directory.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {directory}"
    accumulators = [EventAccumulator(str(f.parent), size_guidance={"images": 0, "scalars": 0}) for f in files]
    for a in accumulators:
        a.Reload()
    return accumulators


def test_tensorboard_holds_the_logged_scalars_and_attention_images(tmp_path, task_dir, bert_teacher_dir, monkeypatch):
    out = tmp_path / "run"  # 8 steps per epoch: training points at steps 2, 4, 6, 8, ...
    args = [*distill(bert_teacher_dir, task_dir), "--student-layers", "2", "--method", "universal", "--log-every", "2"]
    args += ["--epochs", "2", "--batch-size", "8", "--max-length", "16", "--no-progress", "--no-latency"]
    result = run(*args, "--report-to", "tensorboard", "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    scalars, images = {}, set()
    for acc in events(out / "tracking"):
        for tag in acc.Tags()["scalars"]:
            scalars[tag] = [(e.step, e.value) for e in acc.Scalars(tag)]
        images |= set(acc.Tags()["images"])
    records = metrics_lines(out)
    # Validation metrics at each epoch end, equal to metrics.jsonl's.
    expected = [(r["step"], r["validation"]["accuracy"]) for r in records]
    assert [(s, pytest.approx(v)) for s, v in scalars["validation/accuracy"]] == expected
    assert [s for s, _ in scalars["epoch/universal"]] == [r["step"] for r in records]
    assert [v for _, v in scalars["epoch/loss"]] == pytest.approx([r["train"]["loss"] for r in records])
    # Every term's running mean and the learning rate every --log-every steps; the test metrics at the end.
    for term in ("ce", "kd", "universal", "loss", "lr"):
        assert [s for s, _ in scalars[f"train/{term}"]] == [2, 4, 6, 8, 10, 12, 14, 16], term
    summary = json.loads((out / "summary.json").read_text())
    assert scalars["test/accuracy"] == [(16, pytest.approx(summary["test"]["test"]["accuracy"]))]
    assert any("attention" in tag or "alpha" in tag for tag in images), images


def test_no_tracker_writes_no_tracking_dir(tmp_path, task_dir, bert_teacher_dir):
    args = [*distill(bert_teacher_dir, task_dir), "--student-layers", "1", "--method", "kd", "--epochs", "1"]
    assert run(*args, "--no-progress", "--no-latency", "--output-dir", str(tmp_path / "run")).exit_code == 0
    assert not (tmp_path / "run" / "tracking").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [("tensorbored", "unknown tracker 'tensorbored'"), ("tensorboard,nope", "unknown tracker 'nope'")],
)
def test_bad_tracker_names(tmp_path, task_dir, bert_teacher_dir, value, message):
    result = run(*distill(bert_teacher_dir, task_dir), "--report-to", value, "--output-dir", str(tmp_path / "r"))
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_evaluations_within_an_epoch_are_tagged_by_step_not_epoch():
    from xkd.training.loop import tracked

    metrics, train = {"validation": {"accuracy": 0.5}}, {"loss": 0.7}
    assert tracked(metrics, train) == {"validation/accuracy": 0.5, "epoch/loss": 0.7}
    assert tracked(metrics, train, within_epoch=True) == {"validation/accuracy": 0.5, "step/loss": 0.7}
