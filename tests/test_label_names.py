"""A teacher's (or a scored model's) label names against the task's, and a training split of one class.

Outputs are matched to labels by position, so a teacher whose id2label is the task's in another order, or other
names, would train a student (and be scored) silently wrong: refused in one line naming both lists and the fix.
Hugging Face's default names (LABEL_0, ...) say nothing about the order: accepted, with a line saying it is
assumed to be the task's.
"""

import json
from pathlib import Path

import pandas as pd
import pytest
from tiny import QUICK, distill, run, save_tiny, write_task_dir

from xkd.errors import XKDError
from xkd.pseudo_heads import PseudoHeads
from xkd.tasks import check_label_names, custom_task, get_task
from xkd.teachers import load_teacher

FAST = [*QUICK, "--epochs", "1", "--max-steps", "2"]


def named_teacher(directory: Path, names: list[str]) -> Path:
    """A tiny BERT classifier whose config.json names its outputs `names` (in output order)."""
    save_tiny(directory)
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config["id2label"] = {str(i): name for i, name in enumerate(names)}
    config["label2id"] = {name: i for i, name in enumerate(names)}
    path.write_text(json.dumps(config, indent=2))
    return directory


def string_label_task(directory: Path, names: tuple[str, str] = ("bad", "good"), sizes=(64, 32, 32)) -> Path:
    """The tiny polarity data with its 0/1 labels written as names (a custom task then infers them, sorted)."""
    write_task_dir(directory, sizes=sizes)
    for path in directory.glob("*.tsv"):
        df = pd.read_csv(path, sep="\t")
        df["label"] = df["label"].map(dict(enumerate(names)))
        df.to_csv(path, sep="\t", index=False)
    return directory


def custom(name: str, data: Path) -> list[str]:
    return ["--task", name, "--data-dir", str(data), "--text-column", "sentence"]


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output, result.output
    return result.output


def test_swapped_teacher_is_refused_naming_both_orders(tmp_path, task_dir):
    teacher = named_teacher(tmp_path / "swapped", ["positive", "negative"])
    result = run(*distill(teacher, task_dir), "--output-dir", str(tmp_path / "run"), *FAST)
    message = one_line_error(result)
    assert "(positive, negative)" in message and "(negative, positive)" in message
    assert "another order" in message and "id2label" in message and "--finetune-teacher always" in message
    assert not (tmp_path / "run").exists()  # refused before a run directory exists


def test_teacher_with_other_names_is_refused(tmp_path):
    data = string_label_task(tmp_path / "data")
    teacher = named_teacher(tmp_path / "sentiment", ["negative", "positive"])
    result = run("distill", "--teacher", str(teacher), *custom("reviews", data), *FAST)
    message = one_line_error(result)
    assert "(negative, positive)" in message and "task 'reviews' has (bad, good)" in message
    assert "other names" in message


def test_matching_names_pass_whatever_their_case(tmp_path):
    data = string_label_task(tmp_path / "data")
    teacher = named_teacher(tmp_path / "teacher", ["Bad", "GOOD"])
    result = run(
        "distill", "--teacher", str(teacher), *custom("reviews", data), "--output-dir", str(tmp_path / "r"), *FAST
    )
    assert result.exit_code == 0, result.output
    assert "label names" not in result.output  # nothing assumed: the names were compared


def test_default_names_are_assumed_in_the_task_order(tmp_path, task_dir, bert_teacher_dir):
    result = run(*distill(bert_teacher_dir, task_dir), "--output-dir", str(tmp_path / "run"), *FAST)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("label names:")]
    assert len(notes) == 1, result.output
    assert "(LABEL_0, LABEL_1)" in notes[0] and "(negative, positive)" in notes[0]
    assert "the order is assumed to be the task's" in notes[0]


def test_numeric_task_and_default_names_say_nothing(tmp_path, bert_teacher_dir):
    data = write_task_dir(tmp_path / "data", sizes=(32, 16, 16))
    args = [
        "distill",
        "--teacher",
        str(bert_teacher_dir),
        *custom("numbers", data),
        "--output-dir",
        str(tmp_path / "r"),
    ]
    result = run(*args, *FAST)
    assert result.exit_code == 0, result.output
    assert "label names" not in result.output  # neither side names its labels: nothing to compare or assume


def test_swapped_teacher_fine_tuned_on_the_task_runs(tmp_path, task_dir):
    teacher = named_teacher(tmp_path / "swapped", ["positive", "negative"])
    args = [*distill(teacher, task_dir), "--finetune-teacher", "always", "--teacher-epochs", "1"]
    result = run(*args, "--output-dir", str(tmp_path / "run"), *FAST)
    assert result.exit_code == 0, result.output  # the fix the message gives works: the fine-tune takes mr's names
    finetuned = json.loads((tmp_path / "run" / "summary.json").read_text())["teacher"]["finetuned_dir"]
    assert json.loads((Path(finetuned) / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}


def test_ensemble_member_with_swapped_names_is_refused(tmp_path, task_dir, bert_teacher_dir):
    swapped = named_teacher(tmp_path / "swapped", ["positive", "negative"])
    args = ["distill", "--teacher", str(bert_teacher_dir), "--teacher", str(swapped), "--data-dir", str(task_dir)]
    message = one_line_error(run(*args, *FAST))
    assert f"teacher '{swapped}'" in message and "another order" in message


def test_cache_build_refuses_a_swapped_teacher(tmp_path, task_dir):
    teacher = named_teacher(tmp_path / "swapped", ["positive", "negative"])
    args = ["cache", "build", "--teacher", str(teacher), "--data-dir", str(task_dir), "--method", "kd"]
    message = one_line_error(run(*args, "--max-length", "16", "--no-progress"))
    assert "(positive, negative)" in message


def test_eval_refuses_a_model_with_other_labels(tmp_path, task_dir):
    teacher = named_teacher(tmp_path / "swapped", ["positive", "negative"])
    result = run("eval", "--model", str(teacher), "--task", "mr", "--data-dir", str(task_dir))
    message = one_line_error(result)
    assert "(positive, negative)" in message and "(negative, positive)" in message


def test_teacher_heads_refuse_a_swapped_teacher(tmp_path, task_dir):
    teacher = named_teacher(tmp_path / "swapped", ["positive", "negative"])
    args = ["teacher", "heads", "--teacher", str(teacher), "--task", "mr", "--data-dir", str(task_dir)]
    message = one_line_error(run(*args, "--epochs", "1", "--max-length", "16", "--no-progress"))
    assert "another order" in message
    assert not PseudoHeads.exists(teacher)


def test_heads_trained_on_other_labels_are_refused(tmp_path):
    teacher = save_tiny(tmp_path / "teacher")  # LABEL_0, LABEL_1: fits either task
    PseudoHeads(4, 32, 2).save(teacher, task="mr", labels=["negative", "positive"])
    load_teacher(str(teacher), get_task("mr"))  # the task its heads were trained on
    reviews = custom_task("reviews", ("sentence",), label_names=("bad", "good"), num_labels=2)
    with pytest.raises(XKDError, match=r"pseudo-classifier set .* \(negative, positive\) .* \(bad, good\).*retrain"):
        load_teacher(str(teacher), reviews)


def test_check_label_names_rules():
    mr, sst2 = get_task("mr"), get_task("sst2")  # named (negative, positive); numbers only (0, 1)
    notes = []
    check_label_names("teacher 't'", ["NEGATIVE", " positive "], mr, log=notes.append)
    check_label_names("teacher 't'", ["LABEL_0", "LABEL_1"], sst2, log=notes.append)
    check_label_names("teacher 't'", ["0", "1"], mr, log=notes.append)
    check_label_names("teacher 't'", ["negative", "positive"], sst2, log=notes.append)
    check_label_names("teacher 't'", ["a", "b", "c"], mr, log=notes.append)  # the output count check says it
    assert len(notes) == 2
    assert "(0, 1)" in notes[0] and "(negative, positive)" in notes[0] and "Hugging Face" in notes[0]
    assert "names no labels (0, 1)" in notes[1]
    with pytest.raises(XKDError, match="another order"):
        check_label_names("teacher 't'", ["positive", "negative"], mr)


def test_one_class_training_split_is_its_own_error(tmp_path, bert_teacher_dir):
    # The label column holds one value everywhere (a constant column, a filtered export): not a regression task.
    data = tmp_path / "data"
    data.mkdir()
    for label, shown in (("good", "good"), ("0", "0")):  # names, then numbers: the same error
        for split in ("train", "validation", "test"):
            rows = "".join(f"{text}\t{label}\n" for text in ("good film", "fine plot", "a lovely cast") * 8)
            (data / f"{split}.tsv").write_text("sentence\tlabel\n" + rows)
        result = run("distill", "--teacher", str(bert_teacher_dir), *custom("reviews", data), *FAST)
        message = one_line_error(result)
        assert f"the training split of task 'reviews' ({data} [train]) holds one class ({shown})" in message
        assert "needs at least two" in message and "label column 'label'" in message
        assert "output(s)" not in message


def test_one_class_training_split_of_a_named_task(tmp_path, task_dir, bert_teacher_dir):
    rows = "".join(f"{text}\t1\n" for text in ("good film", "fine plot", "a lovely cast", "smart story") * 8)
    (task_dir / "train.tsv").write_text("sentence\tlabel\n" + rows)
    message = one_line_error(run(*distill(bert_teacher_dir, task_dir), "--output-dir", str(tmp_path / "r"), *FAST))
    assert "the training split of task 'mr'" in message and "holds one class (positive)" in message
    assert not (tmp_path / "r").exists()
    # Scoring reads no training rows: a one-class training split does not stop `xkd eval`.
    scored = run("eval", "--model", str(bert_teacher_dir), "--task", "mr", "--data-dir", str(task_dir))
    assert scored.exit_code == 0, scored.output
