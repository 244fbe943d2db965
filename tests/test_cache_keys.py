"""Cache keys name what the data and models are, never how a path is spelled or where the command runs; and a run
on a subset (`--max-examples`, `--max-train-examples`) says so in its summary and model card."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from tiny import QUICK, run, save_tiny, write_task_dir

from xkd.data import data_fingerprint, full_rows, load_splits
from xkd.tasks import get_task

MR = get_task("mr")
FINETUNE = ["--finetune-teacher", "always", "--teacher-epochs", "1", "--max-steps", "2", "--method", "kd", *QUICK]


def flip_labels(directory):
    for split in ("train", "validation", "test"):
        path = directory / f"{split}.tsv"
        frame = pd.read_csv(path, sep="\t")
        frame["label"] = 1 - frame["label"]
        frame.to_csv(path, sep="\t", index=False)


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


def test_the_data_fingerprint_is_the_rows_not_the_path_or_the_file_format(tmp_path, task_dir, monkeypatch):
    _, raw = load_splits(MR, task_dir)
    fingerprint = data_fingerprint(MR, raw)
    monkeypatch.chdir(task_dir.parent)
    for spelling in ("data", "./data/../data/", str(task_dir)):
        assert data_fingerprint(MR, load_splits(MR, spelling)[1]) == fingerprint, spelling
    (tmp_path / "link").symlink_to(task_dir)
    assert data_fingerprint(MR, load_splits(MR, tmp_path / "link")[1]) == fingerprint
    as_parquet = write_task_dir(tmp_path / "parquet", suffix=".parquet")  # the same rows in another format
    assert data_fingerprint(MR, load_splits(MR, as_parquet)[1]) == fingerprint
    assert data_fingerprint(MR, {n: s.select(range(len(s))) for n, s in raw.items()}) == fingerprint  # a selection

    flipped = write_task_dir(tmp_path / "flipped")
    flip_labels(flipped)
    assert data_fingerprint(MR, load_splits(MR, flipped)[1]) != fingerprint
    assert data_fingerprint(MR, load_splits(MR, task_dir, max_examples=20)[1]) != fingerprint
    assert data_fingerprint(MR, {**raw, "test": raw["test"].select(range(31))}) != fingerprint  # one row fewer


def test_the_same_relative_data_dir_in_two_folders_fine_tunes_two_teachers(tmp_path, monkeypatch):
    """The issue's A/B case: `XKD_DATA_DIR=data` in folder A, then in folder B whose labels are flipped. B must
    fine-tune its own teacher, not reuse A's (which would score 0% on B's test split)."""
    base = save_tiny(tmp_path / "base", bare=True)
    a, b = tmp_path / "A", tmp_path / "B"
    write_task_dir(a / "data" / "mr")
    flip_labels(write_task_dir(b / "data" / "mr"))
    monkeypatch.setenv("XKD_DATA_DIR", "data")
    args = ["distill", "--teacher", str(base), "--task", "mr", *FINETUNE]
    monkeypatch.chdir(a)
    first = run(*args, "--output-dir", str(tmp_path / "run-a"))
    monkeypatch.chdir(b)
    second = run(*args, "--output-dir", str(tmp_path / "run-b"))
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "cached fine-tune" not in second.output and "teacher: fine-tuned at" in second.output, second.output
    ta, tb = summary_of(tmp_path / "run-a")["teacher"], summary_of(tmp_path / "run-b")["teacher"]
    assert ta["finetune_cached"] is False and tb["finetune_cached"] is False
    assert ta["finetuned_dir"] != tb["finetuned_dir"] and ta["cache"] != tb["cache"]
    assert "one teacher pass" in second.output  # B's teacher outputs too: its own cache


def test_one_data_set_and_teacher_by_two_spellings_hit_one_fine_tune_and_one_teacher_cache(tmp_path, task_dir):
    """Absolute paths first; then the data by `./x/../data` from the working directory and the teacher through a
    symlink: the same fine-tuned teacher and teacher cache, reused."""
    base = save_tiny(tmp_path / "base", bare=True)
    (tmp_path / "x").mkdir()
    (tmp_path / "base-link").symlink_to(base)
    assert os.getcwd() == str(tmp_path)  # (the conftest's working directory)
    first = run("distill", "--teacher", str(base), "--data-dir", str(task_dir), *FINETUNE, "--output-dir", "r1")
    second = run("distill", "--teacher", "base-link", "--data-dir", "./x/../data", *FINETUNE, "--output-dir", "r2")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "teacher: cached fine-tune at" in second.output and "fine-tuning teacher" not in second.output
    assert "teacher cache: reusing" in second.output and "one teacher pass" not in second.output, second.output
    t1, t2 = summary_of(tmp_path / "r1")["teacher"], summary_of(tmp_path / "r2")["teacher"]
    assert t2["finetune_cached"] is True and t1["finetuned_dir"] == t2["finetuned_dir"] and t1["cache"] == t2["cache"]
    assert t1["data_fingerprint"] == t2["data_fingerprint"] and "data" not in t1["data_fingerprint"]


def test_a_teacher_used_as_it_is_finds_its_teacher_cache_through_any_spelling(tmp_path, task_dir):
    """The teacher-output cache of a teacher given as a directory: one cache for its absolute path, a relative
    detour and a symlink (the cache's name came from the spelling before)."""
    teacher = save_tiny(tmp_path / "teacher")
    (tmp_path / "teacher-link").symlink_to(teacher)
    args = ["--data-dir", str(task_dir), "--finetune-teacher", "never", "--max-steps", "2", "--method", "kd", *QUICK]
    outputs = []
    for k, spelling in enumerate((str(teacher), "./x/../teacher", "teacher-link")):
        (tmp_path / "x").mkdir(exist_ok=True)
        result = run("distill", "--teacher", spelling, *args, "--output-dir", f"r{k}")
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert "one teacher pass" in outputs[0]
    assert all("teacher cache: reusing" in out and "one teacher pass" not in out for out in outputs[1:]), outputs
    assert len({summary_of(tmp_path / f"r{k}")["teacher"]["cache"] for k in range(3)}) == 1


def test_read_only_teachers_find_their_heads_and_masked_lms_their_augmented_sets_by_any_spelling(tmp_path, monkeypatch):
    from xkd.teachers import heads_store
    from xkd.transfer.augment import augment_path, resolve_recipe

    teacher = save_tiny(tmp_path / "teacher")
    (tmp_path / "link").symlink_to(teacher)
    monkeypatch.setattr(heads_store.os, "access", lambda path, mode: False)  # a read-only teacher directory
    spellings = (str(teacher), "teacher", "./x/../teacher", "link")
    (tmp_path / "x").mkdir()
    assert len({heads_store.heads_dir(s) for s in spellings}) == 1
    assert heads_store.heads_dir("org/model").name.startswith("org--model--")  # a hub id: as it is

    train = pd.DataFrame({"sentence": ["a good film", "a bad film"]})
    paths = {augment_path(MR, train, "tinybert", resolve_recipe("tinybert", {"mlm": s})[1], 2) for s in spellings}
    assert len(paths) == 1


def test_max_examples_marks_the_summary_and_the_model_card_as_a_subset(tmp_path, task_dir, bert_teacher_dir):
    base = ["distill", "--teacher", str(bert_teacher_dir), "--data-dir", str(task_dir), "--method", "kd", *QUICK]
    result = run(*base, "--max-examples", "20", "--output-dir", "sub")
    assert result.exit_code == 0, result.output
    subset = summary_of(tmp_path / "sub")["subset"]
    assert subset == {
        "max_examples": 20,
        "max_train_examples": None,
        "rows": {"train": 20, "validation": 20, "test": 20},
        "full_rows": {"train": 64, "validation": 32, "test": 32},
    }
    card = (tmp_path / "sub" / "student" / "README.md").read_text()
    assert "These metrics are on a subset of at most 20 random examples per split (`--max-examples 20`" in card
    assert "train 20 of 64, validation 20 of 32, test 20 of 32 rows" in card

    whole = run(*base, "--output-dir", "whole")
    assert whole.exit_code == 0, whole.output
    assert "subset" not in summary_of(tmp_path / "whole")
    assert "subset" not in (tmp_path / "whole" / "student" / "README.md").read_text()


def test_max_train_examples_cuts_the_training_split_alone(tmp_path, task_dir, bert_teacher_dir):
    task, raw = load_splits(MR, task_dir, max_train_examples=20)
    assert {n: len(s) for n, s in raw.items()} == {"train": 20, "validation": 32, "test": 32}
    assert full_rows(raw["train"], "train") == 64 and full_rows(raw["test"], "test") == 32
    both = load_splits(MR, task_dir, max_examples=30, max_train_examples=20)[1]
    assert {n: len(s) for n, s in both.items()} == {"train": 20, "validation": 30, "test": 30}
    # The cut is the one --max-examples makes of the training split (the same random rows).
    assert raw["train"]["sentence"] == load_splits(MR, task_dir, max_examples=20)[1]["train"]["sentence"]

    args = ["distill", "--teacher", str(bert_teacher_dir), "--data-dir", str(task_dir), "--method", "kd", *QUICK]
    result = run(*args, "--max-train-examples", "20", "--output-dir", "r")
    assert result.exit_code == 0, result.output
    summary = summary_of(tmp_path / "r")
    assert summary["data"]["train"] == 20 and summary["subset"]["rows"] == {"train": 20, "validation": 32, "test": 32}
    card = (tmp_path / "r" / "student" / "README.md").read_text()
    assert "trained on a subset (train 20 of 64 training rows, `--max-train-examples 20`)" in card
    assert "the metrics are on the full validation and test splits" in card
    bad = run(*args, "--max-train-examples", "0", "--output-dir", "bad")
    assert bad.exit_code != 0 and "max-train-examples must be at least 1" in bad.output


@pytest.mark.parametrize("option", ["--max-examples", "--max-train-examples"])
def test_the_subset_options_say_what_they_cut_in_their_help(option):
    from xkd.cli.main import cli

    (param,) = [p for p in cli.commands["distill"].params if option in p.opts]
    if option == "--max-examples":
        assert "validation and test included" in param.help
    else:
        assert "validation and test stay whole" in param.help
