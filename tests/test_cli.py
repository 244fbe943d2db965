"""The CLI end to end on tiny models, and every bad input as one line on stderr with exit code 2."""

import json
import os

import pytest
from tiny import QUICK, distill, metrics_lines, run, save_tiny, write_task_dir


def test_distill_kd_end_to_end(tmp_path, task_dir, bert_teacher_dir):
    out = tmp_path / "run"
    result = run(
        *distill(bert_teacher_dir, task_dir),
        "--method",
        "kd",
        "--student-layers",
        "2",
        "--output-dir",
        str(out),
        *QUICK,
        "--latency",
    )
    assert result.exit_code == 0, result.output
    assert "validation accuracy" in result.output and "CPU latency batch 32" in result.output
    lines = metrics_lines(out)
    assert [r["epoch"] for r in lines] == [1, 2]
    assert {"loss", "ce", "kd"} <= set(lines[0]["train"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["student"]["layers"] == 2 and summary["teacher"]["layers"] == 4
    assert summary["student"]["parameters"] < summary["teacher"]["parameters"]
    assert set(summary["test"]) == {"test"} and 0 <= summary["test"]["test"]["accuracy"] <= 1
    assert summary["method"]["terms"] == {"ce": 0.5, "kd": 0.5}
    assert (out / "student" / "model.safetensors").is_file()
    assert not (out / "checkpoints").exists()  # a finished run keeps its result, not its resumable states
    # The saved student scores the same through `xkd eval` as at the end of training.
    scored = run(
        "eval",
        "--model",
        str(out / "student"),
        "--task",
        "mr",
        "--data-dir",
        str(task_dir),
        "--split",
        "test",
        "--max-length",
        "16",
    )
    assert scored.exit_code == 0, scored.output
    test_acc = json.loads(scored.output)["metrics"]["test"]["accuracy"]
    assert test_acc == pytest.approx(summary["test"]["test"]["accuracy"])


def test_no_kd_learns_the_toy_task(tmp_path, bert_teacher_dir):
    # One polarity word decides each label: a working loop must get (nearly) all of validation right.
    data = write_task_dir(tmp_path / "toy", sizes=(128, 32, 32))
    out = tmp_path / "run"
    args = ["--teacher", str(bert_teacher_dir), "--data-dir", str(data), "--method", "none", "--lr", "5e-3"]
    result = run("distill", *args, "--output-dir", str(out), *QUICK, "--epochs", "10")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["validation"]["validation"]["accuracy"] >= 0.9
    first, last = (json.loads(line)["train"] for line in (out / "metrics.jsonl").read_text().splitlines()[::9])
    assert "kd" not in first and last["loss"] < first["loss"] / 2


def test_config_file_with_override(tmp_path, task_dir, bert_teacher_dir):
    config = tmp_path / "recipe.yaml"
    config.write_text(
        f"teacher: {bert_teacher_dir}\ndata_dir: {task_dir}\nmethod: kd\nmax_steps: 3\n"
        "temperature: 4\nbatch-size: 8\nmax_length: 16\nprogress: false\nlatency: false\n"
    )
    out = tmp_path / "run"
    result = run("distill", "--config", str(config), "--max-steps", "2", "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["temperature"] == 4.0 and saved["max_steps"] == 2 and saved["batch_size"] == 8
    assert json.loads((out / "summary.json").read_text())["steps"] == 2


def test_teacher_finetune_then_distill_and_auto_finetune_cache(tmp_path, task_dir):
    bare = save_tiny(tmp_path / "bare", bare=True)
    out = tmp_path / "ft"
    result = run(
        "teacher",
        "finetune",
        "--model",
        str(bare),
        "--task",
        "mr",
        "--data-dir",
        str(task_dir),
        "--output-dir",
        str(out),
        "--epochs",
        "1",
        "--max-length",
        "16",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert (out / "metrics.json").is_file() and (out / "config.json").is_file()
    assert "accuracy" in json.loads((out / "metrics.json").read_text())["validation"]["validation"]
    # A fine-tuned teacher loads as a plain HF classifier.
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 2

    # Bare encoder as --teacher: fine-tuned first (auto), then taken from the cache on the second run.
    args = [
        *distill(bare, task_dir),
        "--teacher-epochs",
        "1",
        "--max-steps",
        "2",
        *QUICK,
    ]
    first = run(*args, "--output-dir", str(tmp_path / "r1"))
    second = run(*args, "--output-dir", str(tmp_path / "r2"))
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    s1 = json.loads((tmp_path / "r1" / "summary.json").read_text())["teacher"]
    s2 = json.loads((tmp_path / "r2" / "summary.json").read_text())["teacher"]
    assert s1["finetune_cached"] is False and s2["finetune_cached"] is True
    assert s1["finetuned_dir"] == s2["finetuned_dir"] and s1["metrics"] == s2["metrics"]


def test_roberta_teacher_distills(tmp_path, task_dir, roberta_teacher_dir):
    """A RoBERTa teacher gives a RoBERTa BERT-k student from its own layers, which trains, saves and reloads."""
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "r"
    result = run(*distill(roberta_teacher_dir, task_dir), "--max-steps", "2", "--output-dir", str(out), *QUICK)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["student"]["name"] == "bert-k" and summary["student"]["layers"] == 2
    assert summary["steps"] == 2 and [r["step"] for r in metrics_lines(out)] == [2]
    reloaded = AutoModelForSequenceClassification.from_pretrained(out / "student")
    assert reloaded.config.model_type == "roberta" and reloaded.config.num_hidden_layers == 2
    assert 0.0 <= summary["test"]["test"]["accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "sst"], "unknown task 'sst'"),
        (["--student", "cnnn"], "unknown student 'cnnn'"),
        (["--method", "pkdd"], "unknown method 'pkdd'"),
        (["--data-dir", "/nonexistent/dir"], "does not exist"),
        (["--temperature", "-1"], "temperature must be > 0"),
        (["--teacher", "/nonexistent/teacher"], "cannot load teacher"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, task_dir, args, message):
    result = run("distill", "--output-dir", str(tmp_path / "r"), "--data-dir", str(task_dir), *args, *QUICK)
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_bad_data_and_teacher_label_count(tmp_path, task_dir, bert_teacher_dir):
    (task_dir / "train.tsv").write_text("text\tlabel\nfine\t1\n")
    missing = run("distill", "--teacher", str(bert_teacher_dir), "--data-dir", str(task_dir), *QUICK)
    assert missing.exit_code == 2 and "lacks column(s) sentence" in missing.output
    (task_dir / "train.tsv").write_text("sentence\tlabel\nfine\t1\nbad\t3\n")
    labels = run("distill", "--teacher", str(bert_teacher_dir), "--data-dir", str(task_dir), *QUICK)
    assert labels.exit_code == 2 and "not in the task's label set" in labels.output
    (task_dir / "train.tsv").write_text("sentence\tlabel\nfine\t1\nbad\t0\n")
    three = save_tiny(tmp_path / "three", num_labels=3)
    mismatch = run("distill", "--teacher", str(three), "--data-dir", str(task_dir), *QUICK)
    assert mismatch.exit_code == 2 and "has 3 output(s) but task 'mr' needs 2" in mismatch.output
    bad_eval = run("eval", "--model", str(three), "--task", "mr", "--data-dir", str(task_dir))
    assert bad_eval.exit_code == 2 and bad_eval.output.count("\n") == 1


def test_help_has_examples_on_every_command():
    commands = [["distill"], ["eval"], ["inspect"], ["report"], ["tasks"], ["students"], ["methods"], ["teacher"]]
    commands += [["teacher", "finetune"], ["teacher", "heads"], ["study"], ["cache"], ["export"], ["augment"]]
    assert "xkd distill" in run("--help").output  # the top-level help shows the quickstart command
    for command in commands:
        result = run(*command, "--help")
        assert result.exit_code == 0
        assert "Example" in result.output, command
        # Defaults are values a person can read: never a Python object's repr (dataclass factories once leaked).
        assert " object at 0x" not in result.output and "MISSING" not in result.output, command


def test_listings():
    assert "mnli" in run("tasks").output
    methods = run("methods").output
    assert "kd" in methods and "temperature=2.0" in methods
    # every method shows its terms under the defaults and what it applies to
    assert methods.count("    terms: ") == methods.count("    applies to: ") == methods.count("    options: ")
    assert methods.count("    reads of the teacher (default options): ") == methods.count("    terms: ")
    universal = methods[methods.index("universal: ") :]
    assert "reads of the teacher (default options): logits, pseudo_logits; multi-label tasks: yes" in universal
    assert "terms: ce x 0.3, kd x 0.2, alp x 0.5" in methods  # ALP's β = 1 - η - λ convention
    assert "no teacher" in methods and "heads=average" in methods
    assert "bert-k" in run("students").output
    recipes = run("augment").output  # without --augment: the recipes and their options
    assert "tang: Tang et al. 2019" in recipes and "p_mask=0.1" in recipes and "k=15" in recipes


def test_same_seed_same_run(tmp_path, task_dir, bert_teacher_dir):
    args = ["distill", "--teacher", str(bert_teacher_dir), "--data-dir", str(task_dir), "--max-steps", "3", *QUICK]
    logs = []
    for name in ("a", "b"):
        assert run(*args, "--output-dir", str(tmp_path / name)).exit_code == 0
        logs.append(
            [json.loads(line)["train"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        )
    assert logs[0] == logs[1]
    other = run(*args, "--seed", "7", "--output-dir", str(tmp_path / "c"))
    assert other.exit_code == 0
    assert json.loads((tmp_path / "c" / "metrics.jsonl").read_text().splitlines()[0])["train"] != logs[0][0]


def test_custom_task_distill_and_eval(tmp_path, bert_teacher_dir):
    data = tmp_path / "custom"
    write_task_dir(data, sizes=(32, 16, 16), suffix=".csv")
    for path in data.iterdir():  # rename columns and use string labels
        text = path.read_text().replace("sentence,label", "review,verdict").replace(",1\n", ",up\n")
        path.write_text(text.replace(",0\n", ",down\n"))
    custom = ["--task", "reviews", "--data-dir", str(data), "--text-column", "review", "--label-column", "verdict"]
    out = tmp_path / "run"
    result = run(
        "distill", "--teacher", str(bert_teacher_dir), *custom, "--max-steps", "2", "--output-dir", str(out), *QUICK
    )
    assert result.exit_code == 0, result.output
    scored = run("eval", "--model", str(out / "student"), *custom)
    assert scored.exit_code == 0, scored.output
    assert set(json.loads(scored.output)["metrics"]) == {"validation", "test"}


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") != "1", reason="needs HF_HUB_OFFLINE=1 (as in CI)")
def test_offline_hub_fallback_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XKD_DATA_DIR", str(tmp_path))  # holds no sst2/
    result = run("distill", "--task", "sst2", *QUICK)
    assert result.exit_code == 2
    assert "no local data for task 'sst2'" in result.output and "--data-dir" in result.output


def test_output_dir_with_results_is_refused_unless_overwrite(tmp_path, task_dir, bert_teacher_dir):
    args = ["distill", "--teacher", str(bert_teacher_dir), "--data-dir", str(task_dir), "--method", "kd"]
    args += ["--max-steps", "2", "--output-dir", str(tmp_path / "r"), *QUICK]
    assert run(*args).exit_code == 0
    before = (tmp_path / "r" / "summary.json").read_text()
    again = run(*args)
    assert again.exit_code == 2 and "already holds a run's results" in again.output and "--overwrite" in again.output
    assert (tmp_path / "r" / "summary.json").read_text() == before  # nothing touched
    assert run(*args, "--overwrite").exit_code == 0


def test_non_finite_loss_stops_with_step_and_term_and_keeps_the_checkpoint(tmp_path, task_dir, bert_teacher_dir):
    import torch

    from xkd.config import DistillConfig
    from xkd.data import Collator, encode, load_splits
    from xkd.errors import XKDError
    from xkd.methods import LossTerm, get_method
    from xkd.students import build_student
    from xkd.students.configured import student_settings
    from xkd.tasks import get_task
    from xkd.teachers import load_teacher
    from xkd.training import TrainJob, train

    task, raw = load_splits(get_task("mr"), task_dir)
    teacher = load_teacher(str(bert_teacher_dir), task)
    student = build_student("bert-k", teacher, task, layers=2)
    tokenizers = {"teacher": teacher.tokenizer, "student": student.tokenizer}
    splits = {n: encode(s, task, tokenizers, 16) for n, s in raw.items()}
    calls = {"n": 0}

    def poisoned(student_trace, teacher_trace, labels, task):
        calls["n"] += 1
        return torch.tensor(float("nan")) if calls["n"] == 6 else student_trace.logits.sum() * 0

    terms = [*get_method("none").terms(), LossTerm("poison", 1.0, poisoned)]
    settings = student_settings(DistillConfig(epochs=3, batch_size=16, progress=False))  # 4 steps/epoch: NaN in epoch 2
    with pytest.raises(XKDError, match="not finite at step 6 \\(term 'poison'\\).*best checkpoint so far is kept"):
        train(TrainJob(student, task, splits, Collator(tokenizers), terms, settings, tmp_path / "run"))
    assert (tmp_path / "run" / "student" / "model.safetensors").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_runs_in_one_process_may_change_precision(tmp_path, task_dir, bert_teacher_dir):
    """accelerate keeps one state per process and refuses a second Accelerator with another mixed precision: a
    study or a notebook running bf16 and then float32 must get both."""
    for precision in ("bf16", "no"):
        out = tmp_path / precision
        result = run(*distill(bert_teacher_dir, task_dir), "--method", "kd", *QUICK, "--max-steps", "2",
                     "--precision", precision, "--output-dir", str(out))  # fmt: skip
        assert result.exit_code == 0, result.output
        assert json.loads((out / "summary.json").read_text())["settings"]["precision"] == precision


def test_more_processes_than_gpus_is_one_clear_line(tmp_path, task_dir, bert_teacher_dir, monkeypatch):
    """`accelerate launch --num_processes 2` on a machine with one GPU: the second process is told why and what to
    do, not CUDA's 'invalid device ordinal' traceback."""
    import torch

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(torch.accelerator, "device_count", lambda: 1)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    result = run(*distill(bert_teacher_dir, task_dir), *QUICK, "--output-dir", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "process 2 of this machine has no GPU of its own (the machine has 1)" in result.output
    assert "ACCELERATE_USE_CPU=1" in result.output and "Traceback" not in result.output


def test_distill_help_is_in_sections_with_every_option_once():
    result = run("distill", "--help")
    assert result.exit_code == 0
    titles = ["Task and data:", "Teacher:", "Student:", "Method:", "Transfer set:", "Training:", "Run and output:"]
    positions = [result.output.index(f"\n{title}\n") for title in titles]
    assert positions == sorted(positions)
    for flag in ("--task", "--teacher", "-S", "--method", "--augment", "--epochs", "--output-dir", "--resume"):
        assert result.output.count(f"\n  {flag} ") == 1, flag
    assert "xkd distill --student cnn -S vectors=" in result.output  # an example with a CNN on word vectors


def test_other_libraries_chatter_is_silenced_unless_verbose():
    """What `xkd export` printed before: warnings raised inside torch's exporter and deprecations from copyreg,
    and torch.onnx's log lines about torchvision. Warnings of the user's own code still show."""
    import logging
    import warnings

    from xkd.log import quiet_libraries

    level = logging.getLogger("torch.onnx").level
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_libraries(verbose=True)
            warnings.warn_explicit("kept when verbose", UserWarning, "_onnx_program.py", 1, module="torch.onnx.x")
            quiet_libraries()
            for module in ("torch.onnx._internal.exporter._onnx_program", "copyreg", "transformers.modeling_utils"):
                warnings.warn_explicit("chatter", UserWarning, "x.py", 1, module=module)
                warnings.warn_explicit("chatter", FutureWarning, "x.py", 1, module=module)
            warnings.warn_explicit("the user's own", UserWarning, "mine.py", 1, module="mypkg.gru")
        assert [str(w.message) for w in caught] == ["kept when verbose", "the user's own"]
        assert logging.getLogger("torch.onnx").getEffectiveLevel() == logging.ERROR
    finally:
        logging.getLogger("torch.onnx").setLevel(level)


def test_verbose_is_a_global_option():
    result = run("--verbose", "tasks")
    assert result.exit_code == 0 and "mr" in result.output
