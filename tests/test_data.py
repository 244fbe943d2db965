from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny import SHARED, make_tokenizer, write_frame, write_task_dir

from xkd.data import Collator, encode, load_splits, shared_roles
from xkd.errors import XKDError
from xkd.tasks import custom_task, get_task

MR_DIR = SHARED / "data" / "mr"
needs_mr = pytest.mark.skipif(not MR_DIR.is_dir(), reason="shared MR data not present")


@needs_mr
def test_real_mr_tsvs_load_with_quoting_off():
    task, splits = load_splits(get_task("mr"), MR_DIR)
    assert {n: len(s) for n, s in splits.items()} == {"train": 8483, "validation": 1060, "test": 1062}
    quoted = [s for split in splits.values() for s in split["sentence"] if '"' in s]
    assert len(quoted) >= 1  # the lone quote stays inside its sentence instead of swallowing rows
    assert set(splits["train"]["labels"]) == {0, 1}


@needs_mr
def test_xkd_data_dir_env_is_used(monkeypatch):
    monkeypatch.setenv("XKD_DATA_DIR", str(MR_DIR.parent))
    _, splits = load_splits(get_task("mr"), max_examples=50)
    assert len(splits["validation"]) == 50
    assert 0 < sum(splits["validation"]["labels"]) < 50  # a random subset, not the label-sorted head


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".parquet"])
def test_every_file_format_loads(tmp_path, suffix):
    directory = write_task_dir(tmp_path / "d", sizes=(6, 4, 4), suffix=suffix)
    _, splits = load_splits(get_task("mr"), directory)
    assert len(splits["train"]) == 6 and splits["train"]["labels"][:2] == [0, 1]


def test_missing_test_split_is_skipped(tmp_path):
    directory = write_task_dir(tmp_path / "d", sizes=(6, 4, 4))
    (directory / "test.tsv").unlink()
    _, splits = load_splits(get_task("mr"), directory)
    assert set(splits) == {"train", "validation"}


def test_unlabeled_test_split_is_kept(tmp_path):
    directory = write_task_dir(tmp_path / "d", sizes=(6, 4, 4))
    pd.DataFrame({"sentence": ["a", "b"]}).to_csv(directory / "test.tsv", sep="\t", index=False)
    _, splits = load_splits(get_task("mr"), directory)
    assert splits["test"]["labels"] == [-1, -1]


def write_bad(tmp_path: Path, train: pd.DataFrame) -> Path:
    directory = write_task_dir(tmp_path / "bad", sizes=(4, 4, 4))
    write_frame(train, directory / "train.tsv")
    return directory


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (pd.DataFrame({"text": ["a"], "label": [0]}), "lacks column.*sentence"),
        (pd.DataFrame({"sentence": ["a"], "y": [0]}), "lacks the label column 'label'"),
        (
            pd.DataFrame({"sentence": ["a", "b"], "label": [0, 2]}),
            "label '2' on row 2 is not in the task's label set",
        ),
        (
            pd.DataFrame({"sentence": ["a"], "label": ["pos"]}),
            "'pos' on row 1 is not one of negative, positive",
        ),
        (pd.DataFrame({"sentence": ["a", "b"], "label": [1, 0.5]}), "label '0.5' on row 2"),
    ],
)
def test_bad_training_files_give_one_line_errors(tmp_path, train, message):
    with pytest.raises(XKDError, match=message) as info:
        load_splits(get_task("mr"), write_bad(tmp_path, train))
    assert "\n" not in str(info.value)


def test_missing_dir_split_empty_and_undecodable(tmp_path):
    with pytest.raises(XKDError, match="does not exist"):
        load_splits(get_task("mr"), tmp_path / "nope")
    directory = write_task_dir(tmp_path / "d", sizes=(4, 4, 4))
    (directory / "validation.tsv").unlink()
    with pytest.raises(XKDError, match="has no validation split"):
        load_splits(get_task("mr"), directory)
    write_task_dir(directory, sizes=(4, 4, 4))
    (directory / "train.tsv").write_text("")
    with pytest.raises(XKDError, match="is empty"):
        load_splits(get_task("mr"), directory)
    (directory / "train.tsv").write_bytes(b"sentence\tlabel\nok\t1\nbad \xff byte\t0\n")
    with pytest.raises(XKDError, match="line 3 is not valid UTF-8"):
        load_splits(get_task("mr"), directory)


def test_regression_targets_checked(tmp_path):
    directory = tmp_path / "sts"
    directory.mkdir()
    for split in ("train", "validation"):
        pd.DataFrame({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1.5, 4.0]}).to_csv(
            directory / f"{split}.tsv", sep="\t", index=False
        )
    _, splits = load_splits(get_task("stsb"), directory)
    assert splits["train"]["labels"] == [1.5, 4.0]
    pd.DataFrame({"sentence1": ["a"], "sentence2": ["c"], "label": [7.0]}).to_csv(
        directory / "train.tsv", sep="\t", index=False
    )
    with pytest.raises(XKDError, match=r"outside \[0.0, 5.0\]"):
        load_splits(get_task("stsb"), directory)
    pd.DataFrame({"sentence1": ["a"], "sentence2": ["c"], "label": ["x"]}).to_csv(
        directory / "train.tsv", sep="\t", index=False
    )
    with pytest.raises(XKDError, match="not a number"):
        load_splits(get_task("stsb"), directory)


def test_custom_task_with_string_labels_counts_them(tmp_path):
    directory = tmp_path / "c"
    directory.mkdir()
    for split in ("train", "validation"):
        pd.DataFrame({"q": ["a", "b", "c"], "a": ["x", "y", "z"], "y": ["yes", "no", "maybe"]}).to_csv(
            directory / f"{split}.csv", index=False
        )
    task, splits = load_splits(custom_task("qa", ("q", "a"), "y"), directory)
    assert task.num_labels == 3 and task.label_names == ("maybe", "no", "yes")
    assert splits["train"]["labels"] == [2, 1, 0]


def test_encode_and_dynamic_padding(tmp_path):
    tokenizer = make_tokenizer(tmp_path / "tok")
    assert tokenizer.convert_tokens_to_ids("good") != tokenizer.unk_token_id
    _, splits = load_splits(get_task("mr"), write_task_dir(tmp_path / "d", sizes=(6, 4, 4)))
    encoded = encode(splits["train"], get_task("mr"), {"teacher": tokenizer, "student": tokenizer}, max_length=5)
    assert "teacher__input_ids" in encoded.column_names and "student__input_ids" not in encoded.column_names
    assert max(len(ids) for ids in encoded["teacher__input_ids"]) == 5  # truncated
    rows = [
        {
            "teacher__input_ids": [2, 5, 3],
            "teacher__token_type_ids": [0, 0, 0],
            "teacher__attention_mask": [1, 1, 1],
            "labels": 1,
        },
        {
            "teacher__input_ids": [2, 3],
            "teacher__token_type_ids": [0, 0],
            "teacher__attention_mask": [1, 1],
            "labels": 0,
        },
    ]
    batch = Collator({"teacher": tokenizer, "student": tokenizer})(rows)
    assert batch["student"] is batch["teacher"]  # shared tokenizer: one encoding, one padded tensor
    assert batch["teacher"]["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    assert batch["teacher"]["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert torch.equal(batch["labels"], torch.tensor([1, 0]))


def test_different_tokenizers_get_separate_encodings(tmp_path):
    a = make_tokenizer(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ngood\n")
    from transformers import BertTokenizer

    b = BertTokenizer(vocab=str(tmp_path / "b" / "vocab.txt"))
    assert shared_roles({"teacher": a, "student": b}) == {"teacher": "teacher", "student": "student"}
    assert shared_roles({"teacher": a, "student": make_tokenizer(tmp_path / "c")})["student"] == "teacher"


def test_a_tokenizer_call_with_padding_keeps_its_fingerprint():
    """Fast tokenizers keep the last call's padding and truncation in their backend; the token ids do not change,
    so teacher and student still share one encoding (and Aguilar's attention maps still line up)."""
    from tiny import make_mpnet_tokenizer

    from xkd.data import tokenizer_fingerprint, tokenizer_spec_fingerprint

    used, fresh = make_mpnet_tokenizer(), make_mpnet_tokenizer()
    spec = tokenizer_spec_fingerprint(used)
    used(["a b c", "d"], padding="max_length", truncation=True, max_length=8)
    assert tokenizer_spec_fingerprint(used) != spec  # the state did change
    assert tokenizer_fingerprint(used) == tokenizer_fingerprint(fresh)
    assert shared_roles({"teacher": used, "student": fresh}) == {"teacher": "teacher", "student": "teacher"}


def _tokenizers_of_every_kind(tmp_path):
    from tiny import WORDS, make_mpnet_tokenizer

    from xkd.students.vocab import build_sentencepiece_tokenizer, build_word_tokenizer

    texts = [" ".join(WORDS[i : i + 7]) for i in range(0, len(WORDS) - 7, 3)]
    return {
        "bert word pieces": make_tokenizer(tmp_path / "tok"),
        "mpnet word pieces (pad id 1)": make_mpnet_tokenizer(),
        "xkd words": build_word_tokenizer(texts, 1, 1000),
        "xkd sentencepiece": build_sentencepiece_tokenizer(texts * 20, 60),
    }


TEXTS_TO_ENCODE = [
    "the film was good .",
    "",
    "   ",
    "a dull , flat story with an unknownword and naïve café 😀",
    " ".join(["good"] * 80),  # truncated
    "[CLS] good [SEP] [MASK] <s> story </s>",  # special tokens written in the text
    "GOOD Film",
]


@pytest.mark.parametrize("max_length", [6, 64])
def test_fast_tokenization_and_padding_equal_transformers(tmp_path, max_length):
    """tokenize_texts reads the Rust encodings directly and pad_rows writes arrays itself (for speed); both must
    give exactly what transformers' own calls give, keys and order included, for every kind of tokenizer xkd uses."""
    from xkd.data import _plain_fast, pad_rows, tokenize_texts

    for name, tokenizer in _tokenizers_of_every_kind(tmp_path).items():
        ours = tokenize_texts(tokenizer, [TEXTS_TO_ENCODE], max_length)
        theirs = dict(tokenizer(TEXTS_TO_ENCODE, truncation=True, max_length=max_length))
        assert list(ours) == list(theirs) and ours == theirs, name
        assert _plain_fast(tokenizer), name  # the fast path was the one compared
        rows = [dict(zip(ours, values, strict=True)) for values in zip(*ours.values(), strict=True)]
        for side in ("right", "left"):
            tokenizer.padding_side = side
            padded, expected = pad_rows(tokenizer, rows), dict(tokenizer.pad(rows, return_tensors="pt"))
            assert list(padded) == list(expected), (name, side)
            for key, tensor in expected.items():
                assert padded[key].dtype == tensor.dtype and torch.equal(padded[key], tensor), (name, side, key)
        tokenizer.padding_side = "right"
