"""Pseudo heads, the universal method's gradients, autocast safety, and heads save/reload."""

import pytest
import torch
from tiny import make_trace, save_tiny, write_task_dir

from xkd.data import load_splits
from xkd.errors import XKDError
from xkd.methods import TermContext, get_method, weighted_loss
from xkd.pseudo_heads import PseudoHeads
from xkd.students import build_student
from xkd.tasks import get_task
from xkd.teachers import heads_dir, load_teacher, train_heads
from xkd.teachers.heads import fit_heads, heads_info

MR = get_task("mr")


@pytest.mark.parametrize("kind", ["linear", "pooler"])
def test_heads_are_independent_per_layer(kind):
    heads = PseudoHeads(layers=3, width=4, num_labels=2, kind=kind)
    x = torch.randn(5, 3, 4)
    out = heads(x)
    assert out.shape == (5, 3, 2)
    # Changing layer 2's vectors changes only layer 2's logits: no mixing across layers.
    y = x.clone()
    y[:, 1] += 1
    changed = (heads(y) - out).abs().sum(dim=(0, 2))
    assert changed[0] == 0 and changed[2] == 0 and changed[1] > 0
    if kind == "linear":
        manual = x[:, 2] @ heads.weight[2] + heads.bias[2]
        assert torch.allclose(out[:, 2], manual, atol=1e-6)


def test_heads_learn_layers_whose_vectors_barely_move():
    # Like a shallow layer's [CLS] vector: a large constant plus a label signal a thousand times smaller. Unscaled,
    # a head trained for a few epochs stays at chance confidence; on standardised vectors it separates the classes.
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (600,), generator=generator)
    sign = (2 * labels - 1).float()[:, None]
    shallow = 10 + 1e-3 * sign * torch.eye(8)[0] + 2e-4 * torch.randn(600, 8, generator=generator)
    deep = sign * torch.eye(8)[0] + 0.3 * torch.randn(600, 8, generator=generator)
    x = torch.stack([shallow, deep], dim=1)
    heads, metrics = fit_heads(
        x[:400], labels[:400], x[400:], labels[400:], MR, epochs=30, lr=1e-2, progress=False, log=print
    )
    assert [m["accuracy"] for m in metrics] == [pytest.approx(1.0, abs=0.02)] * 2
    with torch.no_grad():
        margins = heads(x[400:]).diff(dim=-1).squeeze(-1).abs().mean(0)
    assert margins[0] > 1.5 and margins[1] > 1.5  # confident on raw inputs: the statistics are saved with the heads


def test_batch_norm_heads_standardise_with_batch_statistics():
    torch.manual_seed(0)
    heads = PseudoHeads(layers=2, width=4, num_labels=2, batch_norm=True).train()
    x = 10 + 1e-3 * torch.randn(16, 2, 4)  # shallow-[CLS]-like: a large constant, tiny spread
    standardised = (x - x.mean(0)) / (x.var(0, unbiased=False) + 1e-8).sqrt()
    expected = torch.einsum("bld,ldc->blc", standardised, heads.weight) + heads.bias
    assert torch.allclose(heads(x), expected, atol=1e-3)
    assert heads(x).abs().mean() > 0.1  # O(1) logits from O(1e-3) variations
    with pytest.raises(XKDError, match="unknown head_norm 'layer'"):
        get_method("universal").terms(TermContext(2, 4, 3, 4, 2), head_norm="layer")


def test_heads_saved_before_input_statistics_still_load(tmp_path):
    heads = PseudoHeads(layers=2, width=4, num_labels=2)
    heads.save(tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "pseudo_heads.safetensors"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("input_")}, str(tmp_path / "pseudo_heads.safetensors")
    )
    x = torch.randn(3, 2, 4)
    assert torch.equal(PseudoHeads.load(tmp_path)(x), heads(x))


def test_heads_reject_wrong_shapes():
    with pytest.raises(XKDError, match="expect \\[batch, 3, 4\\]"):
        PseudoHeads(3, 4, 2)(torch.randn(2, 2, 4))


@pytest.fixture
def teacher_with_heads(tmp_path):
    data = write_task_dir(tmp_path / "data", sizes=(64, 32, 32))
    teacher_dir = save_tiny(tmp_path / "teacher", layers=3)
    teacher = load_teacher(str(teacher_dir), MR)
    _, raw = load_splits(MR, data)
    heads, metrics = train_heads(teacher, MR, raw, max_length=16, epochs=3, progress=False, log=lambda m: None)
    heads.save(heads_dir(str(teacher_dir)), **heads_info(metrics, MR))
    return teacher_dir, heads, metrics


def test_saved_heads_reload_with_the_teacher_and_give_identical_pseudo_logits(teacher_with_heads):
    teacher_dir, heads, metrics = teacher_with_heads
    assert len(metrics) == 3 and all(0 <= m["accuracy"] <= 1 for m in metrics)
    teacher = load_teacher(str(teacher_dir), MR)
    assert teacher.pseudo_heads is not None and not any(p.requires_grad for p in teacher.pseudo_heads.parameters())
    inputs = dict(teacher.tokenizer(["the film was good", "dull"], padding=True, return_tensors="pt"))
    trace = teacher(inputs)
    assert trace.pseudo_logits.shape == (2, 3, 2)
    assert torch.equal(trace.pseudo_logits, heads.eval()(trace.layer_vectors))
    assert torch.equal(load_teacher(str(teacher_dir), MR)(inputs).pseudo_logits, trace.pseudo_logits)


def test_heads_for_another_label_count_are_refused(teacher_with_heads):
    teacher_dir, _, _ = teacher_with_heads
    PseudoHeads(3, 32, 3).save(teacher_dir)
    with pytest.raises(XKDError, match="retrain them with 'xkd teacher heads"):
        load_teacher(str(teacher_dir), MR)


def universal_setup(teacher_dir, **options):
    teacher = load_teacher(str(teacher_dir), MR)
    student = build_student("bert-k", teacher, MR, layers=2)
    context = TermContext(2, 32, 3, 32, 2)
    terms = get_method("universal").terms(context, **options)
    inputs = dict(teacher.tokenizer(["the film was good", "dull plot"], padding=True, return_tensors="pt"))
    return teacher, student, terms, inputs


@pytest.mark.parametrize(("mode", "head_norm"), [("il", "none"), ("il", "batch"), ("cg", "none")])
def test_gradients_reach_student_and_its_heads_never_the_teacher(teacher_with_heads, mode, head_norm):
    teacher, student, terms, inputs = universal_setup(teacher_with_heads[0], mode=mode, head_norm=head_norm)
    with torch.no_grad():
        t_trace = teacher(inputs)
    loss, values = weighted_loss(terms, student(inputs), t_trace, torch.tensor([1, 0]), MR)
    loss.backward()
    assert set(values) == {"ce", "kd", "universal"} and values["universal"] > 0
    module = terms[-1].module
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    if mode == "il":
        assert module.student_heads.weight.grad.abs().sum() > 0
        # The lower student layer gets gradient from its own head's projection term too.
        assert student.model.base_model.encoder.layer[0].output.dense.weight.grad.abs().sum() > 0
    else:
        assert module.student_heads is None  # cg: the student's final logits attend over the teacher heads
    assert all(p.grad is None for p in teacher.parameters())


def test_universal_without_teacher_heads_is_a_clear_error():
    terms = get_method("universal").terms(TermContext(2, 32, 3, 32, 2))
    trace = make_trace(layers=2, width=32)
    with pytest.raises(XKDError, match="xkd teacher heads"):
        terms[-1].fn(trace, make_trace(layers=3, width=32), None, MR)


def test_bf16_autocast_on_cpu_is_finite_and_close(teacher_with_heads):
    teacher, student, terms, inputs = universal_setup(teacher_with_heads[0])
    module = terms[-1].module
    student.eval()  # no dropout: the two passes differ only in precision
    with torch.no_grad():
        t_trace = teacher(inputs)
        full = module(student(inputs), t_trace).loss
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = module(student(inputs), t_trace).loss
    assert low.dtype == torch.float32 and torch.isfinite(low)
    # bf16 keeps ~3 significant digits through the student; the loss may move a few percent, not more
    assert low.item() == pytest.approx(full.item(), rel=0.1, abs=1e-3)


def test_unknown_and_mistyped_method_options():
    method = get_method("universal")
    with pytest.raises(XKDError, match="has no option 'gama'.*did you mean 'gamma'"):
        method.resolve({"gama": 2})
    with pytest.raises(XKDError, match="'gamma' should be float"):
        method.resolve({"gamma": "lots"})
    assert method.resolve({"gamma": "2", "scale": "true", "mode": "cg"})["gamma"] == 2.0
    with pytest.raises(XKDError, match="method 'universal': unknown mode 'xx'; choose one of: il, ca, cg"):
        method.terms(TermContext(2, 8, 3, 8, 2), mode="xx")
