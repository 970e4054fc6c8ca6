"""ECE, reliability, ROC/PR/F1 curves, temperature scaling and their figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from leukbench.calibration import (
    apply_temperature,
    expected_calibration_error,
    f1_threshold_curves,
    fit_temperature,
    negative_log_likelihood,
    plot_f1_threshold,
    plot_pr,
    plot_roc,
    pr_curves,
    probability_matrix,
    reliability_diagram,
    reliability_table,
    roc_curves,
    temperature_scaling,
)

BINARY = ["Healthy", "ALL"]
CLASSES = ["Benign", "Early", "Pre", "Pro"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def binary_set(groups: list[tuple[float, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Images whose top (class 1) probability is p: (p, n images, how many truly class 1)."""
    probs, labels = [], []
    for p, n, right in groups:
        probs += [[1 - p, p]] * n
        labels += [1] * right + [0] * (n - right)
    return np.array(probs), np.array(labels)


def synthetic(n: int, k: int, sharpen: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated probabilities q; the 'model' reports q^sharpen, renormalised."""
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.full(k, 0.7), size=n)
    labels = np.array([rng.choice(k, p=row) for row in q])
    reported = q**sharpen
    return reported / reported.sum(axis=1, keepdims=True), labels


# --- ECE ---------------------------------------------------------------------------------------


def test_ece_of_a_perfectly_calibrated_set_is_zero() -> None:
    # confidence 0.8 and 8 of 10 right; confidence 0.6 and 6 of 10 right
    probs, labels = binary_set([(0.8, 10, 8), (0.6, 10, 6)])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_an_overconfident_set_by_hand() -> None:
    # confidence 0.9 with 6/10 right (gap 0.3), confidence 0.7 with 5/10 right (gap 0.2)
    probs, labels = binary_set([(0.9, 10, 6), (0.7, 10, 5)])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(
        0.5 * 0.3 + 0.5 * 0.2
    )
    # one bin holds everything: |mean accuracy 0.55 - mean confidence 0.8|
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(0.25)


def test_reliability_table_bins_are_right_closed() -> None:
    probs, labels = binary_set([(0.9, 10, 6), (0.7, 10, 5), (1.0, 2, 2)])
    table = reliability_table(probs, labels, n_bins=10)
    assert table["count"].tolist() == [0] * 6 + [10, 0, 10, 2]  # 0.7 -> (0.6, 0.7]
    assert table.loc[6, "accuracy"] == pytest.approx(0.5)
    assert table.loc[8, "confidence"] == pytest.approx(0.9)
    assert table.loc[8, "gap"] == pytest.approx(-0.3)
    assert np.isnan(table.loc[0, "accuracy"])


def test_ece_uses_the_top_label_for_multiclass() -> None:
    # top class 0 at 0.5 each time; 2 of 4 images are class 0 -> calibrated
    probs = np.array([[0.5, 0.3, 0.2]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 1, 2]), 10) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 1, 1, 2]), 10) == pytest.approx(0.5)


# --- temperature scaling -----------------------------------------------------------------------


def test_negative_log_likelihood_by_hand() -> None:
    probs = np.array([[0.5, 0.5], [0.75, 0.25]])
    assert negative_log_likelihood(probs, np.array([0, 1])) == pytest.approx(1.5 * np.log(2))


def test_apply_temperature_by_hand() -> None:
    probs = np.array([[0.8, 0.2], [0.5, 0.5]])
    # T = 2 takes square roots: sqrt(0.8) / sqrt(0.2) = 2, so (2/3, 1/3)
    np.testing.assert_allclose(apply_temperature(probs, 2.0), [[2 / 3, 1 / 3], [0.5, 0.5]])
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs)
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(probs, 0.0)


def test_fit_temperature_undoes_overconfidence() -> None:
    probs, labels = synthetic(4000, 4, sharpen=3.0, seed=0)
    temperature = fit_temperature(probs, labels)
    assert temperature == pytest.approx(3.0, rel=0.15)
    assert negative_log_likelihood(
        apply_temperature(probs, temperature), labels
    ) < negative_log_likelihood(probs, labels)


def test_fit_temperature_leaves_calibrated_probabilities_alone() -> None:
    probs, labels = synthetic(4000, 3, sharpen=1.0, seed=1)
    assert fit_temperature(probs, labels) == pytest.approx(1.0, rel=0.1)


def test_temperature_scaling_reports_ece_and_nll_before_and_after() -> None:
    val_probs, val_labels = synthetic(3000, 4, sharpen=2.5, seed=2)
    test_probs, test_labels = synthetic(3000, 4, sharpen=2.5, seed=3)
    result = temperature_scaling(val_probs, val_labels, test_probs, test_labels, n_bins=15)
    assert result.temperature > 1.5
    assert result.nll_after < result.nll_before
    assert result.ece_after < result.ece_before
    assert result.ece_before == pytest.approx(
        expected_calibration_error(test_probs, test_labels, 15)
    )


# --- curves ------------------------------------------------------------------------------------


def test_binary_roc_and_pr_areas_equal_sklearn() -> None:
    probs, labels = synthetic(300, 2, sharpen=1.0, seed=4)
    curves, areas = roc_curves(probs, labels, BINARY)
    assert areas["class"].tolist() == ["ALL"]  # the positive class defaults to classes[1]
    assert areas["roc_auc"].iloc[0] == pytest.approx(roc_auc_score(labels, probs[:, 1]))
    assert curves[["fpr", "tpr"]].iloc[[0, -1]].values.tolist() == [[0, 0], [1, 1]]
    _, flipped = roc_curves(probs, labels, BINARY, positive="Healthy")
    assert flipped["roc_auc"].iloc[0] == pytest.approx(roc_auc_score(labels == 0, probs[:, 0]))
    _, pr_areas = pr_curves(probs, labels, BINARY)
    assert pr_areas["pr_auc"].iloc[0] == pytest.approx(average_precision_score(labels, probs[:, 1]))


def test_multiclass_roc_and_pr_one_vs_rest_with_macro() -> None:
    probs, labels = synthetic(400, 4, sharpen=1.0, seed=5)
    curves, areas = roc_curves(probs, labels, CLASSES)
    areas = areas.set_index("class")["roc_auc"]
    assert list(areas.index) == [*CLASSES, "macro"]
    for k, cls in enumerate(CLASSES):
        assert areas[cls] == pytest.approx(roc_auc_score(labels == k, probs[:, k]))
    assert areas["macro"] == pytest.approx(
        roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    )
    macro = curves[curves["class"] == "macro"]
    assert macro[["fpr", "tpr"]].iloc[-1].tolist() == [1.0, 1.0]
    assert np.trapezoid(macro["tpr"], macro["fpr"]) == pytest.approx(areas["macro"], abs=0.02)
    _, pr = pr_curves(probs, labels, CLASSES)
    pr = pr.set_index("class")["pr_auc"]
    assert pr["macro"] == pytest.approx(
        np.mean([average_precision_score(labels == k, probs[:, k]) for k in range(4)])
    )


def test_absent_class_has_no_curve() -> None:
    probs, labels = synthetic(50, 4, sharpen=1.0, seed=6)
    labels[labels == 3] = 0
    curves, areas = roc_curves(probs, labels, CLASSES)
    assert "Pro" not in set(curves["class"])
    assert np.isnan(areas.set_index("class").loc["Pro", "roc_auc"])


def test_f1_threshold_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3])
    labels = np.array([1, 1, 0, 1, 0])
    probs = np.column_stack([1 - scores, scores])
    curves, best = f1_threshold_curves(probs, labels, BINARY)
    # threshold t predicts ALL for scores >= t: F1 = 2tp / (2tp + fp + fn)
    expected = {0.3: 6 / 8, 0.6: 6 / 7, 0.7: 4 / 6, 0.8: 4 / 5, 0.9: 2 / 4}
    got = dict(zip(curves["threshold"].round(6), curves["f1"], strict=True))
    assert got == pytest.approx(expected)
    assert best[["class", "threshold", "f1"]].values.tolist() == [
        ["ALL", 0.6, pytest.approx(6 / 7)]
    ]


def test_f1_threshold_per_class_for_multiclass() -> None:
    probs, labels = synthetic(200, 4, sharpen=1.0, seed=7)
    curves, best = f1_threshold_curves(probs, labels, CLASSES)
    assert best["class"].tolist() == CLASSES
    for row in best.itertuples():
        part = curves[curves["class"] == row[1]]
        assert row.f1 == pytest.approx(part["f1"].max())


def test_probability_matrix_reads_a_predictions_table() -> None:
    table = pd.DataFrame(
        {"true": ["ALL", "Healthy"], "pred": ["ALL", "ALL"], "prob_Healthy": [0.1, 0.4]}
    ).assign(prob_ALL=[0.9, 0.6])
    probs, labels = probability_matrix(table, BINARY)
    np.testing.assert_allclose(probs, [[0.1, 0.9], [0.4, 0.6]])
    assert labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match="prob_Early"):
        probability_matrix(table, ["Healthy", "Early"])


# --- figures -----------------------------------------------------------------------------------


def test_figures_are_written_as_png(tmp_path: Path) -> None:
    probs, labels = synthetic(200, 4, sharpen=2.0, seed=8)
    written = [
        reliability_diagram(probs, labels, tmp_path / "figs" / "reliability.png", n_bins=10),
        plot_roc(*roc_curves(probs, labels, CLASSES), tmp_path / "roc.png"),
        plot_pr(*pr_curves(probs, labels, CLASSES), tmp_path / "pr.png"),
        plot_f1_threshold(*f1_threshold_curves(probs, labels, CLASSES), tmp_path / "f1.png"),
    ]
    for path in written:
        data = Path(path).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, path
