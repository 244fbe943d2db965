"""Universal-KD through the CLI: teacher heads, distillation, attention records, second stage, report."""

import json

from tiny import QUICK, distill, run, save_tiny


def test_teacher_heads_then_universal_distill_and_report(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=4)
    heads = run(
        "teacher",
        "heads",
        "--teacher",
        str(teacher),
        "--task",
        "mr",
        "--data-dir",
        str(task_dir),
        "--epochs",
        "2",
        "--max-length",
        "16",
        "--no-progress",
    )
    assert heads.exit_code == 0, heads.output
    assert len(json.loads(heads.output[heads.output.index("{") :])["layer_metrics"]) == 4
    assert (teacher / "pseudo_heads.safetensors").is_file() and (teacher / "pseudo_heads.json").is_file()

    out = tmp_path / "run"
    result = run(
        *distill(teacher, task_dir),
        "--method",
        "universal",
        "-O",
        "gamma=2",
        "--output-dir",
        str(out),
        *QUICK,
    )
    assert result.exit_code == 0, result.output
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert {"ce", "kd", "universal"} <= set(first["train"])
    records = [json.loads(line) for line in (out / "attention.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    alpha = records[-1]["alpha"]
    assert len(alpha) == 2 and len(alpha[0]) == 4  # student layers x teacher layers
    assert all(abs(sum(row) - 1) < 1e-5 for row in alpha)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"]["terms"] == {"ce": 0.5, "kd": 0.5, "universal": 2.0}
    # The exported student is a plain HF classifier: no pseudo heads or projector weights left over.
    from transformers import AutoModelForSequenceClassification

    _, info = AutoModelForSequenceClassification.from_pretrained(out / "student", output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]

    report = run("report", str(out))
    assert report.exit_code == 0, report.output
    assert (out / "attention_universal.png").stat().st_size > 1000
    assert (out / "teacher_heads.png").stat().st_size > 1000


def test_universal_trains_missing_heads_then_cg_mode_and_second_stage(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=3)
    out = tmp_path / "run"
    result = run(
        *distill(teacher, task_dir),
        "--method",
        "universal",
        "-O",
        "mode=cg",
        "--heads-epochs",
        "2",
        "--second-stage-epochs",
        "1",
        "--output-dir",
        str(out),
        *QUICK,
    )
    assert result.exit_code == 0, result.output
    assert (teacher / "pseudo_heads.json").is_file()  # trained on the fly and stored next to the teacher
    alpha = json.loads((out / "attention.jsonl").read_text().splitlines()[-1])["alpha"]
    assert len(alpha) == 1 and len(alpha[0]) == 3  # cg: the student's output over the teacher's 3 heads
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "stage2" / "metrics.jsonl").is_file() and "stage2" in summary
    assert "universal" not in json.loads((out / "stage2" / "metrics.jsonl").read_text().splitlines()[0])["train"]


def test_method_option_errors_are_one_line(tmp_path, task_dir, bert_teacher_dir):
    base = ["distill", "--teacher", str(bert_teacher_dir), "--data-dir", str(task_dir), "--method", "universal"]
    typo = run(*base, "-O", "gama=2", *QUICK)
    assert typo.exit_code == 2 and "did you mean 'gamma'" in typo.output and typo.output.count("\n") == 1
    malformed = run(*base, "-O", "gamma", *QUICK)
    assert malformed.exit_code == 2 and "is not KEY=VALUE" in malformed.output
    kd_option = run(
        *distill(bert_teacher_dir, task_dir),
        "--method",
        "kd",
        "-O",
        "mode=cg",
        *QUICK,
    )
    assert kd_option.exit_code == 2 and "method 'kd' has no option 'mode'" in kd_option.output
    nothing = run("report", str(tmp_path))
    assert nothing.exit_code == 2 and "holds no finished run or study" in nothing.output


def test_heads_trained_before_standardisation_are_retrained(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    args = ["teacher", "heads", "--teacher", str(teacher), "--task", "mr", "--data-dir", str(task_dir), "--epochs", "1"]
    assert run(*args, "--max-length", "16", "--no-progress").exit_code == 0
    info_file = teacher / "pseudo_heads.json"
    info = json.loads(info_file.read_text())
    assert info.pop("inputs_standardized") is True
    info_file.write_text(json.dumps(info))  # as written by xkd before heads saw standardised vectors
    result = run(*distill(teacher, task_dir), "--method", "universal", "--output-dir", str(tmp_path / "u"), *QUICK)
    assert result.exit_code == 0, result.output
    assert "trained on unstandardised vectors: retraining them" in result.output
    assert json.loads(info_file.read_text())["inputs_standardized"] is True
    again = run(*distill(teacher, task_dir), "--method", "universal", "--output-dir", str(tmp_path / "v"), *QUICK)
    assert again.exit_code == 0 and "retraining" not in again.output
