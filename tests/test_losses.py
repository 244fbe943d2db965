"""Golden values: every number below is worked out by hand in the comments."""

import math

import pytest
import torch

from xkd.methods.losses import kd_loss, regression_kd_loss, task_loss

LN3 = math.log(3.0)


def test_kd_loss_matches_hand_computation():
    # Teacher [2 ln 3, 0] at τ=2 -> softmax([ln 3, 0]) = [0.75, 0.25]; student [0, 0] -> [0.5, 0.5].
    # KL = 0.75 ln(0.75/0.5) + 0.25 ln(0.25/0.5) = 0.1308120; times τ² = 4 -> 0.5232481.
    # The second row matches exactly (KL 0); batchmean halves the sum.
    student = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    teacher = torch.tensor([[2 * LN3, 0.0], [1.0, -1.0]])
    assert kd_loss(student, teacher, temperature=2.0).item() == pytest.approx(0.5232481 / 2, abs=1e-6)


def test_kd_loss_is_zero_for_identical_logits_and_positive_otherwise():
    z = torch.randn(4, 3)
    assert kd_loss(z, z.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(z, z.flip(-1), 3.0).item() > 0


def test_kd_loss_grad_reaches_student_only():
    s = torch.zeros(1, 2, requires_grad=True)
    t = torch.tensor([[LN3, 0.0]], requires_grad=True)
    kd_loss(s, t, 1.0).backward()
    # d/ds KL = p_S - p_T = [0.5 - 0.75, 0.5 - 0.25] (τ = 1).
    assert torch.allclose(s.grad, torch.tensor([[-0.25, 0.25]]), atol=1e-6)


def test_task_loss_cross_entropy_and_mse():
    # CE of [ln 3, 0] with label 0: -ln 0.75 = 0.2876821.
    assert task_loss(torch.tensor([[LN3, 0.0]]), torch.tensor([0]), regression=False).item() == pytest.approx(
        0.2876821, abs=1e-6
    )
    # MSE of predictions 1 and 3 against 2: (1 + 1) / 2 = 1.
    assert task_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 2.0]), regression=True).item() == 1.0


def test_regression_kd_is_mse_to_teacher():
    # (0.5 - 1.5)² and (2 - 2)² -> mean 0.5.
    assert regression_kd_loss(torch.tensor([[0.5], [2.0]]), torch.tensor([[1.5], [2.0]])).item() == 0.5


def test_losses_run_in_float32_under_bf16_inputs():
    s = torch.randn(3, 2).bfloat16()
    t = torch.randn(3, 2).bfloat16()
    value = kd_loss(s, t, 2.0)
    assert value.dtype == torch.float32 and torch.isfinite(value)
