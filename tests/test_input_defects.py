"""Inputs that once gave a crash or a silent wrong answer: empty and whitespace-only texts (every student reads them,
and no NaN reaches an output), saved teacher outputs that contradict themselves or hold negative probabilities or
NaN, and scalar labels under `--multi-label`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import QUICK, distill, run, save_tiny, write_frame, write_task_dir

from xkd import Predictor
from xkd.data import load_splits, pad_rows, tokenize_texts
from xkd.errors import XKDError
from xkd.students import build_student
from xkd.tasks import custom_task, get_task, task_record
from xkd.teachers import load_teacher
from xkd.teachers.outside import read_outputs

MR = get_task("mr")
EMPTY = ["", "   ", "a good film"]


def strict_json(line: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""

    def refuse(name: str):
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def assert_distributions(answers: list[dict], names=("negative", "positive")) -> None:
    for answer in answers:
        probabilities = answer["probabilities"]
        assert set(probabilities) == set(names) and answer["label"] in names
        assert all(math.isfinite(p) for p in probabilities.values()), answer
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)


# ------------------------------------------------------------------------------------- empty texts: predict


@pytest.mark.parametrize("student", ["cnn", "bilstm", "bert-k"])
def test_empty_texts_predict_finite_json_through_the_cli(tmp_path, task_dir, bert_teacher_dir, student):
    out = tmp_path / "run"
    args = [*distill(bert_teacher_dir, task_dir), "--student", student, "--student-layers", "1", "--method", "kd"]
    trained = run(*args, *QUICK, "--epochs", "1", "--output-dir", str(out))
    assert trained.exit_code == 0, trained.output
    for texts in (EMPTY, ["", "   "]):  # beside another text, and a batch of nothing but empty texts
        shown = run("predict", "--model", str(out / "student"), *texts)
        assert shown.exit_code == 0, shown.output
        lines = [strict_json(line) for line in shown.stdout.splitlines()]
        assert [line["text"] for line in lines] == texts
        assert_distributions(lines)
        assert lines[0]["probabilities"] == lines[1]["probabilities"]  # whitespace is no text either


def saved_student(tmp_path, task_dir, kind, task=MR, **options):
    teacher = load_teacher(str(save_tiny(tmp_path / "teacher", layers=2)), task)
    texts = pd.read_csv(task_dir / "train.tsv", sep="\t").iloc[:, 0].tolist()
    student = build_student(kind, teacher, task, texts, layers=2, log=lambda m: None, **options).eval()
    return student, student.save(tmp_path / "student", **task_record(task), max_length=32)


@pytest.mark.parametrize("vocab", ["word", "teacher"])  # no tokens at all / only [CLS] [SEP]
@pytest.mark.parametrize("kind", ["cnn", "bilstm"])
def test_empty_texts_predict_through_onnx(tmp_path, task_dir, kind, vocab):
    _, student_dir = saved_student(tmp_path, task_dir, kind, vocab=vocab)
    assert run("export", str(student_dir), "--onnx", str(tmp_path / "s.onnx")).exit_code == 0
    torch_predictor = Predictor(student_dir, batch_size=8, device="cpu")
    onnx_predictor = Predictor(student_dir, onnx=tmp_path / "s.onnx", batch_size=8)
    for texts in (EMPTY, ["", "   "]):
        onnx_logits = onnx_predictor.logits(texts)
        assert np.isfinite(onnx_logits).all()
        np.testing.assert_allclose(onnx_logits, torch_predictor.logits(texts), atol=1e-4)
        assert_distributions(onnx_predictor(texts))


def test_a_model_giving_nan_is_refused_not_written(tmp_path, task_dir):
    """A student with a damaged word vector gives NaN for the texts holding that word: predict says so in one line
    and writes nothing, rather than printing NaN (not JSON) with an arbitrary label."""
    student, _ = saved_student(tmp_path, task_dir, "cnn")
    with torch.no_grad():
        student.embedding.weight[student.tokenizer.convert_tokens_to_ids("dull")] = float("nan")
    student_dir = student.save(tmp_path / "damaged", **task_record(MR), max_length=32)
    texts = ["a good film", "a dull film", "", "dull"]
    with pytest.raises(XKDError, match=r"non-finite outputs .* for 2 of 4 text\(s\), first text 2 \('a dull film'\)"):
        Predictor(student_dir, device="cpu")(texts)
    output = tmp_path / "labels.jsonl"
    result = run("predict", "--model", str(student_dir), *texts, "--output", str(output))
    assert result.exit_code == 2 and "non-finite outputs" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not output.exists()


# -------------------------------------------------------------------------- empty texts: training and evaluation


def padded(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    """A batch of texts as training, evaluation and prediction tokenize and pad it."""
    encoded = tokenize_texts(tokenizer, [texts], 32)
    return pad_rows(tokenizer, [dict(zip(encoded, row, strict=True)) for row in zip(*encoded.values(), strict=True)])


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("cnn", {}),  # the teacher's tokens: an empty text is [CLS] [SEP]
        ("cnn", {"vocab": "word"}),  # a word vocabulary: no tokens at all
        ("cnn", {"gated": True, "filter_widths": "2,5", "vocab": "word"}),
        ("bilstm", {}),
        ("bilstm", {"pooling": "mean", "vocab": "word"}),
    ],
)
def test_student_forward_on_empty_texts_is_finite_and_leaves_other_rows_alone(tmp_path, task_dir, kind, options):
    student, _ = saved_student(tmp_path, task_dir, kind, **options)

    def forward(texts, model=student):
        with torch.no_grad():
            return model(padded(student.tokenizer, texts))

    steps = 0 if student.meta["vocab"] == "word" else 2  # no tokens at all: no time steps; or [CLS] [SEP]
    assert padded(student.tokenizer, ["", "   "])["input_ids"].shape[1] == steps
    for texts in (EMPTY, ["", "   "], [""]):
        trace = forward(texts)
        assert torch.isfinite(trace.logits).all() and torch.isfinite(trace.layer_vectors).all(), texts
        torch.testing.assert_close(trace.logits[0], forward([""]).logits[0])  # an empty text reads alike anywhere
    torch.testing.assert_close(forward(EMPTY).logits[2], forward(["a good film"]).logits[0])  # others: unchanged
    if kind == "bilstm":  # the export form (no packing) reads empty texts as the packed one does
        expected = forward(EMPTY).logits
        torch.testing.assert_close(forward(EMPTY, student.for_export()).logits, expected)


def test_pair_student_reads_an_empty_second_text(tmp_path):
    from test_predict import pair_task_dir

    data = pair_task_dir(tmp_path / "pairs")
    mrpc = get_task("mrpc")
    teacher = load_teacher(str(save_tiny(tmp_path / "teacher", layers=2)), mrpc)
    texts = pd.read_csv(data / "train.tsv", sep="\t").iloc[:, 0].tolist()
    for kind in ("cnn", "bilstm"):
        student = build_student(kind, teacher, mrpc, texts, layers=2, log=lambda m: None).eval()
        student_dir = student.save(tmp_path / kind, **task_record(mrpc), max_length=32)
        answers = Predictor(student_dir, device="cpu")([("a good film", ""), ("", "  "), ("the plot", "was dull")])
        assert_distributions(answers, ("0", "1"))


def test_training_and_evaluation_on_data_with_empty_texts(tmp_path, bert_teacher_dir):
    data = write_task_dir(tmp_path / "data")
    for split in ("train", "validation", "test"):
        frame = pd.read_csv(data / f"{split}.tsv", sep="\t")
        frame.loc[0, "sentence"], frame.loc[1, "sentence"] = "", "   "  # an empty cell reads as NaN, then ""
        write_frame(frame, data / f"{split}.tsv")
    out = tmp_path / "run"
    args = [*distill(bert_teacher_dir, data), "--student", "cnn", "--method", "kd", "--output-dir", str(out)]
    result = run(*args, *QUICK, "--epochs", "1")
    assert result.exit_code == 0, result.output
    summary = strict_json((out / "summary.json").read_text())
    for line in (out / "metrics.jsonl").read_text().splitlines():
        strict_json(line)
    assert math.isfinite(summary["test"]["test"]["accuracy"]) and math.isfinite(summary["best_score"])
    evaluated = run("eval", "--model", str(out / "student"), "--task", "mr", "--data-dir", str(data))
    assert evaluated.exit_code == 0, evaluated.output
    strict_json(evaluated.stdout[evaluated.stdout.index("{") :])


# --------------------------------------------------------------------------------------- saved teacher outputs


def outputs(tmp_path, text: str, name: str = "o.jsonl"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_same_text_twice_with_different_outputs_is_refused(tmp_path):
    long = "a rather long review of a film " * 4
    path = outputs(tmp_path, "".join(json.dumps(r) + "\n" for r in [
        {"sentence": "a good film", "logits": [1.0, 2.0]},
        {"sentence": long, "logits": [0.5, 0.5]},
        {"sentence": "dull", "logits": [2.0, 1.0]},
        {"sentence": long, "logits": [0.5, 0.25]},
    ]))  # fmt: skip
    with pytest.raises(XKDError) as error:
        read_outputs(path, MR)
    message = str(error.value)
    assert f"{path} rows 2 and 4 give the text {long[:50]!r} different outputs" in message
    assert "(logits [0.5, 0.5] and logits [0.5, 0.25]); keep one row per text" in message
    assert "\n" not in message and long not in message  # the text is cut short


def test_identical_duplicates_are_one_row(tmp_path):
    rows = [{"sentence": "a good film", "probabilities": [0.25, 0.75]}, {"sentence": "dull", "label": "negative"}]
    rows += [{"sentence": "the plot", "logits": [1.5, -0.25]}]
    again = [*rows[:2], {"sentence": "the plot", "logits": [1.5000001, -0.2500001]}]  # another batch's rounding
    path = outputs(tmp_path, "".join(json.dumps(r) + "\n" for r in rows + again))
    table = read_outputs(path, MR)
    assert sorted(table.rows) == [("a good film",), ("dull",), ("the plot",)]
    assert table.rows[("the plot",)].tolist() == [1.5, -0.25]  # the first row's
    np.testing.assert_allclose(np.exp(table.rows[("a good film",)]), [0.25, 0.75], rtol=1e-6)


def test_duplicate_ids_with_different_outputs_are_refused(tmp_path):
    path = outputs(tmp_path, '{"id": 3, "logits": [1.0, 0.0]}\n{"id": 3, "logits": [0.0, 1.0]}\n')
    shown = r"rows 1 and 2 give id 3 different outputs \(logits \[1, 0\] and logits \[0, 1\]\)"
    with pytest.raises(XKDError, match=shown):
        read_outputs(path, MR)


def test_a_negative_probability_is_named_as_such(tmp_path):
    path = outputs(
        tmp_path, '{"sentence": "a", "probabilities": [0.5, 0.5]}\n{"sentence": "b", "probabilities": [-0.2, 1.2]}\n'
    )  # fmt: skip  (sums to 1: the old message spoke of its sum)
    with pytest.raises(XKDError) as error:
        read_outputs(path, MR)
    message = str(error.value)
    assert f"{path} row 2: 'probabilities' holds a negative probability, -0.2 (value 1 of [-0.2, 1.2])" in message
    assert "summing" not in message


@pytest.mark.parametrize("suffix", [".jsonl", ".tsv", ".parquet"])
def test_a_nan_logit_is_shown_as_nan(tmp_path, suffix):
    path = tmp_path / f"o{suffix}"
    if suffix == ".jsonl":  # pandas reads this NaN inside a list as None
        path.write_text('{"sentence": "a", "logits": [0.5, 1.0]}\n{"sentence": "b", "logits": [1.0, NaN]}\n')
    else:
        cells = ["[0.5, 1.0]", "[1.0, NaN]"] if suffix == ".tsv" else [[0.5, 1.0], [1.0, float("nan")]]
        write_frame(pd.DataFrame({"sentence": ["a", "b"], "logits": cells}), path)
    with pytest.raises(XKDError) as error:
        read_outputs(path, MR)
    message = str(error.value)
    assert f"{path} row 2: 'logits' holds NaN (value 2 of [1, NaN]); every value must be a finite number" in message
    assert "None" not in message.replace(str(path), "") and "nan" not in message.replace(str(path), "")


def test_bad_saved_outputs_end_a_distill_run_in_one_line(tmp_path, task_dir):
    task, raw = load_splits(MR, task_dir)
    texts = raw["train"]["sentence"]
    rows = [{"sentence": t, "logits": [0.0, 1.0]} for t in texts] + [{"sentence": texts[5], "logits": [1.0, 0.0]}]
    write_frame(pd.DataFrame(rows), tmp_path / "o.jsonl")
    args = ["distill", "--data-dir", str(task_dir), "--student", "cnn", "--method", "kd", *QUICK]
    result = run(*args, "--teacher-outputs", str(tmp_path / "o.jsonl"), "--output-dir", str(tmp_path / "r"))
    assert result.exit_code == 2, result.output
    assert f"rows 6 and {len(texts) + 1} give the text {texts[5]!r} different outputs" in result.output
    assert result.output.strip().count("\n") == 0 and not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------- multi-label input


def scalar_labelled(directory, suffix):
    directory.mkdir(parents=True)
    for split in ("train", "validation"):
        frame = pd.DataFrame({"sentence": ["a good film", "dull", "the plot"] * 11, "tags": [1, 0, 1] * 11})
        write_frame(frame, directory / f"{split}{suffix}")
    return directory


@pytest.mark.parametrize(
    ("suffix", "form"),
    [
        (".jsonl", """write a list of label names per row, e.g. "tags": ["sports", "politics"] ([] for none), or one """
                   "string of names joined by '|'"),
        (".parquet", 'a list of label names per row, e.g. "tags": ["sports", "politics"]'),
        (".tsv", "write label names joined by '|' in each cell, e.g. sports|politics (an empty cell for none)"),
    ],
)  # fmt: skip
def test_scalar_labels_under_multi_label_are_refused(tmp_path, suffix, form):
    data = scalar_labelled(tmp_path / "data", suffix)
    task = custom_task("tags", ("sentence",), "tags", multi_label=True, label_separator="|")
    with pytest.raises(XKDError) as error:
        load_splits(task, data)
    message = str(error.value)
    assert message.startswith(f"{data / ('train' + suffix)} row 1: --multi-label reads a set of labels per row, but ")
    assert "label column 'tags' holds 1, a single value" in message and form in message
    assert "drop --multi-label if each row has one label" in message and "\n" not in message


def test_scalar_labels_under_multi_label_end_a_run_in_one_line(tmp_path, bert_teacher_dir):
    data = scalar_labelled(tmp_path / "data", ".jsonl")
    task_args = ["--task", "tags", "--text-column", "sentence", "--label-column", "tags", "--multi-label"]
    result = run(*distill(bert_teacher_dir, data), *task_args, "--method", "kd", *QUICK)
    assert result.exit_code == 2, result.output
    assert "train.jsonl row 1: --multi-label reads a set of labels per row" in result.output
    assert result.output.strip().count("\n") == 0
