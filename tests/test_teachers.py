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


def test_a_teacher_another_process_is_fine_tuning_is_waited_for_then_reused(tmp_path, task_dir):
    """Two runs wanting the same fine-tuned teacher: the second waits for the first's lock and reuses its copy
    instead of fine-tuning into the same work directory."""
    import threading

    from xkd.config import DistillConfig
    from xkd.data import load_splits
    from xkd.files import file_lock
    from xkd.paths import cache_root
    from xkd.tasks import get_task
    from xkd.teachers.finetune import cached_finetune, finetune, finetune_key
    from xkd.training import TrainSettings

    base = save_tiny(tmp_path / "base", bare=True)
    task, raw = load_splits(get_task("mr"), task_dir)
    settings = TrainSettings.from_config(DistillConfig(teacher_epochs=1, batch_size=16, progress=False), teacher=True)
    key = finetune_key(str(base), task, "d", settings, 16)
    directory = cache_root() / "teachers" / f"mr--{str(base).strip('/').replace('/', '--')}--{key}"
    logs, result = [], {}
    with file_lock(directory.with_name(f".{directory.name}.lock")):  # "another process" is fine-tuning
        waiter = threading.Thread(
            target=lambda: result.update(out=cached_finetune(str(base), task, raw, settings, 16, "d", logs.append))
        )
        waiter.start()
        waiter.join(timeout=2)
        assert waiter.is_alive() and any("waiting for it" in line for line in logs)
        finetune(str(base), task, raw, settings, 16, directory)  # ... and finishes its copy
    waiter.join(timeout=60)
    path, _, cached = result["out"]
    assert path == directory and cached and not any(line.startswith("fine-tuning") for line in logs)


def test_layer_vectors_come_back_in_row_order_from_length_sorted_batches(tmp_path, task_dir, bert_teacher_dir):
    from xkd.data import Collator, encode, load_splits
    from xkd.teachers.heads import layer_vectors

    task, raw = load_splits(get_task("mr"), task_dir)
    teacher = load_teacher(str(bert_teacher_dir), task)
    tokenizers = {"teacher": teacher.tokenizer}
    split = encode(raw["train"], task, tokenizers, 16)
    vectors, labels = layer_vectors(teacher, split, Collator(tokenizers), batch_size=8, progress=False)
    assert torch.equal(labels, torch.tensor(raw["train"]["labels"]))
    for row in (0, 17, 63):  # each row alone, unpadded: the same vectors
        alone = teacher.tokenizer([raw["train"][row]["sentence"]], return_tensors="pt", truncation=True, max_length=16)
        with torch.no_grad():
            torch.testing.assert_close(vectors[row], teacher(dict(alone)).layer_vectors[0], atol=1e-5, rtol=1e-5)
