"""`xkd.distill` and `xkd.study` from Python: the CLI's options, defaults, validation and results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tiny import QUICK, distill, run

import xkd
from xkd.errors import XKDError

README = Path(__file__).resolve().parents[1] / "README.md"
TIMES = re.compile(r"seconds|per_second|latency|^dir$|^path$|^cache$|^finetuned_dir$|^heads$|^time")


def comparable(value):
    """A summary without what differs between two identical runs: times, paths and the run directory."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if not TIMES.search(k)}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def test_distill_from_python_equals_the_cli(tmp_path, task_dir, bert_teacher_dir):
    args = [*distill(bert_teacher_dir, task_dir), "--student", "cnn", "--method", "kd", "-O", "temperature=4"]
    assert run(*args, *QUICK, "--output-dir", str(tmp_path / "cli")).exit_code == 0
    result = xkd.distill(
        teacher=str(bert_teacher_dir),
        data_dir=str(task_dir),
        student="cnn",
        augment="none",  # as distill()'s BEFORE_DEFAULTS
        method="kd",
        method_options={"temperature": 4},
        epochs=2,
        batch_size=16,
        max_length=16,
        progress=False,
        latency=False,
        output_dir=str(tmp_path / "py"),
        log=None,
    )
    cli_summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert comparable(result.summary) == comparable(cli_summary)
    py_config = json.loads((tmp_path / "py" / "config.json").read_text())
    cli_config = json.loads((tmp_path / "cli" / "config.json").read_text())
    # The command line gives -O values as text, Python as numbers; the method resolves both to 4.0.
    assert py_config.pop("method_options") == {"temperature": 4} and cli_config.pop("method_options") == {
        "temperature": "4"
    }
    assert py_config == {**cli_config, "output_dir": str(tmp_path / "py")}
    assert result.run_dir == tmp_path / "py" and result.test == cli_summary["test"]
    assert result.student.num_layers == 2
    assert result.predictor()(["the film was good"])[0]["label"] in ("negative", "positive")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"studnet": "cnn"}, "unknown option 'studnet' (did you mean 'student'?)"),
        ({"epochs": "3"}, "config key 'epochs' should be int, got '3'; fix its value in distill()"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"method_options": ["gamma"]}, "is not KEY=VALUE"),
        ({"method": "kd", "method_options": {"gamma": 2}}, "gamma"),
        ({"student": "nope"}, "unknown student 'nope'"),
    ],
)
def test_distill_from_python_rejects_what_the_cli_rejects(tmp_path, task_dir, bert_teacher_dir, options, message):
    with pytest.raises(XKDError, match=re.escape(message)):
        xkd.distill(teacher=str(bert_teacher_dir), data_dir=str(task_dir), log=None, **options)
    assert not (tmp_path / "runs").exists()  # nothing claimed a run directory


def test_resume_from_python_refuses_other_options(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(XKDError, match="drop --epochs"):
        xkd.distill(resume=tmp_path / "run", epochs=3, log=None)


def test_study_from_python(tmp_path, task_dir, bert_teacher_dir):
    recipe = tmp_path / "s.toml"
    recipe.write_text(
        f'name = "py"\nseeds = [1, 2]\n[base]\nteacher = "{bert_teacher_dir}"\ndata_dir = "{task_dir}"\n'
        'student = "cnn"\nepochs = 1\nbatch_size = 16\nmax_length = 16\nlatency = false\n'
        '[methods.none]\nmethod = "none"\n[methods.kd]\nmethod = "kd"\n'
    )
    result = xkd.study(recipe, output_dir=tmp_path / "study", only={"method": "kd"}, report=False, log=None)
    assert result.outcome["failed"] == {}
    finished = [r for r in result.runs if r["status"] == "finished"]
    assert all(r["test accuracy"] > 0 for r in finished)
    assert sorted((r["method"], r["seed"]) for r in finished) == [("kd", 1), ("kd", 2)]
    with pytest.raises(XKDError, match="student"):
        xkd.study(recipe, output_dir=tmp_path / "study", only={"student": "bilstm"}, log=None)
