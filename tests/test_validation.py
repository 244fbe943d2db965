"""Bad input, table-driven: every case is one line on stderr naming the problem and the fix, exit code 2, no
traceback, and nothing of an earlier run lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import QUICK, run, save_tiny, write_task_dir


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
    ("model: student deeper than teacher", lambda t, m, d: ["--student-layers", "9"], "use 1..4 layers"),
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


@pytest.mark.parametrize(("case", "make", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_distill_input(tmp_path, case, make, message):
    teacher = save_tiny(tmp_path / "teacher", layers=4)
    data = write_task_dir(tmp_path / "data")
    args = make(tmp_path, teacher, data)
    base = ["--teacher", str(teacher), "--data-dir", str(data), "--output-dir", str(tmp_path / "run")]
    if "--resume" in args:
        base = []
    result = run("distill", *base, *QUICK, *args) if base else run("distill", *args)
    assert result.exit_code == 2, (case, result.output, repr(result.exception))
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
