"""Transfer sets: reading and cleaning, augmentation recipes, masked CE, the transfer cache, and the errors."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import QUICK, WORDS, distill, run, sentence

from xkd.data import UNLABELED, load_splits
from xkd.errors import XKDError
from xkd.methods.losses import task_loss
from xkd.students import STUDENTS, load_student
from xkd.tasks import get_task
from xkd.transfer.augment import augment_path, augment_texts, nearest_neighbours, resolve_recipe
from xkd.transfer.sets import clean_transfer, read_transfer_file

MR = get_task("mr")


@pytest.fixture
def vectors(tmp_path):
    """A word-vector file over the tiny vocabulary: 'good' and 'great' point the same way, 'bad' the other."""
    rng = np.random.default_rng(0)
    rows = {w: rng.normal(size=8) for w in WORDS}
    rows["great"] = rows["good"] * 2 + 0.01
    rows["bad"] = -rows["good"]
    path = tmp_path / "vectors.txt"
    path.write_text("\n".join(f"{w} " + " ".join(f"{x:.5f}" for x in v) for w, v in rows.items()) + "\n")
    return path


def transfer_file(tmp_path, rows: int = 40, seed: int = 5):
    rng = random.Random(seed)
    path = tmp_path / "extra.txt"
    path.write_text("\n".join(sentence(rng, i % 2) for i in range(rows)) + "\n")
    return path


# ------------------------------------------------------------------------------------------------ the loss


def test_ce_skips_rows_without_gold_labels():
    # Rows 1 and 3 are labelled, over a batch of 4: CE = (ln(1 + e^-2) + ln 2) / 4 = (0.1269280 + 0.6931472) / 4.
    labels = torch.tensor([UNLABELED, 0, UNLABELED, 1])
    logits = torch.tensor([[5.0, -5.0], [2.0, 0.0], [1.0, 1.0], [0.0, 0.0]], requires_grad=True)
    assert task_loss(logits, labels, regression=False).item() == pytest.approx(0.2050188, abs=1e-6)
    none = task_loss(logits, torch.full((4,), UNLABELED), regression=False)
    none.backward()
    assert none.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    # Regression: NaN marks a transfer row; squared errors of the others over the batch: ((1-3)² + 0²) / 3 = 4/3.
    values = torch.tensor([[1.0], [7.0], [0.0]])
    mse = task_loss(values, torch.tensor([3.0, float("nan"), 0.0]), regression=True)
    assert mse.item() == pytest.approx(4 / 3)


# -------------------------------------------------------------------------------------- reading and cleaning


def test_cleaning_drops_held_out_training_and_repeated_texts(task_dir):
    _, raw = load_splits(MR, task_dir)
    held_out, trained = raw["validation"]["sentence"][0], raw["train"]["sentence"][0]
    frame = pd.DataFrame({"sentence": ["a new text", held_out, trained, "a new text", "another one", held_out]})
    kept, report = clean_transfer(MR, [frame], raw)
    assert kept["sentence"].tolist() == ["a new text", "another one"]
    assert report == {
        "rows_read": 6,
        "dropped_in_validation_or_test": 2,
        "dropped_in_train": 1,
        "dropped_duplicates": 1,
        "rows": 2,
    }


def test_reading_txt_and_tables(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("first text\n\n  second text  \n")
    assert read_transfer_file(txt, MR)["sentence"].tolist() == ["first text", "second text"]
    table = tmp_path / "b.jsonl"
    pd.DataFrame({"sentence": ["x y", "z"], "other": [1, 2]}).to_json(table, orient="records", lines=True)
    assert read_transfer_file(table, MR).columns.tolist() == ["sentence"]
    with pytest.raises(XKDError, match="must be a table with columns"):
        read_transfer_file(txt, get_task("mrpc"))


# ---------------------------------------------------------------------------------------------- augmentation


def _augment(name, values, factor=3, rows=20):
    rng = random.Random(1)
    train = pd.DataFrame({"sentence": [sentence(rng, i % 2) for i in range(rows)]})
    _, options = resolve_recipe(name, values)
    return train, augment_texts(MR, train, name, options, factor, progress=False)


@pytest.mark.parametrize("name", ["tang", "tinybert"])
def test_same_seed_same_set_other_seed_other_set(name, vectors):
    values = {"vectors": str(vectors)}
    _, a = _augment(name, values)
    _, b = _augment(name, values)
    _, c = _augment(name, {**values, "seed": 1})
    assert a.equals(b) and not a.equals(c)
    assert len(a) == 60 and a["source"].tolist() == [i for i in range(20) for _ in range(3)]


def test_the_set_is_keyed_by_the_vectors_content_not_their_path_or_time(tmp_path, vectors):
    train = pd.DataFrame({"sentence": ["a good film", "a bad plot"], "label": [1, 0]})

    def key(path):
        return augment_path(MR, train, "tinybert", resolve_recipe("tinybert", {"vectors": str(path)})[1], 2)

    moved = tmp_path / "elsewhere" / "glove.txt"
    moved.parent.mkdir()
    moved.write_bytes(vectors.read_bytes())  # another path, another modification time, the same vectors
    assert key(moved) == key(vectors)
    moved.write_text(vectors.read_text().replace("good", "fine", 1))
    assert key(moved) != key(vectors)


def test_tang_rules_at_their_extremes():
    train, masked = _augment("tang", {"p_mask": 1.0, "p_pos": 0.0, "p_ng": 0.0})
    assert all(set(t.split()) == {"[MASK]"} for t in masked["sentence"])
    assert [len(t.split()) for t in masked["sentence"]] == [len(t.split()) for t in train["sentence"] for _ in "abc"]
    _, grams = _augment("tang", {"p_mask": 0.0, "p_pos": 0.0, "p_ng": 1.0, "max_ngram": 2})
    assert all(1 <= len(t.split()) <= 2 for t in grams["sentence"])
    _, swapped = _augment("tang", {"p_mask": 0.0, "p_pos": 1.0, "p_ng": 0.0, "mask_token": "<mask>"})
    assert set(" ".join(swapped["sentence"]).split()) <= set(WORDS)  # words drawn from the training vocabulary
    with pytest.raises(XKDError, match="'tang' needs p_mask \\+ p_pos <= 1"):
        _augment("tang", {"p_mask": 0.6, "p_pos": 0.6})


def test_neighbours_by_cosine_over_the_whole_file(vectors):
    neighbours = nearest_neighbours(["good", "Bad", "unknownword"], str(vectors), k=2)
    assert set(neighbours) == {"good", "bad"}  # case-folded; words without a vector get none
    assert neighbours["good"][0] == "great" and "good" not in neighbours["good"]
    assert "bad" not in neighbours["good"] and neighbours["bad"][-1] != "great"
    _, replaced = _augment("tinybert", {"vectors": str(vectors), "p": 1.0, "k": 1})
    swapped = {w for t in replaced["sentence"] for w in t.split()}
    assert "great" in swapped and "good" not in swapped  # every good became its one neighbour


def test_masked_lm_candidates(tmp_path):
    from tiny import make_tokenizer
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = make_tokenizer(tmp_path / "mlm")
    torch.manual_seed(0)
    sizes = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    config = BertConfig(vocab_size=len(tokenizer), **sizes)
    BertForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    train, replaced = _augment("tinybert", {"mlm": str(tmp_path / "mlm"), "p": 1.0, "k": 3}, factor=1, rows=4)
    assert all(w in WORDS for t in replaced["sentence"] for w in t.split())  # proposals are real words
    changed = [a != b for s, t in zip(train["sentence"], replaced["sentence"], strict=True) for a, b in
               zip(s.split(), t.split(), strict=True)]  # fmt: skip
    assert sum(changed) > len(changed) // 2  # with p = 1, most words were replaced by a proposal


# ------------------------------------------------------------------------------------------------- end to end


def _summary(directory):
    return json.loads((directory / "summary.json").read_text())


def test_transfer_rows_train_from_the_cache_exactly_as_online(tmp_path, task_dir, bert_teacher_dir):
    extra = transfer_file(tmp_path)
    args = [*distill(bert_teacher_dir, task_dir), "--method", "kd", "--transfer", str(extra), *QUICK]
    cached = run(*args, "--output-dir", str(tmp_path / "cached"), "--transfer-dtype", "float32")
    online = run(*args, "--output-dir", str(tmp_path / "online"), "--teacher-cache", "off")
    assert cached.exit_code == 0 and online.exit_code == 0, cached.output + online.output
    a, b = _summary(tmp_path / "cached"), _summary(tmp_path / "online")
    assert a["data"]["transfer"] == 40 and a["data"]["train"] == 64
    assert a["train_examples"] == 2 * (64 + 40)  # two epochs over gold and transfer rows
    lines = [[json.loads(x)["train"] for x in (d / "metrics.jsonl").read_text().splitlines()] for d in
             (tmp_path / "cached", tmp_path / "online")]  # fmt: skip
    for x, y in zip(*lines, strict=True):
        assert x == pytest.approx(y, rel=1e-5)
    assert a["validation"] == b["validation"]
    # kd reads only the logits: the transfer cache stores nothing else
    transfer_caches = [p for p in (tmp_path / "xkd-cache" / "traces").glob("*") if (p / "transfer").is_dir()]
    assert len(transfer_caches) == 1
    assert sorted(p.name for p in (transfer_caches[0] / "transfer").iterdir()) == ["logits.npy"]


def test_word_students_read_the_transfer_sets_words(tmp_path, task_dir, bert_teacher_dir, monkeypatch):
    """With vocab_from=train+transfer a word only the transfer set has gets its own row (it reads as [UNK] with the
    default, a vocabulary of the training split's words). The default rate follows the run's length."""
    short = dataclasses.replace(STUDENTS.get("cnn"), lr_steps=4)  # (the real threshold is longer than a tiny run)
    monkeypatch.setitem(STUDENTS._items, "cnn", short)
    extra = tmp_path / "extra.txt"
    extra.write_text("".join(f"the film was splendiferous {w}\n" for w in WORDS))
    args = [*distill(bert_teacher_dir, task_dir), "--method", "kd", "--transfer", str(extra), *QUICK]
    cnn = ["--student", "cnn", "--student-layers", "1", "-S", "vocab=word"]  # (the CNN's default: the teacher's tokens)
    result = run(*args, *cnn, "-S", "vocab_from=train+transfer", "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    tokenizer = load_student(tmp_path / "run" / "student").tokenizer
    assert "splendiferous" in tokenizer.get_vocab()
    assert tokenizer.convert_tokens_to_ids("splendiferous") != tokenizer.unk_token_id
    default = run(*args, *cnn, "--output-dir", str(tmp_path / "default"))
    assert default.exit_code == 0, default.output
    assert "splendiferous" not in load_student(tmp_path / "default" / "student").tokenizer.get_vocab()
    bad = run(*args, *cnn, "-S", "vocab_from=everything", "--output-dir", str(tmp_path / "bad"))
    assert bad.exit_code == 2 and "-S vocab_from must be train or train+transfer" in bad.output
    assert not (tmp_path / "bad").exists()  # refused before the run directory
    steps = 2 * -(-(64 + len(WORDS)) // 16)  # two epochs over gold and transfer rows at batch 16
    lr = json.loads((tmp_path / "run" / "summary.json").read_text())["settings"]["lr"]
    assert lr == pytest.approx(2e-3 * (4 / steps) ** 0.5)
    assert f"learning rate {lr:.2g}: the cnn student's 0.002 for a run of {steps} steps" in result.output


def test_a_method_reading_more_fields_extends_the_transfer_cache(tmp_path, task_dir, bert_teacher_dir):
    extra = transfer_file(tmp_path)
    args = [*distill(bert_teacher_dir, task_dir), "--transfer", str(extra), "--transfer-dtype", "float16", *QUICK]
    assert run(*args, "--method", "kd", "--output-dir", str(tmp_path / "kd")).exit_code == 0
    result = run(*args, "--method", "pkd", "--output-dir", str(tmp_path / "pkd"))
    assert result.exit_code == 0, result.output
    assert "building it again" in result.output
    (cache,) = [p for p in (tmp_path / "xkd-cache" / "traces").glob("*") if (p / "transfer").is_dir()]
    stored = {p.stem: np.load(p, mmap_mode="r") for p in (cache / "transfer").iterdir()}
    assert set(stored) == {"logits", "layer_vectors"} and all(a.dtype == np.float16 for a in stored.values())


def test_augmented_set_is_made_once_and_reused(tmp_path, task_dir, bert_teacher_dir):
    args = [*distill(bert_teacher_dir, task_dir), "--method", "kd", "--augment", "tang", "--augment-factor", "2"]
    first = run(*args, *QUICK, "--output-dir", str(tmp_path / "a"))
    second = run(*args, *QUICK, "--output-dir", str(tmp_path / "b"), "--seed", "3")
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert "augmentation: tang x2" in first.output and "augmentation: reusing" in second.output
    report = _summary(tmp_path / "a")["data"]["transfer_set"]
    assert (
        report["rows_read"] == 128
        and report["rows"]
        + report["dropped_in_train"]
        + report["dropped_duplicates"]
        + report["dropped_in_validation_or_test"]
        == 128
    )
    shown = run("augment", "--augment", "tang", "--augment-factor", "2", "--data-dir", str(task_dir), "-n", "2",
                "--out", str(tmp_path / "set.tsv"), "--no-progress")  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "augmentation: reusing" in shown.output and shown.output.count("  -> ") == 4
    assert len(pd.read_csv(tmp_path / "set.tsv", sep="\t", quoting=3)) == 128
    auto = run("augment", "--augment", "auto", "--augment-factor", "2", "--data-dir", str(task_dir), "--no-progress")
    assert auto.exit_code == 0 and "augmentation: reusing" in auto.output  # auto is the tang set distill makes


def test_a_run_without_options_gets_the_default_student_and_transfer_set(tmp_path, task_dir, bert_teacher_dir):
    """No --student and no --augment: a CNN on tang x10 (what config.json records, so --resume and studies see it);
    a gold-only method gets no transfer set and says why, in one line."""
    plain = ["distill", "--teacher", str(bert_teacher_dir), "--data-dir", str(task_dir), "--max-steps", "2", *QUICK]
    result = run(*plain, "--output-dir", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert "augmentation: tang x10 over 64 training rows" in result.output
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (config["student"], config["augment"], config["augment_factor"]) == ("cnn", "tang", 10)
    assert _summary(tmp_path / "a")["data"]["transfer_set"]["rows_read"] == 640
    gold = run(*plain, "--method", "none", "--output-dir", str(tmp_path / "b"))
    assert gold.exit_code == 0, gold.output
    assert "transfer set: no tang augmentation (method 'none' learns from gold labels only)" in gold.output
    assert "augmentation:" not in gold.output
    assert json.loads((tmp_path / "b" / "config.json").read_text())["augment"] == "none"


# --------------------------------------------------------------------------------------------------- errors


def _bad_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "latin.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    pd.DataFrame({"text": ["a b"]}).to_csv(tmp_path / "cols.csv", index=False)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--transfer", "{d}/missing.txt"], "transfer file {d}/missing.txt does not exist"),
        (["--transfer", "{d}/empty.txt"], "holds no text"),
        (["--transfer", "{d}/latin.txt"], "is not valid UTF-8"),
        (["--transfer", "{d}/cols.csv"], "lacks text column(s) sentence"),
        (["--augment", "tangg"], "recipe 'tangg' (did you mean 'tang'?); choose one of: auto, none"),
        (["--augment", "tang", "--augment-factor", "0"], "augment-factor must be at least 1"),
        (["--augment", "tinybert"], "augmentation recipe 'tinybert' needs word vectors"),
        (["--augment", "tinybert", "-A", "vectors={d}/none.txt"], "word-vector file {d}/none.txt does not exist"),
        (["-A", "p_mask=0.2"], "add --augment tang|tinybert"),
        (["--augment", "tang", "-A", "p_mask=2"], "p_mask must lie in [0, 1]"),
        (["--augment", "tang", "--augment-mlm", "m"], "use --augment tinybert"),
        (["--augment", "tang", "--method", "none"], "method 'none' learns from gold labels only"),
    ],
)
def test_bad_transfer_input_is_one_line(tmp_path, task_dir, bert_teacher_dir, args, message):
    d = _bad_files(tmp_path)
    args = [a.format(d=d) for a in args]
    result = run(*distill(bert_teacher_dir, task_dir), *args, *QUICK, "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert message.format(d=d) in result.output and result.output.count("\n") == 1, result.output


def test_pairs_augment_both_texts_and_compare_as_pairs(tmp_path):
    from datasets import Dataset, DatasetDict

    pairs = get_task("mrpc")
    a, b = pairs.text_columns
    train = pd.DataFrame({a: ["the film was good", "a dull plot"], b: ["the movie is fine", "the cast is weak"]})
    _, options = resolve_recipe("tang", {"p_mask": 1.0, "p_pos": 0.0, "p_ng": 0.0})
    made = augment_texts(pairs, train, "tang", options, 2, progress=False)
    assert list(made.columns) == [a, b, "source"] and len(made) == 4
    assert all(set(t.split()) == {"[MASK]"} for c in (a, b) for t in made[c])
    splits = DatasetDict({
        "train": Dataset.from_pandas(train.assign(labels=[1, 0])),
        "validation": Dataset.from_dict({a: ["x"], b: ["y"], "labels": [0]}),
        "test": Dataset.from_dict({a: ["p"], b: ["q"], "labels": [1]}),
    })  # fmt: skip
    # the same first sentence with another second one is a new pair; only whole pairs leak or repeat
    frame = pd.DataFrame({a: ["x", "x", "the film was good", "x"], b: ["y", "z", "the movie is fine", "z"]})
    kept, report = clean_transfer(pairs, [frame], splits)
    assert kept.values.tolist() == [["x", "z"]]
    assert (report["dropped_in_validation_or_test"], report["dropped_in_train"], report["dropped_duplicates"]) == (
        1,
        1,
        1,
    )


def test_attention_methods_run_the_teacher_online_on_transfer_rows(tmp_path, task_dir, bert_teacher_dir):
    extra = transfer_file(tmp_path, rows=20)
    args = [*distill(bert_teacher_dir, task_dir), "--method", "aguilar", "--transfer", str(extra), *QUICK]
    result = run(*args, "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    summary = _summary(tmp_path / "run")
    assert summary["data"]["transfer"] == 20 and "attention maps" in result.output
    # the online teacher ran on every training row, gold and transfer, in both epochs
    assert summary["compute"]["teacher_online_examples"] == 2 * (64 + 20)
