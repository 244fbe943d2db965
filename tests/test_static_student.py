"""The static student: masked-mean embeddings, dense layers as Trace layers; distil, save/load, ONNX, predict."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from tiny import QUICK, WORDS, distill, metrics_lines, run

from xkd.errors import XKDError
from xkd.export import example_inputs
from xkd.students import STUDENTS, build_student, load_student
from xkd.tasks import get_task
from xkd.teachers import load_teacher

MR = get_task("mr")
TEXTS = [" ".join(WORDS[i : i + 5]) for i in range(len(WORDS) - 4)] * 2
CHECK = ["the film was good", "a dull , flat story", "good cast and a funny plot"]


@pytest.fixture
def student(bert_teacher_dir):
    teacher = load_teacher(str(bert_teacher_dir), MR)
    options = {"vectors_dim": 8, "hidden": 16}
    model = build_student(
        "static", teacher, MR, TEXTS, layers=3, log=lambda m: None, progress=False,
        teacher_path=str(bert_teacher_dir), **options,
    )  # fmt: skip
    return model.eval()


def encode(model, texts, pad_to=None):
    enc = model.tokenizer(texts, padding="max_length" if pad_to else True, max_length=pad_to, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def test_registered_with_teacher_vectors_by_default():
    spec = STUDENTS.get("static")
    assert spec.options["vectors"] == "teacher" and spec.options["hidden"] == 256
    assert all(STUDENTS.get(kind).options["vectors"] == "teacher" for kind in ("cnn", "bilstm"))
    listing = run("students")
    assert listing.exit_code == 0 and "static: token embeddings" in listing.output


def test_trace_layers_and_padding_invariance(student):
    assert student.meta["vectors"]["dim"] == 8  # vectors=teacher without asking
    trace = student(encode(student, CHECK))
    assert trace.logits.shape == (3, 2) and trace.layer_vectors.shape == (3, 3, 16)
    padded = student(encode(student, CHECK, pad_to=24))
    assert torch.allclose(trace.logits, padded.logits, atol=1e-6)
    assert torch.allclose(trace.layer_vectors, padded.layer_vectors, atol=1e-6)
    # The first layer reads the plain masked mean of the text's token vectors.
    ids = encode(student, CHECK[:1])["input_ids"]  # one text, no padding; a word vocabulary adds no specials
    mean = student.embedding(ids).mean(1)
    assert torch.allclose(trace.layer_vectors[:1, 0], torch.relu(student.dense[0](mean)), atol=1e-6)
    student.train()
    student(encode(student, CHECK)).logits.sum().backward()
    assert student.embedding.weight.grad is not None


def test_the_bag_pooling_equals_the_padded_mean_the_export_uses(student, monkeypatch):
    """Outside an export the mean sums only the counted rows (`embedding_bag`); an ONNX graph keeps the padded
    masked mean. The two must agree, in value and in gradient, with padding, special tokens and an empty text."""
    from xkd.students.sentence_encoder import masked_mean

    inputs = encode(student, [*CHECK, ""], pad_to=12)
    ids, mask = inputs["input_ids"], inputs["attention_mask"].clone()
    mask[1, 0] = 0  # a row whose mask has a hole, not only trailing padding
    counted = mask.bool() & ~(ids[..., None] == student.skipped_ids).any(-1)
    bag = student.pooled(ids, counted)
    bag.pow(2).sum().backward()
    bag_grad = student.embedding.weight.grad.clone()
    student.embedding.weight.grad = None
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    padded = student.pooled(ids, counted)
    assert torch.equal(padded, masked_mean(student.embedding(ids), counted))  # the export's path was taken
    padded.pow(2).sum().backward()
    torch.testing.assert_close(bag, padded, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bag_grad, student.embedding.weight.grad, rtol=1e-5, atol=1e-6)
    assert torch.equal(bag[-1], torch.zeros_like(bag[-1]))  # the empty text: zeros, as before


def test_save_load_round_trip(student, tmp_path):
    student.save(tmp_path / "s", task="mr")
    again = load_student(tmp_path / "s").eval()
    inputs = encode(student, CHECK)
    assert type(again).__name__ == "StaticStudent"
    assert torch.equal(student(inputs).logits, again(inputs).logits)


def test_no_dense_layer_is_refused(bert_teacher_dir):
    teacher = load_teacher(str(bert_teacher_dir), MR)
    with pytest.raises(XKDError, match="--student-layers must be at least 1"):
        build_student("static", teacher, MR, TEXTS, layers=0, log=lambda m: None, vectors="")


def test_onnx_export_matches_pytorch(student, tmp_path):
    student.save(tmp_path / "s", task="mr")
    result = run("export", str(tmp_path / "s"), "--onnx", str(tmp_path / "s.onnx"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_diff"] < 1e-4
    session = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    for texts in ((" ".join(["a moving and funny film that never drags ,"] * 5),), tuple(CHECK[:2])):
        inputs = example_inputs(student, texts)  # other batch sizes and lengths than at export
        got = session.run(["logits"], {k: v.numpy() for k, v in inputs.items()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, student(inputs).logits.numpy(), atol=1e-4)


@pytest.mark.parametrize("method", ["kd", "universal"])
def test_distill_learns_and_predicts(tmp_path, task_dir, bert_teacher_dir, method):
    out = tmp_path / "run"
    args = ["--student", "static", "-S", "vectors_dim=8", "-S", "hidden=32", "--method", method]
    result = run(*distill(bert_teacher_dir, task_dir), *args, *QUICK, "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    assert "word vectors: distilled from" in result.output
    rows = metrics_lines(out)
    assert len(rows) == 2 and all("accuracy" in row["validation"] for row in rows)
    assert all(np.isfinite(row["train"]["loss"]) for row in rows)  # (learning: see test_it_learns_the_tiny_task)
    assert json.loads((out / "summary.json").read_text())["student"]["layers"] == 2
    if method == "kd":
        shown = run("predict", "--model", str(out / "student"), "the film was good", "")
        assert shown.exit_code == 0, shown.output
        lines = [json.loads(line) for line in shown.stdout.splitlines()]
        assert len(lines) == 2 and all(set(line["probabilities"]) == {"negative", "positive"} for line in lines)


def test_glove_file_vectors(tmp_path, task_dir, bert_teacher_dir):
    rng = np.random.default_rng(0)
    lines = [f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=6)) for w in WORDS]
    (tmp_path / "glove.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = ["--student", "static", "--student-layers", "1", "-S", f"vectors={tmp_path / 'glove.txt'}", "--method", "kd"]
    result = run(*distill(bert_teacher_dir, task_dir), *args, *QUICK, "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    assert "word vectors:" in result.output and "found in" in result.output
    saved = load_student(out / "student")
    assert saved.embedding.weight.shape[1] == 6 and saved.num_layers == 1


def test_bad_hidden_is_one_line(tmp_path, task_dir, bert_teacher_dir):
    args = ["--student", "static", "-S", "hidden=0", "--method", "kd", "--output-dir", str(tmp_path / "r")]
    result = run(*distill(bert_teacher_dir, task_dir), *args, *QUICK)
    assert result.exit_code == 2, result.output
    assert "-S hidden must be at least 1" in result.output and result.output.strip().count("\n") == 0
    assert not (tmp_path / "r").exists()


def test_it_learns_the_tiny_task(tmp_path, task_dir, bert_teacher_dir):
    """Gold labels, full batches: the tiny task's polarity words are learnt through the mean (a 2-epoch distil on
    a random tiny teacher is too short to move its accuracy)."""
    torch.manual_seed(0)
    train, valid = (pd.read_csv(task_dir / f"{s}.tsv", sep="\t") for s in ("train", "validation"))
    teacher = load_teacher(str(bert_teacher_dir), MR)
    model = build_student(
        "static", teacher, MR, train.sentence.tolist(), layers=2, log=lambda m: None, progress=False,
        teacher_path=str(bert_teacher_dir), vectors_dim=8, hidden=32,
    )  # fmt: skip
    x, v = (encode(model, frame.sentence.tolist()) for frame in (train, valid))
    y = torch.tensor(train.label.values)
    optimizer = torch.optim.Adam(model.parameters(), 2e-3)
    for _ in range(80):
        model.train()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x).logits, y).backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model.eval()(v).logits.argmax(1).numpy() == valid.label.values).mean()
    assert accuracy >= 0.8
