"""Ensembles of teachers: the combination, the packed inputs of members with their own tokenizers, the members'
own caches, runs through the CLI, and what ensembles refuse."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import DatasetDict
from tiny import BEFORE_DEFAULTS, QUICK, make_mpnet_tokenizer, make_trace, run, save_tiny
from transformers import RobertaConfig, RobertaForSequenceClassification

from xkd.config import DistillConfig, coerce_value
from xkd.data import encode, load_splits
from xkd.errors import XKDError
from xkd.tasks import get_task
from xkd.teachers import load_teacher
from xkd.teachers.ensemble import (
    EnsembleTeacher,
    combine_logits,
    combine_traces,
    ensemble_collator,
    member_collator,
    teacher_tokenizers,
)

MR = get_task("mr")


def save_own_tokenizer_teacher(directory):
    """A tiny RoBERTa of the tiny BERT's width (32) reading MPNet-style token ids: another tokenizer, same width."""
    torch.manual_seed(1)
    tokenizer = make_mpnet_tokenizer()
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=72, pad_token_id=tokenizer.pad_token_id,
                           num_labels=2)  # fmt: skip
    RobertaForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def ensemble_args(data, *teachers, method="kd"):
    return ["distill", *(x for t in teachers for x in ("--teacher", str(t))), "--data-dir", str(data),
            *BEFORE_DEFAULTS, "--method", method, *QUICK]  # fmt: skip


def summary_of(directory):
    return json.loads((directory / "summary.json").read_text())


# ------------------------------------------------------------------------------------------------ combination


def _trace(logits, layers, width, heads=True):
    return make_trace(layers=layers, width=width, logits=logits, pseudo_logits=heads, drawn=True)


def test_combined_logits_are_the_weighted_mean_of_logits_or_of_probabilities():
    torch.manual_seed(0)
    a, b = _trace(torch.randn(5, 3), 4, 8), _trace(torch.randn(5, 3) * 4, 2, 8)
    by_logits = combine_traces([a, b], [2, 1], "logits")
    torch.testing.assert_close(by_logits.logits, (2 * a.logits + b.logits) / 3)
    by_probs = combine_traces([a, b], [2, 1], "probabilities")
    mean = (2 * a.logits.softmax(-1) + b.logits.softmax(-1)) / 3
    torch.testing.assert_close(by_probs.logits.softmax(-1), mean)
    torch.testing.assert_close(by_probs.logits, mean.log())
    # Pseudo logits and (same-width) layer vectors: the members' layers side by side, 4 + 2.
    torch.testing.assert_close(by_logits.pseudo_logits, torch.cat([a.pseudo_logits, b.pseudo_logits], 1))
    torch.testing.assert_close(by_logits.layer_vectors, torch.cat([a.layer_vectors, b.layer_vectors], 1))
    assert by_logits.num_layers == 6
    # Widths differ: no common space for the vectors, but the layer count stays; a member without heads: none.
    mixed = combine_traces([a, _trace(torch.randn(5, 3), 2, 12, heads=False)], [1, 1])
    assert mixed.layer_vectors.shape == (5, 6, 0) and mixed.pseudo_logits is None


def test_multi_label_probabilities_average_each_labels_sigmoid():
    a, b = torch.tensor([[2.0, -30.0, 0.0]]), torch.tensor([[-1.0, 30.0, 0.5]])
    combined = combine_logits([a, b], [3, 1], "sigmoids")
    expected = 0.75 * a.sigmoid() + 0.25 * b.sigmoid()
    torch.testing.assert_close(combined.sigmoid(), expected)
    assert torch.isfinite(combined).all()  # confident members (|z| = 30) stay finite


def test_universal_across_widths_reads_only_outputs_and_hidden_scores_are_refused(tmp_path, task_dir, bert_teacher_dir):
    wide = save_tiny(tmp_path / "wide", kind="mpnet")  # width 48 against the tiny BERT's 32, its own tokenizer
    args = [*ensemble_args(task_dir, bert_teacher_dir, wide, method="universal"), "--output-dir", str(tmp_path / "u")]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert summary_of(tmp_path / "u")["teacher"]["layers"] == 8  # 4 + 4 pseudo classifiers in one projector
    refused = run(*args[:-1], str(tmp_path / "h"), "-O", "score=hidden")
    assert refused.exit_code == 2 and "reads the teacher's layer vectors" in refused.output, refused.output


def test_members_with_their_own_tokenizers_read_their_own_inputs(tmp_path, task_dir, bert_teacher_dir):
    task, raw = load_splits(MR, task_dir)
    other = save_own_tokenizer_teacher(tmp_path / "other")
    members = [load_teacher(str(bert_teacher_dir), task), load_teacher(str(other), task)]
    ensemble = EnsembleTeacher(members, [3, 1], "probabilities")
    tokenizers = teacher_tokenizers(ensemble)
    assert list(tokenizers) == ["teacher", "teacher2"]
    splits = DatasetDict({"train": encode(raw["train"], task, tokenizers, 16)})
    collator = ensemble_collator(tokenizers, members=2)
    rows = [splits["train"][i] for i in (3, 0, 9)]
    batch = collator(rows)
    assert "teacher2" not in batch and "2/input_ids" in batch["teacher"]
    with torch.no_grad():
        combined = ensemble(batch["teacher"]).logits
        alone = [m(member_collator(collator, k)(rows)["teacher"]).logits for k, m in enumerate(members)]
    assert not torch.equal(alone[0], alone[1])
    expected = (0.75 * alone[0].softmax(-1) + 0.25 * alone[1].softmax(-1)).log()
    torch.testing.assert_close(combined, expected)
    assert "teacher" not in collator.without("teacher")(rows)  # a cached ensemble pads no member's inputs


# ------------------------------------------------------------------------------------------------- end to end


def test_kd_ensemble_records_members_and_reuses_each_members_own_cache(tmp_path, task_dir, bert_teacher_dir,
                                                                         roberta_teacher_dir):  # fmt: skip
    args = ensemble_args(task_dir, bert_teacher_dir, roberta_teacher_dir)
    first = run(*args, "--teacher-weights", "3,1", "--output-dir", str(tmp_path / "a"))
    assert first.exit_code == 0, first.output
    assert first.stderr.count("teacher cache: one teacher pass") == 2
    teacher = summary_of(tmp_path / "a")["teacher"]
    assert teacher["weights"] == [0.75, 0.25] and teacher["average"] == "logits" and teacher["layers"] == 8
    assert [m["weight"] for m in teacher["members"]] == [0.75, 0.25]
    assert all(set(m["metrics"]) == {"validation", "test"} for m in teacher["members"])
    assert "ensemble member" in first.stdout and set(teacher["metrics"]) == {"validation", "test"}
    # A second run, another seed and averaging: every member's cache is reused, nothing is built.
    again = run(*args, "--seed", "3", "--ensemble-average", "probabilities", "--output-dir", str(tmp_path / "b"))
    assert again.exit_code == 0, again.output
    assert "one teacher pass" not in again.stderr and again.stderr.count("teacher cache: reusing") == 2
    # A one-teacher run of a member reads the very cache the ensemble built for it.
    alone = run(*ensemble_args(task_dir, roberta_teacher_dir), "--output-dir", str(tmp_path / "c"))
    assert alone.exit_code == 0 and f"teacher cache: reusing {teacher['members'][1]['cache']}" in alone.stderr
    assert "members" not in summary_of(tmp_path / "c")["teacher"]


def test_universal_ensemble_of_teachers_with_different_tokenizers(tmp_path, task_dir, bert_teacher_dir):
    other = save_own_tokenizer_teacher(tmp_path / "other")
    out = tmp_path / "u"
    args = ensemble_args(task_dir, bert_teacher_dir, other, method="universal")
    result = run(*args, "--student", "cnn", "-O", "mode=ca", "--heads-epochs", "2", "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    alpha = json.loads((out / "attention.jsonl").read_text().splitlines()[-1])["alpha"]
    assert len(alpha[0]) == 4 + 3  # each student layer attends over both members' layers together
    summary = summary_of(out)
    assert [m["layers"] for m in summary["teacher"]["members"]] == [4, 3]
    assert all("heads" in m for m in summary["teacher"]["members"])  # each member's own pseudo heads
    # Online (no cache), the packed inputs give the same ensemble.
    online = run(*args, "--student", "cnn", "-O", "mode=ca", "--teacher-cache", "off", "--output-dir", str(out) + "o")
    assert online.exit_code == 0, online.output
    assert summary_of(tmp_path / "uo")["teacher"]["metrics"] == summary["teacher"]["metrics"]


def test_cache_build_makes_each_members_cache(tmp_path, task_dir, bert_teacher_dir, roberta_teacher_dir):
    built = run("cache", "build", "--teacher", str(bert_teacher_dir), "--teacher", str(roberta_teacher_dir),
                "--data-dir", str(task_dir), "--max-length", "16", "--method", "kd", "--no-progress")  # fmt: skip
    assert built.exit_code == 0, built.output
    assert len(json.loads(built.stdout)) == 2
    result = run(*ensemble_args(task_dir, bert_teacher_dir, roberta_teacher_dir), "--output-dir", str(tmp_path / "r"))
    assert result.exit_code == 0 and result.stderr.count("teacher cache: reusing") == 2


# ------------------------------------------------------------------------------------------ config and errors


def test_teacher_values_one_string_or_a_list():
    assert coerce_value("teacher", ["a"]) == "a" and coerce_value("teacher", "a") == "a"
    assert coerce_value("teacher", ["a", "b"]) == ["a", "b"]
    assert coerce_value("teacher_weights", "2,1") == [2.0, 1.0] and coerce_value("teacher_weights", [1, 2]) == [1, 2]
    with pytest.raises(XKDError, match="config key 'teacher_weights'"):
        coerce_value("teacher_weights", "2,x")
    assert DistillConfig().teacher_weights == [] and DistillConfig().ensemble_average == "logits"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "pkd"], "method 'pkd' reads the teacher's layer vectors, and the ensemble's members have "),
        (["--method", "aguilar"], "method 'aguilar' compares attention maps with one teacher's"),
        (["--teacher-weights", "1,2,3"], "--teacher-weights has 3 value(s) for 2 teacher(s)"),
        (["--teacher-weights", "1,0"], "teacher weights must all be > 0"),
        (["--assistant-layers", "1"], "TAKD assistants learn from one teacher, not an ensemble"),
        (["--teacher", "{bert}"], "is given twice; weigh it instead"),
    ],
)
def test_what_ensembles_refuse_is_one_line(tmp_path, task_dir, bert_teacher_dir, extra, message):
    wide = save_tiny(tmp_path / "wide", kind="mpnet")  # width 48 against the tiny BERT's 32
    args = [a for a in ensemble_args(task_dir, bert_teacher_dir, wide) if a not in ("--method", "kd")]
    result = run(*args, *(a.format(bert=bert_teacher_dir) for a in extra), "--output-dir", str(tmp_path / "r"))
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.strip().count("\n") == 0, result.output
    assert not (tmp_path / "r").exists()


def test_a_study_compares_a_teacher_an_ensemble_and_saved_outputs(tmp_path, task_dir, bert_teacher_dir,
                                                                   isolated_cache):  # fmt: skip
    """[teachers.NAME] sections may be an ensemble (each member prepared once, with its heads) or saved outputs
    (nothing to prepare); rerunning skips every finished run (the members' heads fingerprints are checked) and the
    report shows each member's pseudo heads."""
    import pandas as pd
    from tiny import write_frame

    wide = save_tiny(tmp_path / "wide", kind="mpnet")  # another family and width (48 against 32)
    train = pd.read_csv(task_dir / "train.tsv", sep="\t")
    outputs = tmp_path / "labels.jsonl"  # an outside labeller's hard labels: here the gold ones
    write_frame(train[["sentence", "label"]], outputs)
    base = f"""
seeds = [1]
baseline = "kd"
[base]
task = "mr"
data_dir = "{task_dir}"
student = "cnn"
student_layers = 1
student_options = {{ embedding_dim = 16, channels = 8 }}
epochs = 1
batch_size = 16
max_length = 16
heads_epochs = 1
latency = false
[methods.kd]
method = "kd"
"""
    models = (
        f'[teachers.one]\nteacher = "{bert_teacher_dir}"\n'
        + f'[teachers.pair]\nteacher = ["{bert_teacher_dir}", "{wide}"]\n'
    )
    saved_outputs = f'[teachers.saved]\nteacher_outputs = "{outputs}"\n'
    universal = '[methods.universal]\nmethod = "universal"\n'
    refused = tmp_path / "refused.toml"  # saved outputs hold no layers for Universal-KD
    refused.write_text(base + models + saved_outputs + universal)
    result = run("study", str(refused), "--dry-run")
    assert result.exit_code == 2 and "saved / universal" in result.output, result.output
    recipe, with_outputs = tmp_path / "study.toml", tmp_path / "outputs.toml"
    recipe.write_text(base + models + universal)
    with_outputs.write_text(base + saved_outputs)

    out = tmp_path / "out"
    first = run("study", str(recipe), "--output-dir", str(out), "--no-progress")
    assert first.exit_code == 0, first.output
    study = json.loads((out / "study.json").read_text())
    pair = study["teachers"]["pair"]
    assert [m["path"] for m in pair["members"]] == [str(bert_teacher_dir), str(wide)]
    for entry in study["runs"]:
        cfg = json.loads((tmp_path / entry["dir"] / "config.json").read_text())
        summary = summary_of(tmp_path / entry["dir"])
        if entry["group"]["teacher"] == "pair":
            assert cfg["teacher"] == [str(bert_teacher_dir), str(wide)]
            assert len(summary["teacher"]["members"]) == 2
        if entry["group"]["method"] == "universal":  # heads of every member, recorded per member
            recorded = summary["teacher"].get("members", [summary["teacher"]])
            assert all(len(m["heads_sha256"]) == 64 for m in recorded)
    again = run("study", str(recipe), "--output-dir", str(out), "--no-progress")
    assert again.exit_code == 0 and "4 finished" in again.output, again.output
    report = (out / "report.md").read_text()
    assert f"| pair | {bert_teacher_dir} + {wide} |" in report
    assert (out / "plots" / "teacher_heads_pair_member2.png").stat().st_size > 1000

    saved = run("study", str(with_outputs), "--output-dir", str(tmp_path / "saved"), "--no-progress")
    assert saved.exit_code == 0, saved.output
    (entry,) = json.loads((tmp_path / "saved" / "study.json").read_text())["runs"]
    assert summary_of(tmp_path / entry["dir"])["teacher"]["source"] == f"outputs:{outputs}"


def test_inspect_an_ensemble(tmp_path, task_dir, bert_teacher_dir):
    """`xkd inspect` with two teachers of different families and widths: the members, the combined trace (pseudo
    logits of all 4 + 3 layers) and what the ensemble refuses, as `xkd distill` would."""
    wide = save_tiny(tmp_path / "wide", kind="mpnet", layers=3)  # width 48 against the tiny BERT's 32
    args = ["inspect", "--teacher", str(bert_teacher_dir), "--teacher", str(wide), "--teacher-weights", "3,1",
            "--student", "cnn", "--student-layers", "2", "--data-dir", str(task_dir),
            "-S", "embedding_dim=8"]  # fmt: skip
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    teacher = report["teacher"]
    assert [m["source"] for m in teacher["members"]] == [str(bert_teacher_dir), str(wide)]
    assert [m["width"] for m in teacher["members"]] == [32, 48] and teacher["layers"] == 4 + 3
    assert "weights [0.75, 0.25]" in teacher["note"]
    assert teacher["trace"]["logits"] == [4, 2]
    methods = report["methods"]
    assert methods["universal"]["applies"] and methods["kd"]["applies"]
    assert not methods["pkd"]["applies"] and "different widths" in methods["pkd"]["why"]
    assert not methods["aguilar"]["applies"]
    table = run(*args)
    assert table.exit_code == 0 and "member 2: " + str(wide) in table.output, table.output


def test_resolved_teachers_are_placed_where_the_process_computes(monkeypatch, task_dir, bert_teacher_dir,
                                                                   roberta_teacher_dir):  # fmt: skip
    """On a GPU machine the teacher's heads pass and labelling pass must not run on the CPU: every resolved member
    goes to the process's device (here `meta` stands in for a GPU) before anything reads it."""
    import xkd.teachers.resolve as resolve

    monkeypatch.setattr(resolve, "process_device", lambda: torch.device("meta"))
    task, raw = load_splits(MR, task_dir)
    for teachers in ([str(bert_teacher_dir)], [str(bert_teacher_dir), str(roberta_teacher_dir)]):
        cfg = DistillConfig(task="mr", teacher=teachers if len(teachers) > 1 else teachers[0], max_length=16)
        teacher, _ = resolve.resolve_teachers(cfg, task, raw, False, print)
        members = getattr(teacher, "members", [teacher])
        assert len(members) == len(teachers)
        assert {p.device.type for m in members for p in m.parameters()} == {"meta"}
