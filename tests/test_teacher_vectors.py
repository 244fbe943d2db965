"""Teacher-distilled input vectors (`-S vectors=teacher`): the pooled pass, PCA, SIF weights, the cache, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import QUICK, WORDS, distill, run, save_tiny

from xkd.errors import XKDError
from xkd.students import build_student
from xkd.students import teacher_vectors as tv
from xkd.tasks import get_task
from xkd.teachers.loading import load_teacher

MR = get_task("mr")
TEXTS = [" ".join(WORDS[i : i + 5]) for i in range(len(WORDS) - 4)] * 3


@pytest.fixture
def teacher(bert_teacher_dir):
    return load_teacher(str(bert_teacher_dir), MR)


def _build(teacher, path, kind="cnn", logs=None, texts=TEXTS, **options):
    """A student on distilled vectors; a word vocabulary unless `vocab` says otherwise (the CNN's default is the
    teacher's tokens: test_the_cnn_and_bilstm_read_the_teachers_tokens_by_default)."""
    options = {"vectors": "teacher", "vectors_dim": 8, "vocab": "word", **options}
    log = logs.append if logs is not None else (lambda m: None)
    return build_student(kind, teacher, MR, texts, layers=1, log=log, progress=False, teacher_path=str(path), **options)


def _count_passes(monkeypatch) -> list[int]:
    calls = []
    real = tv.teacher_pass

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tv, "teacher_pass", counted)
    return calls


def test_vectors_are_deterministic_and_cached(teacher, bert_teacher_dir, monkeypatch):
    calls = _count_passes(monkeypatch)
    logs: list[str] = []
    first = _build(teacher, bert_teacher_dir, logs=logs).embedding.weight.detach().clone()
    assert len(calls) == 1 and "PCA to 8" in logs[-1] and "explained variance" in logs[-1]
    assert list((bert_teacher_dir / tv.CACHE_DIR).glob("*.safetensors"))  # next to the (writable) teacher
    second = _build(teacher, bert_teacher_dir, logs=logs).embedding.weight.detach()
    assert len(calls) == 1, "the second build ran the teacher again"
    assert "from the cache" in logs[-1]
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert first.shape[1] == 8 and torch.all(first[0] == 0)  # [PAD] stays zero
    monkeypatch.setenv("XKD_CACHE_DIR", str(bert_teacher_dir.parent / "other-cache"))
    fresh = tv.distil_vectors  # a build without the cache (another directory) gives the same vectors
    weight, _ = fresh(
        teacher, ["[PAD]", "[UNK]", *WORDS], "word", tv.VectorOptions(dim=8), teacher_path=None, log=print
    )
    assert len(calls) == 2 and weight.shape == (len(WORDS) + 2, 8)


def test_another_teacher_or_vocabulary_rebuilds(teacher, bert_teacher_dir, tmp_path, monkeypatch):
    calls = _count_passes(monkeypatch)
    _build(teacher, bert_teacher_dir)
    _build(teacher, bert_teacher_dir, texts=TEXTS[:5])  # another vocabulary (fewer words)
    assert len(calls) == 2
    other = load_teacher(str(save_tiny(tmp_path / "other", layers=2)), MR)  # same path kind, other weights
    with torch.no_grad():
        other.model.bert.embeddings.word_embeddings.weight.mul_(2.0)
    _build(other, bert_teacher_dir)  # even under the same directory: the key is the teacher's content
    assert len(calls) == 3
    _build(teacher, bert_teacher_dir, vectors_layer="1")  # another option
    assert len(calls) == 4
    _build(teacher, bert_teacher_dir)
    assert len(calls) == 4


def test_a_damaged_cache_file_is_rebuilt(teacher, bert_teacher_dir, monkeypatch):
    calls = _count_passes(monkeypatch)
    first = _build(teacher, bert_teacher_dir).embedding.weight.detach().clone()
    (cached,) = (bert_teacher_dir / tv.CACHE_DIR).glob("*.safetensors")
    cached.write_bytes(cached.read_bytes()[:40])
    logs: list[str] = []
    again = _build(teacher, bert_teacher_dir, logs=logs).embedding.weight.detach()
    assert len(calls) == 2 and any("is damaged" in m and "rebuilding" in m for m in logs)
    torch.testing.assert_close(first, again, rtol=0, atol=0)


@pytest.mark.parametrize("layer", ["last", "2", "mean"])
def test_the_pooled_pass_equals_a_hand_computed_one(teacher, layer):
    words = ["good", "film", "superb", "the", "unseenword"]
    rows = tv.entry_ids(teacher.tokenizer, words, "word")
    index = tv.layer_index(layer, teacher.num_layers)
    pooled = tv.teacher_pass(teacher.model, rows, index, teacher.tokenizer.pad_token_id, progress=False, batch_size=2)
    for word, vector in zip(words, pooled, strict=True):
        ids = teacher.tokenizer(word, return_tensors="pt")["input_ids"]  # [CLS] pieces [SEP], no padding
        with torch.no_grad():
            hidden = teacher.model(input_ids=ids, output_hidden_states=True).hidden_states
        states = torch.stack(hidden[1:]).mean(0) if layer == "mean" else hidden[index]
        expected = states[0, 1:-1].mean(0)  # the word's own pieces: the specials left out
        np.testing.assert_allclose(vector, expected.numpy(), atol=1e-5, rtol=0)


def test_pca_and_sif_weighting_follow_the_formula(teacher):
    entries = ["[PAD]", "[UNK]", *WORDS]
    counts = np.arange(len(entries))[::-1].astype(np.int64)
    counts[0] = 0
    options = tv.VectorOptions(dim=6, weighting="none")
    plain, record = tv.distil_vectors(teacher, entries, "word", options, counts, log=lambda m: None)
    assert plain.shape == (len(entries), 6) and 0 < record["explained_variance"] <= 1
    weighted, _ = tv.distil_vectors(teacher, entries, "word", tv.VectorOptions(dim=6), counts, log=lambda m: None)
    p = counts / counts.sum()
    expected = plain.numpy() * (1e-4 / (1e-4 + p))[:, None]
    np.testing.assert_allclose(weighted.numpy(), expected, rtol=1e-5, atol=1e-7)
    zipf, _ = tv.distil_vectors(teacher, entries, "word", tv.VectorOptions(dim=6, weighting="zipf"), counts)
    inverse = 1 / np.arange(2, len(entries) + 2)
    expected = plain.numpy() * (1e-4 / (1e-4 + inverse / inverse.sum()))[:, None]
    expected[0] = 0
    np.testing.assert_allclose(zipf.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_dimensions_layers_and_vocabularies(teacher, bert_teacher_dir):
    logs: list[str] = []
    student = build_student(
        "cnn", teacher, MR, TEXTS, layers=1, log=logs.append, progress=False, vectors="teacher", vocab="word"
    )  # the default 256 is above the tiny teacher's width 32 and PCA's 29 entries: clipped, said in a line
    assert student.embedding.weight.shape[1] == len(WORDS) + 1 and any("using 32" in m for m in logs)
    with pytest.raises(XKDError, match="vectors_dim 64 is above the width of teacher .* pass -S vectors_dim=32"):
        _build(teacher, bert_teacher_dir, vectors_dim=64)
    with pytest.raises(XKDError, match="vectors_layer must be last, mean or a layer index 0..4"):
        _build(teacher, bert_teacher_dir, vectors_layer="top")
    with pytest.raises(XKDError, match="empty student vocabulary"):
        _build(teacher, bert_teacher_dir, texts=["", " "])
    pieces = _build(teacher, bert_teacher_dir, kind="bilstm", vocab="sentencepiece", max_vocab=40)
    assert pieces.embedding.weight.shape[1] == 8 and pieces.meta["vectors"]["dim"] == 8
    own = _build(teacher, bert_teacher_dir, vocab="teacher")
    assert own.embedding.weight.shape == (len(teacher.tokenizer), 8)


@pytest.mark.parametrize("kind", ["cnn", "bilstm"])
def test_the_cnn_and_bilstm_read_the_teachers_tokens_by_default(teacher, bert_teacher_dir, kind):
    student = build_student(kind, teacher, MR, TEXTS, layers=1, log=lambda m: None, progress=False, vectors_dim=8)
    assert student.meta["vocab"] == "teacher" and student.meta["vectors"]["dim"] == 8
    assert student.meta["vectors"]["layer"] == teacher.model.config.num_hidden_layers  # the tokens' default: last
    mean = build_student(kind, teacher, MR, TEXTS, layers=1, log=print, progress=False, vectors_layer="mean")
    assert mean.meta["vectors"]["layer"] == "mean"  # an explicit layer is kept
    assert student.embedding.weight.shape == (len(teacher.tokenizer), 8)
    text = "good superb unseenword"
    assert student.tokenizer(text)["input_ids"] == teacher.tokenizer(text)["input_ids"]


def test_the_default_vocabulary_reads_words_when_the_vectors_are_words_or_random(teacher, tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("".join(f"{w} {i / 10:.1f} 0.5 -0.5\n" for i, w in enumerate(WORDS[:10])))
    built = {
        name: build_student(name, teacher, MR, TEXTS, layers=1, log=lambda m: None, progress=False, **options)
        for name, options in {
            "static": {"vectors_dim": 8},  # the static student keeps words by default
            "cnn": {"vectors": str(glove)},  # GloVe holds words
            "bilstm": {"vectors": "", "embedding_dim": 6},  # random init
        }.items()
    }
    words = len(set(WORDS)) + 2  # [PAD], [UNK]
    assert {name: s.meta["vocab"] for name, s in built.items()} == {"static": "word", "cnn": "word", "bilstm": "word"}
    assert [tuple(s.embedding.weight.shape) for s in built.values()] == [(words, 8), (words, 3), (words, 6)]
    explicit = build_student(
        "cnn", teacher, MR, TEXTS, layers=1, log=print, progress=False, vectors="", vocab="teacher"
    )
    assert explicit.meta["vocab"] == "teacher"  # an explicit choice is kept: the teacher's input embeddings
    assert torch.equal(explicit.embedding.weight, teacher.model.get_input_embeddings().weight)


def test_vectors_from_another_model(teacher, bert_teacher_dir, tmp_path):
    base = save_tiny(tmp_path / "base", layers=2)
    student = _build(teacher, bert_teacher_dir, vectors_teacher=str(base), vectors_layer="last")
    assert student.meta["vectors"]["teacher"] == str(base) and student.meta["vectors"]["layer"] == 2  # base's last
    assert _build(teacher, bert_teacher_dir).meta["vectors"]["layer"] == "mean"  # the default
    assert list((base / tv.CACHE_DIR).glob("*.safetensors"))


@pytest.mark.parametrize("student", ["cnn", "bilstm"])
def test_distill_trains_end_to_end_and_the_student_reloads(tmp_path, task_dir, bert_teacher_dir, student):
    out = tmp_path / "run"
    args = ["--student", student, "--student-layers", "1", "-S", "vectors=teacher", "-S", "vectors_dim=8"]
    result = run(*distill(bert_teacher_dir, task_dir), *args, *QUICK, "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    assert "word vectors: distilled from" in result.output and "PCA to 8" in result.output
    from xkd.students import load_student

    saved = next(p.parent for p in out.rglob("student.json"))
    assert load_student(saved).embedding.weight.shape[1] == 8


@pytest.mark.parametrize(
    "args, message",
    [
        (["--teacher-outputs", "{d}/none.jsonl"], "pass -S vectors_teacher=MODEL or -S vectors=FILE"),
        (["--teacher", "{t}", "-S", "vectors_dim=33"], "vectors_dim 33 is above the width of teacher"),
        (["--teacher", "{t}", "-S", "vectors_layer=9"], "vectors_layer must be last, mean or a layer index"),
    ],
)
def test_refusals_are_one_line(tmp_path, task_dir, bert_teacher_dir, args, message):
    args = [a.format(d=tmp_path, t=bert_teacher_dir) for a in args]
    cnn = ["--student", "cnn", "--student-layers", "1", "--method", "kd", "-S", "vectors=teacher"]
    result = run("distill", "--data-dir", str(task_dir), *cnn, *QUICK, *args, "--output-dir", str(tmp_path / "r"))
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.strip().count("\n") == 0, result.output
    assert not (tmp_path / "r").exists()  # refused before anything loads


def test_an_empty_vocabulary_is_refused(teacher):
    with pytest.raises(XKDError, match="vectors=teacher needs a vocabulary and the student's is empty"):
        tv.distil_vectors(teacher, [], "word", tv.VectorOptions(dim=8), log=print)
