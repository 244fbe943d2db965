"""ONNX export of every built-in student, checked against PyTorch; the BiLSTM's exportable path is exact."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny import run, save_tiny

from xkd.export import example_inputs
from xkd.students import build_student
from xkd.tasks import get_task
from xkd.teachers import load_teacher

TEXTS = ["the film was good", "a dull , flat story", "good cast and a funny plot"]


@pytest.mark.parametrize(
    ("kind", "teacher_kind", "task"),
    [
        ("bert-k", "bert", "mr"),
        ("distilroberta", "roberta", "mr"),
        ("cnn", "bert", "mr"),
        ("bilstm", "bert", "mr"),
        ("bilstm", "bert", "mrpc"),  # a pair student: two inputs per text
    ],
)
def test_export_matches_pytorch(tmp_path, kind, teacher_kind, task):
    spec = get_task(task)
    layers = 4 if teacher_kind == "bert" else 12
    teacher = load_teacher(str(save_tiny(tmp_path / "teacher", kind=teacher_kind, layers=layers)), spec)
    options = {"layers": 2} if kind != "distilroberta" else {}
    student = build_student(kind, teacher, spec, TEXTS, log=lambda m: None, **options).eval()
    student.save(tmp_path / "student", task=task)
    result = run("export", str(tmp_path / "student"), "--onnx", str(tmp_path / "s.onnx"))
    assert result.exit_code == 0, repr(result.exception)
    report = json.loads(result.stdout)
    assert report["max_abs_diff"] < 1e-4 and report["megabytes"] > 0
    if task == "mrpc":
        assert {"input_ids_b", "attention_mask_b"} <= set(report["inputs"])
    # Our own check, independent of the exporter's: a batch of one, longer than anything seen at export.
    inputs = example_inputs(student, (" ".join(["a moving and funny film that never drags ,"] * 5),))
    session = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        expected = student(inputs).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    again = run("export", str(tmp_path / "student"), "--onnx", str(tmp_path / "s.onnx"))
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_bilstm_export_path_equals_packed_sequences(tmp_path):
    teacher = load_teacher(str(save_tiny(tmp_path / "teacher", layers=2)), get_task("mr"))
    student = build_student("bilstm", teacher, get_task("mr"), TEXTS, layers=3, log=lambda m: None).eval()
    enc = student.tokenizer(TEXTS + ["good"], padding="max_length", max_length=12, return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    with torch.no_grad():
        packed = student(inputs)
        exportable = student.for_export()(inputs)
    torch.testing.assert_close(exportable.layer_vectors, packed.layer_vectors, rtol=0, atol=1e-6)
    torch.testing.assert_close(exportable.logits, packed.logits, rtol=0, atol=1e-6)


def test_export_errors(tmp_path):
    missing = run("export", str(tmp_path / "nothing"), "--onnx", str(tmp_path / "x.onnx"))
    assert missing.exit_code == 2 and "not a directory" in missing.output
    assert run("export", str(tmp_path)).exit_code == 2
