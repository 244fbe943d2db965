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
    assert ("base_model" in meta) == (student == "bert-k")
    assert {"xkd", "knowledge-distillation", "method-kd", f"student-{student}"} <= set(meta["tags"])
    results = meta["model-index"][0]["results"][0]
    assert results["dataset"]["name"] == "mr"
    metrics = {m["name"]: m["value"] for m in results["metrics"]}
    assert metrics["test accuracy"] == pytest.approx(summary["test"]["test"]["accuracy"], abs=1e-4)
    assert metrics["validation accuracy"] == pytest.approx(summary["validation"]["validation"]["accuracy"], abs=1e-4)
    teacher = 100 * summary["teacher"]["metrics"]["test"]["accuracy"]
    assert f"| test accuracy (%) | {teacher:.2f} | {100 * summary['test']['test']['accuracy']:.2f} |" in body
    assert "CPU latency, batch 1" in body and "x faster" in body
    assert "Method: `kd`" in body and "xkd predict --model ." in body
    assert ("from_pretrained" in body) == (student == "bert-k")
