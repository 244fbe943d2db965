"""The projector on a 2 x 3 example whose every number has a closed form (worked out in the comments)."""

import math

import pytest
import torch

from xkd.errors import XKDError
from xkd.methods.projector import LayerProjector, layer_mask

LN2, LN5 = math.log(2), math.log(5)
# Student layers: z^S_1 = [0, 0], z^S_2 = [1, 0]. Teacher layers: z^T = [0, 0], [ln 2, 0], [ln 5, 0].
STUDENT = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
TEACHER = torch.tensor([[[0.0, 0.0], [LN2, 0.0], [LN5, 0.0]]])
# Scores z^S_j · z^T_i: row 1 all 0 -> α_1 = [1/3, 1/3, 1/3]; row 2 = [0, ln 2, ln 5] -> α_2 = [1, 2, 5] / 8.
ALPHA = [[1 / 3, 1 / 3, 1 / 3], [1 / 8, 2 / 8, 5 / 8]]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def kl(p: float, q: float) -> float:
    """KL([p, 1-p] ‖ [q, 1-q]) for two classes; softmax([a, 0]) = [sigmoid(a), 1 - sigmoid(a)]."""
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def test_attention_matches_hand_computation():
    alpha = LayerProjector().attention(STUDENT, TEACHER)
    assert torch.allclose(alpha[0], torch.tensor(ALPHA), atol=1e-6)


def test_attention_on_logits_loss():
    # Targets: ẑ_1 = [(ln 2 + ln 5)/3, 0] = [ln(10)/3, 0]; ẑ_2 = [(2 ln 2 + 5 ln 5)/8, 0].
    # Student distributions: sigmoid(0) = 1/2 and sigmoid(1). τ = 1, so L = KL_1 + KL_2.
    expected = kl(sigmoid(math.log(10) / 3), 0.5) + kl(sigmoid((2 * LN2 + 5 * LN5) / 8), sigmoid(1.0))
    loss = LayerProjector(variant="logits").forward(STUDENT, TEACHER).loss
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # By hand: KL_1 = 0.68299 ln(1.36598) + 0.31701 ln(0.63402) = 0.068541;
    # KL_2 = 0.764789 ln(0.764789/0.731059) + 0.235211 ln(0.235211/0.268941) = 0.002978.
    assert loss.item() == pytest.approx(0.071519, abs=2e-5)


def test_attention_on_loss_variant():
    # Teacher distributions: sigmoid(0) = 1/2, sigmoid(ln 2) = 2/3, sigmoid(ln 5) = 5/6.
    teacher_p = [0.5, 2 / 3, 5 / 6]
    student_p = [0.5, sigmoid(1.0)]
    expected = sum(ALPHA[j][i] * kl(teacher_p[i], student_p[j]) for j in range(2) for i in range(3))
    loss = LayerProjector(variant="loss").forward(STUDENT, TEACHER).loss
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # By hand: row 1 = (0 + 0.056633 + 0.242586) / 3 = 0.099740;
    # row 2 = 0.120115/8 + 2·0.010078/8 + 5·0.029367/8 = 0.035888.
    assert loss.item() == pytest.approx(0.135628, abs=2e-5)


def test_temperature_scales_targets_and_multiplies_by_tau_squared():
    # τ = 2: every logit is halved inside the softmax, and the sum is multiplied by τ² = 4.
    expected = 4 * (kl(sigmoid(math.log(10) / 6), 0.5) + kl(sigmoid((2 * LN2 + 5 * LN5) / 16), sigmoid(0.5)))
    loss = LayerProjector(temperature=2.0).forward(STUDENT, TEACHER).loss
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_scaled_and_tempered_scores():
    # scale divides scores by sqrt(C) = sqrt(2); attention temperature 0.5 doubles them: net factor sqrt(2).
    alpha = LayerProjector(scale=True, attention_temperature=0.5).attention(STUDENT, TEACHER)[0, 1]
    weights = torch.tensor([1.0, 2.0, 5.0]) ** math.sqrt(2)
    assert torch.allclose(alpha, weights / weights.sum(), atol=1e-6)


def test_masks():
    # m=2, n=3. buckets: student 1 sees {1}, student 2 sees {2, 3}; above: partners round(1.5)-1=1 and 2 (0-based).
    assert layer_mask(2, 3, "buckets").tolist() == [[True, False, False], [False, True, True]]
    assert layer_mask(2, 3, "above").tolist() == [[False, True, True], [False, False, True]]
    assert layer_mask(2, 3, "all").all()
    assert layer_mask(4, 2, "buckets").sum(1).min() == 1  # more student than teacher layers: none left empty
    alpha = LayerProjector(mask="buckets").attention(STUDENT, TEACHER)[0]
    assert torch.allclose(alpha, torch.tensor([[1.0, 0.0, 0.0], [0.0, 2 / 7, 5 / 7]]), atol=1e-6)


def test_hidden_space_is_the_same_projector():
    # Hidden score without a map (equal widths): α_2 from h^S_2 · h^T_i. With student = teacher layer
    # vectors = the logits above, α is as before; the MSE target for layer 1 is the mean teacher vector.
    projector = LayerProjector(space="hidden", score="hidden", student_width=2, teacher_width=2)
    out = projector(None, None, STUDENT, TEACHER)
    assert torch.allclose(out.attention[0], torch.tensor(ALPHA), atol=1e-6)
    target_1 = torch.tensor([(LN2 + LN5) / 3, 0.0])
    target_2 = torch.tensor([(2 * LN2 + 5 * LN5) / 8, 0.0])
    expected = ((STUDENT[0, 0] - target_1) ** 2).mean() + ((STUDENT[0, 1] - target_2) ** 2).mean()
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_learned_map_when_widths_differ_and_gradients():
    projector = LayerProjector(space="hidden", score="hidden", student_width=4, teacher_width=3)
    assert projector.map.weight.shape == (3, 4)
    student = torch.randn(5, 2, 4, requires_grad=True)
    projector(None, None, student, torch.randn(5, 6, 3)).loss.backward()
    assert student.grad is not None and projector.map.weight.grad is not None


def test_batched_equals_per_example():
    torch.manual_seed(0)
    s, t = torch.randn(4, 3, 5), torch.randn(4, 6, 5)
    projector = LayerProjector()
    whole = projector(s, t).loss
    each = torch.stack([projector(s[b : b + 1], t[b : b + 1]).loss for b in range(4)]).mean()
    assert torch.allclose(whole, each, atol=1e-6)


def test_bad_options():
    with pytest.raises(XKDError, match="unknown projector score"):
        LayerProjector(score="cosine")
    with pytest.raises(XKDError, match="unknown projector mask"):
        layer_mask(2, 3, "diagonal")
