"""Multi-label tasks: golden losses and metrics worked out by hand (or by independent numpy), label parsing, bad
input, and a tiny 3-label task end to end through the CLI for every method that applies."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import FILLER, NEGATIVE, POSITIVE, QUICK, distill, run, save_tiny, write_frame

from xkd import Predictor
from xkd.data import load_splits
from xkd.errors import XKDError
from xkd.methods.losses import binary_kd_loss, kd_loss, task_loss
from xkd.methods.projector import LayerProjector
from xkd.metrics import compute_metrics
from xkd.tasks import Task, custom_task

LN3 = math.log(3.0)
LABELS = ("bad", "good", "plot")  # the sorted label set of the tiny task


# ------------------------------------------------------------------------------------------------- golden losses


def np_bernoulli_kl(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """KL(Bern(σ(t)) ‖ Bern(σ(s))) elementwise, in plain float64 numpy."""
    p, q = 1 / (1 + np.exp(-t)), 1 / (1 + np.exp(-s))
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def test_binary_kd_loss_matches_hand_computation():
    # Row 1: teacher [2 ln 3, 0] at τ=2 -> σ(ln 3) = 0.75 and σ(0) = 0.5; student [0, 0] -> 0.5, 0.5.
    # Label 1: KL = 0.75 ln(0.75/0.5) + 0.25 ln(0.25/0.5) = 0.1308120; label 2: 0. Mean over labels 0.0654060,
    # times τ² = 4 -> 0.2616240. Row 2 matches exactly (0); the batch mean halves it: 0.1308120.
    student = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    teacher = torch.tensor([[2 * LN3, 0.0], [1.0, -1.0]])
    assert binary_kd_loss(student, teacher, temperature=2.0).item() == pytest.approx(0.1308120, abs=1e-6)


def test_binary_kd_loss_against_independent_numpy():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 4)) * 3, rng.normal(size=(5, 4)) * 3
    expected = np_bernoulli_kl(t / 1.5, s / 1.5).mean() * 1.5**2
    got = binary_kd_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32), 1.5)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_binary_kd_with_one_label_is_softmax_kd_on_two_class_logits():
    z_s, z_t = torch.randn(6, 1), torch.randn(6, 1) * 2
    zeros = torch.zeros(6, 1)
    two_class = kd_loss(torch.cat([zeros, z_s], -1), torch.cat([zeros, z_t], -1), 3.0)
    assert binary_kd_loss(z_s, z_t, 3.0).item() == pytest.approx(two_class.item(), abs=1e-6)


def test_binary_kd_tells_all_on_from_all_off_where_softmax_kd_cannot():
    # A softmax is shift-invariant: "every label on" [5, 5] and "every label off" [-5, -5] look alike to it.
    on, off = torch.tensor([[5.0, 5.0]]), torch.tensor([[-5.0, -5.0]])
    assert kd_loss(off, on, 1.0).item() == pytest.approx(0.0, abs=1e-7)
    # Per-label Bernoulli KD: σ(5) = 0.9933071 against σ(-5) = 0.0066929 on each label:
    # 0.9933071 ln(0.9933071/0.0066929) + 0.0066929 ln(0.0066929/0.9933071) = 4.9330714.
    assert binary_kd_loss(off, on, 1.0).item() == pytest.approx(4.9330714, abs=1e-5)


def test_binary_kd_gradient_is_the_probability_gap():
    s = torch.zeros(1, 2, requires_grad=True)
    binary_kd_loss(s, torch.tensor([[LN3, 0.0]]), 1.0).backward()
    # d/ds KL(Bern(p_T) ‖ Bern(σ(s))) = σ(s) - p_T = [0.5 - 0.75, 0], averaged over the 2 labels.
    assert torch.allclose(s.grad, torch.tensor([[-0.125, 0.0]]), atol=1e-6)


def test_bce_gold_loss_by_hand_and_transfer_rows_count_zero():
    # BCE of logit ln 3 (p = 0.75) for label 1: -ln 0.75 = 0.2876821; logit 0 for label 0: -ln 0.5 = 0.6931472.
    # Mean over labels 0.4904146; the transfer row (all -1) adds 0 but counts in the batch: 0.2452073.
    logits = torch.tensor([[LN3, 0.0], [7.0, -7.0]])
    labels = torch.tensor([[1.0, 0.0], [-1.0, -1.0]])
    assert task_loss(logits, labels, regression=False, multi_label=True).item() == pytest.approx(0.2452073, abs=1e-6)


def np_projector(student, teacher, tau, variant):
    """Universal-KD's multi-label projector, independently: α = softmax_i(z^S_j · z^T_i), per-label Bernoulli KL
    averaged over labels, summed over student layers, averaged over the batch, times τ²."""
    scores = np.einsum("bmc,bnc->bmn", student, teacher)
    alpha = np.exp(scores - scores.max(-1, keepdims=True))
    alpha /= alpha.sum(-1, keepdims=True)
    if variant == "logits":
        target = np.einsum("bmn,bnc->bmc", alpha, teacher)
        kl = np_bernoulli_kl(target / tau, student / tau).mean(-1)
    else:
        pair = np_bernoulli_kl(teacher[:, None] / tau, student[:, :, None] / tau).mean(-1)
        kl = (alpha * pair).sum(-1)
    return tau * tau * kl.sum(-1).mean()


def bernoulli_projector(variant: str = "logits", tau: float = 1.0, score: str = "logits") -> LayerProjector:
    return LayerProjector(space="output", distance="bernoulli", variant=variant, temperature=tau, score=score,
                          student_width=3, teacher_width=3)  # fmt: skip


def test_multi_label_projector_matches_hand_computation():
    # One student layer with logits [0, 0] scores 0 against both teacher layers: α = [0.5, 0.5].
    # Teacher layers [2 ln 3, 0] and [0, 0]. Variant logits: target [ln 3, 0] -> σ = 0.75, 0.5 against 0.5, 0.5:
    # KL 0.1308120 and 0, mean 0.0654060. Variant loss: layer 1, σ(2 ln 3) = 0.9 against 0.5:
    # 0.9 ln 1.8 + 0.1 ln 0.2 = 0.3680642 and 0 -> mean 0.1840321; layer 2: 0; α-weighted: 0.0920161.
    student = torch.zeros(1, 1, 2)
    teacher = torch.tensor([[[2 * LN3, 0.0], [0.0, 0.0]]])
    assert bernoulli_projector("logits")(student, teacher).loss.item() == pytest.approx(0.0654060, abs=1e-6)
    assert bernoulli_projector("loss")(student, teacher).loss.item() == pytest.approx(0.0920161, abs=1e-6)


@pytest.mark.parametrize("variant", ["logits", "loss"])
def test_multi_label_projector_against_independent_numpy(variant):
    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(3, 2, 4)), rng.normal(size=(3, 5, 4)) * 2  # B=3, m=2, n=5, C=4
    got = bernoulli_projector(variant, tau=2.0)(torch.tensor(student).float(), torch.tensor(teacher).float())
    assert got.loss.item() == pytest.approx(np_projector(student, teacher, 2.0, variant), rel=1e-5)


@pytest.mark.parametrize("variant", ["logits", "loss"])
def test_multi_label_projector_reduces_to_the_softmax_projector_on_two_class_logits(variant):
    """Each label is the 2-class distribution softmax([0, z]): with one label the Bernoulli projector is the existing
    KL projector on the logits [0, z], attention included; with C labels and one attention for all of them (a
    hidden-space score), it is the mean over labels of the KL projector run on each label's [0, z_c]."""

    def two_class(z):  # [..., 1] -> [..., 2]
        return torch.cat([torch.zeros_like(z), z], -1)

    s, t = torch.randn(4, 2, 1), torch.randn(4, 3, 1) * 2
    softmax = LayerProjector(space="output", distance="kl", variant=variant, temperature=2.0)
    single = bernoulli_projector(variant, tau=2.0)(s, t).loss
    assert single.item() == pytest.approx(softmax(two_class(s), two_class(t)).loss.item(), abs=1e-6)

    s, t = torch.randn(4, 2, 3), torch.randn(4, 3, 3) * 2
    h_s, h_t = torch.randn(4, 2, 3), torch.randn(4, 3, 3)
    softmax = LayerProjector(space="output", distance="kl", variant=variant, temperature=2.0, score="hidden",
                             student_width=3, teacher_width=3)  # fmt: skip
    per_label = [softmax(two_class(s[..., c : c + 1]), two_class(t[..., c : c + 1]), h_s, h_t).loss for c in range(3)]
    multi = bernoulli_projector(variant, tau=2.0, score="hidden")(s, t, h_s, h_t).loss
    assert multi.item() == pytest.approx(torch.stack(per_label).mean().item(), abs=1e-6)


# ------------------------------------------------------------------------------------------------------- metrics


def test_multi_label_metrics_by_hand():
    # gold:      [1,0,1] [0,1,0] [1,1,0] [0,0,0]
    # predicted: [1,0,0] [0,1,0] [1,0,1] [0,0,0]  (sigmoid > 0.5, i.e. logit > 0; a logit of exactly 0 is "no")
    # micro: TP 3, FP 1, FN 2 -> F1 = 2·3 / (2·3 + 1 + 2) = 6/9.
    # macro: label 0 F1 1; label 1 TP 1, FN 1 -> 2/3; label 2 TP 0 -> 0; mean 5/9.
    # subset accuracy: rows 2 and 4 exactly right -> 1/2.
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float32)
    logits = np.array([[2.0, -1.0, 0.0], [-3.0, 0.5, -0.2], [1.0, -2.0, 4.0], [-1.0, -1.0, -1.0]])
    task = custom_task("tags", ("text",), multi_label=True, num_labels=3)
    m = compute_metrics(task, logits, labels)
    assert m["micro_f1"] == pytest.approx(6 / 9) and m["macro_f1"] == pytest.approx(5 / 9)
    assert m["subset_accuracy"] == 0.5 and m["score"] == pytest.approx((6 / 9 + 5 / 9 + 0.5) / 3)
    assert task.main_metric == "micro_f1"


# -------------------------------------------------------------------------------------------------- label parsing


def tagged_rows(n: int, seed: int) -> pd.DataFrame:
    """Sentences whose labels say what they hold: a positive word (good), a negative word (bad), the word 'plot'
    (plot); every eighth row holds none of them and has no labels."""
    rng = random.Random(seed)
    filler = [w for w in FILLER if w != "plot"]
    rows, tags = [], []
    for i in range(n):
        on = {"good": i % 2 == 0, "bad": (i // 2) % 2 == 0, "plot": (i // 4) % 2 == 0}
        words = rng.sample(filler, 3)
        words += [rng.choice(POSITIVE)] * on["good"] + [rng.choice(NEGATIVE)] * on["bad"] + ["plot"] * on["plot"]
        rng.shuffle(words)
        rows.append(" ".join(words))
        tags.append([name for name in ("plot", "good", "bad") if on[name]])  # not sorted: the set is sorted on read
    return pd.DataFrame({"sentence": rows, "tags": tags})


def write_tagged(directory: Path, suffix: str = ".jsonl", separator: str = ",", sizes=(48, 16, 16)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for k, (split, n) in enumerate(zip(("train", "validation", "test"), sizes, strict=True)):
        frame = tagged_rows(n, seed=k)
        if suffix in (".tsv", ".csv"):
            frame["tags"] = [separator.join(t) for t in frame["tags"]]
        write_frame(frame, directory / f"{split}{suffix}")
    return directory


def tags_task(**options) -> Task:
    return custom_task("tags", ("sentence",), "tags", multi_label=True, **options)


@pytest.mark.parametrize(("suffix", "separator"), [(".jsonl", ","), (".tsv", ","), (".tsv", "|"), (".csv", ";")])
def test_labels_from_lists_and_separator_strings(tmp_path, suffix, separator):
    data = write_tagged(tmp_path / "data", suffix, separator)
    task, splits = load_splits(tags_task(label_separator=separator), data)
    assert task.label_names == LABELS and task.num_labels == 3 and task.multi_label
    labels = np.asarray(splits["train"]["labels"])
    assert labels.shape == (48, 3)
    assert labels[0].tolist() == [1, 1, 1] and labels[1].tolist() == [1, 0, 1]  # row 2: bad, plot
    assert labels[7].tolist() == [0, 0, 0]  # an empty label list is allowed: none of the labels
    assert labels.sum(0).tolist() == [24, 24, 24]


def test_integer_label_lists_are_ids_and_json_text_cells_are_read(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    frame = pd.DataFrame({"sentence": ["a", "b", "c"], "tags": [[0, 2], [], [1]]})
    write_frame(frame, data / "train.jsonl")
    write_frame(frame.assign(tags=["[2]", "", "0,1"]), data / "validation.tsv")  # a JSON list, none, two ids
    task, splits = load_splits(tags_task(), data)
    assert task.num_labels == 3 and task.label_names is None
    assert np.asarray(splits["train"]["labels"]).tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert np.asarray(splits["validation"]["labels"]).tolist() == [[0, 0, 1], [0, 0, 0], [1, 1, 0]]


def test_unknown_label_in_validation_is_one_clear_line(tmp_path):
    data = write_tagged(tmp_path / "data")
    frame = tagged_rows(16, seed=1)
    frame["tags"] = [["good", "plott"] if i == 3 else tags for i, tags in enumerate(frame["tags"])]  # any pandas
    write_frame(frame, data / "validation.jsonl")
    with pytest.raises(XKDError, match=r"\[validation\]: label 'plott' on row 4 is not one of bad, good, plot") as e:
        load_splits(tags_task(), data)
    assert "\n" not in str(e.value)


def test_test_split_without_labels_is_kept_unlabelled(tmp_path):
    data = write_tagged(tmp_path / "data")
    write_frame(tagged_rows(4, seed=2)[["sentence"]], data / "test.jsonl")
    _, splits = load_splits(tags_task(), data)
    assert (np.asarray(splits["test"]["labels"]) == -1).all() and np.asarray(splits["test"]["labels"]).shape == (4, 3)


def test_list_labels_without_multi_label_are_refused(tmp_path):
    data = write_tagged(tmp_path / "data")
    with pytest.raises(XKDError, match=r"holds lists \(row 1: \['plot', 'good', 'bad'\]\); .*pass --multi-label"):
        load_splits(custom_task("tags", ("sentence",), "tags"), data)


def test_multi_label_declarations_that_cannot_work():
    with pytest.raises(XKDError, match="either --regression or --multi-label"):
        custom_task("x", ("t",), regression=True, multi_label=True)
    with pytest.raises(XKDError, match="label-separator must not be empty"):
        custom_task("x", ("t",), multi_label=True, label_separator="")


# ---------------------------------------------------------------------------------------------- end to end (CLI)

TASK_ARGS = ["--task", "tags", "--text-column", "sentence", "--label-column", "tags", "--multi-label"]


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny 3-label task and a tiny BERT fine-tuned on it by `xkd teacher finetune` (once per module)."""
    root = tmp_path_factory.mktemp("multilabel")
    data = write_tagged(root / "data")
    bare = save_tiny(root / "bare", layers=4, bare=True)
    teacher = root / "teacher"
    result = run(
        "teacher", "finetune", "--model", str(bare), "--data-dir", str(data), *TASK_ARGS, "--output-dir",
        str(teacher), "--epochs", "2", "--batch-size", "16", "--max-length", "16", "--lr", "1e-3", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return data, teacher


def test_finetuned_teacher_records_multi_label(tagged):
    _, teacher = tagged
    config = json.loads((teacher / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {"0": "bad", "1": "good", "2": "plot"}
    record = json.loads((teacher / "xkd.json").read_text())
    assert record["multi_label"] is True and record["labels"] == list(LABELS)
    metrics = json.loads((teacher / "metrics.json").read_text())["validation"]["validation"]
    assert set(metrics) == {"micro_f1", "macro_f1", "subset_accuracy", "score"}


@pytest.mark.parametrize(
    ("method", "student"),
    [("none", "bert-k"), ("kd", "bert-k"), ("logit-mse", "cnn"), ("universal", "bert-k"), ("universal", "cnn"),
     ("pkd", "bert-k"), ("alp", "bert-k"), ("aguilar", "bert-k")],
)  # fmt: skip
def test_distill_multi_label_through_the_cli(tmp_path, tagged, method, student):
    data, teacher = tagged
    out = tmp_path / "run"
    result = run(
        *distill(teacher, data), *TASK_ARGS, "--method", method, "--student", student, "--student-layers", "2",
        "--heads-epochs", "2", "--output-dir", str(out), *QUICK,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["validation"]["validation"]
    assert set(metrics) == {"micro_f1", "macro_f1", "subset_accuracy", "score"}
    assert all(0 <= v <= 1 for v in metrics.values())
    assert set(summary["teacher"]["metrics"]["validation"]) == set(metrics)
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["train"]
    assert all(math.isfinite(v) and v >= 0 for k, v in first.items() if k != "loss")
    if method == "universal":
        heads = json.loads((teacher / "pseudo_heads.json").read_text())  # trained with BCE on the fly
        assert "micro_f1" in heads["layer_metrics"][0]
    record_file = out / "student" / ("student.json" if student == "cnn" else "xkd.json")
    record = json.loads(record_file.read_text())
    assert record.get("multi_label") is True and record["labels"] == list(LABELS)

    answers = run("predict", "--model", str(out / "student"), "good plot", "the film was dull")
    assert answers.exit_code == 0, answers.output
    lines = [json.loads(line) for line in answers.output.strip().splitlines()]
    assert [line["text"] for line in lines] == ["good plot", "the film was dull"]
    for line in lines:
        assert isinstance(line["labels"], list) and set(line["labels"]) <= set(LABELS)
        assert list(line["probabilities"]) == list(LABELS)
        assert line["labels"] == [n for n, p in line["probabilities"].items() if p > 0.5]


def test_eval_and_predict_agree_on_a_multi_label_student(tmp_path, tagged):
    data, teacher = tagged
    out = tmp_path / "run"
    result = run(*distill(teacher, data), *TASK_ARGS, "--method", "kd", "--output-dir", str(out), *QUICK)
    assert result.exit_code == 0, result.output
    scored = run("eval", "--model", str(out / "student"), "--data-dir", str(data), *TASK_ARGS, "--split", "test")
    assert scored.exit_code == 0, scored.output
    test = json.loads(scored.output)["metrics"]["test"]
    assert test == pytest.approx(json.loads((out / "summary.json").read_text())["test"]["test"], abs=1e-6)
    # Predictor's label lists give the same subset accuracy as `xkd eval`.
    frame = pd.read_json(data / "test.jsonl", lines=True)
    answers = Predictor(out / "student", max_length=16)(frame["sentence"].tolist())
    exact = [sorted(a["labels"]) == sorted(tags) for a, tags in zip(answers, frame["tags"], strict=True)]
    assert np.mean(exact) == pytest.approx(test["subset_accuracy"])
    # The fine-tuned teacher answers in the same form, from its config and record alone.
    assert set(Predictor(teacher)(["good plot"])[0]) == {"labels", "probabilities"}


def test_transfer_rows_and_a_config_file_declaring_the_task(tmp_path, tagged):
    data, teacher = tagged
    transfer = tmp_path / "more.txt"
    transfer.write_text("\n".join(tagged_rows(24, seed=9)["sentence"]) + "\n")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('task = "tags"\ntext-columns = ["sentence"]\nlabel-column = "tags"\nmulti-label = true\n')
    out = tmp_path / "run"
    result = run(
        *distill(teacher, data), "--config", str(recipe), "--method", "kd", "--transfer", str(transfer),
        "--output-dir", str(out), *QUICK,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["transfer"] > 0 and "micro_f1" in summary["test"]["test"]


def test_teacher_heads_command_trains_multi_label_heads(tmp_path, tagged):
    data, teacher = tagged
    copy = shutil.copytree(teacher, tmp_path / "teacher")
    result = run(
        "teacher", "heads", "--teacher", str(copy), "--data-dir", str(data), *TASK_ARGS, "--epochs", "2",
        "--max-length", "16", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    layers = json.loads(result.output[result.output.index("{") :])["layer_metrics"]
    assert len(layers) == 4 and set(layers[0]) == {"micro_f1", "macro_f1", "subset_accuracy", "score"}


def test_bad_multi_label_input_is_one_line_with_exit_2(tmp_path, tagged):
    data, teacher = tagged
    single = tmp_path / "single"  # the same texts with one of the three labels each
    single.mkdir()
    for split in ("train", "validation"):
        frame = pd.read_json(data / f"{split}.jsonl", lines=True)
        write_frame(frame.assign(tags=[LABELS[i % 3] for i in range(len(frame))]), single / f"{split}.tsv")
    cases = {
        "holds lists": (data, [*TASK_ARGS[:-1], "--method", "kd"]),  # list labels without --multi-label
        "has no multi-label form": (data, [*TASK_ARGS, "--method", "plugin_cosine:last-cosine"]),
        "declares a custom task": (data, ["--task", "mr", "--multi-label", "--method", "kd"]),
        "is a multi-label-classification model": (single, [*TASK_ARGS[:-1], "--method", "kd"]),  # a teacher of sigmoids
    }
    for message, (where, args) in cases.items():
        result = run(*distill(teacher, where), *args, "--output-dir", str(tmp_path / "run"), *QUICK)
        assert result.exit_code == 2 and message in result.output, (message, result.output)
        assert result.output.count("\n") == 1
