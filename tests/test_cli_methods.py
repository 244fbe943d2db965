"""Every registered method runs end to end through the CLI on tiny models, and logs its own terms."""

import json

import pytest
from tiny import QUICK, distill, run, save_tiny


@pytest.mark.parametrize(
    ("method", "terms"),
    [
        ("pkd", {"ce", "kd", "pkd"}),
        ("alp", {"ce", "kd", "alp"}),
        ("logit-mse", {"ce", "logit_mse"}),
        ("universal+alp", {"ce", "kd", "universal", "alp"}),
    ],
)
def test_method_end_to_end(tmp_path, task_dir, method, terms):
    teacher = save_tiny(tmp_path / "teacher", layers=4)
    out = tmp_path / "run"
    result = run(
        *distill(teacher, task_dir),
        "--method",
        method,
        "--max-steps",
        "3",
        "--output-dir",
        str(out),
        *QUICK,
    )
    assert result.exit_code == 0, result.output
    logged = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["train"]
    assert set(logged) == terms | {"loss"}


def test_inspect_says_why_a_method_does_not_apply(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    args = ["inspect", "--teacher", str(teacher), "--student", "cnn", "--student-layers", "3",
            "--data-dir", str(task_dir), "-S", "embedding_dim=8"]  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:3] == ["layers", "2", "3"] for line in lines if line.strip()), result.output
    pkd = next(line for line in lines if line.split()[:2] == ["no", "pkd"])
    assert "at most as many layers" in pkd
    assert any(line.split()[:2] == ["yes", "universal"] for line in lines if line.strip())
    machine = run(*args, "--json")
    methods = json.loads(machine.output)["methods"]
    assert methods["pkd"]["applies"] is False and "at most as many layers" in methods["pkd"]["why"]
    assert methods["alp"]["applies"] is True and methods["universal"]["applies"] is True


def test_takd_chain_on_tiny_models(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=4)
    out = tmp_path / "run"
    result = run(
        *distill(teacher, task_dir),
        "--method",
        "kd",
        "--assistant-layers",
        "3",
        "--assistant-layers",
        "2",
        "--student-layers",
        "1",
        "--output-dir",
        str(out),
        *QUICK,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    chain = summary["teacher"]["assistants"]
    assert [link["layers"] for link in chain] == [3, 2]
    assert summary["teacher"]["layers"] == 2 and summary["student"]["layers"] == 1  # the last TA taught it
    assert (out / "assistants" / "ta3" / "student" / "model.safetensors").is_file()
    ta2 = json.loads((out / "assistants" / "ta2" / "summary.json").read_text())
    assert ta2["teacher"]["source"] == str(out / "assistants" / "ta3" / "student")
    config = json.loads((out / "config.json").read_text())
    assert config["assistant_layers"] == [3, 2]
    # Total compute includes training every assistant of the chain.
    ta3 = json.loads((out / "assistants" / "ta3" / "summary.json").read_text())
    compute = summary["compute"]
    assert compute["assistant_flops"] == ta3["compute"]["total_flops"] + ta2["compute"]["total_flops"] > 0
    # Each link read a cache of its teacher: charged one teacher pass over train, validation and test (64+32+32).
    for link in (ta3, ta2):
        assert link["compute"]["teacher_online_examples"] == 0
        assert link["compute"]["teacher_forward_examples"] == link["compute"]["teacher_cached_examples"] == 128
    assert (
        compute["total_flops"]
        == compute["student_train_flops"] + compute["teacher_forward_flops"] + (compute["assistant_flops"])
    )
