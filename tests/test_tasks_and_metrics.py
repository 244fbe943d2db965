import numpy as np
import pytest

from xkd.errors import XKDError
from xkd.metrics import compute_metrics
from xkd.tasks import TASKS, custom_task, get_task


def test_registry_has_glue_and_mr():
    assert set(TASKS.names()) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "mr"}
    mnli = get_task("mnli")
    assert mnli.validation_splits == ("validation_matched", "validation_mismatched")
    assert mnli.num_labels == 3 and mnli.is_pair
    assert get_task("stsb").regression and get_task("stsb").output_size == 1
    assert get_task("mr").text_columns == ("sentence",) and not get_task("mr").is_pair


def test_unknown_task_is_a_one_line_error():
    with pytest.raises(XKDError, match="unknown task 'sst'.*did you mean 'sst2'"):
        get_task("sst")


def test_unknown_task_says_how_to_name_ones_own_data(tmp_path):
    # A folder of TSVs named by --task and --data-dir alone was refused with the built-in list and no word of how.
    from tiny import distill, run, save_tiny, write_task_dir

    data = write_task_dir(tmp_path / "reviews")
    result = run(*distill(save_tiny(tmp_path / "t"), data), "--task", "reviews")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "unknown task 'reviews'" in result.output and "--text-column COLUMN" in result.output


def test_accuracy_f1_by_hand():
    # predictions 1,1,0,0 vs labels 1,0,0,1: accuracy 2/4; precision 1/2, recall 1/2 -> F1 0.5.
    logits = np.array([[0, 1], [0, 1], [1, 0], [1, 0]], dtype=float)
    m = compute_metrics(get_task("mrpc"), logits, np.array([1, 0, 0, 1]))
    assert m == {"accuracy": 0.5, "f1": 0.5, "score": 0.5}


def test_matthews_by_hand():
    # TP=2, TN=1, FP=1, FN=0: (2·1 - 1·0) / sqrt(3·2·2·1) = 2 / sqrt(12) = 0.5773503.
    logits = np.array([[0, 1], [0, 1], [0, 1], [1, 0]], dtype=float)
    m = compute_metrics(get_task("cola"), logits, np.array([1, 1, 0, 0]))
    assert m["matthews"] == pytest.approx(0.5773503, abs=1e-6)


def test_pearson_spearman_for_regression():
    preds = np.array([[1.0], [2.0], [3.0], [5.0]])
    m = compute_metrics(get_task("stsb"), preds, np.array([1.0, 2.0, 3.0, 4.0]))
    assert m["spearman"] == pytest.approx(1.0)
    assert m["pearson"] == pytest.approx(0.9827076, abs=1e-6)
    assert m["score"] == pytest.approx((m["pearson"] + m["spearman"]) / 2)


def test_custom_task_needs_one_or_two_text_columns():
    assert custom_task("x", ("a", "b")).is_pair
    with pytest.raises(XKDError, match="one or two text columns"):
        custom_task("x", ("a", "b", "c"))
