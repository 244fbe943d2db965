"""Outside soft labels (`--teacher-outputs`): the file's forms and formats read as the teacher's own logits would
be, runs through the CLI, rows without outputs, and the one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import QUICK, metrics_lines, run, write_frame

from xkd.config import DistillConfig
from xkd.data import load_splits
from xkd.errors import XKDError
from xkd.methods.losses import kd_loss
from xkd.tasks import get_task
from xkd.teachers.outside import FLOOR, match_outputs

MR = get_task("mr")
HELD_OUT = ["validation", "test"]


@pytest.fixture
def teacher_logits(tmp_path, task_dir, bert_teacher_dir):
    """The tiny teacher's own logits on every split, from its teacher cache: the golden outputs."""
    from test_teacher_cache import cache_inputs

    from xkd.teacher_cache import open_or_build

    teacher, collator, splits, _, raw = cache_inputs(task_dir, bert_teacher_dir)
    cache = open_or_build(teacher, splits, collator, tmp_path / "golden", {}, 16, lambda m: None, progress=False)
    return raw, {name: np.asarray(cache.logits(name)) for name in raw}


def outputs_file(path, raw, logits, form="logits", splits=("train", "validation"), drop=0):
    """A file of `form` outputs for the given splits' texts (the first `drop` training rows left out)."""
    rows = []
    for name in splits:
        for i, (text, z) in enumerate(zip(raw[name]["sentence"], logits[name], strict=True)):
            if name == "train" and i < drop:
                continue
            value = {
                "logits": z,
                "probabilities": torch.tensor(z).softmax(-1).numpy(),
                "log_probabilities": torch.tensor(z).log_softmax(-1).numpy(),
            }.get(form)
            value = int(np.argmax(z)) if form == "label" else [float(x) for x in value]
            rows.append({"sentence": text, form: json.dumps(value) if path.suffix == ".tsv" else value})
    write_frame(pd.DataFrame(rows), path)
    return path


def matched(path, task_dir, **values):
    task, raw = load_splits(MR, task_dir)
    cfg = DistillConfig(teacher_outputs=str(path), **values)
    return match_outputs(cfg, task, raw, HELD_OUT, lambda m: None)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".tsv"])
@pytest.mark.parametrize("form", ["logits", "probabilities", "log_probabilities"])
def test_saved_outputs_give_the_teachers_own_kd_loss(tmp_path, task_dir, teacher_logits, suffix, form):
    raw, golden = teacher_logits
    path = outputs_file(tmp_path / f"out{suffix}", raw, golden, form)
    _, outside = matched(path, task_dir)
    assert outside.has("train") and outside.has("validation") and not outside.has("test")
    rows = torch.tensor([5, 0, 33, 7, 63])
    student = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    served = outside.trace("train", rows).logits
    expected = kd_loss(student, torch.from_numpy(golden["train"][rows.numpy()]), 2.0)
    torch.testing.assert_close(kd_loss(student, served, 2.0), expected, rtol=1e-5, atol=1e-6)
    if form == "logits":
        torch.testing.assert_close(served, torch.from_numpy(golden["train"][rows.numpy()]))


def test_a_hard_label_is_a_one_hot_distribution(tmp_path, task_dir, teacher_logits):
    raw, golden = teacher_logits
    _, outside = matched(outputs_file(tmp_path / "labels.jsonl", raw, golden, "label"), task_dir)
    probabilities = torch.from_numpy(outside.logits("train")).softmax(-1)
    picked = torch.from_numpy(golden["train"].argmax(-1))
    assert torch.equal(probabilities.argmax(-1), picked)
    assert probabilities.max(-1).values.min() > 1 - 2 * FLOOR


def test_label_names_and_mixed_forms_in_one_file(tmp_path, task_dir):
    task, raw = load_splits(MR, task_dir)
    texts = raw["train"]["sentence"]
    rows = [{"sentence": t, "label": "positive"} for t in texts[:40]]
    rows += [{"sentence": t, "probabilities": [0.25, 0.75]} for t in texts[40:]]
    write_frame(pd.DataFrame(rows), tmp_path / "mixed.jsonl")
    _, outside = matched(tmp_path / "mixed.jsonl", task_dir)
    distributions = torch.from_numpy(outside.logits("train")).softmax(-1)
    torch.testing.assert_close(distributions[0], torch.tensor([FLOOR, 1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(distributions[-1], torch.tensor([0.25, 0.75]))
    assert outside.report["forms"] == ["probabilities", "label"] and outside.report["keyed_by"] == "text"


def test_rows_keyed_by_id(tmp_path, task_dir):
    task, raw = load_splits(MR, task_dir)
    ids = list(range(len(raw["train"])))[::-1]  # any order
    write_frame(pd.DataFrame({"id": ids, "logits": [[float(i), 0.0] for i in ids]}), tmp_path / "ids.parquet")
    _, outside = matched(tmp_path / "ids.parquet", task_dir)
    assert outside.logits("train")[7].tolist() == [7.0, 0.0] and not outside.has("validation")


# ------------------------------------------------------------------------------------------------- end to end


CNN = ["--student", "cnn", "--student-layers", "1", "-S", "dropout=0", "--no-length-buckets", "--method", "kd"]
RANDOM = ["-S", "vectors="]  # the same random-init student whether or not a teacher model is there to distil from
GOLD = ["--augment", "none"]  # saved outputs label no new rows: the teacher's run gets no transfer set either


def test_a_run_on_saved_outputs_trains_as_on_the_teacher_itself(tmp_path, task_dir, bert_teacher_dir, teacher_logits):
    raw, golden = teacher_logits
    path = outputs_file(tmp_path / "out.jsonl", raw, golden, splits=("train", "validation", "test"))
    base = ["distill", "--data-dir", str(task_dir), *CNN, *RANDOM, *GOLD, *QUICK]
    own = run(*base, "--teacher", str(bert_teacher_dir), "--output-dir", str(tmp_path / "teacher"))
    saved = run(*base, "--teacher-outputs", str(path), "--output-dir", str(tmp_path / "saved"))
    assert own.exit_code == 0 and saved.exit_code == 0, own.output + saved.output
    lines = [metrics_lines(tmp_path / d) for d in
             ("teacher", "saved")]  # fmt: skip
    for a, b in zip(*lines, strict=True):
        assert b["train"]["kd"] == pytest.approx(a["train"]["kd"], rel=1e-4)
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("teacher", "saved")]
    for split in ("validation", "test"):  # the outputs' metrics are the teacher's
        assert summaries[1]["teacher"]["metrics"][split] == pytest.approx(summaries[0]["teacher"]["metrics"][split])
    assert summaries[1]["teacher"]["outputs"]["splits"] == ["test", "train", "validation"]
    assert summaries[1]["teacher"]["layers"] is None and summaries[1]["compute"]["teacher_forward_flops"] == 0
    reported = run("report", str(tmp_path / "saved"))  # a run without a teacher model reports like any other
    assert reported.exit_code == 0, reported.output
    assert "| parameters | n/a |" in (tmp_path / "saved" / "report.md").read_text()


def test_saved_outputs_leave_the_default_vectors_to_random_init_and_say_so(tmp_path, task_dir, teacher_logits):
    """The CNN's vectors and vocabulary default to the teacher's; saved outputs have no model to distil them from and
    no tokenizer, so the defaults (not an explicit -S vectors=teacher or vocab=teacher, refused in
    test_teacher_vectors and below) fall back to random init over a word vocabulary, each in a line."""
    raw, golden = teacher_logits
    path = outputs_file(tmp_path / "out.jsonl", raw, golden, splits=("train", "validation", "test"))
    result = run("distill", "--data-dir", str(task_dir), *CNN, *QUICK, "--teacher-outputs", str(path),
                 "--output-dir", str(tmp_path / "r"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "word vectors: random init (the run's teacher is saved outputs" in result.output
    assert "vocabulary: words of the training split (the run's teacher is saved outputs" in result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["student"]["vector_coverage"] is None  # no vectors loaded (distilled ones record 1.0)
    assert summary["student"]["vocab"] == "word"
    explicit = run("distill", "--data-dir", str(task_dir), *CNN, *QUICK, "--teacher-outputs", str(path),
                   "-S", "vocab=teacher", "-S", "vectors=", "--output-dir", str(tmp_path / "e"))  # fmt: skip
    assert explicit.exit_code == 2
    assert "with vocab=teacher reads a teacher model's tokenizer and --teacher-outputs has none" in explicit.output
    assert not (tmp_path / "e").exists()  # refused before the run directory


def test_missing_rows_are_dropped_and_counted_transfer_rows_too(tmp_path, task_dir, teacher_logits):
    raw, golden = teacher_logits
    path = outputs_file(tmp_path / "out.jsonl", raw, golden, drop=5)
    transfer = tmp_path / "extra.txt"
    transfer.write_text("a new text\nanother new text\n")
    extra = pd.read_json(path, lines=True)
    extra = pd.concat([extra, pd.DataFrame({"sentence": ["a new text"], "logits": [[0.5, -0.5]]})])
    write_frame(extra, path)
    args = ["distill", "--data-dir", str(task_dir), *CNN, *QUICK, "--teacher-outputs", str(path)]
    result = run(*args, "--transfer", str(transfer), "--missing-outputs", "drop", "--output-dir", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "dropped 5 training row(s) and 1 transfer row(s)" in result.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["data"]["train"] == 59 and summary["data"]["transfer"] == 1
    assert summary["teacher"]["outputs"]["dropped_train"] == 5 and "n/a" in result.stdout  # no test outputs


# --------------------------------------------------------------------------------------------------- errors


def _bad_files(d, raw, golden):
    outputs_file(d / "missing.jsonl", raw, golden, drop=3)
    write_frame(pd.DataFrame({"sentence": raw["train"]["sentence"], "logits": [[0.1, 0.2, 0.3]] * 64}), d / "c.jsonl")
    write_frame(pd.DataFrame({"sentence": raw["train"]["sentence"], "probabilities": [[0.5, 0.6]] * 64}), d / "p.jsonl")
    (d / "empty.jsonl").write_text("")
    (d / "broken.parquet").write_bytes(b"not a parquet file")
    return d


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--teacher-outputs", "{d}/missing.jsonl"], "3 of 64 training rows have no outputs in {d}/missing.jsonl"),
        (["--teacher-outputs", "{d}/c.jsonl"], "{d}/c.jsonl row 1: 'logits' has 3 value(s) but task 'mr' needs 2"),
        (["--teacher-outputs", "{d}/p.jsonl"], "{d}/p.jsonl row 1: 'probabilities' describe probabilities summing"),
        (
            ["--teacher-outputs", "{d}/missing.jsonl", "--method", "universal"],
            "universal needs the teacher's per-layer pseudo classifiers; --teacher-outputs holds only final outputs",
        ),
        (["--teacher-outputs", "{d}/empty.jsonl"], "{d}/empty.jsonl"),
        (["--teacher-outputs", "{d}/broken.parquet"], "cannot parse {d}/broken.parquet"),
        (["--teacher-outputs", "{d}/none.jsonl"], "teacher outputs file {d}/none.jsonl does not exist"),
        (["--teacher-outputs", "{d}/missing.jsonl", "--teacher", "{t}"], "--teacher and --teacher-outputs both"),
        (["--teacher-outputs", "{d}/missing.jsonl", "--student", "bert-k"], "pass -S checkpoint=PATH"),
        (["--teacher-outputs", "{d}/missing.jsonl", "-S", "vocab=teacher"], "use -S vocab=word"),
    ],
)
def test_bad_outputs_are_one_line(tmp_path, task_dir, bert_teacher_dir, teacher_logits, args, message):
    d = _bad_files(tmp_path, *teacher_logits)
    args = [a.format(d=d, t=bert_teacher_dir) for a in args]
    student = CNN if "--student" not in args else ["--method", "kd"]
    result = run("distill", "--data-dir", str(task_dir), *student, *QUICK, *args, "--output-dir", str(tmp_path / "r"))
    assert result.exit_code == 2, result.output
    assert message.format(d=d) in result.output and result.output.strip().count("\n") == 0, result.output
    assert not (tmp_path / "r").exists()


def test_multi_label_tasks_take_per_label_logits_only(tmp_path):
    from xkd.tasks import custom_task
    from xkd.teachers.outside import read_outputs

    tags = custom_task("tags", ("text",), "tags", num_labels=3, multi_label=True)
    good = tmp_path / "o.jsonl"
    good.write_text('{"text": "a", "logits": [1.0, -2.0, 3.0]}\n')
    np.testing.assert_array_equal(read_outputs(good, tags).rows[("a",)], [1.0, -2.0, 3.0])
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"text": "a", "probabilities": [0.9, 0.2, 0.7]}\n')  # per-label: they need not sum to 1
    with pytest.raises(XKDError, match="takes its teacher's outputs as 'logits' .one per output., not probabilities"):
        read_outputs(bad, tags)


def test_a_subset_that_misses_the_files_rows_says_so(tmp_path, task_dir, teacher_logits):
    """The README's LLM-labels file covers a few training texts; `--max-examples` draws a random subset that may
    hold none or only some of them: the error names the option as the likely cause."""
    raw, golden = teacher_logits
    path = outputs_file(tmp_path / "few.jsonl", raw, golden, drop=60)  # 4 of the 64 training texts
    args = ["distill", "--data-dir", str(task_dir), *CNN, *QUICK, "--teacher-outputs", str(path)]
    failed = run(*args, "--max-examples", "8", "--output-dir", str(tmp_path / "r"))
    assert failed.exit_code == 2 and "--max-examples keeps a random subset" in failed.output
    assert "Traceback" not in failed.output
