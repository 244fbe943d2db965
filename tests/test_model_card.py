"""Every saved student gets a Hugging Face model card written from its run's files."""

from __future__ import annotations

import json

import pytest
import yaml
from tiny import QUICK, distill, run


@pytest.mark.parametrize("student", ["cnn", "bert-k"])
def test_model_card_from_the_run(tmp_path, task_dir, bert_teacher_dir, student):
    out = tmp_path / "run"
    args = [*distill(bert_teacher_dir, task_dir), "--student", student, "--student-layers", "1", "--method", "kd"]
    assert run(*args, *QUICK, "--latency", "--output-dir", str(out)).exit_code == 0
    summary = json.loads((out / "summary.json").read_text())
    text = (out / "student" / "README.md").read_text()
    _, head, body = text.split("---\n", 2)
    meta = yaml.safe_load(head)
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["library_name"] == ("transformers" if student == "bert-k" else "xkd")
    assert meta["base_model"] == str(bert_teacher_dir.resolve())  # every student: the teacher it came from
    assert {"xkd", "knowledge-distillation", "method-kd", f"student-{student}"} <= set(meta["tags"])
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["split"] for r in results] == ["test", "validation"]
    metrics = {m["name"]: m["value"] for r in results for m in r["metrics"]}
    assert metrics["test accuracy"] == pytest.approx(summary["test"]["test"]["accuracy"], abs=1e-4)
    assert metrics["validation accuracy"] == pytest.approx(summary["validation"]["validation"]["accuracy"], abs=1e-4)
    teacher = 100 * summary["teacher"]["metrics"]["test"]["accuracy"]
    assert f"| test accuracy (%) | {teacher:.2f} | {100 * summary['test']['test']['accuracy']:.2f} |" in body
    assert "CPU latency, batch 1" in body and "x faster" in body
    assert "Method: `kd`" in body and "xkd predict --model ." in body
    assert ("from_pretrained" in body) == (student == "bert-k")


def test_the_card_of_a_local_data_run_says_where_its_data_and_teacher_are(tmp_path, task_dir, bert_teacher_dir):
    """The points a user found wrong: no hub data set for local files, the split sizes and subset, each result's
    split, the teacher as an absolute path (also as `base_model`), singular words, and it parses as a hub card."""
    from huggingface_hub import ModelCard

    out = tmp_path / "run"
    relative = bert_teacher_dir.relative_to(tmp_path)  # the tests run in tmp_path: the teacher named relatively
    args = [
        "distill",
        "--teacher",
        str(relative),
        "--data-dir",
        str(task_dir),
        "--student",
        "cnn",
        "-S",
        "embedding_dim=16",
    ]
    quick = ["--epochs", "1", "--batch-size", "16", "--max-length", "16", "--no-progress", "--no-latency"]
    assert run(*args, *quick, "--max-examples", "24", "--method", "kd", "--output-dir", str(out)).exit_code == 0
    card = ModelCard.load(out / "student" / "README.md")
    meta = card.data.to_dict()
    assert "datasets" not in meta and "rotten_tomatoes" not in card.content
    assert meta["base_model"] == str(bert_teacher_dir.resolve())
    assert [(r.dataset_split, r.metric_type) for r in card.data.eval_results][:1] == [("test", "accuracy")]
    assert {r.dataset_split for r in card.data.eval_results} == {"test", "validation"}
    assert all(r.dataset_type == "mr" and "local" in r.dataset_name for r in card.data.eval_results)
    assert f"local files in `{task_dir.resolve()}` (train 24, validation 24, test 24 rows)" in card.text
    assert "subset of at most 24 random examples per split" in card.text
    assert f"distilled from {bert_teacher_dir.resolve()}" in card.text
    assert "1 epoch," in card.text and "1 epochs" not in card.text
    assert " s of student training" in card.text and "0.0 min" not in card.text
    assert "returns the student" in card.text and "returns an `xkd.Trace`" not in card.text


def test_a_hub_data_run_names_its_hub_data_set():
    from xkd.model_card import header

    summary = {
        "task": "sst2",
        "student": {"name": "cnn", "layers": 2},
        "method": {"name": "kd"},
        "teacher": {"source": "org/teacher"},
        "data": {"source": "hub:nyu-mll/glue"},
        "test": {"validation": {"accuracy": 0.9}},
    }
    meta = header(summary, {})
    assert meta["datasets"] == ["nyu-mll/glue"] and meta["base_model"] == "org/teacher"
    dataset = meta["model-index"][0]["results"][0]["dataset"]
    assert dataset == {"name": "sst2", "type": "nyu-mll/glue", "config": "sst2", "split": "validation"}
