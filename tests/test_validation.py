"""Bad input, table-driven: every case is one line on stderr naming the problem and the fix, exit code 2, no
traceback, and nothing of an earlier run lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tiny import BEFORE_DEFAULTS, QUICK, run, save_tiny, write_task_dir


def _write(path: Path, text: str | bytes) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _config(tmp: Path, text: str) -> list[str]:
    _write(tmp / "recipe.toml", text)
    return ["--config", str(tmp / "recipe.toml")]


# Each case: (id, function(tmp, teacher, data) -> CLI args after "xkd", expected fragment of the message).
CASES = [
    ("unknown task", lambda t, m, d: ["--task", "sst"], "unknown task 'sst'"),
    ("unknown student", lambda t, m, d: ["--student", "cnnn"], "unknown student 'cnnn'"),
    ("unknown method", lambda t, m, d: ["--method", "pkdd"], "unknown method 'pkdd'"),
    ("unknown method option", lambda t, m, d: ["--method", "universal", "-O", "gama=2"], "gamma"),
    ("method option type", lambda t, m, d: ["--method", "universal", "-O", "gamma=lots"], "gamma"),
    ("malformed option pair", lambda t, m, d: ["-O", "gamma"], "is not KEY=VALUE"),
    ("unknown student option", lambda t, m, d: ["--student", "cnn", "-S", "widht=3"], "width"),
    ("temperature <= 0", lambda t, m, d: ["--temperature", "0"], "temperature must be > 0"),
    ("alpha outside [0, 1]", lambda t, m, d: ["--alpha", "1.5"], "alpha must lie in [0, 1]"),
    ("lr <= 0", lambda t, m, d: ["--lr", "0"], "lr must be > 0"),
    ("epochs < 1", lambda t, m, d: ["--epochs", "0"], "epochs must be at least 1"),
    ("student layers < 1", lambda t, m, d: ["--student-layers", "0"], "student-layers must be at least 1"),
    ("batch size < 1", lambda t, m, d: ["--batch-size", "0"], "batch-size must be at least 1"),
    ("warm-up ratio", lambda t, m, d: ["--warmup-ratio", "1.5"], "warmup-ratio must lie in [0, 1)"),
    ("negative loss weight", lambda t, m, d: ["--method", "universal", "-O", "gamma=-1"], "gamma is a loss weight"),
    ("ALP weights over 1", lambda t, m, d: ["--method", "alp", "-O", "eta=0.7", "-O", "lam=0.5"], "eta + lam"),
    ("checkpoint every < 0", lambda t, m, d: ["--checkpoint-every", "-1"], "checkpoint-every must be >= 0"),
    ("config: unknown key", lambda t, m, d: _config(t, "epocs = 2\n"), "did you mean 'epochs'"),
    ("config: wrong type", lambda t, m, d: _config(t, 'epochs = "three"\n'), "epochs"),
    ("config: bad syntax", lambda t, m, d: _config(t, "epochs = = 2\n"), "recipe.toml"),
    ("config: bad choice", lambda t, m, d: _config(t, 'precision = "fp64"\n'), "precision must be one of"),
    ("data: missing directory", lambda t, m, d: ["--data-dir", str(t / "nowhere")], "does not exist"),
    ("data: missing split", lambda t, m, d: (d / "validation.tsv").unlink() or [], "validation"),
    ("data: empty file", lambda t, m, d: _write(d / "train.tsv", "") or [], "is empty"),
    ("data: missing column", lambda t, m, d: _write(d / "train.tsv", "text\tlabel\nok\t1\n") or [], "lacks column"),
    (
        "data: label out of range",
        lambda t, m, d: _write(d / "train.tsv", "sentence\tlabel\nok\t7\n") or [],
        "label set",
    ),
    ("data: non-numeric label", lambda t, m, d: _write(d / "train.tsv", "sentence\tlabel\nok\tyes\n") or [], "'yes'"),
    (
        "data: undecodable bytes",
        lambda t, m, d: _write(d / "train.tsv", b"sentence\tlabel\nok\t1\nbad \xff\t0\n") or [],
        "line 3 is not valid UTF-8",
    ),
    (
        "data: NaN regression target",
        lambda t, m, d: (
            _write(d / "train.tsv", "sentence\tscore\nok\t1.5\nbad\tnan\n")
            or ["--task", "ratings", "--text-column", "sentence", "--label-column", "score", "--regression"]
        ),
        "regression targets must be finite",
    ),
    ("model: missing teacher", lambda t, m, d: ["--teacher", str(t / "no-teacher")], "cannot load teacher"),
    (
        "model: not a sequence classifier",
        lambda t, m, d: ["--teacher", str(save_tiny(t / "bare", bare=True)), "--finetune-teacher", "never"],
        "is a bare encoder without a trained classifier",
    ),
    (
        "model: label count mismatch",
        lambda t, m, d: ["--teacher", str(save_tiny(t / "three", num_labels=3))],
        "has 3 output(s) but task 'mr' needs 2",
    ),
    ("model: DistilRoBERTa from BERT", lambda t, m, d: ["--student", "distilroberta"], "needs a RoBERTa teacher"),
    ("model: student deeper than teacher", lambda t, m, d: ["--student-layers", "9"], "the teacher's 4 layers"),
    (
        "method: attention KL across tokenizers",
        lambda t, m, d: ["--method", "aguilar", "--student", "cnn"],
        "attention",
    ),
    (
        "method: freezing a student without layers",
        lambda t, m, d: [
            "--method",
            "aguilar",
            "--student",
            "cnn",
            "-O",
            "attention=0",
            "-O",
            "algorithm=progressive",
            "-O",
            "freeze=true",
        ],
        "layer_modules()",
    ),  # fmt: skip
    ("resume: nothing to resume", lambda t, m, d: ["--resume", str(t / "no-run")], "no config.json"),
]

# Sizes far outside sense (xkd.limits): refused before any model is built, so each fails within a second or two.
LIMIT_CASES = [
    ("limit: epochs", lambda t, m, d: ["--epochs", "100000"], "--epochs is 100000, above the limit of 10000"),
    ("limit: teacher epochs", lambda t, m, d: ["--teacher-epochs", "99999"], "--teacher-epochs is 99999, above"),
    ("limit: heads epochs", lambda t, m, d: ["--heads-epochs", "99999"], "--heads-epochs is 99999, above"),
    (
        "limit: augment factor",
        lambda t, m, d: ["--augment", "tang", "--augment-factor", "5000"],
        "--augment-factor is 5000, above the limit of 1000",
    ),
    (
        "limit: CNN layers",
        lambda t, m, d: ["--student", "cnn", "--student-layers", "100000"],
        "--student-layers is 100000, above the limit of 48",
    ),
    ("limit: assistant deeper than teacher", lambda t, m, d: ["--assistant-layers", "6"], "teacher's 4"),
    (
        "limit: DistilRoBERTa from a shallow RoBERTa",
        lambda t, m, d: ["--student", "distilroberta", "--teacher", str(save_tiny(t / "rob", kind="roberta"))],
        "--student distilroberta has 6 layers, above the limit of 4",
    ),
    (
        "limit: max length",
        lambda t, m, d: ["--max-length", "100000"],
        "--max-length is 100000, above the limit of 8192",
    ),
    ("limit: max length past the teacher", lambda t, m, d: ["--max-length", "65"], "above the limit of 64 (teacher"),
    (
        "limit: max length past a RoBERTa teacher",  # 72 position embeddings, padding_idx 0: 71 tokens
        lambda t, m, d: ["--teacher", str(save_tiny(t / "rob", kind="roberta")), "--max-length", "72"],
        "--max-length is 72, above the limit of 71",
    ),
    ("limit: batch size", lambda t, m, d: ["--batch-size", "10000000"], "--batch-size is 10000000, above the limit"),
    ("limit: eval batch size", lambda t, m, d: ["--eval-batch-size", "10000000"], "--eval-batch-size is 10000000"),
    (
        "limit: batch size past the training split",
        lambda t, m, d: ["--batch-size", "65"],
        "--batch-size is 65, above the limit of 64 (the training split has 64 rows",
    ),
    (
        "limit: CNN channels",
        lambda t, m, d: ["--student", "cnn", "-S", "channels=100000"],
        "-S channels is 100000, above the limit of 8192",
    ),
    (
        "limit: CNN block width",
        lambda t, m, d: ["--student", "cnn", "-S", "channels=4000"],
        "-S channels x filter widths is 4000 x 3 = 12000, above the limit of 8192",
    ),
    (
        "limit: CNN filter wider than max length",
        lambda t, m, d: ["--student", "cnn", "-S", "filter_widths=3,17"],
        "-S filter_widths is 17, above the limit of 16",
    ),
    ("limit: CNN filter width 0", lambda t, m, d: ["--student", "cnn", "-S", "filter_widths=0,3"], "at least 1"),
    (
        "limit: BiLSTM hidden size",
        lambda t, m, d: ["--student", "bilstm", "-S", "hidden_size=1e6"],
        "-S hidden_size is 1000000, above the limit of 8192",
    ),
    ("limit: fractional width", lambda t, m, d: ["--student", "bilstm", "-S", "hidden_size=2.5"], "a whole number"),
    ("limit: embedding dim 0", lambda t, m, d: ["--student", "cnn", "-S", "embedding_dim=0"], "at least 1, got 0"),
    ("limit: vocabulary", lambda t, m, d: ["--student", "cnn", "-S", "max_vocab=1e9"], "-S max_vocab is 1000000000"),
    (
        "limit: config file",
        lambda t, m, d: _config(t, "student-layers = 100\n"),
        "--student-layers is 100, above the limit of 48",
    ),
]
LIMIT_IDS = {c[0] for c in LIMIT_CASES}
CASES += LIMIT_CASES


@pytest.mark.parametrize(("case", "make", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_distill_input(tmp_path, case, make, message):
    teacher = save_tiny(tmp_path / "teacher", layers=4)
    data = write_task_dir(tmp_path / "data")
    args = make(tmp_path, teacher, data)
    base = ["--teacher", str(teacher), "--data-dir", str(data), "--output-dir", str(tmp_path / "run"), *BEFORE_DEFAULTS]
    if "--resume" in args:
        base = []
    import xkd.distillation  # noqa: F401  (imported before the clock starts: the first command imports it)

    start = time.perf_counter()
    result = run("distill", *base, *QUICK, *args) if base else run("distill", *args)
    seconds = time.perf_counter() - start
    assert result.exit_code == 2, (case, result.output, repr(result.exception))
    if case in LIMIT_IDS:  # refused before any model is built or any data is tokenized
        assert seconds < 2.0, (case, seconds)
    assert message in result.output, (case, result.output)
    # Progress lines may precede it, but the error is one line, the last, and there is no traceback.
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and sum(line.startswith("Error") for line in lines) == 1, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "summary.json").exists()


def test_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "nowhere", "--onnx", "x.onnx"], "not a directory"),
        (["cache", "clear"], "say which caches to clear"),
        (["eval", "--model", "nowhere", "--task", "mr", "--data-dir", "DATA"], "nowhere"),
        (["teacher", "heads", "--teacher", "nowhere", "--task", "mr", "--data-dir", "DATA"], "nowhere"),
    ],
)
def test_bad_input_to_other_commands(task_dir, args, message):
    result = run(*[str(task_dir) if a == "DATA" else a for a in args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
