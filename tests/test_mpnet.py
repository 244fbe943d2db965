"""A teacher of another family and tokenizer (MPNet, as all-mpnet-base-v2) on tiny models: fine-tune, pseudo heads,
cache, attentions, an MPNet BERT-k student from its layers, and a BERT student with its own tokenizer."""

import json

import pytest
import torch
from tiny import QUICK, distill, run, save_tiny

from xkd.methods import TermContext
from xkd.students import build_student
from xkd.tasks import get_task
from xkd.teachers import load_teacher

MR = get_task("mr")


@pytest.fixture
def mpnet_dir(tmp_path):
    return save_tiny(tmp_path / "mpnet", kind="mpnet")


def test_mpnet_teacher_fills_the_trace_with_attentions(mpnet_dir):
    teacher = load_teacher(str(mpnet_dir), MR)
    inputs = dict(teacher.tokenizer(["the film is good", "bad"], return_tensors="pt", padding=True))
    trace = teacher(inputs, output_attentions=True)
    assert trace.logits.shape == (2, 2) and trace.layer_vectors.shape == (2, 4, 48)
    assert trace.attentions.shape[:3] == (2, 4, 2)
    rows = trace.attentions.sum(-1)[0, :, :, : int(inputs["attention_mask"][0].sum())]
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)  # probabilities over keys
    assert len(teacher.layer_modules()) == 5  # embeddings + 4 layers: Aguilar's PID can freeze them


def test_mpnet_bert_k_copies_the_chosen_layers_and_the_relative_position_bias(mpnet_dir):
    teacher = load_teacher(str(mpnet_dir), MR)
    student = build_student("bert-k", teacher, MR, [], layers=2, init="uniform")
    assert student.config.model_type == "mpnet" and student.num_layers == 2
    src, dst = teacher.model.state_dict(), student.model.state_dict()
    for s, t in ((0, 1), (1, 3)):  # uniform 4 -> 2: teacher layers 1 and 3 (0-based)
        key = "mpnet.encoder.layer.{}.attention.attn.q.weight"
        assert torch.equal(dst[key.format(s)], src[key.format(t)])
    bias = "mpnet.encoder.relative_attention_bias.weight"
    assert torch.equal(dst[bias], src[bias])
    assert student.tokenizer is teacher.tokenizer


def test_a_bert_student_does_not_share_the_mpnet_tokenizer(tmp_path, mpnet_dir):
    teacher = load_teacher(str(mpnet_dir), MR)
    bert = save_tiny(tmp_path / "bert", layers=2)
    student = build_student("bert-k", teacher, MR, [], layers=2, init="uniform", checkpoint=str(bert))
    context = TermContext.between(student, teacher, MR)
    assert not context.shared_tokenizer
    assert (context.teacher_width, context.student_width) == (48, 32)


@pytest.mark.parametrize("method", ["kd", "universal", "pkd", "alp"])
def test_bert_student_learns_from_an_mpnet_teacher_with_methods_that_need_no_aligned_tokens(
    tmp_path, task_dir, mpnet_dir, method
):
    bert = save_tiny(tmp_path / "bert", layers=2)
    out = tmp_path / "run"
    args = ["--method", method, "--student", "bert-k", "-S", f"checkpoint={bert}", "--output-dir", str(out)]
    result = run(*distill(mpnet_dir, task_dir), *args, *QUICK)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teacher"]["layers"] == 4 and summary["student"]["layers"] == 2
    assert json.loads((out / "student" / "config.json").read_text())["model_type"] == "bert"


def test_aguilar_is_refused_across_tokenizers_with_the_reason(tmp_path, task_dir, mpnet_dir):
    bert = save_tiny(tmp_path / "bert", layers=2)
    args = ["--method", "aguilar", "--student", "bert-k", "-S", f"checkpoint={bert}"]
    result = run(*distill(mpnet_dir, task_dir), *args, "--output-dir", str(tmp_path / "r"), *QUICK)
    assert result.exit_code == 2
    assert "student must use the teacher's tokenizer" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r" / "summary.json").exists()


def test_bare_mpnet_is_fine_tuned_then_cached_and_distilled_into_an_mpnet_bert_k(tmp_path, task_dir):
    bare = save_tiny(tmp_path / "mpnet-bare", kind="mpnet", bare=True)
    out = tmp_path / "run"
    args = ["--method", "universal", "--teacher-epochs", "1", "--output-dir", str(out)]
    result = run(*distill(bare, task_dir), *args, *QUICK)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teacher"]["finetune_cached"] is False and "teacher has no pseudo classifiers" in result.output
    finetuned = summary["teacher"]["finetuned_dir"]
    assert json.loads((out / "student" / "config.json").read_text())["model_type"] == "mpnet"
    # The fine-tuned MPNet now carries its pseudo heads and cache: a second run trains and labels nothing.
    again = run(*distill(bare, task_dir), *args[:-1], str(tmp_path / "run2"), *QUICK)
    assert again.exit_code == 0, again.output
    assert "teacher cache: reusing" in again.output and "teacher has no pseudo classifiers" not in again.output
    second = json.loads((tmp_path / "run2" / "summary.json").read_text())["teacher"]
    assert second["finetune_cached"] is True and second["finetuned_dir"] == finetuned
