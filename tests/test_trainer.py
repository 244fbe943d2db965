"""DistillationTrainer: xkd's loss inside a Hugging Face Trainer, on tiny models (no downloads, a few seconds)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from tiny import save_tiny, sentence, tiny_bert_config
from transformers import (
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    BertTokenizer,
    TrainingArguments,
)

from xkd.errors import XKDError
from xkd.methods import TermContext, get_method, weighted_loss
from xkd.pseudo_heads import PseudoHeads
from xkd.students import build_bert_k
from xkd.tasks import custom_task, get_task
from xkd.teachers import HFEncoderClassifier, load_teacher
from xkd.trainer import TERMS_FILE, DistillationTrainer

MR = get_task("mr")


@pytest.fixture
def teacher_dir(tmp_path: Path) -> Path:
    """A tiny 4-layer BERT classifier with stored pseudo heads (so Universal-KD can run)."""
    directory = save_tiny(tmp_path / "teacher", layers=4)
    torch.manual_seed(1)
    PseudoHeads(layers=4, width=32, num_labels=2).save(directory)
    return directory


@pytest.fixture
def pair(teacher_dir: Path):
    """(teacher, HF student, tokenizer): a 2-layer BERT-k initialised from the teacher, as a plain HF model."""
    teacher = load_teacher(str(teacher_dir), MR)
    torch.manual_seed(0)
    student = build_bert_k(teacher, layers=2)
    return teacher, student.model, teacher.tokenizer


def dataset(tokenizer, rows: int = 32) -> Dataset:
    rng = random.Random(0)
    labels = [i % 2 for i in range(rows)]
    encoded = tokenizer([sentence(rng, y) for y in labels], padding="max_length", max_length=12, truncation=True)
    return Dataset.from_dict({**encoded, "labels": labels})


def batch(tokenizer, rows: int = 8) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in dataset(tokenizer)[:rows].items()}


def arguments(tmp_path: Path, **overrides) -> TrainingArguments:
    settings = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=2,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return TrainingArguments(**{**settings, **overrides})


def trainer(tmp_path, student, tokenizer, teacher, **kwargs) -> DistillationTrainer:
    args = kwargs.pop("args", None) or arguments(tmp_path)
    return DistillationTrainer(
        model=student,
        args=args,
        train_dataset=dataset(tokenizer),
        processing_class=tokenizer,
        teacher=teacher,
        **kwargs,
    )


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_kd_loss_equals_xkd_terms_on_a_fixed_batch(tmp_path, teacher_dir, pair):
    teacher, student, tokenizer = pair
    options = {"temperature": 3.0, "alpha": 0.7}
    t = trainer(tmp_path, student, tokenizer, str(teacher_dir), method="kd", method_options=options)
    inputs = batch(tokenizer)
    student.eval()
    loss = t.compute_loss(student, dict(inputs))

    view = HFEncoderClassifier(student, tokenizer)  # what xkd distill trains: the same student, teacher, terms
    terms = get_method("kd").terms(TermContext.between(view, teacher, MR), **options)
    features = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        teacher_trace = teacher(features)
    expected, values = weighted_loss(terms, view(features), teacher_trace, inputs["labels"], MR)
    assert set(values) == {"ce", "kd"}
    assert abs(loss.item() - expected.item()) < 1e-6


def test_kd_training_moves_the_student_not_the_teacher_and_logs_each_term(tmp_path, pair):
    teacher, student, tokenizer = pair
    t = trainer(tmp_path, student, tokenizer, teacher, method="kd", args=arguments(tmp_path, max_steps=8))
    inputs = batch(tokenizer)
    student_before, teacher_before = snapshot(student), snapshot(teacher)
    student.eval()
    with torch.no_grad():
        loss_before = t.compute_loss(student, dict(inputs)).item()
    t.train()
    assert changed(student_before, student)
    assert not changed(teacher_before, teacher)
    student.eval()
    with torch.no_grad():
        assert t.compute_loss(student, dict(inputs)).item() < loss_before
    logged = [entry for entry in t.state.log_history if "loss" in entry]
    assert logged and all({"loss_ce", "loss_kd"} <= set(entry) for entry in logged)
    assert "eval_loss" in t.evaluate(dataset(tokenizer, rows=16))  # evaluation reads the student's logits


@pytest.mark.parametrize("method", ["none", "kd", "logit-mse", "pkd", "alp", "universal", "universal+alp"])
def test_supported_methods_give_a_finite_loss_with_student_gradients(tmp_path, pair, method):
    teacher, student, tokenizer = pair
    t = trainer(tmp_path, student, tokenizer, teacher if method != "none" else None, method=method)
    loss = t.compute_loss(student, batch(tokenizer))
    loss.backward()
    assert torch.isfinite(loss)
    assert student.classifier.weight.grad is not None
    assert all(p.grad is not None for p in t.distillation_parameters())


def narrow_student(tokenizer) -> BertForSequenceClassification:
    """A 2-layer student half the teacher's width: Universal-KD's hidden score then learns a width map."""
    config = tiny_bert_config(len(tokenizer), layers=2)
    config.hidden_size, config.intermediate_size = 16, 32
    torch.manual_seed(0)
    return BertForSequenceClassification(config)


def test_universal_trains_its_heads_and_projector_and_saves_only_the_student(tmp_path, pair):
    teacher, _, tokenizer = pair
    student = narrow_student(tokenizer)
    args = arguments(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    options = {"gamma": 1.0, "score": "hidden"}
    t = trainer(tmp_path, student, tokenizer, teacher, method="universal", method_options=options, args=args)
    extras = dict(t.term_modules.named_parameters())
    assert {n.split(".")[1] for n in extras} == {"student_heads", "projector"}
    before = snapshot(t.term_modules)
    t.train()
    in_optimizer = {id(p) for group in t.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in in_optimizer for p in extras.values())
    assert all(not torch.equal(before[n], p) for n, p in extras.items())  # every head and the map moved
    checkpoint = load_file(str(tmp_path / "out" / "checkpoint-2" / TERMS_FILE))
    assert all(torch.equal(checkpoint[k], v.cpu()) for k, v in t.term_modules.state_dict().items())
    fresh = trainer(tmp_path, narrow_student(tokenizer), tokenizer, teacher, method="universal", method_options=options)
    fresh._load_from_checkpoint(str(tmp_path / "out" / "checkpoint-2"))  # what resume_from_checkpoint calls
    assert not changed(snapshot(t.term_modules), fresh.term_modules)

    t.save_model(str(tmp_path / "student"))
    saved = load_file(str(tmp_path / "student" / "model.safetensors"))
    assert not any("projector" in k or "heads" in k for k in saved)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()
    features = {k: v for k, v in batch(tokenizer).items() if k != "labels"}
    student.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**features).logits, student(**features).logits, atol=1e-6)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("kdd", {}, "unknown method 'kdd'"),
        ("kd", {"alpha": 2}, "alpha must lie in"),
        ("universal", {"gama": 1}, "has no option 'gama'"),
        ("aguilar", {}, "use `xkd distill --method aguilar`"),
    ],
)
def test_bad_method_or_option_is_one_line(tmp_path, pair, method, options, message):
    teacher, student, tokenizer = pair
    with pytest.raises(XKDError, match=message) as error:
        trainer(tmp_path, student, tokenizer, teacher, method=method, method_options=options)
    assert "\n" not in str(error.value)


def test_a_different_tokenizer_or_missing_heads_is_refused(tmp_path, pair):
    teacher, student, tokenizer = pair
    other_dir = tmp_path / "other-tok"
    other_dir.mkdir()
    (other_dir / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "movie"]) + "\n")
    other = BertTokenizer(vocab=str(other_dir / "vocab.txt"))
    with pytest.raises(XKDError, match="not the teacher's: DistillationTrainer runs the teacher"):
        DistillationTrainer(model=student, args=arguments(tmp_path), processing_class=other, teacher=teacher)
    teacher.pseudo_heads = None
    with pytest.raises(XKDError, match="xkd teacher heads"):
        trainer(tmp_path, student, tokenizer, teacher, method="universal")


def test_multi_label_students_get_bce_and_per_label_kd(tmp_path):
    """A student whose config says multi_label_classification learns from sigmoids: the Trainer's loss on a fixed
    batch of float multi-hot labels equals xkd's multi-label terms (BCE + per-label binary KD)."""
    teacher_dir = save_tiny(tmp_path / "tags-teacher", num_labels=3)
    config = AutoModelForSequenceClassification.from_pretrained(teacher_dir).config
    config.problem_type = "multi_label_classification"
    config.save_pretrained(teacher_dir)
    tags = custom_task("trainer", ("text",), num_labels=3, multi_label=True)
    teacher = load_teacher(str(teacher_dir), tags)
    torch.manual_seed(0)
    student = build_bert_k(teacher, layers=2).model
    assert student.config.problem_type == "multi_label_classification"
    tokenizer = teacher.tokenizer
    options = {"temperature": 2.0, "alpha": 0.5}
    t = trainer(tmp_path, student, tokenizer, teacher, method="kd", method_options=options)
    inputs = batch(tokenizer)
    inputs["labels"] = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]] * 4)
    student.eval()
    loss = t.compute_loss(student, dict(inputs))

    features = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        s_logits, t_logits = student(**features).logits, teacher(features).logits
    bce = torch.nn.functional.binary_cross_entropy_with_logits(s_logits, inputs["labels"])
    p, q = torch.sigmoid(t_logits / 2), torch.sigmoid(s_logits / 2)  # per-label Bernoullis at τ = 2
    kl = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean() * 4
    assert abs(loss.item() - (0.5 * bce + 0.5 * kl).item()) < 1e-5
    with pytest.raises(XKDError, match="has no multi-label form"):
        trainer(tmp_path, student, tokenizer, teacher, method="plugin_cosine:last-cosine")
