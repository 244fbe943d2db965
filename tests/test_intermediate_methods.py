"""PKD, ALP-KD, logit MSE and composed methods: golden values by hand, layer maps, projector reuse."""

import math

import pytest
import torch
from tiny import make_trace

from xkd.errors import XKDError
from xkd.layer_maps import pkd_layers
from xkd.methods import TermContext, get_method, weighted_loss
from xkd.methods.losses import logit_mse_loss, pkd_loss
from xkd.methods.projector import layer_mask
from xkd.tasks import get_task

MR = get_task("mr")


@pytest.mark.parametrize(
    ("n", "m", "mapping", "expected_one_based"),
    [
        (12, 6, "skip", [2, 4, 6, 8, 10]),
        (12, 6, "last", [7, 8, 9, 10, 11]),
        (12, 3, "skip", [4, 8]),
        (12, 3, "last", [10, 11]),
        (6, 2, "skip", [3]),
        (6, 2, "last", [5]),
    ],
)
def test_pkd_layer_maps(n, m, mapping, expected_one_based):
    assert [i + 1 for i in pkd_layers(n, m, mapping)] == expected_one_based


def test_pkd_loss_by_hand():
    # [3, 4] normalises to [0.6, 0.8], [1, 0] stays; squared differences 0.16 and 0.64, mean 0.4 (one layer).
    # A second layer with equal directions adds 0.
    s = torch.tensor([[[3.0, 4.0], [2.0, 0.0]]])
    t = torch.tensor([[[1.0, 0.0], [5.0, 0.0]]])
    assert pkd_loss(s, t).item() == pytest.approx(0.4, abs=1e-6)
    # Unnormalised: layer 1 ((3-1)² + 4²)/2 = 10, layer 2 ((2-5)² + 0)/2 = 4.5; summed over layers 14.5.
    assert pkd_loss(s, t, normalize=False).item() == pytest.approx(14.5, abs=1e-6)


def test_logit_mse_by_hand():
    # (1-0)² + (2-4)² = 5 for the first example, 0 for the second: mean 2.5.
    s = torch.tensor([[1.0, 2.0], [0.5, 0.5]])
    t = torch.tensor([[0.0, 4.0], [0.5, 0.5]])
    assert logit_mse_loss(s, t).item() == pytest.approx(2.5)
    # alpha weighs the teacher's term in every method: CE gets 1 - alpha
    terms = get_method("logit-mse").terms(alpha=0.2)
    assert [(x.name, x.weight) for x in terms] == [("ce", pytest.approx(0.8)), ("logit_mse", 0.2)]


def trace(vectors, logits=None):
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    return make_trace(vectors.shape[0], logits=logits, layer_vectors=vectors)


def test_pkd_method_uses_mapped_layers_and_a_map_for_other_widths():
    context = TermContext(student_layers=2, student_width=2, teacher_layers=6, teacher_width=2, output_size=2)
    terms = get_method("pkd").terms(context, beta=10.0)
    assert [(t.name, t.weight) for t in terms] == [("ce", 0.5), ("kd", 0.5), ("pkd", 10.0)]
    teacher = torch.zeros(1, 6, 2)
    teacher[0, 2] = torch.tensor([1.0, 0.0])  # the skip partner of student layer 1 (1-based teacher layer 3)
    student = trace([[[3.0, 4.0], [9.0, 9.0]]])
    value = terms[-1].fn(student, trace(teacher), torch.tensor([0]), MR)
    assert value.item() == pytest.approx(0.4, abs=1e-6)
    wide = get_method("pkd").terms(TermContext(3, 8, 6, 2, 2))[-1].module
    assert wide.map.weight.shape == (2, 8)


def test_alp_attention_equals_hand_computation():
    # One student layer h^S = [1, 0]; teacher layers [0, 0], [ln 2, 0], [ln 5, 0]; scale off.
    # α ∝ exp([0, ln 2, ln 5]) = [1, 2, 5] / 8; c = [(2 ln 2 + 5 ln 5)/8, 0]; MSE = ((1 - c0)² + 0) / 2.
    terms = get_method("alp").terms(TermContext(1, 2, 3, 2, 2), scale=False, eta=0.2, lam=0.5)
    assert [(t.name, t.weight) for t in terms] == [("ce", pytest.approx(0.3)), ("kd", 0.2), ("alp", 0.5)]
    module = terms[-1].module
    student = trace([[[1.0, 0.0]]])
    teacher = trace([[[0.0, 0.0], [math.log(2), 0.0], [math.log(5), 0.0]]])
    out = module(student, teacher)
    assert torch.allclose(out.attention[0, 0], torch.tensor([1 / 8, 2 / 8, 5 / 8]), atol=1e-6)
    c0 = (2 * math.log(2) + 5 * math.log(5)) / 8
    assert out.loss.item() == pytest.approx((1 - c0) ** 2 / 2, abs=1e-6)


def test_alp_weights_and_masks():
    with pytest.raises(XKDError, match="eta \\+ lam <= 1"):
        get_method("alp").terms(TermContext(2, 4, 6, 4, 2), eta=0.7, lam=0.5)
    assert layer_mask(2, 6, "overlap").tolist() == [
        [True, True, True, True, False, False],
        [False, False, True, True, True, True],
    ]
    narrow = get_method("alp").terms(TermContext(2, 4, 6, 8, 2))[-1].module
    assert narrow.projector.map.weight.shape == (8, 4)  # learned d_S -> d_T


def test_composed_methods_merge_terms_and_options():
    method = get_method("universal+pkd")
    assert method.needs_teacher_heads and {"gamma", "beta", "mapping"} <= set(method.options)
    terms = method.terms(TermContext(2, 4, 6, 4, 2), beta=5.0)
    assert [t.name for t in terms] == ["ce", "kd", "universal", "pkd"]
    assert terms[-1].weight == 5.0
    with pytest.raises(XKDError, match="unknown method 'pkdd'"):
        get_method("universal+pkdd")
    loss, values = weighted_loss(
        get_method("kd+logit-mse").terms(),
        trace([[[1.0, 0.0]]], torch.zeros(1, 2)),
        trace([[[1.0, 0.0]]], torch.zeros(1, 2)),
        torch.tensor([0]),
        MR,
    )
    assert set(values) == {"ce", "kd", "logit_mse"}
