"""`xkd export DIR --model2vec OUT`: the static student as model2vec's own pipeline, loaded back by model2vec."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model2vec import StaticModel
from model2vec.inference import StaticModelPipeline
from tiny import WORDS, run

from xkd.predict import Predictor
from xkd.students import build_student
from xkd.tasks import get_task
from xkd.teachers import load_teacher

MR = get_task("mr")
TEXTS = [" ".join(WORDS[i : i + 5]) for i in range(len(WORDS) - 4)] * 2
CHECK = ["the film was good", "a dull , flat story", "good cast and a funny plot", "really quite boring"]


@pytest.fixture
def saved_static(bert_teacher_dir, tmp_path):
    torch.manual_seed(0)
    teacher = load_teacher(str(bert_teacher_dir), MR)
    model = build_student(
        "static", teacher, MR, TEXTS, layers=2, log=lambda m: None, progress=False,
        teacher_path=str(bert_teacher_dir), vectors_dim=8, hidden=16,
    )  # fmt: skip
    with torch.no_grad():  # a trained-looking head: random, not the near-zero init, so a wrong export shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.save(tmp_path / "student", task="mr", max_length=32)
    return tmp_path / "student"


def test_export_loads_in_model2vec_and_predicts_the_same(saved_static, tmp_path):
    out = tmp_path / "m2v"
    result = run("export", str(saved_static), "--model2vec", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["head_layers"] == 3 and report["dim"] == 8 and report["max_abs_diff"] < 1e-5
    pipeline = StaticModelPipeline.from_pretrained(str(out))
    ours = Predictor(saved_static, device="cpu")
    expected = ours(CHECK)
    assert list(pipeline.predict(CHECK, use_multiprocessing=False)) == [row["label"] for row in expected]
    probabilities = pipeline.predict_proba(CHECK, use_multiprocessing=False)
    wanted = np.array([[row["probabilities"][n] for n in ("negative", "positive")] for row in expected])
    np.testing.assert_allclose(probabilities, wanted, atol=1e-5)
    assert list(pipeline.classes_) == ["negative", "positive"]
    assert json.loads((out / "config.json").read_text())["max_length"] == 32  # the student's own truncation
    assert report["exact_up_to_characters"] >= 32 * 3


def test_a_teacher_vocabulary_truncates_long_texts_as_the_student_does(bert_teacher_dir, tmp_path):
    """With the teacher's tokens (-S vocab=teacher) xkd's max length counts [CLS] and [SEP], which model2vec never
    adds: the export keeps the same tokens of a text longer than the max length, not two more."""
    torch.manual_seed(0)
    teacher = load_teacher(str(bert_teacher_dir), MR)
    model = build_student(
        "static", teacher, MR, TEXTS, layers=1, log=lambda m: None, progress=False,
        teacher_path=str(bert_teacher_dir), vectors_dim=8, hidden=16, vocab="teacher",
    )  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.save(tmp_path / "student", task="mr", max_length=12)
    long = " ".join(["good"] * 10 + ["dull"] * 10)  # 20 tokens: the last ones decide, and are cut
    result = run("export", str(tmp_path / "student"), "--model2vec", str(tmp_path / "m2v"))
    assert result.exit_code == 0, result.output
    pipeline = StaticModelPipeline.from_pretrained(str(tmp_path / "m2v"))
    ours = Predictor(tmp_path / "student", device="cpu")
    wanted = [[row["probabilities"][n] for n in ("negative", "positive")] for row in ours([long, *CHECK])]
    theirs = pipeline.predict_proba([long, *CHECK], use_multiprocessing=False)
    np.testing.assert_allclose(theirs, np.array(wanted), atol=1e-5)
    assert json.loads((tmp_path / "m2v" / "config.json").read_text())["max_length"] == 10  # 12 less [CLS], [SEP]


def test_embeddings_alone_are_the_students_mean(saved_static, tmp_path):
    run("export", str(saved_static), "--model2vec", str(tmp_path / "m2v"))
    static = StaticModel.from_pretrained(str(tmp_path / "m2v"))
    student = Predictor(saved_static, device="cpu").model
    ids = student.tokenizer(["the film was good"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        mean = student.embedding(ids).mean(1).numpy()
    np.testing.assert_allclose(static.encode(["the film was good"]), mean, atol=1e-6)


def test_unknown_words_are_skipped_by_both(saved_static, tmp_path):
    """An unseen word maps to [UNK], whose row was never trained: the student's mean skips it as model2vec does."""
    run("export", str(saved_static), "--model2vec", str(tmp_path / "m2v"))
    pipeline = StaticModelPipeline.from_pretrained(str(tmp_path / "m2v"))
    ours = Predictor(saved_static, device="cpu")
    plain, with_unknown = "the film was good", "the zyzzyva film was good"
    a, b = ours.logits([plain, with_unknown])
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(pipeline.predict_proba([with_unknown], use_multiprocessing=False)[0],
                               pipeline.predict_proba([plain], use_multiprocessing=False)[0], atol=1e-6)  # fmt: skip


def test_other_students_are_refused_in_one_line(bert_teacher_dir, tmp_path):
    teacher = load_teacher(str(bert_teacher_dir), MR)
    cnn = build_student("cnn", teacher, MR, TEXTS, layers=1, log=lambda m: None, vectors="", embedding_dim=8)
    cnn.save(tmp_path / "cnn", task="mr")
    result = run("export", str(tmp_path / "cnn"), "--model2vec", str(tmp_path / "m2v"))
    assert result.exit_code == 2, result.output
    assert "exports the static student only" in result.output and "cnn student" in result.output
    assert result.output.strip().count("\n") == 0 and not (tmp_path / "m2v").exists()


def test_existing_directory_and_mixed_exports_are_refused(saved_static, tmp_path):
    out = tmp_path / "m2v"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused = run("export", str(saved_static), "--model2vec", str(out))
    assert refused.exit_code == 2 and "pass --overwrite" in refused.output
    assert (out / "keep.txt").read_text() == "mine"
    mixed = run("export", str(saved_static), "--model2vec", str(tmp_path / "x"), "--onnx", str(tmp_path / "s.onnx"))
    assert mixed.exit_code == 2 and "an export of its own" in mixed.output
    assert run("export", str(saved_static), "--model2vec", str(out), "--overwrite").exit_code == 0
    assert not (out / "keep.txt").exists() and (out / "head.safetensors").is_file()


def test_the_benchmark_runs_its_xkd_side_on_a_tiny_setup(tmp_path, task_dir, bert_teacher_dir):
    """benchmarks/static_vs_model2vec.py's xkd variant end to end (model2vec's side needs its distill extra), so the
    script cannot rot between real runs; the headline takes each family's best variant by the mean over seeds."""
    from click.testing import CliRunner
    from tiny import load_benchmark

    bench = load_benchmark("static_vs_model2vec")
    bench.XKD_VARIANTS["xkd-tiny"] = {"method": "kd", "epochs": 2, "batch_size": 16, "max_length": 16}
    bench.VARIANTS = (*bench.VARIANTS, "xkd-tiny")
    out = tmp_path / "bench.json"
    args = ["--variants", "xkd-tiny", "--seeds", "42", "--teacher", str(bert_teacher_dir), "--data-dir",
            str(task_dir), "--speed-texts", "64", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]  # fmt: skip
    threads = torch.get_num_threads()
    result = CliRunner().invoke(bench.main, args)
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == threads  # the benchmark's one thread does not leak into later tests
    written = json.loads(out.read_text())
    assert written["xkd_static"]["variant"] == "xkd-tiny" and written["model2vec"] is None
    assert 0 <= written["teacher_test_accuracy"] <= 100 and written["rows"][0]["texts_per_second"] > 0
    assert written["rows"][0]["texts_per_second_model2vec_runtime"] > 0
    assert "| xkd-tiny | 42 |" in out.with_suffix(".md").read_text()
    rerun = CliRunner().invoke(bench.main, args)  # finished runs are kept, not trained again
    assert rerun.exit_code == 0 and "xkd-tiny seed 42" not in rerun.output
    retimed = CliRunner().invoke(bench.main, [*args, "--retime"])  # the saved student timed again, nothing trained
    assert retimed.exit_code == 0 and "xkd-tiny seed 42:" in retimed.output, retimed.output
    again = json.loads(out.read_text())["rows"][0]
    assert again["test_accuracy"] == written["rows"][0]["test_accuracy"] and again["texts_per_second"] > 0
    rows = [{"variant": v, "seed": s, "test_accuracy": a, "texts_per_second": 10.0} for v, s, a in
            [("model2vec-base", 1, 70.0), ("model2vec-base", 2, 80.0), ("model2vec-finetuned", 1, 74.0),
             ("xkd-kd", 1, 76.0), ("xkd-kd", 2, 78.0), ("xkd-kd-tang20", 1, 79.0)]]  # fmt: skip
    top = bench.headline(rows, 82.0)
    assert top["model2vec"]["variant"] == "model2vec-base" and top["model2vec"]["test_accuracy"] == 75.0
    assert top["xkd_static"]["variant"] == "xkd-kd-tang20" and top["teacher_test_accuracy"] == 82.0


@pytest.mark.parametrize("kind", ["multi-label", "regression"])
def test_multi_label_and_regression_heads(bert_teacher_dir, tmp_path, kind):
    """A multi-label student exports with model2vec's sigmoid head, a regression one with its identity head."""
    from xkd.tasks import custom_task

    regression = kind == "regression"
    task = custom_task("t", ("text",), num_labels=None if regression else 3, regression=regression,
                       multi_label=not regression)  # fmt: skip
    teacher = load_teacher(str(bert_teacher_dir), MR)
    model = build_student(
        "static", teacher, task, TEXTS, layers=1, log=lambda m: None, progress=False,
        teacher_path=str(bert_teacher_dir), vectors_dim=8, hidden=16,
    )  # fmt: skip
    meta = {"regression": True} if regression else {"multi_label": True, "labels": ["a", "b", "c"]}
    model.save(tmp_path / "s", task="t", **meta)
    result = run("export", str(tmp_path / "s"), "--model2vec", str(tmp_path / "m2v"))
    assert result.exit_code == 0, result.output
    pipeline = StaticModelPipeline.from_pretrained(str(tmp_path / "m2v"))
    assert pipeline.head.activation.value == ("identity" if regression else "sigmoid")
    ours = Predictor(tmp_path / "s", device="cpu")(CHECK)
    answer = pipeline.predict if regression else pipeline.predict_proba
    theirs = answer(CHECK, use_multiprocessing=False)
    expected = [[r["value"]] for r in ours] if regression else [[r["probabilities"][n] for n in "abc"] for r in ours]
    np.testing.assert_allclose(np.asarray(theirs).reshape(len(CHECK), -1), expected, atol=1e-5)
