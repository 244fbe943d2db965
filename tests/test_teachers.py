import pytest
import torch
from tiny import save_tiny

from xkd.errors import XKDError
from xkd.tasks import get_task
from xkd.teachers import HFEncoderClassifier, load_teacher


def batch(model: HFEncoderClassifier, texts=("the film was good", "bad")) -> dict:
    return dict(model.tokenizer(list(texts), padding=True, return_tensors="pt"))


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_trace_has_every_layer_and_attentions_on_request(tmp_path, kind):
    teacher = load_teacher(str(save_tiny(tmp_path / kind, kind=kind, layers=3)), get_task("mr"))
    inputs = batch(teacher)
    trace = teacher(inputs)
    assert trace.logits.shape == (2, 2)
    assert trace.layer_vectors.shape == (2, 3, 32)
    assert trace.attentions is None and trace.pseudo_logits is None
    assert torch.equal(trace.attention_mask, inputs["attention_mask"])
    with_attn = teacher(inputs, output_attentions=True)
    assert with_attn.attentions.shape == (2, 3, 2, inputs["input_ids"].shape[1], inputs["input_ids"].shape[1])
    # Attention rows are probabilities; switching to eager attention changes no output.
    assert torch.allclose(with_attn.attentions.sum(-1), torch.ones(2, 3, 2, inputs["input_ids"].shape[1]))
    assert torch.allclose(with_attn.logits, trace.logits, atol=1e-5)


def test_layer_vectors_are_first_token_of_each_layer(bert_teacher_dir):
    teacher = load_teacher(str(bert_teacher_dir), get_task("mr"))
    inputs = batch(teacher)
    hidden = teacher.model(**inputs, output_hidden_states=True).hidden_states
    trace = teacher(inputs)
    for layer in range(teacher.num_layers):
        assert torch.equal(trace.layer_vectors[:, layer], hidden[layer + 1][:, 0])


def test_teacher_is_frozen(bert_teacher_dir):
    teacher = load_teacher(str(bert_teacher_dir), get_task("mr"))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_save_and_reload_give_identical_logits(bert_teacher_dir, tmp_path):
    teacher = load_teacher(str(bert_teacher_dir), get_task("mr"))
    teacher.save(tmp_path / "copy", task="mr")
    again = load_teacher(str(tmp_path / "copy"), get_task("mr"))
    inputs = batch(teacher)
    assert torch.equal(teacher(inputs).logits, again(inputs).logits)
    assert again.meta["task"] == "mr"


def test_label_count_mismatch_and_bare_encoder_and_missing_path(tmp_path):
    three = save_tiny(tmp_path / "three", num_labels=3)
    with pytest.raises(XKDError, match="has 3 output.*needs 2"):
        load_teacher(str(three), get_task("mr"))
    bare = save_tiny(tmp_path / "bare", bare=True)
    with pytest.raises(XKDError, match="bare encoder.*xkd teacher finetune"):
        load_teacher(str(bare), get_task("mr"))
    with pytest.raises(XKDError, match="not a local directory"):
        load_teacher(str(tmp_path / "missing"), get_task("mr"))
