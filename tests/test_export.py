"""ONNX export of every built-in student, checked against PyTorch; the BiLSTM's exportable path is exact; int8
graphs through ONNX Runtime's quantizer agree with the float ones."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny import QUICK, load_benchmark, run, save_tiny, write_task_dir

from xkd.data import load_splits
from xkd.export import example_inputs, export_int8, export_onnx
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


def test_int8_export_of_a_trained_cnn_agrees_with_float(tmp_path, bert_teacher_dir):
    data = write_task_dir(tmp_path / "data", sizes=(128, 200, 8))
    train = ["--method", "none", "--student", "cnn", "-S", "vectors=", "--finetune-teacher", "never", "--lr", "5e-3"]
    out = tmp_path / "run"
    args = ["--teacher", str(bert_teacher_dir), "--data-dir", str(data), *train, "--output-dir", str(out)]
    trained = run("distill", *args, *QUICK, "--epochs", "3")
    assert trained.exit_code == 0, trained.output
    student = str(out / "student")
    # No task: dynamic int8 checked on the built-in sentences, written next to the float graph.
    plain = run("export", student, "--onnx", str(tmp_path / "cnn.onnx"), "--quantize", "int8")
    assert plain.exit_code == 0, plain.output
    int8 = json.loads(plain.stdout)["int8"]
    assert int8["path"] == str(tmp_path / "cnn.int8.onnx") and int8["split"] == "check sentences"
    assert int8["agreement"] == 1.0 and int8["megabytes"] < json.loads(plain.stdout)["megabytes"] / 2
    # Static, calibrated on the training split and checked on all of validation.
    task = ["--task", "mr", "--data-dir", str(data), "--calibration-examples", "64"]
    static = run(
        "export", student, "--onnx", str(tmp_path / "s.onnx"), "--quantize", "int8", "--calibration", "static", *task
    )
    assert static.exit_code == 0, static.output
    int8 = json.loads(static.stdout)["int8"]
    assert int8["mode"] == "static" and int8["split"] == "validation" and int8["examples"] == 200
    assert int8["accuracy_float"] > 0.75  # a trained model: agreement between near-ties would prove little
    assert int8["agreement"] >= 0.99 and abs(int8["accuracy_int8"] - int8["accuracy_float"]) <= 0.01


@pytest.mark.parametrize("kind", ["cnn", "bilstm", "bert-k"])
def test_int8_dynamic_and_static_load_for_every_student(tmp_path, task_dir, kind):
    spec, splits = load_splits(get_task("mr"), task_dir)
    teacher = load_teacher(str(save_tiny(tmp_path / "teacher", layers=2)), spec)
    student = build_student(kind, teacher, spec, TEXTS, layers=2, log=lambda m: None).eval()
    float_report = export_onnx(student, tmp_path / "f.onnx")
    long_text = example_inputs(student, (" ".join(["a moving and funny film that never drags ,"] * 5),))
    for mode in ("dynamic", "static"):
        notes: list[str] = []
        options = {"max_length": 16, "calibration_examples": 32, "log": notes.append}
        report = export_int8(student, tmp_path / "f.onnx", tmp_path / f"{mode}.onnx", mode, spec, splits, **options)
        # The BiLSTM's LSTM op has int8 kernels only in dynamic quantization: static says so and falls back.
        expected = "dynamic" if kind == "bilstm" else mode
        assert report["mode"] == expected and bool(notes) == (expected != mode)
        assert report["megabytes"] < float_report["megabytes"] and report["examples"] == 32
        session = ort.InferenceSession(str(tmp_path / f"{mode}.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {k: v.numpy() for k, v in long_text.items()})[0]
        assert got.shape == (1, 2) and np.isfinite(got).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quantize", "int8"], "add --onnx PATH"),
        (["--onnx", "x.onnx", "--quantize", "int4"], "unknown --quantize 'int4'"),
        (["--onnx", "x.onnx", "--quantize", "int8", "--calibration", "minmax"], "unknown --calibration 'minmax'"),
        (["--onnx", "x.onnx", "--quantize", "int8", "--calibration", "static"], "add --task"),
        (["--onnx", "x.onnx", "--task", "mr"], "add --quantize int8"),
    ],
)
def test_int8_bad_input_is_one_line(tmp_path, args, message):
    result = run("export", str(tmp_path), *args)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_latency_benchmark_runs_on_a_tiny_setup(tmp_path, task_dir, bert_teacher_dir):
    """The benchmark's quick form (`--examples`), so it cannot rot between real runs."""
    latency = load_benchmark("latency")
    teacher = load_teacher(str(bert_teacher_dir), get_task("mr"))
    build_student("cnn", teacher, get_task("mr"), TEXTS, log=lambda m: None).save(tmp_path / "cnn-run" / "student")
    result = latency.latency_rows(
        str(bert_teacher_dir), [str(tmp_path / "cnn-run" / "student")], "mr", str(task_dir), 16, 1, examples=8
    )
    row = result["models"]["cnn-run"]
    keys = ("batch_1_ms", "onnx_batch_32_ms", "int8_batch_32_ms", "accuracy", "int8_accuracy", "int8_batch_1_speedup")
    assert all(row[key] is not None for key in keys), row
    json_path, table = latency.write_results(result, tmp_path / "out")
    assert json.loads(json_path.read_text())["models"].keys() == {"teacher", "cnn-run"}
    assert "| cnn-run |" in table.read_text()


def test_agreement_compares_argmax_classes_or_whole_label_sets():
    from xkd.export import agreement
    from xkd.tasks import custom_task

    a = np.array([[2.0, -1.0, 0.5], [-1.0, 3.0, -2.0]])
    b = np.array([[1.0, -3.0, -0.5], [-2.0, 2.0, -1.0]])  # same argmax; row 1's third label flips off
    assert agreement(get_task("mnli"), a, b) == 1.0
    tags = custom_task("tags", ("text",), num_labels=3, multi_label=True)
    assert agreement(tags, a, b) == 0.5


def test_int8_input_drops_the_shapes_of_weights(tmp_path):
    """The dynamo exporter records each weight's shape in value_info; ONNX Runtime's dynamic quantizer (1.30)
    transposes a Gemm weight in place under its own name, which that record then contradicts."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from xkd.export import _without_weight_shapes, quantize_onnx

    weight = numpy_helper.from_array(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4), "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["logits"], transB=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [weight],
        value_info=[helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), tmp_path / "f.onnx")
    cleaned = onnx.load(_without_weight_shapes(tmp_path / "f.onnx", tmp_path / "in.onnx"))
    assert not cleaned.graph.value_info and [t.name for t in cleaned.graph.initializer] == ["w"]
    # What the 1.30 quantizer does, on any ONNX Runtime: the weight transposed under its name, Gemm -> MatMul.
    cleaned.graph.initializer[0].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight).T, "w"))
    cleaned.graph.node[0].CopyFrom(helper.make_node("MatMul", ["x", "w"], ["logits"]))
    onnx.shape_inference.infer_shapes(cleaned, strict_mode=True)
    report = quantize_onnx(tmp_path / "f.onnx", tmp_path / "q.onnx", "dynamic", log=lambda m: None)
    assert report["mode"] == "dynamic" and (tmp_path / "q.onnx").exists()
