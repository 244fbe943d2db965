import math

import pytest
import torch
from tiny import make_trace

from xkd.errors import XKDError
from xkd.methods import METHODS, LossTerm, get_method, weighted_loss
from xkd.tasks import get_task
from xkd.trace import Trace

LN3 = math.log(3.0)


def trace(logits: torch.Tensor) -> Trace:
    return make_trace(layers=1, width=4, logits=logits)


def test_registry_lists_none_and_kd():
    assert {"none", "kd"} <= set(METHODS.names())
    assert not get_method("none").needs_teacher and get_method("kd").needs_teacher


def test_kd_method_weights_and_total():
    # α = 0.25, τ = 1, student [0, 0], teacher [ln 3, 0], label 0:
    # CE = ln 2 = 0.6931472; KD = 0.1308120 (see test_losses); total = 0.75·CE + 0.25·KD = 0.5525634.
    terms = get_method("kd").terms(temperature=1.0, alpha=0.25)
    assert [(t.name, t.weight) for t in terms] == [("ce", 0.75), ("kd", 0.25)]
    total, values = weighted_loss(
        terms, trace(torch.zeros(1, 2)), trace(torch.tensor([[LN3, 0.0]])), torch.tensor([0]), get_task("mr")
    )
    assert values["ce"].item() == pytest.approx(0.6931472, abs=1e-6)
    assert values["kd"].item() == pytest.approx(0.1308120, abs=1e-6)
    assert total.item() == pytest.approx(0.5525634, abs=1e-6)


def test_kd_method_defaults_fill_unset_options():
    terms = get_method("kd").terms(temperature=None, alpha=None)
    assert [t.weight for t in terms] == [0.5, 0.5]


def test_kd_on_regression_uses_mse_to_teacher():
    # STS-B: soft term = (1 - 3)² = 4; gold term = (1 - 2)² = 1; α = 0.5 -> 2.5.
    terms = get_method("kd").terms(alpha=0.5)
    total, values = weighted_loss(
        terms,
        trace(torch.tensor([[1.0]])),
        trace(torch.tensor([[3.0]])),
        torch.tensor([2.0]),
        get_task("stsb"),
    )
    assert values == {"ce": pytest.approx(1.0), "kd": pytest.approx(4.0)}
    assert total.item() == pytest.approx(2.5)


def test_zero_weight_terms_are_skipped_and_all_zero_is_an_error():
    terms = get_method("kd").terms(alpha=1.0)
    _, values = weighted_loss(
        terms, trace(torch.zeros(1, 2)), trace(torch.zeros(1, 2)), torch.tensor([1]), get_task("mr")
    )
    assert set(values) == {"kd"}
    with pytest.raises(XKDError, match="weight 0"):
        weighted_loss(
            [LossTerm("x", 0.0, lambda *a: torch.tensor(1.0))],
            trace(torch.zeros(1, 2)),
            None,
            torch.tensor([0]),
            get_task("mr"),
        )


def test_unknown_method_suggests_closest():
    with pytest.raises(XKDError, match="did you mean 'kd'"):
        get_method("kdd")


def test_checks_across_options_run_when_options_resolve_and_in_compositions():
    # ALP refuses eta + lam > 1 when the options are resolved (a run's config check), not only when terms are built
    with pytest.raises(XKDError, match="method 'alp' needs eta \\+ lam <= 1"):
        get_method("alp").resolve({"eta": 0.7, "lam": 0.5})
    with pytest.raises(XKDError, match="eta \\+ lam <= 1"):
        get_method("universal+alp").resolve({"eta": 0.7, "lam": 0.5})
    assert get_method("universal+alp").resolve({"eta": 0.3})["lam"] == 0.5


def test_what_a_method_reads_of_the_teacher_follows_its_options():
    universal = get_method("universal")
    assert universal.reads() == ("logits", "pseudo_logits")  # score=logits: outputs alone
    assert universal.reads({"score": "hidden"}) == ("logits", "layer_vectors", "pseudo_logits")
    assert get_method("pkd").reads() == ("logits", "layer_vectors")
    assert get_method("kd+universal").reads({"score": "hidden"}) == ("logits", "layer_vectors", "pseudo_logits")
    assert get_method("kd+pkd").reads() == ("logits", "layer_vectors")
