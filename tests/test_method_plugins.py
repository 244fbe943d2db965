"""Methods from outside xkd: by import path and through the `xkd.methods` entry-point group, end to end."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import pytest
from tiny import QUICK, distill, metrics_lines, run

import xkd.methods.base as base
from xkd.errors import XKDError
from xkd.methods import METHODS, get_method


def _metrics(directory):
    return metrics_lines(directory)


@pytest.mark.parametrize("student", ["bert-k", "cnn"])
def test_outside_method_by_import_path_distils_through_the_cli(tmp_path, task_dir, bert_teacher_dir, student):
    out = tmp_path / student
    args = [*distill(bert_teacher_dir, task_dir), "--student", student, "--student-layers", "2"]
    result = run(*args, "--method", "plugin_cosine:last-cosine", "-O", "beta=2", *QUICK, "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == {"name": "last-cosine", "terms": {"ce": 0.5, "kd": 0.5, "cosine": 2.0}}
    cosine = [line["train"]["cosine"] for line in _metrics(out)]
    assert len(cosine) == 2 and all(0 < value <= 2 for value in cosine)  # 1 - cos lies in [0, 2]
    # once imported, the method is registered by name, with its options checked like a built-in's
    bad = run(*args, "--method", "last-cosine", "-O", "beta=-1", *QUICK, "--output-dir", str(tmp_path / "bad"))
    assert bad.exit_code == 2 and "beta is a loss weight" in bad.output and bad.output.count("\n") == 1
    listing = run("methods").output
    assert "last-cosine: KD + β·(1 - cos)" in listing and "terms: ce x 0.5, kd x 0.5, cosine x 1" in listing


def test_outside_method_from_an_entry_point(tmp_path, task_dir, bert_teacher_dir, monkeypatch):
    entry = EntryPoint(name="cosine-only", value="plugin_cosine:COSINE_ONLY", group="xkd.methods")
    monkeypatch.setattr(base, "entry_points", lambda group: [entry] if group == "xkd.methods" else [])
    assert "cosine-only" not in METHODS
    out = tmp_path / "run"
    try:
        result = run(*distill(bert_teacher_dir, task_dir), "--method", "cosine-only", *QUICK, "--output-dir", str(out))
        assert "cosine-only" in METHODS  # registered from the entry point on first use
    finally:
        METHODS._items.pop("cosine-only", None)  # later tests see only what they register
    assert result.exit_code == 0, result.output
    assert set(_metrics(out)[0]["train"]) == {"loss", "ce", "cosine"}


def test_plugin_errors_are_one_line():
    with pytest.raises(XKDError, match="cannot import module 'nowhere'"):
        get_method("nowhere:thing")
    with pytest.raises(XKDError, match="registers no method 'missing'"):
        get_method("plugin_cosine:missing")
    with pytest.raises(XKDError, match="unknown method 'cosine-onlyy'"):
        get_method("cosine-onlyy")


def test_a_plugin_beside_the_working_directory_imports_as_under_python_m(tmp_path, monkeypatch):
    """`xkd distill --method mypkg.cosine:last-cosine` run from the directory holding mypkg/ (the README's
    example): the console script's path holds only its bin directory, so xkd adds the working directory, last."""
    import shutil
    import sys
    from pathlib import Path

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "herepkg").mkdir()
    source = Path(__file__).with_name("plugin_cosine.py").read_text().replace('"last-cosine"', '"here-cosine"')
    (tmp_path / "herepkg" / "cosine.py").write_text(source)
    assert get_method("herepkg.cosine:here-cosine").name == "here-cosine"
    assert sys.path[-1] == str(tmp_path)
    shutil.rmtree(tmp_path / "herepkg")
    with pytest.raises(XKDError, match="run from the directory that holds it or put that directory on PYTHONPATH"):
        get_method("elsewherepkg.cosine:here-cosine")
