"""CNN and BiLSTM students: forward/backward, pairs, padding invariance, save/reload, vocabularies, word vectors."""

import pytest
import torch
from tiny import QUICK, SHARED, distill, run, save_tiny, write_task_dir

from xkd.data import load_splits
from xkd.errors import XKDError
from xkd.students import build_student, build_word_tokenizer, load_student, load_word_vectors
from xkd.tasks import get_task
from xkd.teachers import load_teacher

TEXTS = ["the film was good", "a dull , flat story", "good cast and a funny plot"]
MR = get_task("mr")


@pytest.fixture
def teacher(tmp_path):
    return load_teacher(str(save_tiny(tmp_path / "teacher", layers=2)), MR)


def encode(model, texts, pad_to=None):
    enc = model.tokenizer(texts, padding="max_length" if pad_to else True, max_length=pad_to, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


STUDENT_CASES = [
    ("cnn", {}),
    ("cnn", {"gated": "true", "filter_widths": "2,3"}),
    ("bilstm", {}),
    ("bilstm", {"pooling": "mean", "vocab": "teacher"}),
    ("bilstm", {"vocab": "sentencepiece", "max_vocab": "40"}),
]


@pytest.mark.parametrize(("kind", "options"), STUDENT_CASES)
def test_forward_backward_and_padding_invariance(teacher, kind, options):
    student = build_student(kind, teacher, MR, TEXTS, layers=3, log=lambda m: None, **options).eval()
    short, long = encode(student, TEXTS), encode(student, TEXTS, pad_to=24)
    trace = student(short)
    assert trace.logits.shape == (3, 2) and trace.layer_vectors.shape == (3, 3, student.layer_width)
    padded = student(long)
    assert torch.allclose(trace.logits, padded.logits, atol=1e-5)
    assert torch.allclose(trace.layer_vectors, padded.layer_vectors, atol=1e-5)
    student.train()
    student(short).logits.sum().backward()
    assert student.embedding.weight.grad is not None


@pytest.mark.parametrize("kind", ["cnn", "bilstm"])
def test_pairs_use_one_encoder_and_combined_features(teacher, kind):
    task = get_task("mrpc")
    student = build_student(kind, teacher, task, TEXTS, layers=2, log=lambda m: None).eval()
    a, b = encode(student, TEXTS[:2]), encode(student, TEXTS[1:])
    inputs = {**a, "input_ids_b": b["input_ids"], "attention_mask_b": b["attention_mask"]}
    trace = student(inputs)
    assert trace.layer_vectors.shape == (2, 2, 4 * student.encoder_width)
    u, v = student.encode(a["input_ids"], a["attention_mask"]), student.encode(b["input_ids"], b["attention_mask"])
    expected = torch.cat([u[1], v[1], u[1] * v[1], (u[1] - v[1]).abs()], dim=-1)
    assert torch.allclose(trace.layer_vectors[:, 1], expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["cnn", "bilstm"])
def test_save_and_reload_are_identical(teacher, tmp_path, kind):
    student = build_student(kind, teacher, MR, TEXTS, layers=2, log=lambda m: None).eval()
    student.save(tmp_path / kind, task="mr")
    again = load_student(tmp_path / kind).eval()
    inputs = encode(student, TEXTS)
    assert torch.equal(student(inputs).logits, again(encode(again, TEXTS)).logits)
    assert again.meta["task"] == "mr"


def test_word_vocabulary_on_the_mr_training_split():
    mr_dir = SHARED / "data" / "mr"
    if not mr_dir.is_dir():
        pytest.skip("shared MR data not present")
    _, splits = load_splits(MR, mr_dir)
    texts = splits["train"]["sentence"]
    full = build_word_tokenizer(texts)
    pruned = build_word_tokenizer(texts, min_frequency=3, max_size=5000)
    assert 15000 < len(full) < 25000  # about 18k distinct lower-cased words and punctuation in 8.5k sentences
    assert len(pruned) <= 5000 and len(pruned) < len(full)
    ids = full("The Rock is destined")["input_ids"]
    assert full.convert_ids_to_tokens(ids) == ["the", "rock", "is", "destined"]
    assert pruned("zzzunseenword")["input_ids"] == [pruned.unk_token_id]


def test_glove_loading_reports_coverage(tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("the 0.1 0.2 0.3\ngood 1.0 0.0 -1.0\nmovie 0.5 0.5 0.5\n")
    tokenizer = build_word_tokenizer(["the good film", "the film"])
    weight, coverage = load_word_vectors(vectors, tokenizer.get_vocab())
    assert weight.shape == (len(tokenizer), 3)
    assert coverage == pytest.approx(2 / 3)  # the, good found; film missing
    assert torch.allclose(weight[tokenizer.convert_tokens_to_ids("good")], torch.tensor([1.0, 0.0, -1.0]))
    assert torch.equal(weight[0], torch.zeros(3))  # padding
    with pytest.raises(XKDError, match="does not exist"):
        load_word_vectors(tmp_path / "nope.txt", tokenizer.get_vocab())


def test_word2vec_binary_and_header(tmp_path):
    import numpy as np

    path = tmp_path / "w2v.bin"
    with path.open("wb") as f:
        f.write(b"2 2\n")
        f.write(b"good " + np.array([1, 2], dtype=np.float32).tobytes() + b"\n")
        f.write(b"the " + np.array([3, 4], dtype=np.float32).tobytes() + b"\n")
    tokenizer = build_word_tokenizer(["the good film"])
    weight, coverage = load_word_vectors(path, tokenizer.get_vocab())
    assert torch.allclose(weight[tokenizer.convert_tokens_to_ids("the")], torch.tensor([3.0, 4.0]))
    assert coverage == pytest.approx(2 / 3)


def test_real_glove_file_on_mr_words():
    glove = SHARED / "data" / "glove" / "glove.6B.50d.top60k.txt"
    if not glove.is_file():
        pytest.skip("shared GloVe not present")
    tokenizer = build_word_tokenizer(["the movie was a good , funny ride", "xqzvbn"])
    weight, coverage = load_word_vectors(glove, tokenizer.get_vocab())
    # 9 distinct tokens (the movie was a good , funny ride xqzvbn); all but the nonsense word are in GloVe.
    assert weight.shape[1] == 50 and coverage == pytest.approx(8 / 9)


@pytest.mark.parametrize("kind", ["cnn", "bilstm"])
def test_cross_architecture_universal_kd_end_to_end(tmp_path, kind):
    data = write_task_dir(tmp_path / "data", sizes=(48, 16, 16))
    teacher = save_tiny(tmp_path / "teacher", layers=3)
    out = tmp_path / "run"
    args = ["distill", "--teacher", str(teacher), "--data-dir", str(data), "--student", kind, "--method", "universal"]
    args += ["-O", "mode=ca", "-S", "embedding_dim=16", "-S", "dropout=0.1", "--output-dir", str(out), *QUICK]
    result = run(*args)
    assert result.exit_code == 0, result.output
    scored = run("eval", "--model", str(out / "student"), "--task", "mr", "--data-dir", str(data), "--split", "test")
    assert scored.exit_code == 0, scored.output
    bad = run(*args[: -len(QUICK)], "-S", "chanels=3", *QUICK, "--overwrite")
    assert bad.exit_code == 2 and "has no option 'chanels'" in bad.output and bad.output.count("\n") == 1


def test_plug_in_student_by_import_path_distills_with_universal_kd(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=3)
    out = tmp_path / "run"
    result = run(
        *distill(teacher, task_dir),
        "--student",
        "plugin_gru:GRUStudent",
        "--method",
        "universal",
        "-S",
        "width=8",
        "--output-dir",
        str(out),
        *QUICK,
    )
    assert result.exit_code == 0, result.output
    import json

    alpha = json.loads((out / "attention.jsonl").read_text().splitlines()[-1])["alpha"]
    assert len(alpha) == 2 and len(alpha[0]) == 3
    scored = run("eval", "--model", str(out / "student"), "--task", "mr", "--data-dir", str(task_dir))
    assert scored.exit_code == 0, scored.output


@pytest.mark.parametrize(
    ("student", "message"),
    [
        ("plugin_gru:Missing", "has no 'Missing'"),
        ("no_such_module:X", "cannot import module 'no_such_module'"),
        ("plugin_gru", "unknown student 'plugin_gru'"),
    ],
)
def test_bad_plug_ins_are_one_line_errors(tmp_path, task_dir, student, message):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    args = ["--data-dir", str(task_dir), "--student", student, "--output-dir", str(tmp_path / "r"), *QUICK]
    result = run("distill", "--teacher", str(teacher), *args)
    assert not (tmp_path / "r").exists()
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1


def test_inspect_reports_shapes_sizes_and_methods(tmp_path, task_dir):
    import json

    teacher = save_tiny(tmp_path / "teacher", layers=4)
    result = run(
        "inspect",
        "--teacher",
        str(teacher),
        "--student",
        "cnn",
        "--student-layers",
        "3",
        "--data-dir",
        str(task_dir),
        "-S",
        "vectors_dim=8",
        "-S",
        "channels=4",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["teacher"]["layers"] == 4 and report["student"]["layers"] == 3
    assert report["student"]["trace"]["layer_vectors"] == [4, 3, 12]  # 3 widths x 4 channels
    assert report["student"]["shares_teacher_tokenizer"] is True  # the CNN's default vocab=teacher
    assert set(report["methods"]) >= {"none", "kd", "universal"}
    assert len(report["universal_layer_mask"]) == 3 and len(report["universal_layer_mask"][0]) == 4


def test_distilroberta_from_every_other_teacher_layer_and_from_a_checkpoint(tmp_path):
    from xkd.students import build_student as build

    roberta = load_teacher(str(save_tiny(tmp_path / "roberta", kind="roberta", layers=12)), MR)
    student = build("distilroberta", roberta, MR)
    assert student.num_layers == 6 and student.meta["teacher_layers"] == [1, 3, 5, 7, 9, 11]
    assert student.config.model_type == "roberta"
    bert = load_teacher(str(save_tiny(tmp_path / "bert", layers=4)), MR)
    with pytest.raises(XKDError, match="needs a RoBERTa teacher"):
        build("distilroberta", bert, MR)
    small = save_tiny(tmp_path / "small", layers=2, bare=True)
    from_checkpoint = build("bert-k", bert, MR, checkpoint=str(small))
    assert from_checkpoint.num_layers == 2 and from_checkpoint.num_labels == 2
    with pytest.raises(XKDError, match="has no option 'checkpont'"):
        build("bert-k", bert, MR, checkpont="x")


def test_sentencepiece_vocabulary_on_mr():
    mr_dir = SHARED / "data" / "mr"
    if not mr_dir.is_dir():
        pytest.skip("shared MR data not present")
    from xkd.students import build_sentencepiece_tokenizer

    _, splits = load_splits(MR, mr_dir, max_examples=3000)
    texts = splits["train"]["sentence"]
    tokenizer = build_sentencepiece_tokenizer(texts, vocab_size=2000)
    assert 1000 < len(tokenizer) <= 2000
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token_id == 1
    pieces = tokenizer.tokenize("The Rock is destined to be great")
    assert pieces[0] == "▁the" and "".join(pieces).replace("▁", " ").strip() == "the rock is destined to be great"
    assert tokenizer.unk_token_id not in tokenizer("an unseenword here")["input_ids"]  # subwords, no [UNK]


def test_entry_point_students_are_listed_and_built(tmp_path, task_dir, monkeypatch):
    from importlib.metadata import EntryPoint

    import xkd.students.plugins as plugins

    fake = {"gru": EntryPoint(name="gru", value="plugin_gru:GRUStudent", group="xkd.students")}
    monkeypatch.setattr(plugins, "entry_points", lambda group: list(fake.values()))
    listing = run("students")
    assert "gru: plug-in plugin_gru:GRUStudent" in listing.output and "cnn:" in listing.output
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    result = run(
        *distill(teacher, task_dir),
        "--student",
        "gru",
        "--method",
        "kd",
        "--output-dir",
        str(tmp_path / "r"),
        *QUICK,
    )
    assert result.exit_code == 0, result.output


def test_student_config_file_with_command_line_override(tmp_path, task_dir):
    import json

    teacher = save_tiny(tmp_path / "teacher", layers=2)
    (tmp_path / "cnn.yaml").write_text("channels: 3\nfilter_widths: '2,3'\nembedding-dim: 8\nvectors: ''\n")
    out = tmp_path / "run"
    result = run(
        *distill(teacher, task_dir),
        "--student",
        "cnn",
        "--student-config",
        str(tmp_path / "cnn.yaml"),
        "-S",
        "channels=5",
        "--method",
        "kd",
        "--max-steps",
        "2",
        "--output-dir",
        str(out),
        *QUICK,
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "student" / "student.json").read_text())["config"]
    assert config["channels"] == 5 and config["filter_widths"] == [2, 3] and config["embedding_dim"] == 8
    assert json.loads((out / "config.json").read_text())["student_options"]["channels"] == "5"


def test_inspect_counts_a_word_students_parameters_as_its_run_does_on_a_custom_task(tmp_path, task_dir):
    """Its vocabulary from the whole training split, as a run's (it was built from 8 texts: 0.76M against the
    run's 1.22M on MR); and a custom task's columns as `xkd distill` takes them."""
    import json

    import pandas as pd

    custom = tmp_path / "reviews"
    custom.mkdir()
    for split in ("train", "validation", "test"):
        frame = pd.read_csv(task_dir / f"{split}.tsv", sep="\t")
        frame.rename(columns={"sentence": "body", "label": "stars"}).to_csv(custom / f"{split}.csv", index=False)
    teacher = save_tiny(tmp_path / "teacher", layers=4)
    args = ["inspect", "--teacher", str(teacher), "--student", "cnn", "-S", "embedding_dim=8", "--json"]
    result = run(
        *args, "--task", "reviews", "--data-dir", str(custom), "--text-column", "body", "--label-column", "stars"
    )
    assert result.exit_code == 0, result.output
    inspected = json.loads(result.stdout)["student"]["parameters"]
    distilled = run("distill", "--teacher", str(teacher), "--student", "cnn", "-S", "embedding_dim=8", "--task",
                    "reviews", "--data-dir", str(custom), "--text-column", "body", "--label-column", "stars",
                    "--method", "kd", *QUICK, "--output-dir", str(tmp_path / "run"))  # fmt: skip
    assert distilled.exit_code == 0, distilled.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert inspected == summary["student"]["parameters"]
