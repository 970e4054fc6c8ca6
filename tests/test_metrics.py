"""Accuracy, misclassification cost and F1, checked against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from leukbench.metrics import HEADLINE, classification_metrics, cost_metrics, evaluate, tidy

CLASSES = ["Benign", "Early", "Pre", "Pro"]
# Study 003's cost matrix, C[true, predicted] (reference-protocols.md, section A)
PUBLISHED_COST = np.array(
    [
        [0, 10, 20, 30],
        [10, 0, 15, 25],
        [20, 15, 0, 10],
        [30, 25, 10, 0],
    ]
)


def labels_from_confusion(confusion: np.ndarray, classes: list[str]) -> tuple[pd.Series, pd.Series]:
    """Expand N[true, predicted] into one (true, pred) pair per sample."""
    true, pred = [], []
    for i, row in enumerate(confusion):
        for j, count in enumerate(row):
            true += [classes[i]] * int(count)
            pred += [classes[j]] * int(count)
    return pd.Series(true), pd.Series(pred)


# --- the published SVM row: 518 test images, 493 correct, total cost 345 ------------------------

# supports 81, 158, 154, 125; 25 errors:
#   cost 10 (x20): Benign->Early 4, Early->Benign 5, Pre->Pro 6, Pro->Pre 5
#   cost 30 (x4):  Benign->Pro 2, Pro->Benign 2
#   cost 25 (x1):  Early->Pro 1
PUBLISHED_LIKE = np.array(
    [
        [75, 4, 0, 2],
        [5, 152, 0, 1],
        [0, 0, 148, 6],
        [2, 0, 5, 118],
    ]
)


def test_the_constructed_confusion_matrix_is_what_the_comment_says() -> None:
    assert PUBLISHED_LIKE.sum(axis=1).tolist() == [81, 158, 154, 125]
    assert PUBLISHED_LIKE.sum() == 518
    assert np.trace(PUBLISHED_LIKE) == 493
    off = ~np.eye(4, dtype=bool)
    errors = {
        int(cost): int(PUBLISHED_LIKE[off & np.equal(PUBLISHED_COST, cost)].sum())
        for cost in (10, 15, 20, 25, 30)
    }
    assert errors == {10: 20, 15: 0, 20: 0, 25: 1, 30: 4}


def test_published_formulas_reproduce_the_published_svm_row() -> None:
    true, pred = labels_from_confusion(PUBLISHED_LIKE, CLASSES)
    result = classification_metrics(true, pred, CLASSES, PUBLISHED_COST)
    assert result["confusion_matrix"] == PUBLISHED_LIKE.tolist()
    assert result["n"] == 518
    # 20 * 10 + 4 * 30 + 1 * 25
    assert result["total_cost"] == 345
    # 345 / 518
    assert round(result["average_cost"], 4) == 0.6660
    # sum(C) = 220, so the published denominator is 220 * 518 / 4 = 28,490
    assert round(result["cost_sensitive_accuracy"], 4) == 0.9879
    # 493 / 518
    assert round(result["accuracy"], 4) == 0.9517


def test_normalised_cost_sensitive_accuracy_uses_each_samples_worst_cost() -> None:
    metrics = cost_metrics(PUBLISHED_LIKE, PUBLISHED_COST)
    # worst cost per true class: Benign 30, Early 25, Pre 20, Pro 30
    worst = 81 * 30 + 158 * 25 + 154 * 20 + 125 * 30
    assert worst == 13210
    assert metrics["cost_sensitive_accuracy_normalised"] == pytest.approx(1 - 345 / 13210)
    assert metrics["cost_sensitive_accuracy"] == pytest.approx(1 - 345 / 28490)


def test_always_maximally_wrong_scores_zero_normalised_but_not_published() -> None:
    supports = [81, 158, 154, 125]
    worst_prediction = [3, 3, 0, 0]  # Benign->Pro 30, Early->Pro 25, Pre->Benign 20, Pro->Benign 30
    confusion = np.zeros((4, 4), dtype=int)
    for i, j in enumerate(worst_prediction):
        confusion[i, j] = supports[i]
    metrics = cost_metrics(confusion, PUBLISHED_COST)
    assert metrics["total_cost"] == 13210
    assert metrics["cost_sensitive_accuracy_normalised"] == pytest.approx(0.0)
    # the published formula still gives this classifier 1 - 13210 / 28490 = 0.5363
    assert metrics["cost_sensitive_accuracy"] == pytest.approx(1 - 13210 / 28490)
    assert metrics["cost_sensitive_accuracy"] > 0.5


def test_a_perfect_classifier_scores_one_on_both_cost_accuracies() -> None:
    metrics = cost_metrics(np.diag([3, 4, 5, 6]), PUBLISHED_COST)
    assert metrics == {
        "total_cost": 0.0,
        "average_cost": 0.0,
        "cost_sensitive_accuracy": 1.0,
        "cost_sensitive_accuracy_normalised": 1.0,
    }


def test_cost_metrics_on_a_small_hand_computed_matrix() -> None:
    confusion = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    cost = np.array([[0, 1, 4], [2, 0, 3], [5, 1, 0]])
    # total = 1*1 + 2*2 + 1*3 = 8; n = 16; sum(C) = 16, k = 3
    # worst = 6*4 + 6*3 + 4*5 = 62
    metrics = cost_metrics(confusion, cost)
    assert metrics["total_cost"] == 8
    assert metrics["average_cost"] == pytest.approx(8 / 16)
    assert metrics["cost_sensitive_accuracy"] == pytest.approx(1 - 8 / (16 * 16 / 3))
    assert metrics["cost_sensitive_accuracy_normalised"] == pytest.approx(1 - 8 / 62)


def test_cost_metrics_of_an_empty_confusion_matrix_are_nan() -> None:
    metrics = cost_metrics(np.zeros((2, 2)), np.array([[0, 1], [1, 0]]))
    assert metrics["total_cost"] == 0.0
    assert np.isnan(metrics["average_cost"])
    assert np.isnan(metrics["cost_sensitive_accuracy"])
    assert np.isnan(metrics["cost_sensitive_accuracy_normalised"])


# --- F1 ------------------------------------------------------------------------------------------


def test_macro_and_weighted_f1_differ_on_an_imbalanced_example() -> None:
    # 8 A and 2 B; one A called B, one B called A
    true = pd.Series(["A"] * 8 + ["B"] * 2)
    pred = pd.Series(["A"] * 7 + ["B"] + ["B"] + ["A"])
    result = classification_metrics(true, pred, ["A", "B"], np.array([[0, 1], [1, 0]]))
    # A: precision 7/8, recall 7/8, F1 0.875; B: precision 1/2, recall 1/2, F1 0.5
    assert result["per_class"]["A"] == {
        "precision": 0.875,
        "recall": 0.875,
        "f1": 0.875,
        "support": 8,
    }
    assert result["per_class"]["B"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    # macro: unweighted mean of per-class F1; weighted: mean weighted by support
    assert result["f1_macro"] == pytest.approx((0.875 + 0.5) / 2)
    assert result["f1_weighted"] == pytest.approx((8 * 0.875 + 2 * 0.5) / 10)
    assert result["f1_macro"] != pytest.approx(result["f1_weighted"])
    # the same definitions as scikit-learn's average="macro" and average="weighted"
    assert result["f1_macro"] == pytest.approx(f1_score(true, pred, average="macro"))
    assert result["f1_weighted"] == pytest.approx(f1_score(true, pred, average="weighted"))
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["total_cost"] == 2


def test_a_class_never_predicted_counts_as_f1_zero_in_the_macro_average() -> None:
    true = pd.Series(["A", "A", "B", "C"])
    pred = pd.Series(["A", "A", "A", "C"])
    result = classification_metrics(true, pred, ["A", "B", "C"], np.ones((3, 3)) - np.eye(3))
    # A: P 2/3, R 1, F1 0.8; B: never predicted, F1 0; C: F1 1
    assert result["per_class"]["B"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["per_class"]["A"]["f1"] == pytest.approx(0.8)
    assert result["f1_macro"] == pytest.approx((0.8 + 0 + 1) / 3)
    assert result["f1_weighted"] == pytest.approx((2 * 0.8 + 0 + 1) / 4)


def test_a_class_absent_from_the_split_still_has_a_row_and_column() -> None:
    true = pd.Series(["A", "B"])
    pred = pd.Series(["A", "B"])
    result = classification_metrics(true, pred, ["A", "B", "C"], np.ones((3, 3)) - np.eye(3))
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert result["per_class"]["C"]["support"] == 0


# --- evaluate and tidy ---------------------------------------------------------------------------


def predictions_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "split": ["train"] * 4 + ["test"] * 4,
            "true": ["Benign", "Early", "Pre", "Pro", "Benign", "Early", "Pre", "Pro"],
            "pred": ["Benign", "Early", "Pre", "Pro", "Pro", "Early", "Pre", "Pre"],
        }
    )


def test_evaluate_gives_metrics_per_split() -> None:
    metrics = evaluate(predictions_frame(), CLASSES, PUBLISHED_COST.tolist())
    assert set(metrics) == {"train", "test"}
    assert metrics["train"]["accuracy"] == 1.0 and metrics["train"]["total_cost"] == 0
    # test: Benign->Pro costs 30, Pro->Pre costs 10
    assert metrics["test"]["accuracy"] == 0.5
    assert metrics["test"]["total_cost"] == 40
    assert metrics["test"]["average_cost"] == 10
    assert metrics["test"]["n"] == 4


@pytest.mark.parametrize(
    "cost",
    [
        [[0, 1, 1], [1, 0, 1], [1, 1, 0]],  # 3x3 for four classes
        [[0, 1, 1, 1]] * 3,  # 3x4: not square
        [[0, 1, 1, 1, 1]] * 5,  # 5x5
        [0, 1, 1, 1] * 4,  # the right 16 numbers, but flat
    ],
)
def test_evaluate_rejects_a_cost_matrix_that_does_not_fit_the_classes(cost: list) -> None:
    with pytest.raises(ValueError, match=r"cost matrix .*4 classes") as caught:
        evaluate(predictions_frame(), CLASSES, cost)
    assert "Benign" in str(caught.value)


def test_tidy_is_one_row_per_split_and_metric() -> None:
    metrics = evaluate(predictions_frame(), CLASSES, PUBLISHED_COST.tolist())
    table = tidy(metrics, dataset="kaggle_all", model="svm", variant="Original")
    assert list(table.columns) == ["dataset", "model", "variant", "split", "metric", "value"]
    assert table.shape == (2 * (1 + len(HEADLINE)), 6)
    assert set(table["metric"]) == {"n", *HEADLINE}
    assert (table["model"] == "svm").all()
    assert not table.duplicated(["split", "metric"]).any()
    value = table.set_index(["split", "metric"])["value"]
    assert value[("test", "total_cost")] == 40
    assert value[("train", "n")] == 4


def test_tidy_skips_entries_that_are_not_split_metrics() -> None:
    metrics = evaluate(predictions_frame(), CLASSES, PUBLISHED_COST.tolist())
    metrics["info"] = {"best_params": {"C": 1}}
    metrics["note"] = "text"
    table = tidy(metrics, model="svm")
    assert set(table["split"]) == {"train", "test"}
    assert len(table) == 2 * (1 + len(HEADLINE))
