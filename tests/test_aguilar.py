"""Aguilar et al.'s internal KD: golden losses, the layer schedules, the error paths, and an end-to-end run."""

import copy
import math

import pytest
import torch
from tiny import QUICK, distill, make_trace, run, save_tiny

from xkd.errors import XKDError
from xkd.methods import TermContext, get_method
from xkd.methods.aguilar import InternalLoss, active_layers
from xkd.methods.losses import attention_kl, cls_cosine_loss


def test_attention_kl_by_hand_skips_padded_query_rows():
    # One head, T = 2 with the second token padded. Row 1: teacher [0.75, 0.25] vs student [0.5, 0.5]:
    # KL = 0.75 ln 1.5 + 0.25 ln 0.5 = 0.1308120. Row 2 is a padded query and must not count.
    teacher = torch.tensor([[[[0.75, 0.25], [0.9, 0.1]]]])
    student = torch.tensor([[[[0.5, 0.5], [0.1, 0.9]]]])
    mask = torch.tensor([[1, 0]])
    assert attention_kl(student, teacher, mask).item() == pytest.approx(0.1308120, abs=1e-6)
    assert attention_kl(teacher, teacher, torch.tensor([[1, 1]])).item() == pytest.approx(0.0, abs=1e-6)


def test_cls_cosine_by_hand():
    # cos([1, 0], [1, 1]) = 1/sqrt(2): loss 1 - 0.7071068; identical vectors: 0. Mean over the batch.
    s = torch.tensor([[1.0, 0.0], [2.0, 2.0]])
    t = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert cls_cosine_loss(s, t).item() == pytest.approx((1 - 1 / math.sqrt(2)) / 2, abs=1e-6)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("all", [[0, 1, 2]] * 5),
        ("progressive", [[0], [1], [2], [], []]),
        ("stacked", [[0], [0, 1], [0, 1, 2], [], []]),
    ],
)
def test_active_layers_per_stage(algorithm, expected):
    assert [active_layers(algorithm, stage, 3) for stage in range(5)] == expected


def context(**overrides):
    values = dict(
        student_layers=2,
        student_width=4,
        teacher_layers=4,
        teacher_width=4,
        output_size=2,
        student_attention_heads=2,
        teacher_attention_heads=2,
        shared_tokenizer=True,
        steps_per_epoch=3,
    )
    return TermContext(**{**values, **overrides})


def traces():
    torch.manual_seed(0)
    att = torch.softmax(torch.randn(2, 4, 2, 3, 3), -1)
    mask = torch.ones(2, 3, dtype=torch.long)
    teacher = make_trace(2, layer_vectors=torch.randn(2, 4, 4), attention_mask=mask, attentions=att)
    student = make_trace(2, layer_vectors=torch.randn(2, 2, 4), attention_mask=mask, attentions=att[:, :2])
    return student, teacher


@pytest.mark.parametrize(("unit", "steps_per_stage"), [("steps", 2), ("epochs", 6)])
def test_stacked_schedule_in_steps_and_epochs(unit, steps_per_stage):
    module = InternalLoss(context(), "stacked", unit, 2, 0.0, "same", 1.0, 1.0).train()
    student, teacher = traces()
    seen = []
    for _ in range(2 * steps_per_stage + 1):
        seen.append(active_layers("stacked", int(module.stage), 2))
        module(student, teacher)
    assert seen == [[0]] * steps_per_stage + [[0, 1]] * steps_per_stage + [[]]
    assert module.internal_done


def test_threshold_schedule_and_kd_gate():
    terms = get_method("aguilar").terms(context(), algorithm="progressive", threshold=10.0)  # any loss < 10
    kd, internal = terms[1], terms[2]
    student, teacher = traces()
    from xkd.tasks import get_task

    mr = get_task("mr")
    teacher.logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert kd.fn(student, teacher, None, mr).item() == 0  # KD waits for the internal stages
    internal.module.train()
    internal.fn(student, teacher, None, mr)  # layer 1 below threshold: next stage
    internal.fn(student, teacher, None, mr)  # layer 2 too: internal stages over
    assert internal.module.internal_done and kd.fn(student, teacher, None, mr).item() > 0


@pytest.mark.parametrize(
    ("overrides", "options", "message"),
    [
        ({"student_attention_heads": None}, {}, "needs self-attention in both models"),
        ({"shared_tokenizer": False}, {}, "must use the teacher's tokenizer"),
        ({"student_attention_heads": 4}, {}, "pass -O heads=average"),
        ({}, {"algorithm": "sideways"}, "unknown algorithm"),
    ],
)
def test_error_paths(overrides, options, message):
    with pytest.raises(XKDError, match=message):
        get_method("aguilar").terms(context(**overrides), **options)
    if "student_attention_heads" in overrides and overrides["student_attention_heads"] == 4:
        get_method("aguilar").terms(context(**overrides), heads="average")  # the documented way out


@pytest.mark.parametrize("algorithm", ["all", "progressive", "stacked"])
def test_end_to_end(tmp_path, task_dir, algorithm):
    teacher = save_tiny(tmp_path / "teacher", layers=4)
    out = tmp_path / "run"
    result = run(
        *distill(teacher, task_dir),
        "--method",
        "aguilar",
        "-O",
        f"algorithm={algorithm}",
        "-O",
        "unit=steps",
        "-O",
        "per_layer=2",
        "--output-dir",
        str(out),
        *QUICK,
    )
    assert result.exit_code == 0, result.output
    cnn = run(
        *distill(teacher, task_dir),
        "--method",
        "aguilar",
        "--student",
        "cnn",
        "--output-dir",
        str(tmp_path / "cnn"),
        *QUICK,
    )
    assert cnn.exit_code == 2 and "needs self-attention" in cnn.output


@pytest.mark.parametrize("freeze", [True, False])
def test_progressive_freeze_keeps_lower_layers_fixed(tmp_path, task_dir, monkeypatch, freeze):
    """PID with one epoch per layer: epoch 2 trains layer 2; with freeze, the embeddings and layer 1 must not move."""
    import xkd.training.loop

    saved, scores = [], iter(range(1, 100))
    monkeypatch.setattr(
        xkd.training.loop, "evaluate", lambda *a, **k: dict.fromkeys(("accuracy", "score"), next(scores) / 100)
    )
    monkeypatch.setattr(
        xkd.training.loop, "save_atomically", lambda model, *a: saved.append(copy.deepcopy(model.state_dict()))
    )
    teacher = save_tiny(tmp_path / "teacher", layers=4)
    options = ["-O", "algorithm=progressive", "-O", f"freeze={freeze}", "--student-layers", "2"]
    result = run(*distill(teacher, task_dir), "--method", "aguilar", *options, *QUICK, "--output-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    first, second = saved  # after epoch 1 (layer 1 distilled) and epoch 2 (layer 2)
    lower = [k for k in first if "embeddings" in k or ".layer.0." in k]
    upper = [k for k in first if ".layer.1." in k]
    assert lower and upper
    assert any(not torch.equal(first[k], second[k]) for k in upper)
    assert any(not torch.equal(first[k], second[k]) for k in lower) is not freeze


def test_freeze_needs_layer_modules(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    options = ["-O", "algorithm=progressive", "-O", "freeze=true", "-O", "attention=0"]
    args = [*distill(teacher, task_dir), "--method", "aguilar", *options, "--student", "cnn", *QUICK]
    result = run(*args, "--output-dir", str(tmp_path / "cnn"))
    assert result.exit_code == 2 and "layer_modules()" in result.output
