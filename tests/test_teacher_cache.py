"""The teacher-output cache (exact, reused, rebuilt when stale) and length-bucketed batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from tiny import QUICK, distill, load_benchmark, metrics_lines, run, save_tiny

from xkd.data import Collator, LengthBuckets, encode, example_lengths, load_splits, make_loader
from xkd.tasks import get_task
from xkd.teacher_cache import list_caches, open_or_build
from xkd.teachers import load_teacher


def _metrics(out):
    return metrics_lines(out)


def cache_inputs(task_dir, teacher_dir, max_length: int = 16):
    """The tiny teacher, its collator and the encoded MR splits a cache is built from (and the raw splits)."""
    task, raw = load_splits(get_task("mr"), task_dir)
    teacher = load_teacher(str(teacher_dir), task)
    splits = DatasetDict({n: encode(s, task, {"teacher": teacher.tokenizer}, max_length) for n, s in raw.items()})
    return teacher, Collator({"teacher": teacher.tokenizer}), splits, task, raw


def test_cached_trace_equals_the_online_teacher(tmp_path, task_dir, bert_teacher_dir):
    teacher, collator, splits, task, raw = cache_inputs(task_dir, bert_teacher_dir)
    logs: list[str] = []
    cache = open_or_build(teacher, splits, collator, tmp_path / "c", {"task": "mr"}, 16, logs.append, progress=False)
    batch = collator([splits["train"][i] for i in (5, 0, 33, 7)])  # out of file order on purpose
    cached = cache.trace("train", batch["index"], batch["teacher"]["attention_mask"])
    with torch.no_grad():
        online = teacher(batch["teacher"])
    torch.testing.assert_close(cached.logits, online.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(cached.layer_vectors, online.layer_vectors, rtol=0, atol=1e-6)
    assert cached.pseudo_logits is None and cache.meta["splits"] == {"train": 64, "validation": 32, "test": 32}
    # Opened again with the same teacher and data: reused, not rebuilt.
    again = open_or_build(teacher, splits, collator, tmp_path / "c", {}, 16, logs.append, progress=False)
    assert "reusing" in logs[-1] and again.meta["fingerprint"] == cache.meta["fingerprint"]
    # Another max length tokenizes differently: the fingerprint differs and the cache is rebuilt, and said.
    longer = DatasetDict({n: encode(s, task, {"teacher": teacher.tokenizer}, 4) for n, s in raw.items()})
    open_or_build(teacher, longer, collator, tmp_path / "c", {}, 4, logs.append, progress=False)
    assert "does not match" in logs[-2] and "rebuilding" in logs[-2]


def test_the_labelling_pass_runs_without_autograd(tmp_path, task_dir, bert_teacher_dir):
    """A pass with autograd on keeps every activation for a backward pass that never comes: slower, and on a GPU
    memory that grows with the batch. The teacher's parameters train elsewhere (pseudo heads), so they may still
    require gradients when it labels."""
    teacher, collator, splits, _, _ = cache_inputs(task_dir, bert_teacher_dir)
    for p in teacher.parameters():
        p.requires_grad_(True)
    seen: list[bool] = []
    teacher.register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    open_or_build(teacher, splits, collator, tmp_path / "c", {"task": "mr"}, 16, lambda _: None, progress=False)
    assert seen and not any(seen)


def test_a_tokenizer_call_keeps_the_cache_and_earlier_caches_are_reused(tmp_path, task_dir, bert_teacher_dir):
    """The fingerprint ignores the fast tokenizer's padding/truncation state (which any call changes); a cache
    stored under the earlier fingerprint, which hashed that state, is reused, not labelled again."""
    from xkd.teacher_cache import fingerprints

    teacher, collator, splits, _, _ = cache_inputs(task_dir, bert_teacher_dir)
    logs: list[str] = []
    cache = open_or_build(teacher, splits, collator, tmp_path / "c", {}, 16, logs.append, progress=False)
    now, before = fingerprints(teacher, splits, collator, 16)
    assert cache.meta["fingerprint"] == now != before
    teacher.tokenizer(["a b"], padding="max_length", max_length=7, truncation=True)  # another backend state
    assert fingerprints(teacher, splits, collator, 16)[0] == now
    open_or_build(teacher, splits, collator, tmp_path / "c", {}, 16, logs.append, progress=False)
    assert "reusing" in logs[-1]

    teacher.tokenizer(["a b"], truncation=True, max_length=16)  # the state the cache was stored under
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    (tmp_path / "c" / "meta.json").write_text(json.dumps({**meta, "fingerprint": before}))  # as stored before
    again = open_or_build(teacher, splits, collator, tmp_path / "c", {}, 16, logs.append, progress=False)
    assert "reusing" in logs[-1] and again.meta["fingerprint"] == before


def test_cached_distillation_equals_online_distillation(tmp_path, task_dir, bert_teacher_dir):
    """Universal-KD reads final logits, pseudo-logits and layer vectors: all from the cache, bit for bit."""
    base = [*distill(bert_teacher_dir, task_dir), "--method", "universal", "--student-layers", "2", *QUICK]
    online = run(*base, "--teacher-cache", "off", "--output-dir", str(tmp_path / "online"))
    assert online.exit_code == 0, online.output
    cached = run(*base, "--output-dir", str(tmp_path / "cached"))
    assert cached.exit_code == 0, cached.output
    assert "teacher cache: one teacher pass" in cached.stderr
    a, b = _metrics(tmp_path / "online"), _metrics(tmp_path / "cached")
    for x, y in zip(a, b, strict=True):
        for name, value in x["train"].items():
            assert y["train"][name] == pytest.approx(value, abs=1e-5), name
        assert y["validation"] == x["validation"]
    summary = json.loads((tmp_path / "cached" / "summary.json").read_text())
    online_summary = json.loads((tmp_path / "online" / "summary.json").read_text())
    assert summary["teacher"]["metrics"] == online_summary["teacher"]["metrics"]
    assert summary["teacher"]["cache"] and "cache" not in online_summary["teacher"]
    # A second run (another seed) reuses the cache.
    third = run(*base, "--seed", "3", "--output-dir", str(tmp_path / "seed3"))
    assert third.exit_code == 0 and "teacher cache: reusing" in third.stderr


def test_cache_cli_build_info_clear_and_stale_rebuild(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher")
    args = ["--teacher", str(teacher), "--data-dir", str(task_dir), "--max-length", "16", "--no-progress"]
    built = run("cache", "build", *args, "--method", "kd", "--augment", "none")  # the gold splits' cache alone
    assert built.exit_code == 0, built.output
    meta = json.loads(built.stdout)
    assert meta["splits"] == {"train": 64, "validation": 32, "test": 32} and meta["task"] == "mr"
    info = run("cache", "info", "--json")
    assert [c["dir"] for c in json.loads(info.stdout)] == [meta["dir"]]
    assert "teacher" in run("cache", "info").stdout
    # The distillation run finds the cache `cache build` made.
    kd = run(*distill(teacher, task_dir), "--method", "kd", "--student-layers", "1", *QUICK, "--output-dir", "r1")
    assert kd.exit_code == 0 and f"teacher cache: reusing {meta['dir']}" in kd.stderr
    # The teacher is re-trained in place: same path, other weights; the stale cache is rebuilt, and the log says so.
    state = load_teacher(str(teacher), get_task("mr")).model
    with torch.no_grad():
        state.classifier.weight.add_(1.0)
    state.save_pretrained(teacher)
    again = run(*distill(teacher, task_dir), "--method", "kd", "--student-layers", "1", *QUICK, "--output-dir", "r2")
    assert again.exit_code == 0 and "does not match" in again.stderr and "rebuilding" in again.stderr
    assert len(list_caches()) == 1
    # Clearing.
    assert run("cache", "clear").exit_code == 2
    missing = run("cache", "clear", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and "not a teacher cache" in missing.output
    cleared = run("cache", "clear", "--task", "mr")
    assert cleared.exit_code == 0 and "removed 1" in cleared.stdout and list_caches() == []


def test_attention_methods_run_the_teacher_online_and_say_so(tmp_path, task_dir, bert_teacher_dir):
    args = [*distill(bert_teacher_dir, task_dir), "--method", "aguilar", "--student-layers", "2", *QUICK]
    result = run(*args, "--max-steps", "2", "--output-dir", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert "teacher cache: not used: aguilar needs attention maps" in result.stderr
    assert list_caches() == []


def test_length_buckets_cover_every_example_once_and_pad_less():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000)
    sampler = LengthBuckets(lengths, batch_size=16, shuffle=True, seed=7, chunk=10)
    sampler.for_epoch(1)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(1000)) and len(first) == len(sampler) == 63
    sampler.for_epoch(2)
    second = list(sampler)
    assert first != second
    sampler.for_epoch(1)
    assert list(sampler) == first  # the epoch alone decides the order (resumable)
    padded = sum(len(b) * lengths[b].max() for b in first)
    plain = rng.permutation(1000)
    padded_random = sum(16 * lengths[plain[i : i + 16]].max() for i in range(0, 1000, 16))
    assert padded < 0.75 * padded_random
    evaluation = list(LengthBuckets(lengths, 16, shuffle=False))
    flat = [i for b in evaluation for i in b]
    assert sorted(flat) == list(range(1000)) and list(lengths[flat]) == sorted(lengths)


def test_example_lengths_and_bucketed_loader(task_dir, bert_teacher_dir):
    task, raw = load_splits(get_task("mr"), task_dir)
    teacher = load_teacher(str(bert_teacher_dir), task)
    split = encode(raw["train"], task, {"teacher": teacher.tokenizer}, 16)
    lengths = example_lengths(split)
    assert list(lengths) == [len(ids) for ids in split["teacher__input_ids"]]
    loader = make_loader(split, Collator({"teacher": teacher.tokenizer}), 8, shuffle=True, seed=0, buckets=True)
    seen = torch.cat([batch["index"] for batch in loader])
    assert sorted(seen.tolist()) == list(range(len(split)))
    empty = Dataset.from_dict({"labels": [0, 1]})
    assert list(example_lengths(empty)) == [0, 0]


def test_collator_without_the_cached_teachers_inputs(task_dir, bert_teacher_dir):
    from xkd.students import build_student

    task, raw = load_splits(get_task("mr"), task_dir)
    teacher = load_teacher(str(bert_teacher_dir), task)
    cnn = build_student("cnn", teacher, task, list(raw["train"]["sentence"]), layers=1, log=lambda m: None)
    tokenizers = {"teacher": teacher.tokenizer, "student": cnn.tokenizer}
    split = encode(raw["train"], task, tokenizers, 16)
    full = Collator(tokenizers)
    rows = [split[i] for i in range(4)]
    lean = full.without("teacher")(rows)
    assert "teacher" not in lean and torch.equal(lean["student"]["input_ids"], full(rows)["student"]["input_ids"])
    assert torch.equal(lean["index"], torch.arange(4))


def test_a_cache_another_process_is_building_is_waited_for_then_reused(tmp_path, task_dir, bert_teacher_dir):
    import threading

    from xkd.files import file_lock

    teacher, collator, splits, _, _ = cache_inputs(task_dir, bert_teacher_dir)
    logs: list[str] = []
    opened = []
    with file_lock(tmp_path / ".c.lock") as held:  # another process (here: this test) builds the cache
        assert held
        worker = threading.Thread(
            target=lambda: opened.append(
                open_or_build(teacher, splits, collator, tmp_path / "c", {}, 16, logs.append, progress=False)
            )
        )
        worker.start()
        worker.join(timeout=2)
        assert worker.is_alive() and logs == [
            f"teacher cache: another process is building {tmp_path / 'c'}; waiting for it"
        ]
    worker.join(timeout=60)
    assert opened and opened[0].meta["splits"]["train"] == 64
    with file_lock(tmp_path / ".c.lock") as free:
        assert free  # released after the build


def test_an_interrupted_labelling_pass_continues_and_ends_with_the_same_files(tmp_path, task_dir, bert_teacher_dir,
                                                                               monkeypatch):  # fmt: skip
    import xkd.teacher_cache as teacher_cache

    teacher, collator, splits, _, _ = cache_inputs(task_dir, bert_teacher_dir)
    monkeypatch.setattr(teacher_cache, "SAVE_EVERY_SECONDS", 0.0)  # record progress after every batch
    whole = open_or_build(teacher, splits, collator, tmp_path / "whole", {}, 16, print, progress=False, batch_size=8)

    class Interrupted(Exception):
        pass

    calls = {"n": 0}
    forward = teacher.forward

    def flaky(*args, **kwargs):  # the fifth batch never finishes (a Ctrl-C or a kill)
        calls["n"] += 1
        if calls["n"] == 5:
            raise Interrupted
        return forward(*args, **kwargs)

    monkeypatch.setattr(teacher, "forward", flaky)
    with pytest.raises(Interrupted):
        open_or_build(teacher, splits, collator, tmp_path / "cut", {}, 16, print, progress=False, batch_size=8)
    assert not (tmp_path / "cut").exists() and (tmp_path / "cut.building" / "progress.json").is_file()
    # The fifth batch is launched before the fourth is waited for (the copies overlap the next forward pass), so the
    # fourth, in flight when the fifth failed, is not written: 3 batches were.
    assert json.loads((tmp_path / "cut.building" / "progress.json").read_text())["done"] == {"train": 3}
    calls["n"] = -1000  # no more failures; count the batches the resumed pass runs
    resumed = open_or_build(teacher, splits, collator, tmp_path / "cut", {}, 16, print, progress=False, batch_size=8)
    assert calls["n"] + 1000 == 16 - 3  # 128 examples in batches of 8: the 3 written before are not run again
    assert not (tmp_path / "cut.building").exists()
    for split in whole.arrays:
        for field, array in whole.arrays[split].items():
            assert np.array_equal(np.asarray(array), np.asarray(resumed.arrays[split][field])), (split, field)


@pytest.mark.parametrize("from_file", [True, False])
def test_labelling_benchmark_runs_on_a_tiny_setup(tmp_path, task_dir, bert_teacher_dir, from_file):
    """`benchmarks/labelling.py`'s quick form (a saved set, or tang texts made from the training split), so it
    cannot rot between real runs."""
    labelling = load_benchmark("labelling")
    texts = tmp_path / "set.txt"
    texts.write_text("".join(f"a film number {i} that never drags\n" for i in range(30)))
    result = labelling.measure(str(bert_teacher_dir), "mr", str(task_dir), 24, ("logits",), "float16", 8, "cpu",
                               str(texts) if from_file else None)  # fmt: skip
    assert result["texts"] == 24 and result["device"] == "cpu" and result["fields"] == ["logits"]
    assert result["stored_bytes_per_text"] == 2 * 2  # two float16 logits a text
    assert result["plain_texts_per_second"] > 0 and result["labelling_texts_per_second"] > 0
