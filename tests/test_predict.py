"""`xkd predict` and `xkd.Predictor`: the same predictions as `xkd eval` for every kind of saved model."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from tiny import QUICK, distill, run, save_tiny, sentence, write_frame

from xkd import Predictor
from xkd.data import Collator, encode, load_splits, make_loader, separate_roles
from xkd.evaluation import predict
from xkd.students import build_student, load_student
from xkd.tasks import get_task, task_record
from xkd.teachers import load_teacher


def pair_task_dir(directory):
    """A tiny MRPC-shaped task: the label is the polarity of the second sentence."""
    rng = random.Random(1)
    directory.mkdir(parents=True)
    for split, n in (("train", 32), ("validation", 24), ("test", 8)):
        labels = [i % 2 for i in range(n)]
        rows = {"sentence1": [sentence(rng, 1 - y) for y in labels], "sentence2": [sentence(rng, y) for y in labels]}
        write_frame(pd.DataFrame({**rows, "label": labels}), directory / f"{split}.tsv")
    return directory


def eval_logits(model, task, data_dir, max_length=32):
    """Logits on the validation split the way `xkd eval` computes them."""
    task, raw = load_splits(task, data_dir)
    separate = separate_roles(model)
    split = encode(raw["validation"], task, {"student": model.tokenizer}, max_length, separate)
    loader = make_loader(split, Collator({"student": model.tokenizer}, separate), 16, shuffle=False)
    texts = raw["validation"].to_pandas()[list(task.text_columns)]
    rows = texts.iloc[:, 0].tolist() if len(task.text_columns) == 1 else list(texts.itertuples(index=False))
    return predict(model, loader)[0], [r if isinstance(r, str) else tuple(r) for r in rows]


@pytest.mark.parametrize(
    ("kind", "task_name"),
    [("bert-k", "mr"), ("cnn", "mr"), ("bilstm", "mr"), ("plugin_gru:GRUStudent", "mr"), ("bilstm", "mrpc"),
     ("bert-k", "mrpc"), ("teacher", "mr")],
)  # fmt: skip
def test_predict_equals_eval(tmp_path, task_dir, kind, task_name):
    task = get_task(task_name)
    data = task_dir if task_name == "mr" else pair_task_dir(tmp_path / "pairs")
    teacher_dir = save_tiny(tmp_path / "teacher", layers=2)
    model_dir = teacher_dir
    if kind != "teacher":
        teacher = load_teacher(str(teacher_dir), task)
        texts = pd.read_csv(data / "train.tsv", sep="\t").iloc[:, 0].tolist()
        student = build_student(kind, teacher, task, texts, layers=2, log=lambda m: None).eval()
        model_dir = student.save(tmp_path / "student", **task_record(task), max_length=32)
    model = load_student(model_dir) if kind != "teacher" else load_teacher(str(teacher_dir), task)
    expected, rows = eval_logits(model.eval(), task, data)
    predictor = Predictor(model_dir, batch_size=5, max_length=32, device="cpu")  # eval's device: the same arithmetic
    np.testing.assert_allclose(predictor.logits(rows), expected, atol=1e-5)
    answers = predictor(rows[:3])
    names = (kind != "teacher" and task.label_names) or ("0", "1")  # a bare HF checkpoint names no labels
    assert [a["label"] for a in answers] == [names[i] for i in expected[:3].argmax(1)]
    for answer in answers:
        assert set(answer["probabilities"]) == set(names)
        assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize(("kind", "task_name"), [("cnn", "mr"), ("bilstm", "mr"), ("bert-k", "mr"), ("bilstm", "mrpc")])
def test_predict_through_onnx_equals_pytorch(tmp_path, task_dir, kind, task_name):
    task = get_task(task_name)
    data = task_dir if task_name == "mr" else pair_task_dir(tmp_path / "pairs")
    teacher = load_teacher(str(save_tiny(tmp_path / "teacher", layers=2)), task)
    texts = pd.read_csv(data / "train.tsv", sep="\t").iloc[:, 0].tolist()
    student = build_student(kind, teacher, task, texts, layers=2, log=lambda m: None).eval()
    student_dir = student.save(tmp_path / "student", **task_record(task), max_length=32)
    assert run("export", str(student_dir), "--onnx", str(tmp_path / "s.onnx")).exit_code == 0
    _, rows = eval_logits(load_student(student_dir), task, data)
    torch_logits = Predictor(student_dir, batch_size=7).logits(rows)
    onnx_logits = Predictor(student_dir, onnx=tmp_path / "s.onnx", batch_size=7).logits(rows)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)


def test_predict_cli_after_distill(tmp_path, task_dir, bert_teacher_dir):
    out = tmp_path / "run"
    args = [*distill(bert_teacher_dir, task_dir), "--student", "cnn", "--method", "kd", "--output-dir", str(out)]
    assert run(*args, *QUICK).exit_code == 0
    record = json.loads((out / "student" / "student.json").read_text())
    assert record["labels"] == ["negative", "positive"] and record["text_columns"] == ["sentence"]
    assert record["regression"] is False
    shown = run("predict", "--model", str(out / "student"), "the film was good", "a dull , flat story")
    assert shown.exit_code == 0, shown.output
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [line["text"] for line in lines] == ["the film was good", "a dull , flat story"]
    assert all(set(line["probabilities"]) == {"negative", "positive"} for line in lines)
    # The run directory itself (what distill printed) stands for its student, in predict, eval and export.
    whole_run = run("predict", "--model", str(out), "the film was good", "a dull , flat story")
    assert whole_run.exit_code == 0 and [json.loads(x) for x in whole_run.stdout.splitlines()] == lines
    scores = [
        run("eval", "--model", str(d), "--task", "mr", "--data-dir", str(task_dir)) for d in (out, out / "student")
    ]
    assert scores[0].exit_code == 0, scores[0].output
    assert json.loads(scores[0].stdout)["metrics"] == json.loads(scores[1].stdout)["metrics"]
    exported = run("export", str(out), "--onnx", str(tmp_path / "run.onnx"))
    assert exported.exit_code == 0 and (tmp_path / "run.onnx").is_file(), exported.output
    # A file in, a file out; the same answers as the arguments gave, and a blank line keeps its place.
    (tmp_path / "texts.txt").write_text("the film was good\n\na dull , flat story\n")
    written = run("predict", "--model", str(out / "student"), "--input", str(tmp_path / "texts.txt"),
                  "--output", str(tmp_path / "labels.jsonl"), "--no-progress")  # fmt: skip
    assert written.exit_code == 0, written.output
    from_file = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [from_file[0], from_file[2]] == lines and from_file[1]["text"] == "" and "label" in from_file[1]
    from click.testing import CliRunner

    from xkd.cli.main import cli

    piped = CliRunner().invoke(cli, ["predict", "--model", str(out / "student"), "--input", "-"], input="dull\n\n")
    assert piped.exit_code == 0 and [json.loads(x)["text"] for x in piped.stdout.splitlines()] == ["dull", ""]
    table = run("predict", "--model", str(out / "student"), "--input", str(task_dir / "validation.tsv"))
    assert table.exit_code == 0 and len(table.stdout.splitlines()) == 32
    first = json.loads(table.stdout.splitlines()[0])
    assert first["label"] in ("negative", "positive") and first["input_label"] in (0, 1)  # the gold label kept
    (tmp_path / "ids.csv").write_text('id,text\n7,the film was good\n9,"a dull , flat story"\n')
    with_ids = run("predict", "--model", str(out / "student"), "--input", str(tmp_path / "ids.csv"))
    assert with_ids.exit_code == 0, with_ids.output
    records = [json.loads(line) for line in with_ids.stdout.splitlines()]
    assert [(r["id"], r["text"]) for r in records] == [(7, "the film was good"), (9, "a dull , flat story")]
    assert [r["probabilities"] for r in records] == [line["probabilities"] for line in lines]


def test_predict_bad_input(tmp_path, task_dir, bert_teacher_dir):
    model = str(bert_teacher_dir)
    (tmp_path / "table.csv").write_text("a,b,c\nx,y,z\n")
    (tmp_path / "empty.txt").write_text("")
    cases = [
        (["predict", "--model", model], "either as arguments or with --input"),
        (["predict", "--model", model, "x", "--input", str(tmp_path / "empty.txt")], "one of the two"),
        (["predict", "--model", model, "--input", str(tmp_path / "empty.txt")], "no texts"),
        (["predict", "--model", model, "--input", str(tmp_path / "nothing.txt")], "does not exist"),
        (["predict", "--model", model, "--input", str(tmp_path / "table.csv")], "--text-column"),
        (["predict", "--model", model, "--input", str(tmp_path / "table.csv"), "--text-column", "q"], "no column 'q'"),
        (["predict", "--model", str(tmp_path / "nothing"), "x"], "not a directory"),
        (["predict", "--model", str(task_dir), "x"], "holds no model"),
        (["predict", "--model", model, "--onnx", str(tmp_path / "x.onnx"), "x"], "does not exist"),
        (["predict", "--model", model, "--batch-size", "0", "x"], "at least 1"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
